"""Issue 20 goal: a job saving a 200 MB checkpoint every minute loses < 2% of its wall time to
gitexp (the copy `gitexp.checkpoint(files=)` makes before it returns, and the agent's upload
to the store while the job computes, on the same cores). Scaled down, same ratio: 20 MB every
6 s by default.

The job computes for a fixed amount of CPU work per period (calibrated here to --period
seconds), writes its checkpoint file, and calls `gitexp.checkpoint`; it reports its own wall
time. Reference, same run: the same job calling `gitexp.checkpoint` without `files=` (it
writes the file all the same). Runs alternate between the two; figures are medians.

    python benchmarks/bench_checkpoint.py [--size-mb 20] [--period 6] [--periods 4] [--runs 3]
"""

from __future__ import annotations

import argparse
import hashlib
import re
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from _common import ENV, goal_line, sh

GOAL = 0.02
JOB = """\
import hashlib, os, sys, time, gitexp
iters, periods, size, files = map(int, sys.argv[1:5])
blob = os.urandom(size)
start = time.monotonic()
h, inside = b"", 0.0
for p in range(periods):
    for _ in range(iters):
        h = hashlib.sha256(h).digest()
    with open("ckpt.bin", "wb") as f:
        f.write(blob)
    t = time.monotonic()
    gitexp.checkpoint(f"period {p}", step=p, files=["ckpt.bin"] if files else [])
    inside += time.monotonic() - t
print("JOBTIME", time.monotonic() - start, inside, flush=True)
"""


def calibrate(seconds: float) -> int:
    """sha256 rounds that take `seconds` here (the job does the same work)."""
    n, h, start = 200_000, b"", time.monotonic()
    for _ in range(n):
        h = hashlib.sha256(h).digest()
    return int(n * seconds / (time.monotonic() - start))


def job_time(repo: Path, iters: int, periods: int, size: int,
             files: bool) -> tuple[float, float]:
    """The job's wall time, and the part of it spent inside `gitexp.checkpoint`."""
    proc = subprocess.run(["git", "exp", "run", "--force", "--", "python", "job.py", str(iters),
                           str(periods), str(size), str(int(files))], cwd=repo, env=ENV,
                          capture_output=True, text=True, timeout=600, check=False)
    found = re.search(r"JOBTIME (\S+) (\S+)", proc.stdout)
    if proc.returncode != 0 or not found:
        raise SystemExit(f"the job failed: {proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return float(found.group(1)), float(found.group(2))


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--size-mb", type=float, default=20)
    p.add_argument("--period", type=float, default=6)
    p.add_argument("--periods", type=int, default=4)
    p.add_argument("--runs", type=int, default=3)
    a = p.parse_args()
    size = int(a.size_mb * 1e6)
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "repo"
        repo.mkdir()
        (repo / "job.py").write_text(JOB)
        (repo / ".gitignore").write_text("ckpt.bin\n")
        sh("git", "init", "-q", cwd=repo)
        sh("git", "add", "-A", cwd=repo)
        sh("git", "commit", "-qm", "bench", cwd=repo)
        sh("git", "config", "exp.notify.on", "none", cwd=repo)
        iters = calibrate(a.period)
        with_files, without, copies = [], [], []
        for _ in range(a.runs):
            without.append(job_time(repo, iters, a.periods, size, files=False)[0])
            wall, copy = job_time(repo, iters, a.periods, size, files=True)
            with_files.append(wall)
            copies.append(copy / a.periods)
    ref, value = statistics.median(without), statistics.median(with_files)
    overhead = (value - ref) / ref
    # the period as it came out (the calibration ran on a machine that may be busy)
    print(f"job wall time, {a.periods} periods of {ref / a.periods:.2f}s with a "
          f"{a.size_mb:g} MB checkpoint each: {value:.3f}s with files=, {ref:.3f}s without "
          f"(runs: {', '.join(f'{t:.2f}' for t in with_files)} / "
          f"{', '.join(f'{t:.2f}' for t in without)})")
    # the copy before `checkpoint` returns is the part the job waits for: free of the noise
    # of a shared machine, its share of the period is the floor of the overhead
    copy = statistics.median(copies)
    print(f"inside gitexp.checkpoint(files=): {copy * 1000:.1f} ms per checkpoint, "
          f"{copy / (ref / a.periods):.4f} of a period")
    print(goal_line("checkpoint overhead", overhead, GOAL, {}, unit=""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
