"""Issue 17 goals, measured in one run on the generated 20,000-file repository (one edited
file, one untracked), as a user sees them, on the local target and on the ssh target:

- job start: from the start of a foreground `git exp run -- echo MARK` to the moment that line
  arrives on the CLI's stdout (read through a pipe, timestamped on arrival)   goal <= 0.3 s
- foreground `git exp run -- true`, process start to exit                   goal <= 1 s
- files written per run: a job stats (inode, mtime_ns, size) of every file in its checkout
  (found by its own `pwd` and `git rev-parse --git-dir`) and compares them with the previous
  run's; beside it, the files the snapshot changed (one file edited between the first two
  runs, nothing between the last two)            goal: written <= 2 x changed + 2

The ssh target runs over a real sshd on 127.0.0.1, started here the way the tests start
theirs (tests/services/sshd.py: login as `gitexp-worker`, system python3), or over
`--ssh-host ALIAS` (a host of yours; `--ssh-config`, `--ssh-python`). If neither works the
ssh part is skipped with a line saying why; `--require-ssh` makes that an error.

References, same run: `git init` + alternates + `git checkout` of the same snapshot tree into
a fresh directory (what a per-run full checkout costs, gitexp aside), and `dvc exp run` of a
one-stage pipeline doing `true` in a copy of the repository (skipped if dvc is missing).
Every figure is the median of --runs runs after one warm-up.

    python benchmarks/bench_start.py [--files 20000] [--runs 5] [--dir DIR]
        [--ssh-host ALIAS [--ssh-config FILE] [--ssh-python PY]] [--require-ssh]

Without --dir everything is built in a temporary directory and removed at the end; with it,
the repositories are kept (and reused) between invocations.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import selectors
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from _common import ENV, compile_gitexp, goal_line, make_big_repo, plumbing_snapshot, sh

START_GOAL = 0.3
TRUE_GOAL = 1.0
RUN_TIMEOUT = 600.0  # s per `git exp run`: today's runs take 7-16 s; a hang must not stall
MARK = "gitexp-bench-first-line"
STAT_MARK = "gitexp-bench-stat "
RUN_ID = re.compile(r"gitexp: run (\S+) on ")
RUN_ENV = {**ENV, "DVC_NO_ANALYTICS": "1"}
SSH_TARGET = "bench-ssh"
REPO_ROOT = Path(__file__).resolve().parents[1]

# The files-written probe, run as the job (by the worker's python, so stdlib only). It keeps
# the previous run's stat map in a file outside the checkout (argv[1]); "last" removes it.
STAT_JOB = """\
import json, os, subprocess, sys
state, last = sys.argv[1], sys.argv[2] == "last"
top = os.getcwd()
git_dir = subprocess.run(["git", "rev-parse", "--absolute-git-dir"], capture_output=True,
                         text=True).stdout.strip()

def walk(root, skip):
    seen = {}
    for d, dirs, names in os.walk(root):
        dirs[:] = [x for x in dirs if os.path.join(d, x) != skip]
        for n in names:
            st = os.lstat(os.path.join(d, n))
            seen[os.path.relpath(os.path.join(d, n), root)] = [st.st_ino, st.st_mtime_ns,
                                                               st.st_size]
    return seen

now = {"pwd": top, "tree": walk(top, git_dir), "git": walk(git_dir, None) if git_dir else {}}
out = {"pwd": top, "git_dir": git_dir, "files": len(now["tree"])}
try:
    with open(state) as f:
        prev = json.load(f)
except OSError:
    prev = None
if prev is not None:
    out["same_dir"] = prev["pwd"] == top
    for part in ("tree", "git"):
        out[part + "_written"] = sum(prev[part].get(k) != v for k, v in now[part].items())
    out["removed"] = len(set(prev["tree"]) - set(now["tree"]))
if last:
    if os.path.exists(state):
        os.remove(state)
else:
    with open(state, "w") as f:
        json.dump(now, f)
