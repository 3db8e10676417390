"""Forged archives: what a teammate with push access can make of `refs/exp-archive/*` with plain
git, and what the victim's `git exp fetch` does with it.

Every archive here is written with hash-object and mktree (a commit as raw text, so its parents
are exactly the forger's) and pushed into the shared bare remote as is. Each forgery is the
honest shape but for one defect: its runs are valid new runs made by plain git (`twin`), so an
archive missing only that check would come in, and a control made the same way does. The victim
must refuse each forgery in one stderr line naming the archive and why, exit 0 (a refusal is
reported, not fatal), create or move no run ref because of it, not remember it in
`.git/gitexp/archives.json`, and still take the genuine archive `git exp push` made in the same
remote. A forged archive must not turn an honest `git exp push` against its own runs
either: hide a run from it, or get one deleted.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import make_repo, use_home
from tests.helpers import copy_repo, exp, git, seal_key
from tests.test_sharing import clone, launch
from tests.test_sharing_immutable import blob, forge, message_of, rev

PREFIX = "refs/exp-archive/"
STAMP = "Mallory <mallory@example.com> 1700000000 +0000"
LINE = re.compile(r"refused archive (.*) from origin: (.*)")
# Sorts before every id `launch` makes (`python-MMDD-...`): an archive listing it first is
# named before the genuine one, so it is judged first.
EARLY = "python-0000-"


@dataclass(frozen=True)
class World:
    """Made once per module: Alice's four runs, and the remote before and after her push
    folded them into one archive."""
    alice: Path
    key: Path
    before: Path  # the remote holding Alice's first two runs one ref each
    after: Path  # ... and then the genuine archive of all four, no run ref
    ids: list[str]  # sorted: the archive is named after the first


@dataclass(frozen=True)
class Scene:
    """One test's copies: Alice (every run's objects, pushing to `remote`), the remote as
    her folding push left it, and Bob, who fetched the first two runs before that push."""
    alice: Path
    remote: Path
    bob: Path
    ids: list[str]

    @property
    def genuine(self) -> str:
        return PREFIX + self.ids[0]

    def commit(self, run_id: str) -> str:
        return rev(self.alice, f"refs/experiments/{run_id}")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    root = tmp_path_factory.mktemp("archives")
    with pytest.MonkeyPatch.context() as mp:
        use_home(mp, root)
        remote = root / "remote.git"
        git("init", "-q", "--bare", "-b", "main", str(remote), cwd=root)
        alice = make_repo(root / "alice", {"train.py": "print('v1')\n"})
        git("remote", "add", "origin", str(remote), cwd=alice)
        git("push", "-q", "origin", "main", cwd=alice)
        ids = sorted(launch(alice) for _ in range(4))
        exp("push", "origin", *ids[:2], cwd=alice)
        before = shutil.copytree(remote, root / "before.git")
        git("config", "exp.foldAt", "3", cwd=alice)  # keeps 3 // 6 = 0 runs one ref each
        assert "4 older run(s) folded into 1 archive(s)" in exp("push", cwd=alice).stdout
        assert git("for-each-ref", "--format=%(refname)", cwd=remote).split() == [
            PREFIX + ids[0], "refs/heads/main"]
        return World(alice, seal_key(alice), before, shutil.copytree(remote, root / "after.git"),
                      ids)


@pytest.fixture
def scene(world: World, tmp_path: Path) -> Scene:
    remote = shutil.copytree(world.before, tmp_path / "remote.git")
    bob = clone(remote, tmp_path / "bob")
    exp("fetch", cwd=bob)  # the first two runs, one ref each
    shutil.rmtree(remote)
    shutil.copytree(world.after, remote)  # Alice's folding push, as it left the remote
    alice = copy_repo(world.alice, tmp_path / "alice", world.key)
    git("remote", "set-url", "origin", str(remote), cwd=alice)
    return Scene(alice, remote, bob, world.ids)


# -- plain git, as the forger has it ----------------------------------------------------------
def twin(repo: Path, run_id: str, new_id: str) -> str:
    """A new valid run `new_id` made from run `run_id`'s commits exactly as gitexp makes one
    (a snapshot, then its results commit): its results commit."""
    ref = f"refs/experiments/{run_id}"
    results, snapshot = rev(repo, ref), rev(repo, f"{ref}^1")
    _, s_body = message_of(repo, snapshot)
    title, body = message_of(repo, results)
    s_body["record"]["id"] = body["record"]["id"] = new_id
    snap = forge(repo, rev(repo, f"{snapshot}^{{tree}}"),
                 git("rev-parse", f"{snapshot}^@", cwd=repo).split(), f"gitexp run {new_id}",
                 s_body)
    return forge(repo, rev(repo, f"{results}^{{tree}}"), [snap],
                 title.replace(run_id, new_id), body)


def twins(scene: Scene, *names: str) -> dict[str, str]:
    """New valid runs `EARLY + name`: id -> results commit."""
    return {EARLY + n: twin(scene.alice, scene.ids[2], EARLY + n) for n in names}


def raw(repo: Path, kind: str, data: bytes) -> str:
    """An object of any content (`--literally`: git checks nothing of it)."""
    return git("hash-object", "-w", "--literally", "-t", kind, "--stdin", cwd=repo,
               input=data).strip()


def tree_of_runs(repo: Path, listing: bytes) -> str:
    """A tree as `archives.make` writes one: `listing`, as `runs`."""
    return git("mktree", cwd=repo, input=f"100644 blob {raw(repo, 'blob', listing)}\truns\n"
               .encode()).strip()


def listing(runs: Mapping[str, str]) -> bytes:
    return "".join(f"{i} {c}\n" for i, c in runs.items()).encode()


def commit(repo: Path, tree: str, parents: Sequence[str]) -> str:
    """A commit object written as text: its parents exactly these, repeats included."""
    text = f"tree {tree}\n" + "".join(f"parent {p}\n" for p in parents) + \
        f"author {STAMP}\ncommitter {STAMP}\n\ngitexp archive\n"
    return git("hash-object", "-w", "-t", "commit", "--stdin", cwd=repo,
               input=text.encode()).strip()


def archive(repo: Path, runs: Mapping[str, str], parents: Sequence[str] | None = None) -> str:
    """An archive commit of `runs` (id -> commit, in id order) as gitexp makes one, but for
    `parents` when given."""
    tree = tree_of_runs(repo, listing(runs))
    return commit(repo, tree, list(runs.values()) if parents is None else parents)


def plant(repo: Path, archives: Mapping[str, str]) -> None:
    """Push `archives` (name -> object) from `repo` into its remote, as the forger would."""
    git("push", "-q", "origin", *(f"{oid}:{PREFIX}{name}" for name, oid in archives.items()),
        cwd=repo)


# -- what the victim sees --------------------------------------------------------------------
def run_refs(repo: Path) -> dict[str, str]:
    out = git("for-each-ref", "--format=%(refname) %(objectname)", "refs/experiments/", cwd=repo)
    return {ref: oid for ref, _, oid in (line.partition(" ") for line in out.splitlines())}


def remembered(repo: Path) -> dict[str, str]:
    path = repo / ".git" / "gitexp" / "archives.json"
    return json.loads(path.read_text()) if path.exists() else {}


def inert(proc: subprocess.CompletedProcess[str]) -> None:
    """Nothing a terminal would obey, and no traceback."""
    said = proc.stdout + proc.stderr
    assert "Traceback" not in said, said
    for c in ("\x1b", "\x9b", "\u202e", "\x07", "\r"):
        assert c not in said, (c, said)


def fetch_refusing(scene: Scene, refused: Mapping[str, str],
                   taken: Mapping[str, str] | None = None,
                   arrive: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Bob's fetch: each archive of `refused` (name -> the start of why) refused in one stderr
    line and nothing else said there; exit 0; the run refs afterwards exactly those before,
    the genuine archive's, and `arrive` (id -> commit); archives.json: what it held, the
    genuine archive and `taken` (name -> commit), no forgery."""
    runs, known = run_refs(scene.bob), remembered(scene.bob)
    proc = exp("fetch", cwd=scene.bob, check=False)
    assert proc.returncode == 0, proc.stderr
    inert(proc)
    lines = proc.stderr.splitlines()
    said = {m[1]: m[2] for line in lines if (m := LINE.fullmatch(line))}
    assert len(said) == len(lines), lines  # each line a refusal, one per archive
    assert said.keys() == refused.keys(), (sorted(said), sorted(refused))
    for name, why in refused.items():
        assert said[name].startswith(why), (name, said[name], why)
    expected = {**runs, **{f"refs/experiments/{i}": scene.commit(i) for i in scene.ids},
                **{f"refs/experiments/{i}": c for i, c in (arrive or {}).items()}}
    assert run_refs(scene.bob) == expected
    genuine = rev(scene.remote, scene.genuine)
    assert remembered(scene.bob) == {**known, scene.genuine: genuine,
                                     **{PREFIX + n: c for n, c in (taken or {}).items()}}
    return proc


