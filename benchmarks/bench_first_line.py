"""What a user waits for: from typing `git exp run -d -- CMD` to the job's first statement,
and a foreground `git exp run -- true` from start to exit, on the local target. In a small
repository by default; `--big` uses the 20,000-file one of `_common.make_big_repo` (one
edited file, one untracked file). Reference, same run: the job alone (`python JOB`, its own
start-up), so the figure printed is gitexp's share.

The job writes `time.time()` when it starts; the launch is timed from just before
`git exp run` is started. Runs one at a time (each waits for the previous to end).

    python benchmarks/bench_first_line.py [--runs 15] [--big [--files N]] [--dir DIR]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ENV, make_big_repo, sh

JOB = "import time, sys; open(sys.argv[1], 'w').write(repr(time.time()))\n"
GOAL_FIRST, GOAL_TRUE = 0.3, 1.0  # issue 17, on the 20,000-file repository


def first_line(repo: Path, stamp: Path) -> float:
    stamp.unlink(missing_ok=True)
    t0 = time.time()
    run_id = subprocess.run(["git", "exp", "run", "-d", "--force", "--", sys.executable,
                             "job.py", str(stamp)], cwd=repo, check=True, capture_output=True,
                            text=True, env=ENV).stdout.strip()
    while not stamp.exists() or not stamp.read_text():
        time.sleep(0.005)
    started = float(stamp.read_text())
    while json.loads(subprocess.run(["git", "exp", "show", run_id, "--json"], cwd=repo,
                                    check=True, capture_output=True, env=ENV).stdout
                     )["status"] in ("queued", "running"):
        time.sleep(0.05)  # untimed: the next launch does not compete with this run's end
    return started - t0


def foreground_true(repo: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run(["git", "exp", "run", "--force", "--", "true"], cwd=repo, check=True,
                   capture_output=True, env=ENV)
    return time.perf_counter() - t0


def job_alone(repo: Path, stamp: Path) -> float:
    t0 = time.time()
    subprocess.run([sys.executable, "job.py", str(stamp)], cwd=repo, check=True)
    return float(stamp.read_text()) - t0


def make_repo(root: Path, big: bool, files: int) -> Path:
    repo = root / ("big" if big else "repo")
    if (repo / "job.py").exists():
        return repo  # kept from an earlier invocation (--dir)
    if big:
        make_big_repo(repo, files)  # its edit and untracked file stay as they are
    else:
        repo.mkdir(parents=True, exist_ok=True)
        sh("git", "init", "-q", cwd=repo)
    (repo / "job.py").write_text(JOB)
    sh("git", "add", "--", "job.py", cwd=repo)
    sh("git", "commit", "-qm", "job", "--", "job.py", cwd=repo)
    sh("git", "config", "exp.notify.on", "none", cwd=repo)
    return repo


def ms(xs: list[float]) -> str:
    return (f"median {statistics.median(xs) * 1000:.0f} ms (min {min(xs) * 1000:.0f}, "
            f"max {max(xs) * 1000:.0f}; {len(xs)} runs)")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=15)
    p.add_argument("--big", action="store_true", help="the 20,000-file repository")
    p.add_argument("--files", type=int, default=20_000, help="files in the --big repository")
    p.add_argument("--dir", type=Path, help="keep the repositories here between invocations")
    a = p.parse_args()
    root = a.dir or Path(tempfile.mkdtemp(prefix="bench-first-line-"))
    repo = make_repo(root, a.big, a.files)
    stamp = root / "started"
    first_line(repo, stamp)  # warm-up: caches (packages, pyc, the index's stat data)
    ours = [first_line(repo, stamp) for _ in range(a.runs)]
    fg = [foreground_true(repo) for _ in range(a.runs)]
    ref = [job_alone(repo, stamp) for _ in range(a.runs)]
    o, r = statistics.median(ours), statistics.median(ref)
    where = f"{a.files}-file repository" if a.big else "small repository"
    print(f"[{where}]")
    print(f"job's first statement after `git exp run -d`: {ms(ours)}"
          + (f"; goal <= {GOAL_FIRST * 1000:.0f} ms" if a.big else ""))
    print(f"foreground `git exp run -- true`, end to end: {ms(fg)}"
          + (f"; goal <= {GOAL_TRUE * 1000:.0f} ms" if a.big else ""))
    print(f"the job alone (`python job.py`): median {r * 1000:.0f} ms")
    print(f"gitexp's share: {(o - r) * 1000:.0f} ms; ratio {o / r:.1f}x the job's own start-up")


if __name__ == "__main__":
    main()
