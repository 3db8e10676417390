"""What a user waits for: from typing `git exp run -d -- CMD` to the job's first statement,
on the local target, in a small repository. Reference, same run: the job alone
(`python JOB`, its own start-up), so the figure printed is gitexp's share.

The job writes `time.time()` when it starts; the launch is timed from just before
`git exp run` is started. Runs one at a time (each waits for the previous to end).

    python benchmarks/bench_first_line.py [--runs 15] [--dir DIR]
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
from _common import ENV, sh

JOB = "import time, sys; open(sys.argv[1], 'w').write(repr(time.time()))\n"


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


def job_alone(repo: Path, stamp: Path) -> float:
    t0 = time.time()
    subprocess.run([sys.executable, "job.py", str(stamp)], cwd=repo, check=True)
    return float(stamp.read_text()) - t0


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=15)
    p.add_argument("--dir", type=Path)
    a = p.parse_args()
    root = a.dir or Path(tempfile.mkdtemp(prefix="bench-first-line-"))
    repo = root / "repo"
    repo.mkdir(parents=True, exist_ok=True)
    sh("git", "init", "-q", cwd=repo)
    (repo / "job.py").write_text(JOB)
    sh("git", "add", "-A", cwd=repo)
    sh("git", "commit", "-qm", "job", cwd=repo)
    sh("git", "config", "exp.notify.on", "none", cwd=repo)
    stamp = root / "started"
    ours = [first_line(repo, stamp) for _ in range(a.runs)]
    ref = [job_alone(repo, stamp) for _ in range(a.runs)]
    o, r = statistics.median(ours), statistics.median(ref)
    print(f"job's first statement after `git exp run -d`: median {o * 1000:.0f} ms "
          f"(min {min(ours) * 1000:.0f}, max {max(ours) * 1000:.0f}; {a.runs} runs)")
    print(f"the job alone (`python job.py`): median {r * 1000:.0f} ms")
    print(f"gitexp's share: {(o - r) * 1000:.0f} ms; ratio {o / r:.1f}x the job's own start-up")


if __name__ == "__main__":
    main()