# -- the tests -------------------------------------------------------------------------------
def test_an_archive_whose_parents_are_not_exactly_its_runs_is_refused(scene: Scene) -> None:
    made = twins(scene, *(f"p{n:02}" for n in range(1, 14)))
    ids, commits = list(made), list(made.values())
    head = rev(scene.alice, "HEAD")

    def pair(n: int) -> dict[str, str]:
        return {ids[n]: commits[n], ids[n + 1]: commits[n + 1]}

    cases = {  # name -> the archive: its listing right, its parents not
        ids[0]: archive(scene.alice, pair(0), [*commits[0:2], head]),  # one more
        ids[2]: archive(scene.alice, pair(2), commits[2:3]),  # one missing
        ids[4]: archive(scene.alice, pair(4), [commits[5], commits[4]]),  # reordered
        ids[6]: archive(scene.alice, pair(6), [*commits[6:8], commits[7]]),  # repeated
        ids[8]: archive(scene.alice, pair(8), [commits[8], scene.commit(scene.ids[3])]),
        ids[10]: archive(scene.alice, {ids[10]: commits[10]}, []),  # none
    }
    control = {ids[11]: archive(scene.alice, pair(11))}  # the same made right comes in
    plant(scene.alice, {**cases, **control})

    why = "its parents are not the runs it lists"
    fetch_refusing(scene, dict.fromkeys(cases, why), taken=control,
                   arrive={i: made[i] for i in ids[11:13]})
    # Refused again by the next fetch (never remembered); the genuine one is not read again.
    again = exp("fetch", cwd=scene.bob)
    assert "0 new run(s)" in again.stdout
    assert sorted(again.stderr.splitlines()) == sorted(
        f"refused archive {name} from origin: {why}" for name in cases)