print("gitexp-bench-stat " + json.dumps(out), flush=True)
"""


@dataclass(frozen=True)
class Ran:
    run_id: str
    elapsed: float  # process start to exit
    first_line: float | None  # process start to MARK's line on stdout
    stdout: str


@dataclass(frozen=True)
class SshSpec:
    host: str
    python: str
    config: str | None = None
    workdir: str | None = None


def say(message: str) -> None:
    """Progress, on stderr: stdout holds only the figures."""
    print(f"-- {message}", file=sys.stderr, flush=True)


# -- one foreground `git exp run`, timed as a terminal sees it ---------------------------------
def exp_run(repo: Path, target: str, argv: list[str]) -> Ran:
    cmd = ["git", "exp", "run", "--force", "-t", target, "--", *argv]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=repo, env=RUN_ENV, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    ended: list[float] = []

    def wait() -> None:  # the exit is timed apart from the reading, to the wait's precision
        proc.wait()
        ended.append(time.perf_counter())

    waiter = threading.Thread(target=wait, daemon=True)
    waiter.start()
    out, err = bytearray(), bytearray()
    first: float | None = None
    try:
        with selectors.DefaultSelector() as sel:
            assert proc.stdout is not None and proc.stderr is not None
            sel.register(proc.stdout, selectors.EVENT_READ, out)
            sel.register(proc.stderr, selectors.EVENT_READ, err)
            while sel.get_map():
                left = t0 + RUN_TIMEOUT - time.perf_counter()
                if left <= 0 or (ended and time.perf_counter() - ended[0] > 10):
                    break  # hung, or a child of the CLI still holds its pipes
                for key, _ in sel.select(min(left, 0.5)):
                    chunk = os.read(key.fd, 1 << 16)
                    arrived = time.perf_counter()
                    if not chunk:
                        sel.unregister(key.fileobj)
                        continue
                    key.data.extend(chunk)
                    if first is None and key.data is out and \
                            f"\n{MARK}\n".encode() in b"\n" + out:
                        first = arrived - t0
        waiter.join(max(t0 + RUN_TIMEOUT - time.perf_counter(), 0))
    finally:
        stderr = err.decode(errors="replace")
        found = RUN_ID.search(stderr)
        if not ended:  # timed out or interrupted: stop the CLI and the run it started
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            if found:
                subprocess.run(["git", "exp", "cancel", found.group(1)], cwd=repo, env=RUN_ENV,
                               capture_output=True, timeout=60, check=False)
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
    if not ended:
        raise SystemExit(f"`{' '.join(cmd[:7])} ...` did not end within {RUN_TIMEOUT:.0f}s")
    if proc.returncode != 0 or not found:
        raise SystemExit(f"`{' '.join(cmd)}` failed (exit {proc.returncode}):\n"
                         + "\n".join(stderr.splitlines()[-15:]))
    return Ran(found.group(1), ended[0] - t0, first, out.decode(errors="replace"))


def start_and_true(repo: Path, target: str, runs: int) -> tuple[list[float], list[float]]:
    """Job start and `true` end to end, interleaved (load hits both alike); the first pair
    is the warm-up and is dropped."""
    starts, trues = [], []
    for i in range(runs + 1):
        first = exp_run(repo, target, ["echo", MARK])
        if first.first_line is None:
            raise SystemExit(f"run {first.run_id}: the job's line never reached the CLI's "
                             f"stdout:\n{first.stdout[-2000:]}")
        true = exp_run(repo, target, ["true"])
        if i:
            starts.append(first.first_line)
            trues.append(true.elapsed)
        say(f"{target}: {'warm-up' if not i else f'run {i}'}: first line "
            f"{first.first_line:.3f}s, true {true.elapsed:.3f}s")
    return starts, trues


# -- files written per run ----------------------------------------------------------------------
def stat_run(repo: Path, target: str, python: str, state: str, mode: str) -> tuple[dict, str]:
    ran = exp_run(repo, target, [python, "-c", STAT_JOB, state, mode])
    line = next((ln for ln in ran.stdout.splitlines() if ln.startswith(STAT_MARK)), None)
    if line is None:
        raise SystemExit(f"run {ran.run_id}: the probe printed no result:\n{ran.stdout[-2000:]}")
    shown = json.loads(sh("git", "exp", "show", ran.run_id, "--json", cwd=repo))
    return json.loads(line[len(STAT_MARK):]), shown["snapshot"]


def files_written(repo: Path, target: str, python: str, state: str,
                  edit: Path) -> list[tuple[dict, int]]:
    """Three runs: a baseline, one after a one-file edit, one with no change. For the last
    two: what the probe saw written, and how many files the snapshot changed."""
    _, base = stat_run(repo, target, python, state, "keep")
    before = edit.stat()
    original = edit.read_bytes()
    edit.write_bytes(original + b"# edited by bench_start\n")
    try:
        edited, after_edit = stat_run(repo, target, python, state, "keep")
        same, unchanged = stat_run(repo, target, python, state, "last")
    finally:  # the repository is as make_big_repo left it (--dir keeps it)
        edit.write_bytes(original)
        os.utime(edit, ns=(before.st_atime_ns, before.st_mtime_ns))
    return [(edited, diff_count(repo, base, after_edit)),
            (same, diff_count(repo, after_edit, unchanged))]


def diff_count(repo: Path, a: str, b: str) -> int:
    return len(sh("git", "diff-tree", "-r", "--no-renames", "--name-only", a, b,
                  cwd=repo).splitlines())


def files_line(name: str, results: list[tuple[dict, int]]) -> str:
    parts, ok = [], True
    for (probe, changed), what in zip(results, ("after a one-file edit", "with no change"),
                                      strict=True):
        written = probe["tree_written"]
        ok = ok and written <= 2 * changed + 2
        parts.append(f"{written} of {probe['files']} written {what} (snapshot changed "
                     f"{changed}; +{probe['git_written']} under the git dir)")
    where = results[-1][0]
    moved = "the same directory" if where["same_dir"] else "a new directory each run"
    return (f"{name}: files written per run: {'; '.join(parts)} (goal <= 2 x changed + 2) "
            f"{'ok' if ok else 'OVER GOAL'}\n"
            f"{name}: the job's checkout: {where['pwd']} (git dir {where['git_dir']}), "
            f"{moved}")


# -- references ---------------------------------------------------------------------------------
def fresh_checkout(root: Path, commit: str, dest: Path) -> float:
    started = time.perf_counter()
    sh("git", "init", "-q", str(dest), cwd=root)
    (dest / ".git" / "objects" / "info" / "alternates").write_text(
        f"{(root / '.git' / 'objects').resolve()}\n")
    sh("git", "-C", str(dest), "-c", "advice.detachedHead=false", "checkout", "-q", "--detach",
       commit, cwd=root)
    elapsed = time.perf_counter() - started
    shutil.rmtree(dest)  # untimed; the next checkout lands where this one was freed
    return elapsed


def dvc_copy(root: Path, copy: Path) -> Path:
    """A copy of the repository (work tree changes included) with a one-stage pipeline."""
    if (copy / "dvc.yaml").exists() and subprocess.run(
            ["git", "symbolic-ref", "-q", "HEAD"], cwd=copy, capture_output=True,
            check=False).returncode == 0:
        return copy  # kept by --dir; a `dvc exp run` killed midway leaves HEAD detached
    shutil.rmtree(copy, ignore_errors=True)
    subprocess.run(["cp", "-a", str(root), str(copy)], check=True)
    shutil.rmtree(copy / ".git" / "gitexp", ignore_errors=True)
    dvc_env = {"DVC_NO_ANALYTICS": "1"}
    sh("dvc", "init", "-q", cwd=copy, env=dvc_env)
    sh("dvc", "stage", "add", "-q", "-n", "noop", "true", cwd=copy, env=dvc_env)
    sh("git", "add", ".dvc", ".dvcignore", "dvc.yaml", cwd=copy)
    sh("git", "commit", "-qm", "dvc: a no-op stage", cwd=copy)
    sh("git", "status", "-s", cwd=copy)
    return copy


def timed(what: str, fn: Callable[[], object], runs: int) -> list[float]:
    """`runs` times after one warm-up (dropped)."""
    times = []
    for i in range(runs + 1):
        started = time.perf_counter()
        fn()
        elapsed = time.perf_counter() - started
        say(f"{what}: {'warm-up' if not i else f'run {i}'}: {elapsed:.3f}s")
        if i:
            times.append(elapsed)
    return times


def spread(times: list[float]) -> str:
    return f"median of {len(times)}: min {min(times):.3f}, max {max(times):.3f}"


def dvc_exp_run(copy: Path) -> None:
    proc = subprocess.run(["dvc", "exp", "run", "-q"], cwd=copy, env=RUN_ENV,
                          capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"exit {proc.returncode}: {proc.stderr.strip()[-500:]}")


def references(root: Path, scratch: Path, runs: int) -> dict[str, float]:
    refs: dict[str, float] = {}
    commit = plumbing_snapshot(root, scratch)
    counter = iter(range(1 << 30))
    times = timed("git checkout into a fresh dir", lambda: fresh_checkout(
        root, commit, scratch / f"checkout{next(counter)}"), runs)
    refs["git checkout into a fresh dir"] = statistics.median(times)
    print(f"reference: git init + alternates + `git checkout` of the same tree into a fresh "
          f"directory: {statistics.median(times):.3f}s ({spread(times)})", flush=True)
    if shutil.which("dvc") is None:
        print("reference: `dvc exp run` skipped: dvc is not installed (pip install dvc)",
              flush=True)
        return refs
    say("building the DVC copy of the repository")
    copy = dvc_copy(root, scratch.parent / f"{root.name}-dvc")
    try:
        times = timed("dvc exp run", lambda: dvc_exp_run(copy), runs)
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        print(f"reference: `dvc exp run` failed, left out: {exc}", flush=True)
        return refs
    refs["dvc exp run"] = statistics.median(times)
    print(f"reference: `dvc exp run` of a one-stage pipeline doing `true`, in a copy of the "
          f"repository: {statistics.median(times):.3f}s ({spread(times)})", flush=True)
    return refs


# -- one target -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Figures:
    name: str
    starts: list[float]
    trues: list[float]
    files: list[tuple[dict, int]]

    def lines(self, refs: dict[str, float]) -> list[str]:
        return [goal_line(f"{self.name}: job start (its first line on `git exp run`'s stdout; "
                          f"{spread(self.starts)})", statistics.median(self.starts),
                          START_GOAL, refs),
                goal_line(f"{self.name}: foreground `git exp run -- true` end to end "
                          f"({spread(self.trues)})", statistics.median(self.trues), TRUE_GOAL,
                          refs),
                files_line(self.name, self.files)]


def measure(name: str, *, repo: Path, target: str, python: str, state: str,
            runs: int) -> Figures:
    say(f"{name}: job start and `true`, {runs} runs after a warm-up")
    starts, trues = start_and_true(repo, target, runs)
    say(f"{name}: files written per run")
    edit = next(repo.glob("pkg001/mod*.py"))
    figures = Figures(name, starts, trues, files_written(repo, target, python, state, edit))
    for line in figures.lines({}):  # as soon as measured; again with the references at the end
        print(line, flush=True)
    return figures


def own_sshd(stack: contextlib.ExitStack) -> SshSpec | str:
    """The tests' sshd (tests/services/sshd.py), on a free port; or why it cannot start."""
    if not Path("/usr/sbin/sshd").exists():
        return "no /usr/sbin/sshd (apt-get install openssh-server)"
    sys.path.insert(0, str(REPO_ROOT))
    try:  # the tests' helpers import pytest: only this part needs it
        from tests.services.sshd import SshServer, ensure_worker_user
    except ImportError as exc:
        return f"cannot load the tests' sshd helper: {exc}"
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation dir
    directory = Path(tempfile.mkdtemp(prefix="gitexp-bench-sshd-"))
    stack.callback(shutil.rmtree, directory, ignore_errors=True)
    try:
        user = ensure_worker_user()
        server = SshServer(directory)
        server.start()
    except (RuntimeError, OSError, subprocess.CalledProcessError) as exc:
        return f"sshd did not start: {exc}"
    stack.callback(server.stop)
    login = server.login(user, "gitexp-bench")
    server.write_client_config(login)
    probe = login.run(["true"], timeout=30)
    if probe.returncode != 0:
        return f"ssh login as {user} failed: {probe.stderr.strip()}"
    stack.callback(login.run, ["rm", "-rf", login.scratch], timeout=120)
    return SshSpec(host=login.alias, python="/usr/bin/python3", config=login.ssh_config,
                   workdir=login.mkdtemp("bench-start"))


