"""Load figures: `ls`, `ls --where`, `diff`, `show` and `gc --dry-run` at 10,000 runs against
their goals, and N concurrent local launches.

    .venv/bin/python benchmarks/bench_load.py [--runs 10000] [--concurrent 50] [--keep DIR]

The runs come from bench_ls's generator (the very commits gitexp writes, via fast-import).
Each figure is the median of 3 and is printed with its ratio to the goal; wall times
suffer when the machine is busy, so the CPU seconds are printed too.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import bench_ls  # beside this script, as bench_core imports _common

GOALS = {  # seconds at 10,000 runs
    "ls (cold)": 3.0, "ls (warm)": 0.5, "ls --where --sort (warm)": 1.0,
    "diff A B": 1.0, "show A": 1.0, "gc --failed --dry-run": 2.0,
}


def median_of(argv: list[str], cwd: Path, repeats: int = 3,
              before: list[Path] | None = None) -> tuple[float, float]:
    walls, cpus = [], []
    for _ in range(repeats):
        for path in before or []:
            path.unlink(missing_ok=True)
        walls.append(bench_ls.timed(argv, cwd))
        cpus.append(bench_ls.CPU[-1])
    return statistics.median(walls), statistics.median(cpus)


def scale(path: Path, n: int) -> bool:
    base = bench_ls.make_repo(path, dvc=False)
    took = bench_ls.gen_gitexp(path, base, n)
    print(f"generated {n} runs in {took:.1f}s (git fast-import)")
    index = path / ".git" / "gitexp" / "index.sqlite"
    a, b = bench_ls.run_id(0), bench_ls.run_id(n - 1)
    cases = {
        "ls (cold)": (["git", "exp", "ls"], [index, Path(f"{index}-wal"), Path(f"{index}-shm")]),
        "ls (warm)": (["git", "exp", "ls"], None),
        "ls --where --sort (warm)": (["git", "exp", "ls", "--where", "loss < 0.001 and "
                                      "status == succeeded", "--sort", "-acc"], None),
        "diff A B": (["git", "exp", "diff", a, b], None),
        "show A": (["git", "exp", "show", a], None),
        "gc --failed --dry-run": (["git", "exp", "gc", "--failed", "--dry-run"], None),
    }
    ok = True
    for name, (argv, before) in cases.items():
        wall, cpu = median_of(argv, path, before=before)
        ratio = wall / GOALS[name]
        ok &= ratio <= 1
        print(f"{name} @ {n}: {wall:.3f}s [CPU {cpu:.3f}s]  goal <= {GOALS[name]}s  "
              f"ratio {ratio:.2f} {'ok' if ratio <= 1 else 'OVER GOAL'}  "
              f"(CPU ratio {cpu / GOALS[name]:.2f})")
    return ok


def concurrent(path: Path, n: int) -> None:
    bench_ls.make_repo(path, dvc=False)
    job = ["sh", "-c", 'echo "{\\"loss\\": $1}" > metrics.json', "job"]
    start = time.perf_counter()
    procs = [subprocess.Popen(["git", "exp", "run", "-d", "--", *job, str(i)], cwd=path,
                              env=bench_ls.ENV, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL) for i in range(n)]
    ids = [p.communicate()[0].decode().strip() for p in procs]
    launched = time.perf_counter() - start
    while True:
        out = bench_ls.sh("git", "for-each-ref", "--format=%(contents:subject)",
                          "refs/experiments/", cwd=path)
        if out.count(": succeeded") + out.count(": failed") >= n or \
                time.perf_counter() - start > 600:
            break
        time.sleep(0.2)
    done = time.perf_counter() - start
    print(f"{n} concurrent local launches: all launched in {launched:.1f}s, "
          f"{out.count(': succeeded')}/{len(set(ids))} succeeded and written back in "
          f"{done:.1f}s ({n / done:.1f} runs/s on {os.cpu_count()} CPUs)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10_000)
    ap.add_argument("--concurrent", type=int, default=50)
    ap.add_argument("--keep", type=Path, help="build the repositories here and keep them")
    a = ap.parse_args()
    root = a.keep or Path(tempfile.mkdtemp(prefix="bench-load-"))
    try:
        print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        ok = scale(root / "scale", a.runs)
        if a.concurrent:
            concurrent(root / "concurrent", a.concurrent)
    finally:
        if not a.keep:
            shutil.rmtree(root, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