def test_a_listing_that_is_not_sorted_unique_run_lines_is_refused(scene: Scene) -> None:
    made = twins(scene, "l1", "l2", "l3")
    (first, c1), (second, c2), (third, c3) = made.items()
    fine = f"{first} {c1}\n"
    hex_len = len(c1)
    many = "".join(f"{EARLY}n{n:04} {c1}\n" for n in range(1001)).encode()
    cases: dict[str, tuple[bytes, list[str], str]] = {  # name: listing, parents, why
        second: (f"{second} {c2}\n{first} {c1}\n".encode(), [c2, c1],
                 "line 2 of its listing is out of order or repeated"),
        first: (f"{first} {c1}\n{first} {c1}\n".encode(), [c1, c1],
                "line 2 of its listing is out of order or repeated"),
        third: (f"{third} {c3}\n{third} {c2}\n".encode(), [c3, c2],
                "line 2 of its listing is out of order or repeated"),
        "dotdot": (f"../x {c1}\n".encode(), [c1], "line 1 of its listing is no `<run id>"),
        "upper": (f"{first.upper()} {c1}\n".encode(), [c1], "line 1 of its listing is no"),
        "escape": (f"\x1b[31m{first} {c1}\n".encode(), [c1], "line 1 of its listing is no"),
        "slash": (f"{fine}{first}/x {c1}\n".encode(), [c1, c1], "line 2 of its listing is no"),
        "nothex": (f"{first} {'g' * hex_len}\n".encode(), [c1], "line 1 of its listing is no"),
        "upperhex": (f"{first} {c1.upper()}\n".encode(), [c1], "line 1 of its listing is no"),
        "short": (f"{first} {c1[:-1]}\n".encode(), [c1], "line 1 of its listing is no"),
        "long": (f"{first} {c1}{'0' * 24}\n".encode(), [c1], "line 1 of its listing is no"),
        "crlf": (f"{first} {c1}\r\n".encode(), [c1], "line 1 of its listing is no"),
        "tab": (f"{first}\t{c1}\n".encode(), [c1], "line 1 of its listing is no"),
        "spaces": (f"{first}  {c1}\n".encode(), [c1], "line 1 of its listing is no"),
        "blank": (f"\n{fine}".encode(), [c1], "line 1 of its listing is no"),
        "nocommit": (f"{first}\n".encode(), [c1], "line 1 of its listing is no"),
        "accent": (f"{first}\u00e9 {c1}\n".encode(), [c1], "its listing is not ASCII"),
        "byte": (fine.encode() + b"\xff\n", [c1], "its listing is not ASCII"),
        "empty": (b"", [], "its listing is not one"),
        "unended": (fine.encode().rstrip(b"\n"), [c1], "its listing is not one"),
        # The listing is judged before the parents: these need none.
        "toomany": (many, [], "it lists 1001 runs (1 to 1000)"),
        "toolarge": (fine.encode() * 4000, [], "its listing is not one"),  # over 200 KB
        "huge": (fine.encode() * 6000, [], "its tree is not one `runs` listing"),  # not read
    }
    a = scene.alice
    plant(a, {name: commit(a, tree_of_runs(a, data), parents)
              for name, (data, parents, _) in cases.items()})
    fetch_refusing(scene, {name: why for name, (_, _, why) in cases.items()})


