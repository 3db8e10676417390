"""A remote's oldest finished runs folded into archive refs (issue 19): a push folds them, a
fetch brings every run back as one ref each, plain git shares them by refspec, `rm --remote`
takes one out, and nothing is read again once taken.

Real git end to end: a bare remote, clones, `git exp` as a user types it. `exp.foldAt` is set
low so that a handful of runs fold (its default, 600, is the same rule)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from gitexp.git import Repo, pushing
from gitexp.model import ids
from gitexp.service import archives, index, sharing
from tests.conftest import use_home
from tests.helpers import exp, exp_json, git, wait_done
from tests.test_sharing import alice_and_remote, clone, launch, remote_refs

ARCHIVES = "refs/exp-archive/"


def archive_refs(repo: Path) -> dict[str, str]:
    out = git("for-each-ref", "--format=%(refname) %(objectname)", ARCHIVES, cwd=repo)
    return dict(line.split(" ") for line in out.splitlines())


def listing(repo: Path, oid: str) -> list[tuple[str, str]]:
    text = git("cat-file", "blob", f"{oid}:runs", cwd=repo)
    return [tuple(line.split(" ")) for line in text.splitlines()]  # type: ignore[misc]


def local_runs(repo: Path) -> dict[str, str]:
    out = git("for-each-ref", "--format=%(refname) %(objectname)", ids.PREFIX, cwd=repo)
    return dict(line.split(" ") for line in out.splitlines())


@pytest.fixture(scope="module")
def folded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[str]]:
    """Alice's 7 runs pushed to a remote with exp.foldAt 6: the oldest 6 in one archive, the
    newest (6 // 6 = 1) one ref of its own. Shared by the tests that only read it."""
    tmp = tmp_path_factory.mktemp("folded")
    with pytest.MonkeyPatch.context() as mp:  # before each test's own HOME: one of its own
        use_home(mp, tmp_path_factory.mktemp("home"))
        alice, remote = alice_and_remote(tmp)
        git("config", "exp.foldAt", "6", cwd=alice)
        made = [launch(alice) for _ in range(7)]
        out = exp("push", cwd=alice).stdout
    assert "7 ref(s) pushed to origin" in out and \
        "6 older run(s) folded into 1 archive(s) on origin" in out, out
    return alice, remote, made


def test_a_push_folds_the_oldest_runs_into_one_archive_made_as_designed(
        folded: tuple[Path, Path, list[str]]):
    alice, remote, made = folded
    by_launch = [r["id"] for r in sorted(exp_json("ls", "--all", cwd=alice),
                                         key=lambda r: r["record"]["launched_at"])]
    assert sorted(by_launch) == sorted(made)
    assert remote_refs(remote) == {ids.ref_for(by_launch[-1])}  # the newest stays single
    [(ref, oid)] = archive_refs(remote).items()
    listed = listing(remote, oid)
    assert [i for i, _ in listed] == sorted(by_launch[:6])  # sorted by id
    assert ref == ARCHIVES + min(by_launch[:6])  # named by its first id
    assert dict(listed) == {i: git("rev-parse", ids.ref_for(i), cwd=alice).strip()
                            for i in by_launch[:6]}
    parents = git("rev-list", "--parents", "-n1", oid, cwd=remote).split()[1:]
    assert parents == [c for _, c in listed]  # every run stays reachable through it
    # dated a second before its oldest run: git's date-ordered walks stay linear
    dated = int(git("log", "-1", "--format=%ct", oid, cwd=remote))
    oldest = min(r["record"]["launched_at"] for r in exp_json("ls", "--all", cwd=alice))
    assert dated == int(oldest) - 1
    # the same runs make the same archive, whoever folds them
    again = archives.make(Repo.discover(alice), {ids.ref_for(i): c for i, c in listed}, oldest)
    assert (again.ref, again.oid) == (ref, oid)
    # this clone knows it: a push has nothing to send and sends no archived run back
    assert "0 ref(s) pushed to origin, 7 already there" in exp("push", cwd=alice).stdout
    assert remote_refs(remote) == {ids.ref_for(by_launch[-1])}
    assert json.loads((alice / ".git/gitexp/archives.json").read_text()) == {ref: oid}


def test_a_fresh_clone_fetches_every_run_and_a_second_fetch_reads_no_archive(
        folded: tuple[Path, Path, list[str]], tmp_path: Path):
    alice, remote, made = folded
    bob = clone(remote, tmp_path / "bob")
    out = exp("fetch", cwd=bob).stdout
    assert "7 new run(s)" in out, out
    assert local_runs(bob) == local_runs(alice)  # one ref per run here, as ever
    assert archive_refs(bob) == {}  # the archive is remembered, not kept as a ref
    shown = exp("show", made[0], cwd=bob).stdout
    assert made[0] in shown and "succeeded" in shown
    assert json.loads((bob / ".git/gitexp/archives.json").read_text()) == archive_refs(remote)
    # its listing kept in the index: a push counts its runs by SQL, reading nothing
    taken = set(archive_refs(remote).values())
    assert index.kept_listings(Repo.discover(bob), taken) == taken
    # nothing new: one ls-remote; the archive is not fetched nor read again
    trace = tmp_path / "trace"
    exp("fetch", cwd=bob, env={"GIT_TRACE": str(trace)})
    said = trace.read_text()
    assert "ls-remote" in said and " fetch " not in said and "cat-file" not in said, said
    # a lost memory costs one read, not a wrong answer
    (bob / ".git/gitexp/archives.json").unlink()
    assert "0 new run(s)" in exp("fetch", cwd=bob).stdout
    assert (bob / ".git/gitexp/archives.json").exists()


def test_plain_git_shares_archives_by_refspec_and_an_old_clone_sees_the_rest(
        folded: tuple[Path, Path, list[str]], tmp_path: Path):
    alice, remote, _ = folded
    old = clone(remote, tmp_path / "old")  # as a gitexp before archives fetched
    git("fetch", "-q", "origin", "+refs/experiments/*:refs/experiments/*", cwd=old)
    assert len(local_runs(old)) == 1  # only the run not archived
    plain = clone(remote, tmp_path / "plain")
    git("fetch", "-q", "origin", "+refs/experiments/*:refs/experiments/*",
        "+refs/exp-archive/*:refs/exp-archive/*", cwd=plain)
    assert archive_refs(plain) == archive_refs(remote)
    # what plain git brought is checked and expanded by a fetch from this very clone
    out = exp("fetch", ".", cwd=plain).stdout
    assert "6 new run(s)" in out, out
    assert local_runs(plain) == local_runs(alice)


def test_rm_remote_of_an_archived_run_replaces_its_archive(tmp_path: Path):
    alice, remote = alice_and_remote(tmp_path)
    git("config", "exp.foldAt", "2", cwd=alice)  # 2 // 6 = 0 kept: all folded
    first, second, third = launch(alice), launch(alice), launch(alice)
    assert "3 older run(s) folded" in exp("push", cwd=alice).stdout
    bob = clone(remote, tmp_path / "bob")
    exp("fetch", cwd=bob)
    [(_, before)] = archive_refs(remote).items()
    dated = git("log", "-1", "--format=%ct", before, cwd=remote)

    out = exp("rm", "--remote", second, cwd=alice).stdout
    assert "1 ref(s) deleted from origin, 0 run(s) not there" in out, out
    [(ref, after)] = archive_refs(remote).items()
    assert [i for i, _ in listing(remote, after)] == sorted([first, third])
    assert ref == ARCHIVES + min(first, third)
    assert git("log", "-1", "--format=%ct", after, cwd=remote) == dated  # its date kept
    assert ids.ref_for(second) not in local_runs(alice)
    # a new clone no longer gets it; one that had it keeps it (as with one ref each)
    carol = clone(remote, tmp_path / "carol")
    assert "2 new run(s)" in exp("fetch", cwd=carol).stdout
    assert ids.ref_for(second) not in local_runs(carol)
    assert "0 new run(s)" in exp("fetch", cwd=bob).stdout
    assert ids.ref_for(second) in local_runs(bob)
    # the last runs of an archive: the archive goes
    exp("rm", "--remote", first, third, cwd=alice)
    assert archive_refs(remote) == {} and remote_refs(remote) == set()


def test_rm_remote_of_many_runs_goes_a_bounded_push_at_a_time(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A sweep of 20,000 runs would not fit on one command line: `unpublish` pushes
    UNPUBLISHED_AT_ONCE runs at a time (2 here), archived runs and single refs alike."""
    alice, remote = alice_and_remote(tmp_path)
    git("config", "exp.foldAt", "2", cwd=alice)  # 2 // 6 = 0 kept: all folded
    made = [launch(alice) for _ in range(3)]
    exp("push", cwd=alice)
    git("config", "exp.foldAt", "0", cwd=alice)
    made += [launch(alice) for _ in range(2)]
    exp("push", cwd=alice)
    assert len(archive_refs(remote)) == 1 and len(remote_refs(remote)) == 2
    monkeypatch.setattr(sharing, "UNPUBLISHED_AT_ONCE", 2)
    trace = tmp_path / "trace"
    monkeypatch.setenv("GIT_TRACE", str(trace))

    report = sharing.unpublish(Repo.discover(alice), None, [*made, "20990101-000000-0000"])

    assert sorted(r for r in report.pushed if r.startswith(ids.PREFIX)) == \
        sorted(ids.ref_for(i) for i in made)
    assert report.up_to_date == 1 and report.rejected == []
    assert archive_refs(remote) == {} and remote_refs(remote) == set()
    pushes = [ln for ln in trace.read_text().splitlines() if "built-in: git push " in ln]
    assert len(pushes) == 3, pushes  # 6 ids, 2 a push


def test_the_pre_push_hook_folds_as_git_exp_push_does(tmp_path: Path):
    alice, remote = alice_and_remote(tmp_path)
    exp("hooks", "install", cwd=alice)
    git("config", "exp.foldAt", "2", cwd=alice)
    made = [launch(alice) for _ in range(3)]
    proc = subprocess.run(["git", "push", "origin", "main"], cwd=alice, capture_output=True,
                          text=True, check=True)
    assert "3 older run(s) folded into 1 archive(s)" in proc.stderr, proc.stderr
    [(_, oid)] = archive_refs(remote).items()
    assert sorted(i for i, _ in listing(remote, oid)) == sorted(made)
    assert remote_refs(remote) == set()


def test_the_pre_push_hook_leaves_a_backlog_of_many_archives_to_git_exp_push(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A remote in the old layout (more archives due than one atomic push makes): the hook's
    push, own runs only, folds nothing and says how many wait (at 100,000 runs each archive
    costs the remote minutes: a branch push must not wait hours); `git exp push` folds them.
    Archives of one run and two a push stand in for 1,000 and five."""
    alice, remote = alice_and_remote(tmp_path)
    git("config", "exp.foldAt", "1", cwd=alice)
    made = [launch(alice) for _ in range(3)]
    git("push", "-q", "origin", "refs/experiments/*:refs/experiments/*", cwd=alice)
    monkeypatch.setattr(archives, "MAX_RUNS", 1)
    monkeypatch.setattr(sharing, "FOLDED_AT_ONCE", 2)
    repo = Repo.discover(alice)
    hooked = sharing.push(repo, own_only=True)
    assert (hooked.unfolded, hooked.folded, hooked.rejected) == (3, 0, [])
    assert remote_refs(remote) == {ids.ref_for(i) for i in made} and archive_refs(remote) == {}
    counted: list[tuple[int, int]] = []
    whole = sharing.push(repo, progress=lambda done, total: counted.append((done, total)))
    assert (whole.folded, len(whole.archived), whole.unfolded) == (3, 3, 0)
    assert remote_refs(remote) == set() and len(archive_refs(remote)) == 3
    assert counted == [(0, 3), (2, 3)]  # before each of its two pushes: how far it is


def test_fold_at_zero_never_folds_and_a_bad_value_is_one_line(tmp_path: Path):
    alice, remote = alice_and_remote(tmp_path)
    git("config", "exp.foldAt", "0", cwd=alice)
    made = [launch(alice) for _ in range(2)]
    assert "folded" not in exp("push", cwd=alice).stdout
    assert remote_refs(remote) == {ids.ref_for(i) for i in made}
    git("config", "exp.foldAt", "-3", cwd=alice)
    proc = exp("push", cwd=alice, check=False)
    assert proc.returncode != 0 and "exp.foldAt" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_the_fold_plan_keeps_the_newest_and_splits_evenly() -> None:
    runs = [(f"refs/experiments/r-{n:05d}", "c" * 40, float(n)) for n in range(2500)]
    assert archives.plan(runs[:600]) == []  # up to exp.foldAt: nothing
    assert archives.plan(runs, 0) == []  # 0: never
    groups = archives.plan(runs)  # 600: all but the newest 100, <= 1000 an archive
    assert [len(g) for g in groups] == [800, 800, 800]
    assert [r for g in groups for r in g] == runs[:2400]  # oldest first


def test_a_remote_in_the_old_layout_is_folded_by_the_first_push_and_stays_healed(
        tmp_path: Path):
    alice, remote = alice_and_remote(tmp_path)
    made = [launch(alice) for _ in range(3)]
    # as a gitexp before archives left it: one ref per run, pushed by plain git
    git("push", "-q", "origin", "refs/experiments/*:refs/experiments/*", cwd=alice)
    git("config", "exp.foldAt", "2", cwd=alice)
    out = exp("push", cwd=alice).stdout  # nothing new to send: only the fold
    assert "0 ref(s) pushed to origin, 3 already there" in out and \
        "3 older run(s) folded into 1 archive(s)" in out, out
    assert remote_refs(remote) == set()
    # an old clone's hook pushes an archived run again, one ref: the next push deletes it,
    # as its archive lists it with that very commit
    git("push", "-q", "origin", f"{ids.ref_for(made[0])}:{ids.ref_for(made[0])}", cwd=alice)
    assert remote_refs(remote) == {ids.ref_for(made[0])}
    exp("push", cwd=alice)
    assert remote_refs(remote) == set() and len(archive_refs(remote)) == 1


def test_a_clone_that_never_took_the_archives_fetches_them_before_sending_runs_again(
        tmp_path: Path):
    alice, remote = alice_and_remote(tmp_path)
    made = [launch(alice) for _ in range(3)]
    exp("push", cwd=alice)
    bob = clone(remote, tmp_path / "bob")
    exp("fetch", cwd=bob)  # the runs, one ref each, before they are folded
    git("config", "exp.foldAt", "2", cwd=alice)
    assert "3 older run(s) folded" in exp("push", cwd=alice).stdout
    [(ref, oid)] = archive_refs(remote).items()
    # Bob never took the archive. A push with nothing to send reads none...
    carol = tmp_path / "carol"  # --no-local: a local clone would copy every object
    git("clone", "-q", "--no-local", str(remote), str(carol), cwd=tmp_path)
    assert "0 ref(s) pushed" in exp("push", cwd=carol).stdout
    assert subprocess.run(["git", "cat-file", "-e", oid], cwd=carol).returncode != 0
    # ...but Bob's runs look missing from the remote: his push fetches the archive first
    # and sends nothing again (else Alice's next push would delete them, and so on)
    assert "0 ref(s) pushed to origin, 3 already there" in exp("push", cwd=bob).stdout
    assert remote_refs(remote) == set() and archive_refs(remote) == {ref: oid}
    assert sorted(i for i, _ in listing(remote, oid)) == sorted(made)


def test_many_named_runs_go_staged_under_one_glob_and_the_staging_goes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    # Named refspecs cost git a scan of every local ref each (minutes for 10,000 at 100,000
    # runs); past NAMED_AT_ONCE a push stages them and sends one glob. In-process, so that the
    # threshold can be 1 here rather than 20 runs.
    from gitexp.service import sharing

    alice, remote = alice_and_remote(tmp_path)
    git("config", "exp.foldAt", "1", cwd=alice)
    folded = [launch(alice) for _ in range(2)]
    first = folded[0]
    git("tag", f"exp/{first}", "HEAD", cwd=alice)
    assert "2 older run(s) folded" in exp("push", cwd=alice).stdout
    made = [launch(alice) for _ in range(2)]
    for run_id in made:
        git("tag", f"exp/{run_id}", "HEAD", cwd=alice)
    git("config", "exp.foldAt", "0", cwd=alice)
    monkeypatch.setattr(sharing, "NAMED_AT_ONCE", 1)
    monkeypatch.chdir(alice)
    report = sharing.push(Repo.discover(alice))  # the remote has an archive: named refs
    assert sorted(report.pushed) == sorted([*(ids.ref_for(i) for i in made),
                                            *(f"refs/tags/exp/{i}" for i in made)])
    assert remote_refs(remote) == {ids.ref_for(i) for i in made} | {
        f"refs/tags/exp/{i}" for i in (first, *made)}
    assert git("for-each-ref", pushing.STAGED, cwd=alice) == ""  # no staging left behind


def test_a_fold_the_remote_refuses_deletes_nothing(tmp_path: Path):
    # Nothing lost: the archive and the deletions of its runs' refs go in one atomic push,
    # so a remote that refuses the archive keeps every run one ref each.
    alice, remote = alice_and_remote(tmp_path)
    hook = remote / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\nwhile read -r old new ref; do\n"
                    "  case $ref in refs/exp-archive/*) echo 'no archives here' >&2; exit 1;;"
                    " esac\ndone\n")
    hook.chmod(0o755)
    git("config", "exp.foldAt", "1", cwd=alice)
    made = [launch(alice) for _ in range(2)]
    proc = exp("push", cwd=alice, check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "not folded (" in proc.stderr and "pre-receive hook declined" in proc.stderr, \
        proc.stderr
    assert remote_refs(remote) == {ids.ref_for(i) for i in made}
    assert archive_refs(remote) == {}
    assert not (alice / ".git/gitexp/archives.json").exists()


def _aged(repo: Path) -> None:
    """Where the clone's run, tag and notes refs are stored, dated a minute back: a stamp
    written this second cannot tell a later change in the same tick, so a push trusts none."""
    for path in ("refs/experiments", "refs/tags/exp", "refs/notes", "packed-refs"):
        if (repo / ".git" / path).exists():
            old = (repo / ".git" / path).stat().st_mtime - 60
            os.utime(repo / ".git" / path, (old, old))


def test_a_push_in_sync_compares_nothing_until_either_side_changes(tmp_path: Path):
    """A push that found both sides in sync records their state; the next push in that very
    state (the remote's refs as advertised, this clone's refs' storage, the archives taken)
    answers from it with one `ls-remote` and reports what a full comparison would. A change on
    either side is seen."""
    alice, remote = alice_and_remote(tmp_path)
    git("config", "exp.foldAt", "6", cwd=alice)
    made = [launch(alice) for _ in range(7)]
    live = launch(alice, "import time; time.sleep(120)", wait=False)  # not pushed: said so
    assert "folded into 1 archive(s)" in exp("push", cwd=alice).stdout
    _aged(alice)
    full = exp("push", cwd=alice)  # compares every run, finds nothing: records it
    assert "0 ref(s) pushed to origin, 7 already there" in full.stdout, full.stdout
    assert "1 unfinished run(s) not pushed" in full.stderr, full.stderr
    trace = tmp_path / "trace"

    settled = exp("push", cwd=alice, env={"GIT_TRACE": str(trace)})

    assert (settled.stdout, settled.stderr) == (full.stdout, full.stderr)
    said = trace.read_text()
    assert "ls-remote" in said and "for-each-ref" not in said and "cat-file" not in said and \
        " push " not in said, said
    # the remote changes (a teammate deletes the newest run with plain git): pushed again
    bob = clone(remote, tmp_path / "bob")
    git("push", "-q", "origin", f":refs/experiments/{made[-1]}", cwd=bob)
    again = exp("push", cwd=alice).stdout
    assert "1 ref(s) pushed to origin" in again, again
    assert f"refs/experiments/{made[-1]}" in remote_refs(remote)
    # this clone changes: the live run ends (cancelled), then a new run
    exp("cancel", live, cwd=alice)
    assert wait_done(live, alice)["status"] == "cancelled"
    assert "1 ref(s) pushed to origin" in exp("push", cwd=alice).stdout
    _aged(alice)
    exp("push", cwd=alice)
    newer = launch(alice)
    out = exp("push", cwd=alice).stdout
    assert "1 ref(s) pushed to origin" in out, out
    assert f"refs/experiments/{newer}" in remote_refs(remote)


def test_runs_an_archive_taken_lists_alike_are_counted_by_the_index_not_compared(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Once every archive the remote offers was taken, its runs held here at the listed
    commit are counted by one query of the index (listings kept there, read from git once);
    only the others are compared. Every report is the one comparing each run gives: in sync,
    a new run, an archived run moved here, one pushed again one ref by an older clone."""
    alice, remote = alice_and_remote(tmp_path)
    git("config", "exp.foldAt", "6", cwd=alice)
    for _ in range(7):
        launch(alice)
    assert "folded into 1 archive(s)" in exp("push", cwd=alice).stdout
    repo = Repo.discover(alice)
    [(_, oid)] = archive_refs(remote).items()

    def both() -> sharing.PushReport:
        """The push as gitexp makes it, then as comparing each run (no archive kept) would
        (what they would send: `_send` says it sent nothing)."""
        (repo.gitexp_dir / sharing.SETTLED).unlink(missing_ok=True)
        said: list[object] = []
        with monkeypatch.context() as mp:
            mp.setattr(archives, "taken_again", lambda *a: said.append(a) or [])  # kept: unread
            mp.setattr(sharing, "_send", lambda _r, sent, *_a: sent)
            kept = sharing.push(repo)
        (repo.gitexp_dir / sharing.SETTLED).unlink(missing_ok=True)
        with monkeypatch.context() as mp:
            mp.setattr(sharing, "_kept", lambda *_: {})
            mp.setattr(sharing, "_send", lambda _r, sent, *_a: sent)
            each = sharing.push(repo)
        assert kept == each and not said
        return kept

    (repo.gitexp_dir / sharing.SETTLED).unlink(missing_ok=True)
    assert sharing.push(repo).up_to_date == 7  # the listing read once, then kept
    assert index.kept_listings(repo, [oid]) == {oid}
    assert both().up_to_date == 7
    newer = launch(alice)
    report = both()
    assert (report.up_to_date, report.pushed) == (7, [])  # `_send` stubbed: it stays here
    assert "1 ref(s) pushed to origin" in exp("push", cwd=alice).stdout
    assert ids.ref_for(newer) in remote_refs(remote)
    # an archived run moved here (its ref back at its snapshot): judged, as each run is
    archived = sorted(i for i, _ in listing(remote, oid))[0]
    git("update-ref", ids.ref_for(archived), f"{ids.ref_for(archived)}^", cwd=alice)
    report = both()
    assert archived in report.live and report.up_to_date == 7
    git("update-ref", ids.ref_for(archived), dict(listing(remote, oid))[archived], cwd=alice)
    # an older clone pushes an archived run again, one ref: compared, and deleted there
    git("push", "-q", "origin", f"{ids.ref_for(archived)}:{ids.ref_for(archived)}", cwd=alice)
    assert ids.ref_for(archived) in remote_refs(remote)
    with monkeypatch.context() as mp:
        mp.setattr(archives, "taken_again", lambda *a: pytest.fail("a kept listing read"))
        assert sharing.push(repo).up_to_date == 8
    assert ids.ref_for(archived) not in remote_refs(remote)
    assert both().up_to_date == 8
    # the pre-push hook's push (own runs only) still sends an archived run's `exp/*` tag
    tag = ids.TAG_PREFIX + archived
    git("update-ref", tag, "HEAD", cwd=alice)
    assert tag in sharing.push(repo, own_only=True).pushed
    assert tag in remote_refs(remote)