def configure_ssh(repo: Path, spec: SshSpec) -> None:
    subprocess.run(["git", "config", "--remove-section", f"exp.target.{SSH_TARGET}"], cwd=repo,
                   capture_output=True, check=False)  # a kept --dir has the last one's
    settings = {"backend": "ssh", "host": spec.host, "python": spec.python,
                "workdir": spec.workdir, "sshConfig": spec.config}
    for key, value in settings.items():
        if value:
            sh("git", "config", f"exp.target.{SSH_TARGET}.{key}", value, cwd=repo)


# -- main -------------------------------------------------------------------------------------
def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--files", type=int, default=20_000)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--dir", type=Path, help="build here and keep it (default: a temp dir)")
    p.add_argument("--ssh-host", help="an ssh alias to run the ssh part on (default: an "
                   "sshd started here)")
    p.add_argument("--ssh-config", help="ssh_config file for --ssh-host")
    p.add_argument("--ssh-python", default="python3", help="python on --ssh-host")
    p.add_argument("--require-ssh", action="store_true", help="fail if no ssh target")
    a = p.parse_args()
    compile_gitexp()
    if a.files < 200 or a.runs < 1:
        p.error("--files must be >= 200 and --runs >= 1")
    # SIGTERM (`timeout`, a CI runner) unwinds like Ctrl-C: the run in flight is cancelled,
    # the sshd stopped and the temporary directories removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with contextlib.ExitStack() as stack:
        base = a.dir or Path(tempfile.mkdtemp(prefix="gitexp-bench-start-"))
        if a.dir is None:
            stack.callback(shutil.rmtree, base, ignore_errors=True)
        base.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix="scratch-", dir=base))
        stack.callback(shutil.rmtree, scratch, ignore_errors=True)
        say(f"building the {a.files}-file repository in {base}")
        repo = make_big_repo(base / f"repo{a.files}", a.files)
        sh("git", "config", "exp.notify.on", "none", cwd=repo)
        print(f"repo: {a.files} files, one edited, one untracked; medians of {a.runs} runs "
              "after one warm-up", flush=True)
        # gitexp's figures first (what issue 17 is judged by), the references after them.
        measured = [measure("local", repo=repo, target="local", python=sys.executable,
                            state=str(scratch / f"stat-{uuid.uuid4().hex}.json"),
                            runs=a.runs)]
        spec = SshSpec(a.ssh_host, a.ssh_python, a.ssh_config) if a.ssh_host else \
            own_sshd(stack)
        if isinstance(spec, str):
            if a.require_ssh:
                raise SystemExit(f"ssh: {spec} (--require-ssh)")
            print(f"ssh: skipped: {spec}; give --ssh-host ALIAS to use a host of yours",
                  flush=True)
        else:
            configure_ssh(repo, spec)
            remote_state = f"/tmp/gitexp-bench-start-{uuid.uuid4().hex}.json"
            if not a.ssh_host:  # the same machine: remove it even if a probe run failed
                stack.callback(lambda: Path(remote_state).unlink(missing_ok=True))
            measured.append(measure(f"ssh ({spec.host})", repo=repo, target=SSH_TARGET,
                                    python=spec.python, state=remote_state, runs=a.runs))
        refs = references(repo, scratch, a.runs)
        print("== against the goals and the references", flush=True)
        for figures in measured:
            for line in figures.lines(refs):
                print(line, flush=True)


if __name__ == "__main__":
    main()