def test_an_archive_whose_tree_is_not_one_runs_blob_or_that_is_no_commit_is_refused(
        scene: Scene) -> None:
    made = twins(scene, "t1")
    [c1] = made.values()
    a = scene.alice
    runs_blob = raw(a, "blob", listing(made))
    other = blob(a, "x\n")
    inner = tree_of_runs(a, listing(made))
    entries = {  # name -> the tree's entries, as mktree reads them
        "extra": f"100644 blob {runs_blob}\truns\n100644 blob {other}\tREADME\n",
        "exec": f"100755 blob {runs_blob}\truns\n",
        "link": f"120000 blob {runs_blob}\truns\n",
        "subtree": f"040000 tree {inner}\truns\n",
        "renamed": f"100644 blob {runs_blob}\truns.txt\n",
        "empty": "",
    }
    cases = {name: commit(a, git("mktree", cwd=a, input=text.encode()).strip(), [c1])
             for name, text in entries.items()}
    good = archive(a, made)
    cases["blob"] = runs_blob  # the ref on no commit at all
    cases["tree"] = inner
    cases["tag"] = git("mktag", cwd=a, input=(  # an annotated tag of a well-made archive
        f"object {good}\ntype commit\ntag t\ntagger {STAMP}\n\nt\n").encode()).strip()
    plant(scene.alice, cases)
    fetch_refusing(scene, {**dict.fromkeys(entries, "its tree is not one `runs` listing"),
                           **dict.fromkeys(("blob", "tree", "tag"), "it is no commit")})


def test_an_archive_not_named_after_its_first_run_is_refused(scene: Scene) -> None:
    made = twins(scene, "n1", "n2", "n3", "n4")
    (first, c1), (second, c2), (third, c3), (fourth, c4) = made.items()
    cases = {
        second: archive(scene.alice, {first: c1, second: c2}),  # its second run's id
        EARLY + "zzzz": archive(scene.alice, {third: c3}),  # an id it does not list
        fourth + "-x": archive(scene.alice, {fourth: c4}),
    }
    plant(scene.alice, cases)
    fetch_refusing(scene, dict.fromkeys(cases, "its name is not its first run's id"))


def test_archive_names_that_are_no_run_id_are_refused_and_printed_inert(scene: Scene) -> None:
    made = twins(scene, "x1")
    good = archive(scene.alice, made)
    [first] = made
    huge = "/".join(["x" * 240] * 12)  # a loose ref's path stays under PATH_MAX
    names = {  # the name pushed -> as the victim prints it
        first.upper(): first.upper(),
        f"{first}/sub": f"{first}/sub",
        "x--y": "x--y",
        "-x": "-x",
        "a" * 64: "a" * 64,
        "caf\u00e9": "caf\u00e9",
        "\u009b31m": "\\x9b31m",  # CSI, as a C1 control: a terminal's ESC [
        "\u202eexe.txt": "\\u202eexe.txt",  # a right-to-left override
        "\udc9b31m": "\ufffd31m",  # a lone byte 0x9b (8-bit CSI): not UTF-8 at all
        huge: huge,
    }
    plant(scene.alice, dict.fromkeys(names, good))
    proc = fetch_refusing(scene, dict.fromkeys(names.values(), "its name is no run id"))
    assert max(map(len, proc.stderr.splitlines())) < 4200  # bounded, one line each
    # git itself refuses ESC and the other C0 controls in a ref name: the forger cannot.
    pushed = subprocess.run(["git", "push", "origin", f"{good}:{PREFIX}\x1b[31mred"],
                            cwd=scene.alice, capture_output=True, check=False)
    assert pushed.returncode != 0
    assert "\x1b" not in git("ls-remote", str(scene.remote), cwd=scene.alice)


