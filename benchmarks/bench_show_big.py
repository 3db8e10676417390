"""How fast are `git exp show` and `git exp diff` on the largest records gitexp accepts?

    .venv/bin/python benchmarks/bench_show_big.py [--keep DIR] [--repeat 3]

A record's commit message is capped at 1 MB by the decoder; each case below fills most of
that budget in one way: one 900 KB argument, 900 KB split into 50,000 arguments, 10,000
params, 10,000 metrics, 5,000 data entries. Each run ref is made with plain git
(`hash-object`, `commit-tree`, `update-ref`), as a teammate's push would bring it, and every
case has two runs A and B that differ everywhere, so `diff A B` has the most to say.
The reference is `git cat-file -p` of the same commit: reading the bytes at all. Goal: each
`show` and `diff` under 1 s (the ratio is printed for the record).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from gitexp.model.record import Environment, Result, RunRecord, encode_message

BIN = Path(sys.executable).parent
ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "NO_COLOR": "1",
       "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@localhost",
       "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@localhost"}
GOAL_SECONDS = 1.0
BIG = 900_000


def sh(*argv: str, cwd: Path, stdin: bytes | None = None) -> str:
    proc = subprocess.run(argv, cwd=cwd, env=ENV, input=stdin, capture_output=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)[:200]} failed: {proc.stderr.decode()[-2000:]}")
    return proc.stdout.decode(errors="replace")


def record(run_id: str, side: str, **fields: object) -> RunRecord:
    base = {"id": run_id, "argv": ["python", "train.py"], "cwd": "", "base": None,
            "branch": "main", "user": f"user-{side}", "launched_at": time.time() - 60,
            "target": "local", "backend": "local", "store": "file:///nowhere",
            "env": Environment(python="3.11", platform="linux")}
    return RunRecord(**{**base, **fields})  # type: ignore[arg-type]


def cases(side: str) -> dict[str, tuple[RunRecord, Result]]:
    """Case name -> (record, result) for side "a" or "b": the same shape, other values."""
    ok = Result(status="succeeded", exit_code=0, started_at=time.time() - 50,
                ended_at=time.time() - 10, host="worker")
    d = 1 if side == "a" else 2

    def rec(name: str, **fields: object) -> RunRecord:
        return record(f"big-{name}-{side}", side, **fields)

    word = ("x" if side == "a" else "y") * 10
    return {
        "one 900 KB argument": (rec("arg", argv=["python", "-c", side * BIG]), ok),
        "50,000 arguments": (rec("args", argv=["python", *[f"{word}{i}" for i in
                                                           range(50_000)]]), ok),
        "10,000 params": (rec("params", params={f"param_{i}": i * d for i in
                                                range(10_000)}), ok),
        "10,000 metrics": (rec("metrics"), Result(
            status="succeeded", exit_code=0, started_at=1.0, ended_at=2.0,
            metrics={f"metric_{i}": i * 0.5 * d for i in range(10_000)})),
        "5,000 data entries": (rec("data", data={
            f"data/part-{i:05d}.bin": {"hash": f"{i * d:032x}", "size": i, "nfiles": 1}
            for i in range(5_000)}), ok),
    }


def forge(repo: Path, rec: RunRecord, res: Result) -> str:
    """The run's snapshot and results commits, made with plain git; the results commit."""
    tree = sh("git", "rev-parse", "HEAD^{tree}", cwd=repo).strip()
    snap = sh("git", "commit-tree", tree, "-m", "snapshot", cwd=repo).strip()
    message = encode_message(rec, res).encode()
    assert len(message) < 1 << 20, (rec.id, len(message))  # what the decoder accepts
    who = "bench <bench@localhost> 1700000000 +0000"
    raw = (f"tree {tree}\nparent {snap}\nauthor {who}\ncommitter {who}\n\n").encode() + message
    commit = sh("git", "hash-object", "-t", "commit", "-w", "--stdin", cwd=repo,
                stdin=raw).strip()
    sh("git", "update-ref", f"refs/experiments/{rec.id}", commit, cwd=repo)
    return commit


def best_time(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    """(wall, cpu) seconds, the best of `repeat`. CPU time is the children's user + system
    time: on a shared, loaded machine it is the figure that measures our code, not the queue."""
    walls, cpus = [], []
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.perf_counter()
        fn()
        walls.append(time.perf_counter() - t)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return min(walls), min(cpus)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="Build the repository here and keep it.")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        repo = args.keep or Path(tmp) / "repo"
        repo.mkdir(parents=True, exist_ok=True)
        sh("git", "init", "-q", cwd=repo)
        (repo / "train.py").write_text("print('hi')\n")
        sh("git", "add", "-A", cwd=repo)
        sh("git", "commit", "-qm", "init", cwd=repo)
        a_side, b_side = cases("a"), cases("b")
        worst = 0.0
        for name in a_side:
            (rec_a, res_a), (rec_b, res_b) = a_side[name], b_side[name]
            commit = forge(repo, rec_a, res_a)
            forge(repo, rec_b, res_b)
            ref, _ = best_time(lambda c=commit: sh("git", "cat-file", "-p", c, cwd=repo),
                               args.repeat)
            show = best_time(lambda r=rec_a: sh("git", "exp", "show", r.id, cwd=repo),
                             args.repeat)
            diff = best_time(lambda a=rec_a, b=rec_b: sh("git", "exp", "diff", a.id, b.id,
                                                         cwd=repo), args.repeat)
            for verb, (wall, cpu) in (("show", show), ("diff", diff)):
                worst = max(worst, wall)
                verdict = "ok" if min(wall, cpu) < GOAL_SECONDS else "OVER GOAL"
                print(f"{name:>20}: {verb} {wall:.3f}s (cpu {cpu:.3f}s) vs git cat-file -p "
                      f"{ref:.3f}s -> ratio {wall / ref:.0f}x (goal < {GOAL_SECONDS:g}s) "
                      f"{verdict}")
        start = best_time(lambda: sh("git", "exp", "show", "big-arg-a", "--json", cwd=repo), 1)
        print(f"slowest: {worst:.3f}s; for scale, `show --json` of the first: "
              f"{start[0]:.3f}s (cpu {start[1]:.3f}s)")


if __name__ == "__main__":
    main()
