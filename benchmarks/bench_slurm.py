"""Issue 6 note: the overhead of `git exp run -t slurm` from the command line to the job's
command starting, beside a bare `sbatch --wrap` of the same command, on the single-node
test cluster (tests/services/slurm.py starts it, or reuses a running one).

Both commands write `time.time()` to a file as their first act; the figure is that time
minus the moment the submission began (median of --repeat). Also printed: how long the
`git exp run -d` command itself takes (snapshot, record, code push, wheel, sbatch).

    python benchmarks/bench_slurm.py [--repeat 5]     (as root: slurmd runs as root)
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.services.slurm import cluster_user  # noqa: E402

PROBE = "import sys, time; open(sys.argv[1], 'w').write(repr(time.time()))"


def wait_file(path: Path, timeout: float = 60) -> float:
    deadline = time.monotonic() + timeout
    while not path.exists() or not path.read_text():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {path}")
        time.sleep(0.01)
    return float(path.read_text())


def bare_sbatch(work: Path, i: int, env: dict[str, str]) -> tuple[float, float]:
    mark = work / f"bare-{i}"
    wrap = subprocess.list2cmdline(["python3", "-c", PROBE, str(mark)])
    t0 = time.time()
    subprocess.run(["sbatch", "--parsable", "--output=/dev/null", f"--wrap={wrap}"],
                   check=True, capture_output=True, env=env)
    submitted = time.time()
    return submitted - t0, wait_file(mark) - t0


def gitexp_run(repo: Path, work: Path, i: int, env: dict[str, str]) -> tuple[float, float]:
    mark = work / f"exp-{i}"
    t0 = time.time()
    subprocess.run(["git", "exp", "run", "-t", "hpc", "-d", "--", "python3", "-c", PROBE,
                    str(mark)], cwd=repo, check=True, capture_output=True, env=env)
    submitted = time.time()
    return submitted - t0, wait_file(mark) - t0


def make_repo(work: Path, env: dict[str, str]) -> Path:
    repo = work / "repo"
    repo.mkdir()
    for args in (["init", "-q"], ["config", "user.name", "bench"],
                 ["config", "user.email", "b@x"], ["config", "exp.target.hpc.backend", "slurm"],
                 ["config", "exp.target.hpc.store", (work / "store").as_uri()],
                 ["config", "exp.target.hpc.python", "/usr/bin/python3"]):
        subprocess.run(["git", *args], cwd=repo, check=True, env=env)
    (repo / "train.py").write_text("print('hi')\n")
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True, env=env)
    subprocess.run(["git", "commit", "-qm", "init"], cwd=repo, check=True, env=env)
    return repo


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--repeat", type=int, default=5)
    a = p.parse_args()
    with cluster_user() as cluster, tempfile.TemporaryDirectory(prefix="bench-slurm-") as tmp:
        work = Path(tmp)
        bindir = str(Path(sys.executable).parent)
        env = {**os.environ, **cluster.env, "PATH": f"{bindir}:{os.environ['PATH']}"}
        repo = make_repo(work, env)
        gitexp_run(repo, work, -1, env)  # warm-up: first code push, wheel into the store
        bare_sbatch(work, -1, env)
        rows = {"bare sbatch --wrap": [bare_sbatch(work, i, env) for i in range(a.repeat)],
                "git exp run -t slurm": [gitexp_run(repo, work, i, env)
                                         for i in range(a.repeat)]}
        cluster.wait_idle(60)
    print(f"single-node Slurm, median of {a.repeat}; seconds from the submitting command's "
          "start")
    for name, samples in rows.items():
        submit = statistics.median(s for s, _ in samples)
        start = statistics.median(t for _, t in samples)
        print(f"  {name:22s} submit command {submit:6.3f}s   command running at {start:6.3f}s")
    base = statistics.median(t for _, t in rows["bare sbatch --wrap"])
    ours = statistics.median(t for _, t in rows["git exp run -t slurm"])
    print(f"  overhead of gitexp (snapshot, record, push, agent checkout): {ours - base:+.3f}s")


if __name__ == "__main__":
    main()