def test_an_archive_with_one_bad_run_is_refused_whole_and_none_of_its_runs_arrive(
        scene: Scene) -> None:
    a = scene.alice
    had, other, theirs = scene.ids[0], scene.ids[2], scene.ids[3]  # Bob has the first
    # A results commit of a run Bob has, its metric changed (tests/test_sharing_immutable.py)
    ref = f"refs/experiments/{had}"
    title, body = message_of(a, rev(a, ref))
    body["result"]["metrics"]["loss"] = 0.01
    rewritten = forge(a, rev(a, f"{ref}^{{tree}}"), [rev(a, f"{ref}^1")], title, body)
    made = twins(scene, "r1", "r2")
    (new1, c1), (new2, c2) = made.items()
    cases = {
        new1: archive(a, {new1: c1, had: rewritten}),
        # a real run's id on another real run's commit: the record's id differs
        new2: archive(a, {new2: c2, theirs: scene.commit(other)}),
    }
    plant(scene.alice, cases)
    fetch_refusing(scene, {new1: f"run {had}: its result changed",
                           new2: f"run {theirs}: its record cannot be read"})
    assert exp("fetch", cwd=scene.bob).stderr.count("refused archive") == 2


def test_a_run_the_remote_holds_one_ref_each_comes_from_that_ref_not_an_archive(
        scene: Scene) -> None:
    run, other = scene.ids[2], scene.ids[3]
    git("update-ref", f"refs/experiments/{run}", scene.commit(run), cwd=scene.remote)
    snapshot = rev(scene.alice, f"refs/experiments/{run}^1")
    made = twins(scene, "s1", "s2")
    (new1, c1), (new2, c2) = made.items()
    cases = {  # both listed before the genuine archive; each lists the run otherwise
        new1: archive(scene.alice, {new1: c1, run: snapshot}),  # a move a fetch makes
        new2: archive(scene.alice, {new2: c2, run: scene.commit(other)}),  # one it refuses
    }
    plant(scene.alice, cases)
    runs = run_refs(scene.bob)
    proc = exp("fetch", cwd=scene.bob, check=False)
    assert proc.returncode == 0, proc.stderr
    inert(proc)
    after = run_refs(scene.bob)
    assert after[f"refs/experiments/{run}"] == scene.commit(run)  # the remote's own ref
    assert after[f"refs/experiments/{new1}"] == c1
    # Every entry is judged, the run's too (its own ref wins): the second archive lists it
    # at another run's commit, so none of its runs arrive, as any clone would decide
    assert after == {**runs, **{f"refs/experiments/{i}": scene.commit(i) for i in scene.ids},
                     f"refs/experiments/{new1}": c1}
    assert f"refused archive {new2} from origin: run {run}: " in proc.stderr, proc.stderr


def test_a_tree_with_two_runs_entries_is_refused(scene: Scene) -> None:
    made = twins(scene, "d1")
    [(first, c1)] = made.items()
    a = scene.alice
    runs_blob = raw(a, "blob", listing(made))
    decoy = raw(a, "blob", b"decoy\n")
    # git reads the first `runs` (100755); gitexp's tree_of keeps the last (100644)
    data = b"".join(f"{mode} runs\0".encode() + bytes.fromhex(oid)
                    for mode, oid in (("100755", runs_blob), ("100644", decoy)))
    plant(scene.alice, {first: commit(a, raw(a, "tree", data), [c1])})
    fetch_refusing(scene, {first: "its tree is not one `runs` listing"})


