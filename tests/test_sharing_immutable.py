"""A shared run is immutable: a remote can add runs and finish them, never rewrite them.

Every forgery here is plain git (hash-object, mktree, commit-tree) force-pushed into a bare
remote, as anyone with push access could; the victim's `git exp fetch` must refuse it in one
line and keep its own ref, and `git exp push` must not send a run tampered with locally."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from tests.helpers import exp, exp_json, git
from tests.test_sharing import alice_and_remote, clone, launch

RESULTS = ".gitexp-results"


def message_of(repo: Path, commit: str) -> tuple[str, dict[str, Any]]:
    title, _, body = git("cat-file", "commit", commit, cwd=repo).partition("\n\n")[2] \
        .partition("\n\n")
    return title, json.loads(body)


def forge(repo: Path, tree: str, parents: list[str], title: str, body: dict[str, Any]) -> str:
    text = f"{title}\n\n{json.dumps(body, sort_keys=True, separators=(',', ':'))}\n"
    args = [a for p in parents for a in ("-p", p)]
    return git("commit-tree", tree, *args, cwd=repo, input=text.encode()).strip()


def with_entry(repo: Path, tree: str, name: str, entry: str | None) -> str:
    """`tree` with its top-level `name` replaced by `entry` ("MODE TYPE OID"), or removed."""
    rows = [r for r in git("ls-tree", tree, cwd=repo).splitlines() if r.split("\t")[1] != name]
    rows += [f"{entry}\t{name}"] if entry else []
    return git("mktree", cwd=repo, input="".join(r + "\n" for r in rows).encode()).strip()


def blob(repo: Path, text: str) -> str:
    return git("hash-object", "-w", "--stdin", cwd=repo, input=text.encode()).strip()


def rev(repo: Path, what: str) -> str:
    return git("rev-parse", what, cwd=repo).strip()


def test_rewrites_of_a_finished_run_are_refused_and_the_local_run_stays(tmp_path: Path):
    alice, remote = alice_and_remote(tmp_path)
    run_id = launch(alice)
    exp("run", "--", "python", "-c", "raise SystemExit(3)", cwd=alice, check=False)  # waits
    failed_id = exp_json("ls", "--where", "status==failed", cwd=alice)[0]["id"]
    git("tag", f"exp/{run_id}", "HEAD", cwd=alice)
    exp("push", cwd=alice)
    bob = clone(remote, tmp_path / "bob")
    exp("fetch", cwd=bob)

    ref, ref_failed = f"refs/experiments/{run_id}", f"refs/experiments/{failed_id}"
    results, snapshot = rev(alice, ref), rev(alice, f"{ref}^1")
    title, body = message_of(alice, results)
    tree = rev(alice, f"{results}^{{tree}}")
    inner = rev(alice, f"{results}:{RESULTS}")

    def edited(path: list[str], value: Any) -> dict[str, Any]:
        copy = json.loads(json.dumps(body))
        node = copy
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        return copy

    evil = blob(alice, "evil()\n")
    code = with_entry(alice, tree, "train.py", f"100644 blob {evil}")
    bad_inner = with_entry(alice, inner, "result.json", f"100644 blob {blob(alice, '{}')}")
    bad_inner = with_entry(alice, bad_inner, "check.json", f"100644 blob {blob(alice, '{}')}")
    f_title, f_body = message_of(alice, rev(alice, ref_failed))
    f_body["result"]["status"], f_body["result"]["exit_code"] = "succeeded", 0
    cases = {  # what, the forged commit, the reason bob gives
        "rewritten command": (ref, forge(alice, tree, [snapshot], title,
                                         edited(["record", "argv"], ["sh", "-c", "evil"])),
                              "its command changed"),
        "code changed under the finished run": (
            ref, forge(alice, code, [results], title, body), "its code changed"),
        "result failed -> succeeded": (
            ref_failed, forge(alice, rev(alice, f"{ref_failed}^{{tree}}"),
                              [rev(alice, f"{ref_failed}^1")], f_title, f_body),
            "its result changed"),
        "record changed in a results commit": (
            ref, forge(alice, tree, [snapshot], title, edited(["record", "target"], "gpu")),
            "its record (target) changed"),
        "extra file outside .gitexp-results": (
            ref, forge(alice, with_entry(alice, tree, "evil.py", f"100644 blob "
                                         f"{blob(alice, 'evil()')}"), [snapshot], title, body),
            "its code changed"),
        "removed file": (ref, forge(alice, with_entry(alice, tree, "train.py", None), [snapshot],
                                    title, body), "its code changed"),
        "another first parent": (ref, forge(alice, tree, [rev(alice, "HEAD")], title, body),
                                 "its code changed"),
        "verdict commit that modifies result.json": (
            ref, forge(alice, with_entry(alice, tree, RESULTS, f"040000 tree {bad_inner}"),
                       [snapshot, results], title, edited(["result", "check"], {"of": "x"})),
            "its results changed"),
        "verdict commit that moves its snapshot's code": (
            ref, forge(alice, with_entry(alice, code, RESULTS, f"040000 tree {inner}"),
                       [snapshot, results], title, edited(["result", "check"], {"of": "x"})),
            "its code changed"),
        "tag moved": (f"refs/tags/exp/{run_id}", rev(alice, ref), "a tag never moves"),
    }
    for what, (target, forged, why) in cases.items():
        before = rev(bob, target)
        git("push", "-q", "--force", "origin", f"{forged}:{target}", cwd=alice)
        proc = exp("fetch", cwd=bob)
        name = target.removeprefix("refs/experiments/").removeprefix("refs/tags/")
        kind = "tag" if target.startswith("refs/tags/") else "run"
        assert proc.stderr.splitlines() == [f"refused {kind} {name} from origin: {why}"], what
        assert rev(bob, target) == before, what
        assert "0 run(s) updated" in proc.stdout, what
        git("push", "-q", "--force", "origin", f"{rev(alice, target)}:{target}", cwd=alice)
    assert exp_json("show", run_id, cwd=bob)["record"]["argv"][0] != "sh"


def test_new_runs_must_have_the_shape_gitexp_makes(tmp_path: Path):
    alice, remote = alice_and_remote(tmp_path)
    run_id = launch(alice)
    ref = f"refs/experiments/{run_id}"
    results, snapshot = rev(alice, ref), rev(alice, f"{ref}^1")
    tree = rev(alice, f"{results}^{{tree}}")
    title, body = message_of(alice, results)
    new_id = run_id[:-4] + "zzzz"
    body["record"]["id"] = new_id
    _, s_body = message_of(alice, snapshot)
    s_body["record"]["id"] = new_id
    snap = forge(alice, rev(alice, f"{snapshot}^{{tree}}"), [rev(alice, "HEAD")],
                 f"gitexp run {new_id}", s_body)
    other = dict(s_body, record=dict(s_body["record"], argv=["other"]))
    cases = {
        "unreadable": (forge(alice, tree, [snapshot], "gitexp run x: succeeded", {"schema": 1}),
                       "its record cannot be read"),
        "extra file": (forge(alice, with_entry(alice, tree, "evil.py", f"100644 blob "
                                               f"{blob(alice, 'x')}"), [snap], title, body),
                       "its code changed"),
        "snapshot of another record": (
            forge(alice, tree, [forge(alice, rev(alice, f"{snapshot}^{{tree}}"), [],
                                      f"gitexp run {new_id}", other)], title, body),
            "its record is not its snapshot's"),
        "results commit as first parent": (forge(alice, tree, [results], title, body),
                                           "its first parent is no snapshot of it"),
    }
    bob = clone(remote, tmp_path / "bob")
    for what, (forged, why) in cases.items():
        git("push", "-q", "--force", "origin", f"{forged}:refs/experiments/{new_id}", cwd=alice)
        proc = exp("fetch", cwd=bob)
        [line] = proc.stderr.splitlines()
        assert line.startswith(f"refused run {new_id} from origin: {why}"), (what, line)
        assert git("for-each-ref", f"refs/experiments/{new_id}", cwd=bob) == "", what
    # The same run, made as gitexp makes it, comes in.
    good = forge(alice, tree, [snap], title, body)
    git("push", "-q", "--force", "origin", f"{good}:refs/experiments/{new_id}", cwd=alice)
    assert "1 new run(s)" in exp("fetch", cwd=bob).stdout
    assert rev(bob, f"refs/experiments/{new_id}") == good


def test_a_run_finishing_and_its_verdict_travel_both_ways(tmp_path: Path):
    alice, remote = alice_and_remote(tmp_path)
    original = launch(alice)
    proc = exp("rerun", original, "--check", cwd=alice, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (rerun,) = exp_json("ls", "--where", f"rerun_of=={original}", cwd=alice)
    ref = f"refs/experiments/{rerun['id']}"
    verdict = rev(alice, ref)
    parents = git("rev-parse", f"{verdict}^@", cwd=alice).split()
    assert parents[0] == rerun["snapshot"]  # the verdict keeps the snapshot first
    results = parents[1]
    # Its tree only adds check.json to the results commit's.
    changed = git("diff-tree", "-r", "--name-status", results, verdict, cwd=alice).split()
    assert changed == ["A", f"{RESULTS}/check.json"]
    # The results commit first (as if pushed before the verdict), then the verdict.
    git("push", "-q", "origin", f"{results}:{ref}", cwd=alice)
    bob = clone(remote, tmp_path / "bob")
    exp("fetch", cwd=bob)
    assert rev(bob, ref) == results
    assert exp_json("show", rerun["id"], cwd=bob)["result"]["check"] is None
    out = exp("push", cwd=alice)
    assert "rejected" not in out.stderr and rev(remote, ref) == verdict
    proc = exp("fetch", cwd=bob)
    assert "1 run(s) updated" in proc.stdout and proc.stderr == ""
    assert rev(bob, ref) == verdict
    assert exp_json("show", rerun["id"], cwd=bob)["result"]["check"]["reproduced"] is True
    # A fresh clone takes the verdict commit as a new run.
    carol = clone(remote, tmp_path / "carol")
    assert "2 new run(s)" in exp("fetch", cwd=carol).stdout
    # A second verdict is refused: a shared run keeps the one it has.
    from gitexp.errors import GitexpError
    from gitexp.git import Repo
    from gitexp.service import rerun as replay
    from gitexp.service import runs

    repo = Repo.discover(alice)
    run = runs.find(repo, rerun["id"])
    try:
        replay.record_verdict(repo, run, {"of": original})
    except GitexpError as exc:
        assert "already has a verdict" in exc.message
    else:
        raise AssertionError("a second verdict was recorded")


def test_push_never_sends_a_run_tampered_with_locally(tmp_path: Path):
    alice, remote = alice_and_remote(tmp_path)
    run_id = launch(alice)
    exp("push", cwd=alice)
    ref = f"refs/experiments/{run_id}"
    results = rev(alice, ref)
    title, body = message_of(alice, results)
    evil = blob(alice, "evil()\n")
    code = with_entry(alice, rev(alice, f"{results}^{{tree}}"), "train.py", f"100644 blob {evil}")
    tampered = forge(alice, code, [results], title, body)  # a fast-forward, for git
    git("update-ref", ref, tampered, cwd=alice)
    other = launch(alice)  # an honest run goes all the same

    proc = exp("push", cwd=alice, check=False)
    assert proc.returncode == 1
    assert f"rejected {ref}: its code changed" in proc.stderr
    assert rev(remote, ref) == results
    assert rev(remote, f"refs/experiments/{other}") == rev(alice, f"refs/experiments/{other}")
    assert "1 ref(s) pushed to origin" in proc.stdout

    # The pre-push hook passes on only runs sealed as the user's own, which a tampered run no
    # longer is: it is not sent (and nothing is said of it); the user's own push goes on.
    exp("hooks", "install", cwd=alice)
    (alice / "train.py").write_text("print('v3')\n")
    git("commit", "-qam", "v3", cwd=alice)
    hooked = subprocess.run(["git", "push", "origin", "main"], cwd=alice, capture_output=True,
                            text=True, check=False)
    assert hooked.returncode == 0, hooked.stderr
    assert rev(remote, ref) == results
    assert rev(remote, "main") == rev(alice, "main")


def test_a_no_op_push_sends_nothing(tmp_path: Path):
    alice, _ = alice_and_remote(tmp_path)
    launch(alice)
    exp("push", cwd=alice)
    trace = tmp_path / "trace"
    out = exp("push", cwd=alice, env={"GIT_TRACE": str(trace)}).stdout
    assert "0 ref(s) pushed to origin, 1 already there" in out
    assert "git push" not in trace.read_text() and "ls-remote" in trace.read_text()
