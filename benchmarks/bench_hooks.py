"""How much longer does `git commit` take with gitexp's hooks, in a repo with 1,000 runs?

    .venv/bin/python benchmarks/bench_hooks.py [--runs 1000] [--commits 15] [--keep DIR]

Runs are generated with `git fast-import` as the very objects gitexp writes (snapshot commit,
then a results commit for 9 in 10 of them, each with `record.encode_message`), on loose refs
as `git exp run` leaves them. Each commit is timed with the hooks installed and, alternating,
with them switched off (`-c core.hooksPath=<empty dir>`); the figure is the difference of the
medians. Also timed: the first commit after the runs appeared (the tree cache is cold), commits
right after a launch (the refs are listed again) and a commit of exactly what a run ran (tag +
trailer written). Goal: overhead <= 0.2 s. Wall times grow with the machine's load; the CPU
line does much less so.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gitexp.git import Repo
from gitexp.hooks import install as hooks
from gitexp.model.record import Environment, Result, RunRecord, encode_message

GOAL = 0.2
ENV = {**os.environ, "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@localhost",
       "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@localhost"}


def git(*args: str, cwd: Path, stdin: bytes | None = None) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, env=ENV, input=stdin, capture_output=True,
                          check=False)
    if proc.returncode != 0:
        raise SystemExit(f"git {' '.join(args)} failed: {proc.stderr.decode()}")
    return proc.stdout.decode()


def _data(blob: bytes) -> bytes:
    return b"data %d\n%s\n" % (len(blob), blob)


def generate_runs(repo: Path, n: int) -> None:
    """n runs on HEAD, run i with `seed.txt` = "seed i"; every tenth one still live."""
    head = git("rev-parse", "HEAD", cwd=repo).strip()
    committer = b"committer gitexp <gitexp@localhost> 1700000000 +0000\n"
    out = []
    for i in range(n):
        rec = RunRecord(id=f"bench-{i:05d}", argv=["python", "train.py", f"--seed={i}"], cwd="",
                        base=head, branch="main", user="Bench <bench@example.com>",
                        launched_at=1.7e9 + i, target="local", backend="local",
                        store="file:///nowhere", env=Environment(python="3.11", platform="x"))
        ref = f"refs/experiments/{rec.id}".encode()
        out += [b"blob\nmark :%d\n" % (2 * i + 1), _data(b"seed %d\n" % i),
                b"commit " + ref + b"\n", committer, _data(encode_message(rec, None).encode()),
                b"from " + head.encode() + b"\nM 100644 :%d seed.txt\n\n" % (2 * i + 1)]
        if i % 10:
            res = Result(status="succeeded", exit_code=0, metrics={"loss": 1 / (i + 1)})
            out += [b"commit " + ref + b"\n", committer,
                    _data(encode_message(rec, res).encode()),
                    b"M 100644 inline .gitexp-results/result.json\n",
                    _data(b'{"status": "succeeded"}'), b"\n"]
    git("fast-import", "--quiet", cwd=repo, stdin=b"".join(out))


def cpu() -> float:
    """CPU seconds of finished child processes (and theirs): git, the stubs, Python."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed_commit(repo: Path, i: int, *config: str) -> tuple[float, float]:
    """(wall, CPU) seconds of one `git commit`."""
    (repo / "work.txt").write_text(f"edit {i}\n")
    git("add", "-A", cwd=repo)
    start, start_cpu = time.perf_counter(), cpu()
    git(*config, "commit", "-q", "-m", f"edit {i}", cwd=repo)
    return time.perf_counter() - start, cpu() - start_cpu


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--commits", type=int, default=15)
    ap.add_argument("--keep", type=Path, help="build the repo here and keep it")
    a = ap.parse_args()
    root = a.keep or Path(tempfile.mkdtemp(prefix="gitexp-bench-hooks-"))
    try:
        repo = root / "repo"
        repo.mkdir(parents=True)
        git("init", "-q", "-b", "main", cwd=repo)
        (repo / "seed.txt").write_text("base\n")
        git("add", "-A", cwd=repo)
        git("commit", "-qm", "base", cwd=repo)
        generate_runs(repo, a.runs)
        hooks.install(Repo.discover(repo), python=sys.executable)
        off = root / "no-hooks"
        off.mkdir()
        print(f"{a.runs} runs, hooks installed in {hooks.hooks_dir(Repo.discover(repo))}")

        cold, _ = timed_commit(repo, -1)  # the first hook resolves every run's snapshot tree
        with_hooks, without = [], []
        for i in range(a.commits):
            with_hooks.append(timed_commit(repo, 2 * i))
            without.append(timed_commit(repo, 2 * i + 1, "-c", f"core.hooksPath={off}"))
        fresh = []  # as right after a launch: the cache cannot trust its stamp, refs are listed
        for i in range(a.commits):
            os.utime(repo / ".git" / "refs" / "experiments")
            fresh.append(timed_commit(repo, 1000 + i)[0])
        base, hooked = (statistics.median(t[0] for t in runs) for runs in (without, with_hooks))
        base_cpu, hooked_cpu = (statistics.median(t[1] for t in runs)
                                for runs in (without, with_hooks))

        (repo / "work.txt").unlink()
        (repo / "seed.txt").write_text("seed 7\n")  # exactly what run bench-00007 ran
        git("add", "-A", cwd=repo)
        start = time.perf_counter()
        git("commit", "-q", "-m", "what ran", cwd=repo)
        match = time.perf_counter() - start
        assert "Experiment-Run: bench-00007" in git("log", "-1", "--format=%B", cwd=repo)
        assert "exp/bench-00007" in git("tag", "--points-at", "HEAD", cwd=repo)

        overhead = hooked - base
        verdict = "ok" if overhead <= GOAL else "OVER GOAL"
        print(f"git commit without hooks:      {base * 1000:7.1f} ms (median of {a.commits})")
        print(f"git commit with gitexp hooks:  {hooked * 1000:7.1f} ms (median of {a.commits})")
        print(f"first commit, cold tree cache: {cold * 1000:7.1f} ms")
        print(f"commit just after a launch:    {statistics.median(fresh) * 1000:7.1f} ms "
              "(run refs listed again)")
        print(f"commit of what a run ran:      {match * 1000:7.1f} ms (tag + trailer)")
        print(f"CPU time per commit:           {base_cpu * 1000:7.1f} ms without, "
              f"{hooked_cpu * 1000:.1f} ms with the hooks (load-independent-ish; "
              f"load average now {os.getloadavg()[0]:.1f})")
        print(f"hook overhead per commit: {overhead * 1000:.1f} ms "
              f"(goal <= {GOAL * 1000:.0f} ms) {verdict}")
        return 0 if overhead <= GOAL else 1
    finally:
        if not a.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
