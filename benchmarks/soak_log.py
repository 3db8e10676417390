"""Does a huge log stream through the agent in bounded memory, and does all of it arrive?

    .venv/bin/python benchmarks/soak_log.py [--size 1G] [--bound-mb 150] [--json]

`git exp run` (local target) a job that writes SIZE bytes to stdout as fast as it can, in
1 MiB blocks that each start with their number. While it runs, the agent's VmRSS is sampled
from /proc; when it exits, this process (a child subreaper, so the orphaned agent is its
child) reaps it and reads its peak RSS from wait4(), children included. Then: the store's
log must be exactly SIZE bytes with every block in place, git's `log.txt` the capped head
and tail (results.MAX_LOG_IN_GIT), and `git exp show` (which quotes the log's end) within
the bound too. Exits 1 when a bound is crossed or a byte is lost.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BLOCK = 1 << 20
PR_SET_CHILD_SUBREAPER = 36
SPEW = """\
import sys
blocks, size = int(sys.argv[1]), 1 << 20
filler = (b"x" * 99 + b"\\n") * (size // 100 + 1)
out = sys.stdout.buffer
for i in range(blocks):
    head = b"block %010d\\n" % i
    out.write(head + filler[: size - len(head)])
out.flush()
"""


def parse_size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    text = text.strip().upper().removesuffix("B")
    size = int(float(text[:-1]) * units[text[-1]]) if text[-1:] in units else int(text)
    return max(BLOCK, size // BLOCK * BLOCK)


def git(*args: str, cwd: Path, env: dict[str, str]) -> str:
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True,
                          capture_output=True).stdout.decode()


def make_repo(path: Path, env: dict[str, str]) -> None:
    path.mkdir(parents=True)
    git("init", "-q", cwd=path, env=env)
    (path / "spew.py").write_text(SPEW)
    git("add", "-A", cwd=path, env=env)
    git("commit", "-qm", "spew", cwd=path, env=env)


def become_subreaper() -> None:
    """Orphans of our descendants (the agent, once `git exp run -d` returns) become ours."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER) failed")


