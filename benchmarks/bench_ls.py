"""How fast is `git exp ls` at 10,000 runs, cold (no index) and warm, and beside `dvc exp show`?
And `git exp ls --json` (every record and result whole) beside the table of every run
(`ls --all`; plain `ls` shows a page of the newest, timed too), in the same run.

    .venv/bin/python benchmarks/bench_ls.py [--runs 10000] [--dvc-runs 1000] [--keep DIR]

Runs are generated with `git fast-import`, which writes the very objects gitexp's own write
path makes (the snapshot commit S, then the results commit R with `.gitexp-results/`, both
carrying `record.encode_message`), only thousands of times faster than launching each.
DVC experiments are generated the same way: the commit `dvc exp run` makes (parent = the
baseline, tree with the experiment's params.yaml, metrics.json and dvc.lock, message
`dvc: commit experiment <hash>`) under `refs/exps/<sha[:2]>/<sha[2:]>/<name>`.
Goals: warm <= 0.5 s, cold <= 3 s at 10,000 runs; `ls --json` warm within the table's goal.
"""

from __future__ import annotations

import argparse
import hashlib
import json
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
from gitexp.model.ids import _ALPHABET
from gitexp.model.record import Environment, Result, RunRecord, encode_message

IDENT = "gitexp <gitexp@localhost>"
BIN = Path(sys.executable).parent
ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
       "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@localhost",
       "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@localhost"}
TRAIN = """import json, yaml
p = yaml.safe_load(open("params.yaml"))
json.dump({"loss": p["train"]["lr"] * 2, "acc": 1 - p["train"]["lr"]}, open("metrics.json", "w"))
"""
DVC_YAML = """stages:
  train:
    cmd: python train.py
    deps:
    - train.py
    params:
    - train
    metrics:
    - metrics.json:
        cache: false
"""


