"""Helpers for the benchmark scripts: generated repos and honest timing (median of runs)."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ENV = {**os.environ, "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "b@x",
       "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "b@x"}


def sh(*args: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    return subprocess.run(args, cwd=cwd, check=True, capture_output=True, text=True,
                          env={**ENV, **(env or {})}).stdout


def median_time(fn: Callable[[], object], repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def compile_gitexp() -> None:
    """Measure what users run: pip and `make install` compile gitexp to bytecode, but a
    source tree edited since (or used under PYTHONDONTWRITEBYTECODE) would have every
    `git exp` and agent compile each module it imports anew: 0.3 s or more a process."""
    import gitexp

    subprocess.run([sys.executable, "-m", "compileall", "-q", str(Path(gitexp.__file__).parent)],
                   check=True, env={k: v for k, v in os.environ.items()
                                    if k != "PYTHONDONTWRITEBYTECODE"})


def make_big_repo(root: Path, files: int = 20_000) -> Path:
    """`files` small files in 200 directories, committed; then one edit and one untracked."""
    if (root / ".git").exists():
        return root
    root.mkdir(parents=True)
    sh("git", "init", "-q", cwd=root)
    for i in range(files):
        d = root / f"pkg{i % 200:03d}"
        d.mkdir(exist_ok=True)
        (d / f"mod{i:05d}.py").write_text(f"# module {i}\nVALUE = {i}\n" + "x = 1\n" * (i % 20))
    sh("git", "add", "-A", cwd=root)
    sh("git", "commit", "-qm", "big", cwd=root)
    (root / "pkg000" / "mod00000.py").write_text("# edited\nVALUE = -1\n")
    (root / "untracked.txt").write_text("new file\n")
    sh("git", "status", "-s", cwd=root)  # warm the index stat cache, as a user's would be
    return root


def plumbing_snapshot(root: Path, scratch: Path) -> str:
    """The work tree as a commit by git plumbing alone (the tree gitexp's snapshot records):
    the reference gitexp's snapshot is measured against."""
    index = scratch / "index"
    shutil.copyfile(root / ".git" / "index", index)
    env = {"GIT_INDEX_FILE": str(index)}
    sh("git", "add", "-A", cwd=root, env=env)
    tree = sh("git", "write-tree", cwd=root, env=env).strip()
    index.unlink()
    return sh("git", "commit-tree", tree, "-p", "HEAD", "-m", "snapshot", cwd=root).strip()


def ratio_line(name: str, value: float, reference: float, goal: float, unit: str = "s") -> str:
    r = value / reference if reference else float("inf")
    verdict = "ok" if r <= goal else "OVER GOAL"
    return (f"{name}: {value:.4f}{unit} vs reference {reference:.4f}{unit} -> "
            f"ratio {r:.2f}x (goal <= {goal}x) {verdict}")


def goal_line(name: str, value: float, goal: float, refs: dict[str, float],
              unit: str = "s") -> str:
    """`value` against an absolute goal, with its ratio to each reference measured alongside."""
    verdict = "ok" if value <= goal else "OVER GOAL"
    ratios = "; ".join(f"{value / ref:.2f}x {what} ({ref:.3f}{unit})"
                       for what, ref in refs.items() if ref)
    return f"{name}: {value:.3f}{unit} (goal <= {goal}{unit}) {verdict}" + \
        (f"; {ratios}" if ratios else "")