def rss_kb(pid: int) -> tuple[int, int] | None:
    """(VmRSS, VmHWM) of `pid` in KiB; None once it has exited (a zombie has no memory)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    found = dict(line.split(":", 1) for line in text.splitlines() if line.startswith("Vm"))
    if "VmRSS" not in found:
        return None
    return int(found["VmRSS"].split()[0]), int(found["VmHWM"].split()[0])


def watch(pid: int, every: float = 0.01) -> dict[str, Any]:
    """Sample the agent until it exits, then reap it: its peak RSS by both measures."""
    samples: list[int] = []
    hwm = 0
    while True:
        got = rss_kb(pid)
        if got is not None:
            samples.append(got[0])
            hwm = max(hwm, got[1])
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            break
        time.sleep(every)
    return {"exit": os.waitstatus_to_exitcode(status), "samples": len(samples),
            "max_vmrss_mb": max(samples, default=0) / 1024, "vmhwm_mb": hwm / 1024,
            "maxrss_with_children_mb": usage.ru_maxrss / 1024}


def check_store_log(path: Path, size: int) -> list[str]:
    """Every block, in order, whole: the list of problems (empty when all arrived)."""
    problems = []
    actual = path.stat().st_size if path.exists() else -1
    if actual != size:
        problems.append(f"store log is {actual} bytes, expected {size}")
    with path.open("rb") as f:
        for i in range(min(actual, size) // BLOCK):
            head = f.read(BLOCK)[:17]
            if head != b"block %010d\n" % i:
                problems.append(f"block {i} is damaged: {head!r}")
                break
    return problems


def check_git_log(repo: Path, run_id: str, size: int, env: dict[str, str]) -> list[str]:
    from gitexp.git.writeback import MAX_LOG_IN_GIT

    ref = f"refs/experiments/{run_id}"
    blob = subprocess.run(["git", "cat-file", "blob", f"{ref}:.gitexp-results/log.txt"],
                          cwd=repo, env=env, capture_output=True, check=False).stdout
    status = git("log", "-1", "--format=%s", ref, cwd=repo, env=env).strip()
    problems = [] if status.endswith(": succeeded") else [f"run ended as {status!r}"]
    if size <= MAX_LOG_IN_GIT:
        if len(blob) != size:
            problems.append(f"git's log.txt is {len(blob)} bytes, expected all {size}")
        return problems
    if not MAX_LOG_IN_GIT <= len(blob) <= MAX_LOG_IN_GIT + 200:
        problems.append(f"git's log.txt is {len(blob)} bytes, not capped near {MAX_LOG_IN_GIT}")
    if not blob.startswith(b"block 0000000000\n") or b"bytes cut here" not in blob:
        problems.append("git's log.txt lacks the log's head or the cut note")
    last = b"block %010d\n" % (size // BLOCK - 1)
    if last not in blob[-BLOCK - 100:]:
        problems.append("git's log.txt lacks the log's tail")
    return problems


def soak(size: int, root: Path) -> dict[str, Any]:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "GIT_AUTHOR_NAME": "soak", "GIT_AUTHOR_EMAIL": "soak@localhost",
           "GIT_COMMITTER_NAME": "soak", "GIT_COMMITTER_EMAIL": "soak@localhost"}
    repo = root / "repo"
    make_repo(repo, env)
    become_subreaper()
    start = time.perf_counter()
    run_id = git("exp", "run", "-d", "-n", "soak", "--", sys.executable, "spew.py",
                 str(size // BLOCK), cwd=repo, env=env).strip()
    store = repo / ".git" / "gitexp" / "store" / "runs" / run_id
    handle = json.loads((store / "handle.json").read_text())
    memory = watch(int(handle["pid"]))
    wall = time.perf_counter() - start
    result = json.loads((store / "result.json").read_text())
    job = result["ended_at"] - result["started_at"]
    problems = check_store_log(store / "log", size) + check_git_log(repo, run_id, size, env)
    return {"run": run_id, "size_mb": size / BLOCK, "wall_s": wall, "job_s": job,
            "throughput_mb_s": size / BLOCK / job if job > 0 else None, **memory,
            "show_maxrss_mb": show_maxrss(repo, run_id, env), "problems": problems}


def show_maxrss(repo: Path, run_id: str, env: dict[str, str]) -> float:
    """Peak RSS (MB) of `git exp show RUN`, which quotes the log's last lines."""
    proc = subprocess.Popen(["git", "exp", "show", run_id], cwd=repo, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, _, usage = os.wait4(proc.pid, 0)
    proc.returncode = 0  # reaped here; keep Popen from waiting again
    return usage.ru_maxrss / 1024


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="1G", help="bytes of log: 50M, 1G (whole MiB)")
    ap.add_argument("--bound-mb", type=float, default=150.0, help="the agent's RSS bound")
    ap.add_argument("--json", action="store_true", help="one JSON object, for the tests")
    ap.add_argument("--keep", type=Path, help="build the repository here and keep it")
    a = ap.parse_args()
    size = parse_size(a.size)
    root = a.keep or Path(tempfile.mkdtemp(prefix="soak-log-"))
    try:
        report = soak(size, root)
    finally:
        if not a.keep:
            shutil.rmtree(root, ignore_errors=True)
    # A fast job can end before the first sample: wait4's peak (the agent or its job,
    # whichever was larger) is always there, and bounds the agent's from above.
    peak = max(report["max_vmrss_mb"], report["vmhwm_mb"], report["maxrss_with_children_mb"])
    if peak > a.bound_mb:
        report["problems"].append(f"agent RSS peaked at {peak:.1f} MB > {a.bound_mb} MB")
    if report["show_maxrss_mb"] > a.bound_mb:
        report["problems"].append(f"`git exp show` took {report['show_maxrss_mb']:.1f} MB")
    report["bound_mb"] = a.bound_mb
    if a.json:
        print(json.dumps(report))
    else:
        print(f"log of {report['size_mb']:.0f} MiB streamed in {report['job_s']:.1f}s "
              f"({report['throughput_mb_s']:.0f} MiB/s; {report['wall_s']:.1f}s launch to "
              f"reaped)")
        print(f"agent RSS: max sampled {report['max_vmrss_mb']:.1f} MB, VmHWM "
              f"{report['vmhwm_mb']:.1f} MB (bound {a.bound_mb} MB; {report['samples']} "
              f"samples); with children (wait4) {report['maxrss_with_children_mb']:.1f} MB")
        print(f"`git exp show` (quotes the log's end): peak RSS "
              f"{report['show_maxrss_mb']:.1f} MB")
        for problem in report["problems"]:
            print(f"PROBLEM: {problem}")
        print("ok" if not report["problems"] else "FAILED")
    return 0 if not report["problems"] else 1


if __name__ == "__main__":
    sys.exit(main())