def test_a_run_two_archives_list_fails_no_fetch(scene: Scene) -> None:
    # Only genuine commits: the archive lists a run of the genuine archive at its snapshot.
    run = scene.ids[2]
    snapshot = rev(scene.alice, f"refs/experiments/{run}^1")
    plant(scene.alice, {run: archive(scene.alice, {run: snapshot})})
    proc = exp("fetch", cwd=scene.bob, check=False)
    inert(proc)
    assert proc.returncode == 0, proc.stderr
    assert run_refs(scene.bob) == {f"refs/experiments/{i}": scene.commit(i) for i in scene.ids}


def test_a_run_two_archives_list_at_unjoined_commits_comes_from_neither_until_one_goes(
        scene: Scene) -> None:
    # A forged archive, named before the genuine one, lists a run the genuine one has (and
    # that Bob lacks) at another snapshot: which of the two is genuine cannot be told here
    # (both are runs a new ref could be), so the run comes from neither, in one line, and
    # neither archive is remembered. The genuine archive's other runs arrive; once the team
    # deletes the forgery, the next fetch takes the run.
    a = scene.alice
    run, last = scene.ids[2], scene.ids[3]
    _, body = message_of(a, rev(a, f"refs/experiments/{run}^1"))
    # The run's very record on other code: a snapshot of it as far as a new ref can tell
    fake = forge(a, rev(a, "HEAD^{tree}"), [rev(a, "HEAD")], f"gitexp run {run}", body)
    made = twins(scene, "k1")
    [(new, c1)] = made.items()
    plant(scene.alice, {new: archive(a, {new: c1, run: fake})})
    for _ in range(2):  # not remembered: read again, and said again
        proc = exp("fetch", cwd=scene.bob, check=False)
        inert(proc)
        assert proc.returncode == 0, proc.stderr
        assert f"refused run {run} from origin: archives list commits of it that no move " \
               "joins" in proc.stderr, proc.stderr
    refs = run_refs(scene.bob)
    assert f"refs/experiments/{run}" not in refs
    assert refs.get(f"refs/experiments/{last}") == scene.commit(last)
    assert refs.get(f"refs/experiments/{new}") == c1  # a run of its own, as good as any
    assert remembered(scene.bob) == {}
    git("update-ref", "-d", f"{PREFIX}{new}", cwd=scene.remote)
    proc = exp("fetch", cwd=scene.bob)
    assert run_refs(scene.bob)[f"refs/experiments/{run}"] == scene.commit(run)
    assert list(remembered(scene.bob)) == [scene.genuine]


def test_a_forged_archive_cannot_keep_a_run_from_being_pushed(world: World,
                                                              tmp_path: Path) -> None:
    remote = shutil.copytree(world.before, tmp_path / "remote.git")
    alice = copy_repo(world.alice, tmp_path / "alice", world.key)
    git("remote", "set-url", "origin", str(remote), cwd=alice)
    git("config", "exp.foldAt", "0", cwd=alice)
    run, other = (rev(alice, f"refs/experiments/{i}") for i in world.ids[2:])
    name = world.ids[2]
    plant(alice, {name: archive(alice, {name: other})})  # a fetch refuses it: not run `name`
    proc = exp("push", cwd=alice, check=False)
    inert(proc)
    assert proc.returncode == 0, proc.stderr
    assert rev(remote, f"refs/experiments/{name}") == run


def test_a_forged_archive_cannot_get_a_run_ref_deleted_by_an_honest_push(
        world: World, tmp_path: Path) -> None:
    remote = shutil.copytree(world.before, tmp_path / "remote.git")  # the first two runs
    alice = copy_repo(world.alice, tmp_path / "alice", world.key)
    git("remote", "set-url", "origin", str(remote), cwd=alice)
    git("config", "exp.foldAt", "0", cwd=alice)
    run = world.ids[0]
    mine, other = (rev(alice, f"refs/experiments/{i}") for i in (run, world.ids[3]))
    # The run at its own commit, and a run no one has at another run's commit.
    plant(alice, {run: archive(alice, {run: mine, "zzzz": other})})
    assert exp("push", cwd=alice).returncode == 0
    carol = clone(remote, tmp_path / "carol")
    proc = exp("fetch", cwd=carol)
    assert "refused archive" in proc.stderr  # the forgery: run zzzz is no run
    assert rev(carol, f"refs/experiments/{run}") == mine
