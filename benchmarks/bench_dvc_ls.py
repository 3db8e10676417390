"""Issue 16: `git exp ls` with 1,000 runs of a DVC pipeline vs `dvc exp show` on the same
experiments, cold and warm.

How the 1,000 experiments are made (honestly, and cheaply): the tutorial-shaped pipeline of
tests/dvcpipe.py is built and `dvc repro`'d, then `--real` experiments are made by real
`dvc exp run -S train.lr=...`. The rest are written with plain git in DVC's own layout, each a
commit on the baseline under `refs/exps/<baseline[:2]>/<baseline[2:]>/<name>` whose
params.yaml has its own train.lr and whose dvc.lock pins its own `eval` directory, written
into the DVC cache as DVC does (the files by md5, a `.dir` listing): so `dvc exp show` reads
a metrics file per experiment, from the cache, exactly as for a real one. `git exp import
dvc` then turns all of them into runs (timed too).

Cold: `git exp ls` without its index (.git/gitexp/ index removed), `dvc exp show` without
its cache (.dvc/tmp/exps/cache removed). Warm: the second and later calls (median).

    python benchmarks/bench_dvc_ls.py [--exps 1000] [--real 3] [--repeat 3] [--dir DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from _common import ENV  # noqa: E402

ENV = {**ENV, "DVC_NO_ANALYTICS": "1"}


def run(*args: str, cwd: Path) -> str:
    return subprocess.run(args, cwd=cwd, check=True, capture_output=True, text=True,
                          env=ENV).stdout


def timed(*args: str, cwd: Path) -> float:
    t = time.perf_counter()
    run(*args, cwd=cwd)
    return time.perf_counter() - t


def put(cache: Path, data: bytes) -> str:
    md5 = hashlib.md5(data).hexdigest()
    obj = cache / "files" / "md5" / md5[:2] / md5[2:]
    obj.parent.mkdir(parents=True, exist_ok=True)
    obj.write_bytes(data)
    return md5


def fake_exps(root: Path, count: int) -> None:
    """`count` experiments in DVC's ref layout, each with its own lr and eval/ outputs."""
    base = run("git", "rev-parse", "HEAD", cwd=root).strip()
    params = (root / "params.yaml").read_text()
    lock = (root / "dvc.lock").read_text()
    import yaml

    eval_hash = yaml.safe_load(lock)["stages"]["evaluate"]["outs"][0]["md5"]
    cache = root / ".dvc" / "cache"
    stream = []
    for i in range(count):
        lr = 0.001 * (i + 1)
        metrics = json.dumps({"avg_prec": {"train": 0.8 + lr / 10, "test": 0.7 + lr / 20},
                              "roc_auc": {"train": 0.85, "test": 0.82 - lr / 30}, "step": 3},
                             indent=4).encode()
        listing = json.dumps([{"md5": put(cache, metrics), "relpath": "metrics.json"}],
                             sort_keys=True).encode()
        dir_hash = put(cache, listing) + ".dir"
        files = {"params.yaml": params.replace("lr: 0.1", f"lr: {lr}"),
                 "dvc.lock": lock.replace(eval_hash, dir_hash)}
        stream.append(f"commit refs/exps/{base[:2]}/{base[2:]}/bench-{i:04d}\n"
                      f"committer bench <b@x> {1700000000 + i} +0000\n"
                      f"data 3\nexp\nfrom {base}\n")
        for name, text in files.items():
            data = text.encode()
            stream.append(f"M 100644 inline {name}\ndata {len(data)}\n")
            stream.append(text + "\n")
    subprocess.run(["git", "fast-import", "--quiet"], input="".join(stream).encode(), cwd=root,
                   check=True, env=ENV)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--exps", type=int, default=1000)
    ap.add_argument("--real", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dir")
    a = ap.parse_args()
    work = Path(a.dir or tempfile.mkdtemp(prefix="bench-dvc-ls-"))
    home = work / "home"
    home.mkdir(parents=True, exist_ok=True)
    (home / ".gitconfig").write_text("[user]\n\tname = bench\n\temail = b@x\n"
                                     "[init]\n\tdefaultBranch = main\n")
    os.environ.update(HOME=str(home), GIT_CONFIG_GLOBAL=str(home / ".gitconfig"),
                      DVC_NO_ANALYTICS="1")
    ENV.update(HOME=str(home), GIT_CONFIG_GLOBAL=str(home / ".gitconfig"),
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    from tests.dvcpipe import make_pipeline

    root = make_pipeline(work / "proj", push=False)
    for i in range(a.real):
        run("dvc", "exp", "run", "-S", f"train.lr={0.2 + i / 10}", cwd=root)
    run("git", "checkout", "-q", "--", ".", cwd=root)  # exp run applied its last result
    t = time.perf_counter()
    fake_exps(root, a.exps - a.real)
    built = time.perf_counter() - t
    t = time.perf_counter()
    out = run("git", "exp", "import", "dvc", cwd=root)
    imported = time.perf_counter() - t
    rows = len(json.loads(run("git", "exp", "ls", "--json", cwd=root)))
    show = json.loads(run("dvc", "exp", "show", "--json", cwd=root))
    shown = sum(len(e["revs"]) for b in show for e in b.get("experiments") or [])
    if rows != a.exps or shown != a.exps:
        sys.exit(f"expected {a.exps} runs: git exp ls has {rows}, dvc exp show {shown}")

    def cold_ls() -> float:
        for f in (root / ".git" / "gitexp").glob("index.sqlite*"):  # -wal, -shm too
            f.unlink()
        return timed("git", "exp", "ls", cwd=root)

    def cold_show() -> float:
        shutil.rmtree(root / ".dvc" / "tmp" / "exps" / "cache", ignore_errors=True)
        return timed("dvc", "exp", "show", "--no-pager", cwd=root)

    figures = {
        "git exp ls, cold": [cold_ls() for _ in range(a.repeat)],
        "git exp ls, warm": [timed("git", "exp", "ls", cwd=root) for _ in range(a.repeat)],
        "dvc exp show, cold": [cold_show() for _ in range(a.repeat)],
        "dvc exp show, warm": [timed("dvc", "exp", "show", "--no-pager", cwd=root)
                               for _ in range(a.repeat)],
    }
    print(f"{a.exps} experiments ({a.real} by `dvc exp run`, {a.exps - a.real} written in "
          f"DVC's layout in {built:.1f} s); `git exp import dvc`: {imported:.1f} s "
          f"({out.strip().splitlines()[-1]})")
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    for name, times in figures.items():
        print(f"{name:22s} median {sorted(times)[len(times) // 2]:6.2f} s   "
              f"(runs: {', '.join(f'{x:.2f}' for x in times)})")


if __name__ == "__main__":
    main()
