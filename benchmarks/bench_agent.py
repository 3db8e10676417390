"""What the agent costs while a job runs: its CPU and memory during a local run whose job
prints 10 lines a second and logs one metric a second with `gitexp.log`, for 60 s.

    python benchmarks/bench_agent.py [--seconds 60] [--dir DIR]

The agent's CPU time is read from /proc/<pid>/stat (utime + stime: the agent process alone,
its threads included, not its children) at the job's first line and at its last, so
start-up and write-back are not counted; the guard (the small process between the agent
and the job, worker/guard.py) is read the same way and reported apart. Peak RSS is VmHWM.
Reference, same run: the job's own CPU over the same window.

Also measured: how late the job's lines reach the store's log (the job prints the time it
printed each line; the store's file is read every 20 ms), which any change to the agent's
streaming must keep within its flush interval (0.2 s for the local target).
Goal: the agent under 1% of one core.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ENV, sh

JOB = """import sys, time
import gitexp
seconds = float(sys.argv[1])
start = time.time()
i = 0
while time.time() - start < seconds:
    print(f"line {i} {time.time():.6f}", flush=True)
    if i % 10 == 0:
        gitexp.log(step=i // 10, loss=1.0 / (1 + i))
    i += 1
    time.sleep(max(0.0, start + i / 10 - time.time()))
print(f"done {time.time():.6f}", flush=True)
"""
T = TypeVar("T")
TICK = os.sysconf("SC_CLK_TCK")
GOAL = 1.0  # % of one core


def cpu_of(pid: int) -> float | None:
    """utime + stime of `pid` alone, in seconds; None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()  # after the command name, which may hold ' '
    return (int(fields[11]) + int(fields[12])) / TICK  # fields 14 and 15 of proc(5)


def status_kb(pid: int, name: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def parent_of(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rindex(")") + 2:].split()[1])


def running(path: Path) -> dict[str, object] | None:
    try:
        status = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return status if status.get("status") == "running" else None


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 60.0) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.01)
    raise SystemExit(f"bench_agent: no {what} after {timeout:.0f}s")


@dataclass
class Window:
    """What was seen from the job's first line in the store to its last sample alive."""
    seconds: float = 0.0
    agent: float = 0.0  # CPU seconds
    guard: float = 0.0
    job: float = 0.0
    peak_kb: int = 0  # the agent's VmHWM
    delays: list[float] = field(default_factory=list)  # s from a line printed to stored


def watch(store: Path) -> Window:
    status = wait_for("running job", lambda: running(store / "status.json"))
    agent, job = int(str(status["agent_pid"])), int(str(status["pid"]))
    guard = parent_of(job)  # the guard starts the job; the agent, the guard
    assert parent_of(guard) == agent, (agent, guard, job)
    log = store / "log"
    wait_for("first line", lambda: log.exists() and b"line 0 " in log.read_bytes())
    pids = (agent, guard, job)
    first = last = (time.monotonic(), *(cpu_of(p) for p in pids))
    seen = Window(peak_kb=status_kb(agent, "VmHWM") or 0)
    read = 0
    while True:
        now = (time.monotonic(), *(cpu_of(p) for p in pids))
        if None in now:  # the job (or its agent) is ending: the window closes before
            break
        last = now
        seen.peak_kb = status_kb(agent, "VmHWM") or seen.peak_kb
        data = log.read_bytes()
        arrived = time.time()
        lines = data[read:data.rfind(b"\n") + 1]
        read += len(lines)
        for line in lines.splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[0] == b"line":
                seen.delays.append(arrived - float(parts[2]))
        time.sleep(0.02)
    seen.seconds = last[0] - first[0]
    seen.agent, seen.guard, seen.job = (
        float(b or 0) - float(a or 0) for a, b in zip(first[1:], last[1:], strict=True))
    return seen


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--dir", type=Path, help="build the repository here and keep it")
    a = p.parse_args()
    root = a.dir or Path(tempfile.mkdtemp(prefix="bench-agent-"))
    repo = root / "repo"
    repo.mkdir(parents=True, exist_ok=True)
    sh("git", "init", "-q", cwd=repo)
    (repo / "job.py").write_text(JOB)
    sh("git", "add", "-A", cwd=repo)
    sh("git", "commit", "-qm", "job", cwd=repo)
    # the job imports gitexp as the agent does: this Python, PYTHONPATH kept (ENV)
    run_id = subprocess.run(["git", "exp", "run", "-d", "--", sys.executable, "job.py",
                             str(a.seconds)], cwd=repo, check=True, capture_output=True,
                            text=True, env=ENV).stdout.strip()
    seen = watch(repo / ".git" / "gitexp" / "store" / "runs" / run_id)
    while '"status": "running"' in subprocess.run(
            ["git", "exp", "show", run_id, "--json"], cwd=repo, env=ENV, capture_output=True,
            check=True, text=True).stdout:
        time.sleep(0.2)

    def pct(cpu: float) -> float:
        return 100.0 * cpu / seen.seconds

    verdict = "ok" if pct(seen.agent) < GOAL else "OVER GOAL"
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"window {seen.seconds:.1f}s of a {a.seconds:.0f}s job printing 10 lines/s and "
          f"logging 1 metric/s ({len(seen.delays)} lines seen)")
    print(f"agent CPU: {seen.agent:.2f}s = {pct(seen.agent):.2f}% of one core "
          f"(goal < {GOAL}%) {verdict}   peak RSS (VmHWM) {seen.peak_kb / 1024:.1f} MB")
    print(f"guard CPU: {seen.guard:.2f}s = {pct(seen.guard):.2f}%   "
          f"reference, the job's own CPU: {seen.job:.2f}s = {pct(seen.job):.2f}%")
    if seen.delays:
        d = sorted(seen.delays)
        print(f"a line reaches the store's log after: median {statistics.median(d):.3f}s  "
              f"p95 {d[int(len(d) * 0.95)]:.3f}s  max {d[-1]:.3f}s "
              "(flush interval 0.2s, read every 0.02s)")
    if not a.dir:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