def sh(*argv: str, cwd: Path, stdin: bytes | None = None) -> str:
    proc = subprocess.run(argv, cwd=cwd, env=ENV, input=stdin, capture_output=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {proc.stderr.decode()}")
    return proc.stdout.decode()


CPU: list[float] = []  # CPU seconds of each timed command (and its children): load-proof


def timed(argv: list[str], cwd: Path) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(argv, cwd=cwd, env=ENV, stdout=subprocess.DEVNULL, check=True)
    took = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    CPU.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return took


def make_repo(path: Path, dvc: bool) -> str:
    path.mkdir(parents=True)
    sh("git", "init", "-q", cwd=path)
    (path / "train.py").write_text(TRAIN)
    (path / "params.yaml").write_text("train:\n  lr: 0.01\n  seed: 1\n")
    if dvc:
        sh("dvc", "init", "-q", cwd=path)
        (path / "dvc.yaml").write_text(DVC_YAML)
    sh("git", "add", "-A", cwd=path)
    sh("git", "commit", "-qm", "baseline", cwd=path)
    return sh("git", "rev-parse", "HEAD", cwd=path).strip()


EPOCH = 1782864000  # 2026-07-01 00:00 UTC


def run_id(i: int) -> str:
    """Run i's id as gitexp names it (`ids.new_id`): launched i minutes after EPOCH (runs
    launch a minute apart), so ids sort in launch order as a real repository's do."""
    suffix = "".join(_ALPHABET[(i // len(_ALPHABET) ** k) % len(_ALPHABET)] for k in range(4))
    return f"train-{time.strftime('%m%d-%H%M', time.gmtime(EPOCH + 60 * i))}-{suffix}"


def _data(blob: bytes) -> bytes:
    return b"data %d\n%s\n" % (len(blob), blob)


def params_of(i: int) -> tuple[float, int]:
    return round(0.0001 * (1 + i % 97), 6), i


def gitexp_stream(repo: Path, base: str, n: int, packages: str) -> bytes:
    out = bytearray()
    now = time.time()
    for i in range(n):
        lr, seed = params_of(i)
        launched = now - (n - i) * 60.0
        rid = run_id(i)
        rec = RunRecord(
            id=rid, argv=["python", "train.py", "--lr", str(lr), "--seed", str(seed)], cwd="",
            base=base, branch="main", user="Bench <bench@localhost>", launched_at=launched,
            target="local", backend="local", store=(repo / ".git/gitexp/store").as_uri(),
            env=Environment(python="3.11.7", platform="Linux-x86_64", packages=packages),
            name=None, outs=[],
        )
        metrics = {"loss": round(lr * 2 + seed % 7 * 1e-3, 6), "acc": round(1 - lr, 6)}
        res = Result(status="failed" if i % 10 == 9 else "succeeded",
                     exit_code=1 if i % 10 == 9 else 0, started_at=launched + 0.2,
                     ended_at=launched + 30.0, host="bench", metrics=metrics)
        stamp = f"{int(launched)} +0000".encode()
        who = f"{IDENT} ".encode() + stamp
        # S: the work tree with one uncommitted change, parent = the base commit
        out += b"commit refs/experiments/%s\nmark :%d\nauthor %s\ncommitter %s\n" % (
            rid.encode(), i + 1, who, who)
        out += _data(encode_message(rec, None).encode()) + f"from {base}\n".encode()
        out += b"M 100644 inline train.py\n" + _data(TRAIN.encode() + f"# run {i}\n".encode())
        # R: S's tree plus .gitexp-results/, exactly the files results.write_back writes
        stamp = f"{int(launched) + 30} +0000".encode()
        who = f"{IDENT} ".encode() + stamp
        out += b"commit refs/experiments/%s\nauthor %s\ncommitter %s\n" % (rid.encode(), who, who)
        out += _data(encode_message(rec, res).encode()) + b"from :%d\n" % (i + 1)
        files = {
            "log.txt": f"epoch 1 loss {metrics['loss']}\n".encode(),
            "metrics.jsonl": (json.dumps({"step": 1, **metrics}) + "\n").encode(),
            "record.json": json.dumps(rec.to_dict(), indent=2, sort_keys=True).encode(),
            "result.json": json.dumps(res.to_dict(), indent=2, sort_keys=True).encode(),
        }
        for name, blob in files.items():
            out += f"M 100644 inline .gitexp-results/{name}\n".encode() + _data(blob)
        out += f"M 100644 {packages} .gitexp-results/packages.txt\n\n".encode()
    return bytes(out)


def dvc_stream(base: str, n: int) -> bytes:
    out = bytearray()
    now = int(time.time())
    for i in range(n):
        lr, seed = params_of(i)
        params = f"train:\n  lr: {lr}\n  seed: {seed}\n".encode()
        mets = json.dumps({"loss": lr * 2, "acc": 1 - lr}).encode()
        code_md5, mets_md5 = hashlib.md5(TRAIN.encode()).hexdigest(), hashlib.md5(mets).hexdigest()
        lock = (
            "schema: '2.0'\nstages:\n  train:\n    cmd: python train.py\n    deps:\n"
            f"    - path: train.py\n      hash: md5\n      md5: {code_md5}\n"
            f"      size: {len(TRAIN)}\n    params:\n      params.yaml:\n        train:\n"
            f"          lr: {lr}\n          seed: {seed}\n    outs:\n    - path: metrics.json\n"
            f"      hash: md5\n      md5: {mets_md5}\n      size: {len(mets)}\n"
        ).encode()
        ref = f"refs/exps/{base[:2]}/{base[2:]}/exp-{i:05d}"
        who = f"bench <bench@localhost> {now - n + i} +0000".encode()
        msg = f"dvc: commit experiment {hashlib.sha256(params).hexdigest()}".encode()
        out += b"commit %s\nauthor %s\ncommitter %s\n" % (ref.encode(), who, who)
        out += _data(msg) + f"from {base}\n".encode()
        for name, blob in (("params.yaml", params), ("metrics.json", mets), ("dvc.lock", lock)):
            out += f"M 100644 inline {name}\n".encode() + _data(blob)
        out += b"\n"
    return bytes(out)


def gen_gitexp(path: Path, base: str, n: int) -> float:
    start = time.perf_counter()
    packages = Repo.discover(path).hash_object(b"numpy==2.1.0\nrich==13.9.0\ntorch==2.5.1\n")
    sh("git", "fast-import", "--quiet", cwd=path, stdin=gitexp_stream(path, base, n, packages))
    return time.perf_counter() - start


def time_ls(path: Path, *args: str, repeats: int = 3) -> tuple[float, float, float, float]:
    """Median wall and CPU seconds of `git exp ls ARGS`, cold (index deleted) and warm."""
    cold, cold_cpu = [], []
    for _ in range(repeats):
        for extra in ("", "-wal", "-shm"):
            (path / f".git/gitexp/index.sqlite{extra}").unlink(missing_ok=True)
        cold.append(timed(["git", "exp", "ls", *args], path))
        cold_cpu.append(CPU[-1])
    warm, warm_cpu = [], []
    for _ in range(repeats):
        warm.append(timed(["git", "exp", "ls", *args], path))
        warm_cpu.append(CPU[-1])
    return (statistics.median(cold), statistics.median(warm), statistics.median(cold_cpu),
            statistics.median(warm_cpu))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10_000)
    ap.add_argument("--dvc-runs", type=int, default=1_000)
    ap.add_argument("--keep", type=Path, help="build the repositories here and keep them")
    a = ap.parse_args()
    root = a.keep or Path(tempfile.mkdtemp(prefix="bench-ls-"))
    try:
        big = root / "gitexp"
        base = make_repo(big, dvc=False)
        took = gen_gitexp(big, base, a.runs)
        # `ls` shows a page of the newest runs; `--all` every run, as `--json` prints them
        lines = len(sh("git", "exp", "ls", "--all", cwd=big).splitlines()) - 1
        assert lines == a.runs, f"ls --all shows {lines} runs, expected {a.runs}"
        cold, warm, cold_cpu, warm_cpu = time_ls(big, "--all")
        _, page, _, page_cpu = time_ls(big)
        print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs "
              "(wall times suffer under load; CPU times do not)")
        print(f"generated {a.runs} gitexp runs in {took:.1f}s (git fast-import)")
        print(f"git exp ls --all @ {a.runs}: cold {cold:.3f}s (goal <= 3s)   "
              f"warm {warm:.3f}s (goal <= 0.5s)   [CPU: cold {cold_cpu:.3f}s, "
              f"warm {warm_cpu:.3f}s]")
        print(f"git exp ls (a page of the newest) @ {a.runs}: warm {page:.3f}s "
              f"[CPU {page_cpu:.3f}s]")
        printed = json.loads(sh("git", "exp", "ls", "--json", cwd=big))
        assert len(printed) == a.runs, f"ls --json prints {len(printed)} runs, not {a.runs}"
        j_cold, j_warm, j_cold_cpu, j_warm_cpu = time_ls(big, "--json")
        print(f"git exp ls --json @ {a.runs}: cold {j_cold:.3f}s   warm {j_warm:.3f}s "
              f"(goal <= 0.5s, the table's)   [CPU: cold {j_cold_cpu:.3f}s, "
              f"warm {j_warm_cpu:.3f}s]   ratio to the table (--all), warm: {j_warm / warm:.2f}x "
              f"(CPU {j_warm_cpu / warm_cpu:.2f}x)")
        sh("git", "pack-refs", "--all", cwd=big)  # what `git gc` does to a repo's refs
        _, packed, _, packed_cpu = time_ls(big, "--all")
        print(f"git exp ls --all @ {a.runs}, refs packed: warm {packed:.3f}s "
              f"[CPU {packed_cpu:.3f}s]")
        if a.dvc_runs:
            side = root / "dvc"
            base = make_repo(side, dvc=True)
            sh("git", "fast-import", "--quiet", cwd=side, stdin=dvc_stream(base, a.dvc_runs))
            gen_gitexp(side, base, a.dvc_runs)
            shows = sh("dvc", "exp", "show", "--csv", cwd=side).count("exp-")
            assert shows == a.dvc_runs, f"dvc exp show lists {shows}, expected {a.dvc_runs}"
            shutil.rmtree(side / ".dvc/tmp/exps/cache", ignore_errors=True)
            dvc_cold = timed(["dvc", "exp", "show", "--no-pager"], side)
            dvc_cold_cpu = CPU[-1]
            dvc_warm = statistics.median(
                timed(["dvc", "exp", "show", "--no-pager"], side) for _ in range(3))
            dvc_warm_cpu = statistics.median(CPU[-3:])
            g_cold, g_warm, g_cold_cpu, g_warm_cpu = time_ls(side, "--all")
            n = a.dvc_runs
            print(f"dvc exp show @ {n}: cold {dvc_cold:.3f}s   warm {dvc_warm:.3f}s   "
                  f"[CPU: cold {dvc_cold_cpu:.3f}s, warm {dvc_warm_cpu:.3f}s]")
            print(f"git exp ls --all @ {n}: cold {g_cold:.3f}s   warm {g_warm:.3f}s   "
                  f"[CPU: cold {g_cold_cpu:.3f}s, warm {g_warm_cpu:.3f}s]")
            print(f"ratio dvc/gitexp @ {n}: cold {dvc_cold / g_cold:.1f}x   "
                  f"warm {dvc_warm / g_warm:.1f}x   (CPU: cold "
                  f"{dvc_cold_cpu / g_cold_cpu:.1f}x, warm {dvc_warm_cpu / g_warm_cpu:.1f}x)")
    finally:
        if not a.keep:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
