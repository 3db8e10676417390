"""Issue 3 goal: `git exp run -d -- true` in a DVC repository with 1,000 DVC-tracked files and
no data changes stays within 0.5 s of the same in a repository without DVC.

Both repositories hold the same 1,000 git-tracked files; the DVC one also tracks a `data/`
directory of 1,000 files with DVC. Launches are timed one at a time, interleaved (each run
is waited for, untimed, so agents never compete with the next launch). The first launch in
the DVC repo asks DVC itself and remembers the stat fingerprint; it is reported as "cold".

    python benchmarks/bench_dvc_overhead.py [--files 1000] [--repeat 7] [--dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ENV, sh

GOAL = 0.5
RUN_ENV = {**ENV, "DVC_NO_ANALYTICS": "1"}


def make_repo(root: Path, files: int, *, dvc: bool) -> Path:
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    sh("git", "init", "-q", cwd=root)
    for i in range(files):
        d = root / f"pkg{i % 20:02d}"
        d.mkdir(exist_ok=True)
        (d / f"mod{i:04d}.py").write_text(f"VALUE = {i}\n")
    if dvc:
        data = root / "data"
        data.mkdir()
        for i in range(files):
            (data / f"part{i:04d}.csv").write_text(f"x,y\n{i},{i * 2}\n")
        sh("dvc", "init", "-q", cwd=root, env=RUN_ENV)
        sh("dvc", "add", "-q", "data", cwd=root, env=RUN_ENV)
    sh("git", "add", "-A", cwd=root)
    sh("git", "commit", "-qm", "init", cwd=root)
    # Files older than git's and gitexp's "racy" window, as in a work tree at rest.
    old = time.time() - 60
    for d, _, names in os.walk(root):
        if ".git" not in d.split(os.sep):
            for n in names:
                os.utime(Path(d) / n, (old, old))
    sh("git", "status", "-s", cwd=root)
    return root


def launch(root: Path) -> float:
    t = time.perf_counter()
    proc = subprocess.run(["git", "exp", "run", "-d", "--force", "--", "true"], cwd=root,
                          check=True, capture_output=True, text=True, env=RUN_ENV)
    elapsed = time.perf_counter() - t
    run = proc.stdout.strip().splitlines()[-1]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # untimed: let the agent finish before the next launch
        shown = json.loads(sh("git", "exp", "show", run, "--json", cwd=root))
        if shown["status"] not in ("queued", "running"):
            if shown["status"] != "succeeded":
                raise SystemExit(f"run {run} in {root.name}: {shown['status']}")
            break
        time.sleep(0.1)
    return elapsed


def data_layer(root: Path, repeat: int) -> float:
    """What a launch in a DVC repo adds, timed without process start-up noise."""
    from gitexp.data import dev as data
    from gitexp.git import Repo, snapshot

    repo = Repo.discover(root)
    tree = snapshot.take(repo).tree
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        data.check_worktree(repo)
        data.version_of(repo, tree)
        times.append(time.perf_counter() - t)
    return median(times)


def median(values: list[float]) -> float:
    s = sorted(values)
    return s[len(s) // 2]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--files", type=int, default=1000)
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "gitexp-bench-dvc")
    a = p.parse_args()
    plain = make_repo(a.dir / "plain", a.files, dvc=False)
    dvc = make_repo(a.dir / "dvc", a.files, dvc=True)
    launch(plain)  # warm the OS caches and git's index
    cold = launch(dvc)
    plain_ts, dvc_ts = [], []
    for _ in range(a.repeat):  # interleaved, so background load hits both alike
        plain_ts.append(launch(plain))
        dvc_ts.append(launch(dvc))
    plain_t, dvc_t = median(plain_ts), median(dvc_ts)
    overhead = dvc_t - plain_t
    print(f"repos: {a.files} git-tracked files each; the DVC one also {a.files} DVC-tracked")
    print(f"`git exp run -d -- true` without DVC: {plain_t:.3f}s, with DVC: {dvc_t:.3f}s "
          f"(median of {a.repeat})")
    print(f"DVC overhead: {overhead:+.3f}s (goal <= {GOAL}s) "
          f"{'ok' if overhead <= GOAL else 'OVER GOAL'}")
    print(f"data layer alone (check work tree + read the version), in process: "
          f"{data_layer(dvc, a.repeat):.3f}s")
    print(f"first launch in the DVC repo (asks DVC, fills the stat cache): {cold:.3f}s "
          f"({cold - plain_t:+.3f}s)")


if __name__ == "__main__":
    main()
