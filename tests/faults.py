"""The fault-injection harness: what must hold after any crash or outage, and the randomized
soak (`make soak`, not part of `make test`).

After every fault (`after_fault`):
- `git fsck` is clean (dangling objects are fine: a killed launch may leave some);
- the user's work tree (every file, untracked ones too), index bytes, HEAD and branches are
  byte-identical to before;
- every ref under refs/experiments/ is a valid run: its record parses, and a results commit
  has the snapshot as its only parent, the snapshot's tree plus a complete .gitexp-results/
  whose record.json/result.json agree with the commit message;
- every run ends terminal (or `lost`) within the heartbeat timeout, and is written back.

Faults are fired with `GITEXP_FAULT=<point>[@n]` (src/gitexp/faults.py): the process that
reaches the point SIGKILLs itself there.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import re
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gitexp.model.record import TERMINAL, decode_run
from tests.helpers import exp, exp_json, git, wait_for

# Every fault point in src/ (tests/test_faults.py checks this list against the source).
POINTS_SRC = Path(__file__).resolve().parents[1] / "src" / "gitexp"
KILLED = (-signal.SIGKILL, 128 + signal.SIGKILL)  # the python process, or git relaying it

# Prints numbered lines at a steady pace, so "the log up to the fault" is checkable.
TRAIN = """\
import sys, time, gitexp
n, pause = int(sys.argv[1]), float(sys.argv[2])
for i in range(n):
    print(f"line {i}", flush=True)
    gitexp.log(step=i, loss=1.0 / (i + 1))
    time.sleep(pause)
print("done", flush=True)
"""


def fault_points() -> set[str]:
    """The names of every `faults.point("...")` call in src/."""
    found: set[str] = set()
    for path in POINTS_SRC.rglob("*.py"):
        found |= set(re.findall(r'faults\.point\("([\w.]+)"\)', path.read_text()))
    return found


# -- the user's work ---------------------------------------------------------------------------
def user_state(repo: Path) -> dict[str, str]:
    """A fingerprint of everything gitexp must never touch: each file of the work tree
    (untracked too), the index file's bytes, HEAD, branches and tags."""
    state: dict[str, str] = {}
    for path in sorted(repo.rglob("*")):
        rel = path.relative_to(repo).as_posix()
        if rel == ".git" or rel.startswith(".git/"):
            continue
        if path.is_symlink():
            state[rel] = "link:" + os.readlink(path)
        elif path.is_file():
            mode = oct(path.stat().st_mode)
            state[rel] = f"{mode}:{hashlib.sha256(path.read_bytes()).hexdigest()}"
    index = repo / ".git" / "index"
    state[".git/index"] = hashlib.sha256(index.read_bytes()).hexdigest() if index.exists() else ""
    state[".git/HEAD"] = (repo / ".git" / "HEAD").read_text()
    state["refs"] = git("for-each-ref", "--format=%(refname) %(objectname)",
                        "refs/heads", "refs/tags", "refs/stash", cwd=repo)
    return state


def dirty_project(repo: Path) -> None:
    """Leaves uncommitted work of every kind: an unstaged edit, a staged new file, a staged
    edit later changed again, and an untracked file."""
    (repo / "README.md").write_text("edited, not staged\n")
    (repo / "staged.txt").write_text("staged\n")
    (repo / "notes.txt").write_text("v1\n")
    git("add", "staged.txt", "notes.txt", cwd=repo)
    (repo / "notes.txt").write_text("v2, after staging\n")
    (repo / "untracked.txt").write_text("never added\n")


