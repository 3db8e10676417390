"""Issue 16, declared plots: what they cost, each next to its reference in the same run.

1. At the end of a run, on the tutorial pipeline's `eval/` (ROC train/test): reading the
   declared plots (`dvcplots.files_of`) vs the metrics and dvclive series read there already.
2. `git exp report` over N runs that declare a ROC curve, a confusion matrix and two images,
   with this checkout's gitexp vs another's that draws no declared plots (`--reference`,
   e.g. the main branch's src/), in CPU seconds (the machine may be shared).

    python benchmarks/bench_declared_plots.py [--runs 10] [--reference /work/main/src]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "src")]
os.environ["PYTHONPATH"] = str(ROOT / "src")  # the runs' agents are this checkout's too

from tests.conftest import make_repo  # noqa: E402
from tests.dvcpipe import make_pipeline  # noqa: E402
from tests.helpers import exp, git, own_home  # noqa: E402
from tests.test_dvc_plots import DVC_YAML, JOB  # noqa: E402

from gitexp.model import dvcplots, metrics  # noqa: E402


def median_ms(step: object, n: int = 50) -> float:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        step()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def cpu_of(argv: list[str], cwd: Path, src: str) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(argv, cwd=cwd, env={**os.environ, "PYTHONPATH": src}, check=True,
                   capture_output=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--reference", default="/work/main/src")
    a = p.parse_args()
    base = Path(tempfile.mkdtemp())
    with own_home(base):
        pipe = make_pipeline(base / "pipe", repro=True, push=False)
    series = median_ms(lambda: (metrics.series_from_files(pipe), metrics.from_files(pipe)))
    plots = median_ms(lambda: dvcplots.files_of(pipe, lambda b: b))
    print(f"end of run: declared plots {plots:.1f} ms; reference (metrics + series) "
          f"{series:.1f} ms")

    repo = make_repo(base / "proj", {"job.py": JOB, "dvc.yaml": DVC_YAML,
                                     ".gitignore": "out/\n"})
    git("config", "exp.notify.on", "none", cwd=repo)
    for _ in range(a.runs):
        exp("run", "--force", "--", "python", "job.py", cwd=repo)
    report = ["git", "exp", "report", "-o", str(base / "r.html")]
    cpu = {name: statistics.median(cpu_of(report, repo, src) for _ in range(5))
           for name, src in (("this", str(ROOT / "src")), ("reference", a.reference))}
    print(f"report of {a.runs} runs: {cpu['this']:.2f} s CPU; reference {cpu['reference']:.2f}"
          " s CPU (no declared plots drawn)")


if __name__ == "__main__":
    main()
