"""Sharing runs through ordinary git remotes: real `git push` to a bare remote, a fresh clone
that runs `git exp fetch`, and the rules that keep everyone's runs intact."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

from tests.conftest import make_repo
from tests.helpers import assert_user_error, exp, exp_json, git, wait_done

LOG_METRICS = "import gitexp; print('hello from the run'); gitexp.log(step=1, loss=0.25)"


def launch(repo: Path, code: str = LOG_METRICS, wait: bool = True) -> str:
    # A fresh comment each time: an identical command on identical code is not rerun.
    code += f"  # {uuid.uuid4().hex[:8]}"
    run_id = exp("run", "-d", "--", sys.executable, "-c", code, cwd=repo).stdout.strip()
    if wait:
        assert wait_done(run_id, repo)["status"] == "succeeded"
    return run_id


def remote_refs(remote: Path) -> set[str]:
    out = git("for-each-ref", "--format=%(refname)", "refs/experiments/", "refs/tags/exp/",
              cwd=remote)
    return set(out.split())


def alice_and_remote(tmp_path: Path) -> tuple[Path, Path]:
    """Alice's repository (hooks installed, pushed once) and the team's bare remote."""
    remote = tmp_path / "remote.git"
    git("init", "-q", "--bare", "-b", "main", str(remote), cwd=tmp_path)
    alice = make_repo(tmp_path / "alice", {"train.py": "print('v1')\n"})
    git("config", "user.name", "Alice", cwd=alice)
    git("config", "user.email", "alice@example.com", cwd=alice)
    git("remote", "add", "origin", str(remote), cwd=alice)
    git("push", "-q", "origin", "main", cwd=alice)
    return alice, remote


def clone(remote: Path, where: Path) -> Path:
    git("clone", "-q", str(remote), str(where), cwd=where.parent)
    git("config", "user.name", "Bob", cwd=where)
    return where


def test_runs_travel_with_a_push_and_arrive_with_a_fetch(tmp_path: Path):
    alice, remote = alice_and_remote(tmp_path)
    exp("hooks", "install", cwd=alice)
    (alice / "train.py").write_text("print('version 2')\n")
    run_id = launch(alice)
    git("add", "-A", cwd=alice)
    git("commit", "-qm", "v2", cwd=alice)

    push = subprocess.run(["git", "push", "origin", "main"], cwd=alice, capture_output=True,
                          text=True, check=False)

    assert push.returncode == 0, push.stderr
    assert git("tag", "--points-at", "HEAD", cwd=alice).split() == [f"exp/{run_id}"]
    assert remote_refs(remote) == {f"refs/experiments/{run_id}", f"refs/tags/exp/{run_id}"}
    assert git("rev-parse", "main", cwd=remote) == git("rev-parse", "main", cwd=alice)

    bob = clone(remote, tmp_path / "bob")
    assert exp_json("ls", cwd=bob) == []
    fetched = exp("fetch", cwd=bob)
    assert "1 new run(s)" in fetched.stdout

    [run] = exp_json("ls", cwd=bob)
    assert run["id"] == run_id and run["status"] == "succeeded"
    assert run["record"]["user"] == "Alice <alice@example.com>"
    assert run["result"]["metrics"] == {"loss": 0.25}
    assert run_id in exp("ls", cwd=bob).stdout
    table = exp("ls", "--columns", "run,status,user", cwd=bob).stdout
    assert run_id in table and "Alice <alice@example.com>" in table
    show = exp("show", run_id, cwd=bob).stdout
    assert "by Alice <alice@example.com>" in show and "hello from the run" in show
    assert "hello from the run" in exp("logs", run_id, cwd=bob).stdout
    # The commit of what ran is tagged in the clone too.
    assert git("rev-parse", f"exp/{run_id}^{{commit}}", cwd=bob) == git("rev-parse", "HEAD",
                                                                          cwd=bob)
    # The run's code is the snapshot, there to diff against and rerun from.
    snapshot = run["snapshot"]
    assert git("show", f"{snapshot}:train.py", cwd=bob) == "print('version 2')\n"
    assert "0 new run(s)" in exp("fetch", cwd=bob).stdout
    assert git("for-each-ref", "refs/gitexp-incoming/", cwd=bob) == ""


def test_fetched_runs_can_be_diffed_and_rerun_when_those_commands_exist(tmp_path: Path):
    alice, remote = alice_and_remote(tmp_path)
    first = launch(alice)
    (alice / "train.py").write_text("print('version 2')\n")
    second = launch(alice)
    exp("push", cwd=alice)
    bob = clone(remote, tmp_path / "bob")
    exp("fetch", cwd=bob)

    if exp("diff", "--help", cwd=bob, check=False).returncode == 0:
        diff = exp("diff", first, second, cwd=bob)
        assert "train.py" in diff.stdout
    if exp("rerun", "--help", cwd=bob, check=False).returncode == 0:
        new_id = exp("rerun", "-d", first, cwd=bob).stdout.strip().splitlines()[-1]
        rerun = wait_done(new_id, bob)
        assert rerun["status"] == "succeeded" and rerun["record"]["rerun_of"] == first
        assert rerun["result"]["metrics"] == {"loss": 0.25}
    # Always: the fetched snapshots are real commits in the clone.
    runs = {r["id"]: r["snapshot"] for r in exp_json("ls", cwd=bob)}
    changed = git("diff", "--name-only", runs[first], runs[second], cwd=bob).split()
    assert changed == ["train.py"]


def test_push_named_runs_then_all(tmp_path: Path):
    alice, remote = alice_and_remote(tmp_path)
    first, second = launch(alice), launch(alice)

    exp("push", "origin", first[-4:], cwd=alice)  # a unique part of the id is enough
    assert remote_refs(remote) == {f"refs/experiments/{first}"}

    out = exp("push", cwd=alice).stdout  # the branch's remote
    assert remote_refs(remote) == {f"refs/experiments/{first}", f"refs/experiments/{second}"}
    assert "1 ref(s) pushed to origin, 1 already there" in out


def test_unfinished_runs_stay_home_until_they_end(tmp_path: Path):
    alice, remote = alice_and_remote(tmp_path)
    done = launch(alice)
    live = launch(alice, "import time; time.sleep(60)", wait=False)
    try:
        proc = exp("push", cwd=alice)
        assert remote_refs(remote) == {f"refs/experiments/{done}"}
        assert "1 unfinished run(s) not pushed" in proc.stderr
        assert_user_error(exp("push", "origin", live, cwd=alice, check=False),
                          "has not finished yet")
    finally:
        exp("cancel", live, cwd=alice)
        wait_done(live, alice)
    exp("push", cwd=alice)
    assert f"refs/experiments/{live}" in remote_refs(remote)


def test_fetch_fast_forwards_finished_runs_and_never_overwrites(tmp_path: Path):
    alice, remote = alice_and_remote(tmp_path)
    run_id = launch(alice)
    other = launch(alice)
    snapshot = exp_json("show", run_id, cwd=alice)["snapshot"]
    # Someone pushed only the snapshot (as a raw `git push` would while it ran).
    git("push", "-q", "origin", f"{snapshot}:refs/experiments/{run_id}", cwd=alice)
    bob = clone(remote, tmp_path / "bob")
    exp("fetch", cwd=bob)
    assert git("rev-parse", f"refs/experiments/{run_id}", cwd=bob).strip() == snapshot

    exp("push", cwd=alice)  # the results commit follows: a fast-forward
    local_other = git("commit-tree", "HEAD^{tree}", "-m", "bob's own", cwd=bob).strip()
    git("update-ref", f"refs/experiments/{other}", local_other, cwd=bob)
    proc = exp("fetch", cwd=bob)

    results = git("rev-parse", f"refs/experiments/{run_id}", cwd=alice).strip()
    assert git("rev-parse", f"refs/experiments/{run_id}", cwd=bob).strip() == results
    assert "1 run(s) updated" in proc.stdout
    assert git("rev-parse", f"refs/experiments/{other}", cwd=bob).strip() == local_other
    assert f"kept local refs/experiments/{other}" in proc.stderr

    # A remote that is behind never rewinds a finished run.
    stale = tmp_path / "stale.git"
    git("init", "-q", "--bare", str(stale), cwd=tmp_path)
    git("push", "-q", str(stale), f"{snapshot}:refs/experiments/{run_id}", cwd=alice)
    proc = exp("fetch", str(stale), cwd=bob)
    assert git("rev-parse", f"refs/experiments/{run_id}", cwd=bob).strip() == results
    assert "further along" in proc.stderr


def test_push_and_fetch_errors_are_one_line_with_a_hint(repo: Path, tmp_path: Path):
    assert_user_error(exp("push", cwd=repo, check=False), "which remote?")
    assert_user_error(exp("fetch", str(tmp_path / "nowhere"), cwd=repo, check=False),
                      "git fetch from")
    assert git("for-each-ref", "refs/gitexp-incoming/", cwd=repo) == ""


def test_push_json_free_core_api(tmp_path: Path):
    """The core is usable without the CLI: sharing.push/fetch return reports."""
    from gitexp.git import Repo
    from gitexp.service import sharing

    alice, remote = alice_and_remote(tmp_path)
    run_id = launch(alice)
    report = sharing.push(Repo.discover(alice))
    assert report.remote == "origin" and report.pushed == [f"refs/experiments/{run_id}"]
    bob = clone(remote, tmp_path / "bob")
    fetched = sharing.fetch(Repo.discover(bob))
    assert fetched.new == [f"refs/experiments/{run_id}"]
    assert json.loads(json.dumps(fetched.__dict__))["remote"] == "origin"


def test_rm_remote_deletes_runs_from_the_remote_then_here(tmp_path: Path):
    alice, remote = alice_and_remote(tmp_path)
    first, second, unpushed = launch(alice), launch(alice), launch(alice)
    exp("push", "origin", first, second, cwd=alice)

    out = exp("rm", "--remote", first[-6:], cwd=alice).stdout  # the branch's remote
    assert "1 ref(s) deleted from origin, 0 run(s) not there" in out
    assert remote_refs(remote) == {f"refs/experiments/{second}"}
    assert git("for-each-ref", f"refs/experiments/{first}", cwd=alice) == ""

    out = exp("rm", "--remote", "origin", unpushed, cwd=alice).stdout  # named; not there
    assert "0 ref(s) deleted from origin, 1 run(s) not there" in out
    assert f"removed {unpushed}" in out

    # a remote that refuses deletions keeps the run, and so does this clone: retry later
    hook = remote / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\nwhile read -r old new ref; do\n"
                    "  case $new in 0000000*) echo 'no deletions here' >&2; exit 1;; esac\n"
                    "done\n")
    hook.chmod(0o755)
    proc = exp("rm", "--remote", second, cwd=alice, check=False)
    assert proc.returncode == 1
    assert f"kept refs/experiments/{second}" in proc.stderr
    assert remote_refs(remote) == {f"refs/experiments/{second}"}
    assert git("for-each-ref", f"refs/experiments/{second}", cwd=alice) != ""


def test_rm_dry_run_with_remote_touches_neither_side(tmp_path: Path):
    alice, remote = alice_and_remote(tmp_path)
    run_id = launch(alice)
    exp("push", cwd=alice)
    assert exp("rm", "--remote", "-n", run_id, cwd=alice).stdout == \
        f"would remove {run_id} (succeeded)\n"
    assert remote_refs(remote) == {f"refs/experiments/{run_id}"}