# -- git -----------------------------------------------------------------------------------------
def assert_fsck_clean(git_dir: Path) -> None:
    proc = subprocess.run(["git", "--git-dir", str(git_dir), "fsck", "--no-progress",
                           "--no-dangling"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"git fsck {git_dir}: {proc.stdout}{proc.stderr}"
    assert not re.search(r"missing|broken|corrupt|error", proc.stdout + proc.stderr), \
        proc.stdout + proc.stderr


@dataclass(frozen=True)
class GitRun:
    id: str
    status: str | None  # None: not written back yet
    commit: str
    snapshot: str


def runs_in_git(repo: Path) -> dict[str, GitRun]:
    """Every run ref, checked for half-written state (AssertionError names the ref)."""
    out = git("for-each-ref", "--format=%(refname)", "refs/experiments/", cwd=repo).split()
    found = {}
    for ref in out:
        run_id = ref.removeprefix("refs/experiments/")
        commit = git("rev-parse", ref, cwd=repo).strip()
        parents = git("rev-list", "--parents", "-n1", commit, cwd=repo).split()[1:]
        run = decode_run(git("log", "-1", "--format=%B", commit, cwd=repo), ref=ref,
                         commit=commit, parents=parents)  # the id matches the ref
        record, result = run.record, run.result
        if result is None:
            found[run_id] = GitRun(run_id, None, commit, commit)
            continue
        assert len(parents) == 1, (ref, parents)
        snapshot = parents[0]
        snap = decode_run(git("log", "-1", "--format=%B", snapshot, cwd=repo), ref=ref,
                          commit=snapshot, parents=[])
        assert snap.result is None, ref
        names = git("ls-tree", "--name-only", f"{commit}:.gitexp-results", cwd=repo).split()
        assert {"record.json", "result.json", "log.txt"} <= set(names), (ref, names)
        shown = json.loads(git("show", f"{commit}:.gitexp-results/result.json", cwd=repo))
        assert shown == result.to_dict(), ref
        rec = json.loads(git("show", f"{commit}:.gitexp-results/record.json", cwd=repo))
        assert rec == record.to_dict(), ref
        top = [e for e in git("ls-tree", commit, cwd=repo).splitlines()
               if not e.endswith("\t.gitexp-results")]
        assert top == git("ls-tree", snapshot, cwd=repo).splitlines(), ref
        found[run_id] = GitRun(run_id, result.status, commit, snapshot)
    return found


def settle(repo: Path, timeout: float) -> dict[str, GitRun]:
    """Looks (`git exp ls`) until every run is terminal and written back; returns them."""
    def done() -> tuple[dict[str, GitRun]] | None:
        listed = exp_json("ls", cwd=repo)
        if any(r["status"] not in TERMINAL for r in listed):
            return None
        runs = runs_in_git(repo)
        return (runs,) if all(r.status in TERMINAL for r in runs.values()) else None
    return wait_for(done, timeout=timeout, every=0.3, what="every run to end")[0]


def after_fault(repo: Path, before: dict[str, str], *, timeout: float = 15) -> dict[str, GitRun]:
    """The invariants every fault must keep (see the module docstring)."""
    assert user_state(repo) == before, "the user's work tree, index or branches changed"
    assert_fsck_clean(repo / ".git")
    runs_in_git(repo)  # nothing half-written, even before anyone looks
    runs = settle(repo, timeout)
    assert_fsck_clean(repo / ".git")
    assert user_state(repo) == before
    return runs


def git_log(repo: Path, run: GitRun) -> str:
    return git("show", f"{run.commit}:.gitexp-results/log.txt", cwd=repo)


def assert_log_prefix(log: str, *, at_least: int) -> None:
    """The log holds the job's lines in order, from the first, at least `at_least` of them:
    what was streamed before the fault is kept."""
    lines = [ln for ln in log.splitlines() if ln.startswith("line ")]
    assert lines[:at_least] == [f"line {i}" for i in range(at_least)], log
    assert lines == [f"line {i}" for i in range(len(lines))], log


# -- processes -----------------------------------------------------------------------------------
def processes_under(root: Path) -> list[int]:
    """Pids of processes whose working directory is inside `root` (a test's own agents and
    jobs: their cwd is the repository's .git or a checkout under it)."""
    mine = []
    prefix = str(root.resolve())
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if os.readlink(entry / "cwd").startswith(prefix):
                mine.append(int(entry.name))
    return mine


def children_of(parent: int) -> list[int]:
    """Pids of the direct children of `parent`."""
    kids = []
    for entry in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(entry.read_text().rsplit(")", 1)[1].split()[1]) == parent:
                kids.append(int(entry.parent.name))
    return kids


def kill_under(root: Path) -> None:
    for pid in processes_under(root):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def store_json(repo: Path, run_id: str, name: str) -> dict[str, Any] | None:
    path = repo / ".git/gitexp/store/runs" / run_id / name
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data


def run_with_fault(repo: Path, point: str, *args: str) -> subprocess.CompletedProcess[str]:
    return exp("run", "-d", *args, cwd=repo, check=False, env={"GITEXP_FAULT": point})


# -- the soak (make soak) ------------------------------------------------------------------------
SOAK_POINTS = ("snapshot.add", "launch.commit", "launch.ref", "launch.submit", "launch.handle",
               "agent.prepare", "agent.heartbeat", "agent.append", "agent.result",
               "agent.finish", "writeback.commit", "workspace.release")


def test_soak_random_faults(tmp_path: Path) -> None:
    """GITEXP_SOAK_N (default 40) rounds in one repository: each launches a run with a random
    fault point and hit count, or kills `git exp run` after a random delay, then checks every
    invariant. The seed is printed, and GITEXP_SOAK_SEED replays it."""
    from tests.conftest import make_repo

    seed = int(os.environ.get("GITEXP_SOAK_SEED") or time.time())
    rounds = int(os.environ.get("GITEXP_SOAK_N", "40"))
    rng = random.Random(seed)
    print(f"soak seed {seed}, {rounds} rounds")
    repo = make_repo(tmp_path / "soak", {"train.py": TRAIN, "README.md": "x\n"})
    dirty_project(repo)
    (repo / "big.bin").write_bytes(rng.randbytes(4 << 20))  # each phase takes a while
    tried: dict[str, int] = {}
    try:
        for _ in range(rounds):
            before = user_state(repo)
            argv = ["--", "python", "train.py", str(rng.randint(1, 8)), "0.05"]
            if rng.random() < 0.3:
                delay = rng.uniform(0.0, 1.5)
                proc = subprocess.Popen(["git", "exp", "run", "-d", *argv], cwd=repo,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        start_new_session=True)
                time.sleep(delay)
                with contextlib.suppress(ProcessLookupError):  # git and `git-exp` under it
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                what = "kill -9 run after a random delay"
            else:
                point = rng.choice(SOAK_POINTS)
                nth = rng.randint(1, 3) if point.startswith(("agent.a", "agent.h")) else 1
                run_with_fault(repo, f"{point}@{nth}", *argv)
                what = point
            tried[what] = tried.get(what, 0) + 1
            after_fault(repo, before, timeout=30)
    finally:
        kill_under(repo)
    print("soak faults tried:", sum(tried.values()), json.dumps(tried, sort_keys=True))
