"""A pipeline shaped like DVC's tutorial (iterative/example-get-started), built from data the
test generates: prepare -> featurize -> train -> evaluate, params in params.yaml, dvclive
metrics and plots in eval/ (plain JSON when dvclive is not installed), a local DVC remote.

Stages use the standard library only, so `dvc repro` takes about a second.
"""

from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path

from tests.conftest import make_repo
from tests.helpers import BIN, git

PARAMS = """\
prepare:
  split: 0.2
  seed: 20170428
featurize:
  max_features: 20
train:
  seed: 20170428
  lr: 0.1
  epochs: 5
"""

DVC_YAML = """\
stages:
  prepare:
    cmd: python src/prepare.py data/data.csv
    deps:
    - data/data.csv
    - src/prepare.py
    params:
    - prepare.seed
    - prepare.split
    outs:
    - data/prepared
  featurize:
    cmd: python src/featurize.py data/prepared data/features
    deps:
    - data/prepared
    - src/featurize.py
    params:
    - featurize.max_features
    outs:
    - data/features
  train:
    cmd: python src/train.py data/features model.pkl
    deps:
    - data/features
    - src/train.py
    params:
    - train
    outs:
    - model.pkl
  evaluate:
    cmd: python src/evaluate.py model.pkl data/features
    deps:
    - data/features
    - model.pkl
    - src/evaluate.py
    outs:
    - eval
metrics:
- eval/metrics.json
plots:
- eval/plots/metrics:
    x: step
- ROC:
    x: fpr
    y:
      eval/plots/roc/test.json: tpr
"""

PREPARE = """\
import csv, os, random, sys
import yaml
p = yaml.safe_load(open("params.yaml"))["prepare"]
rows = list(csv.reader(open(sys.argv[1])))[1:]
random.Random(p["seed"]).shuffle(rows)
cut = int(len(rows) * p["split"])
os.makedirs("data/prepared", exist_ok=True)
for name, part in (("test.csv", rows[:cut]), ("train.csv", rows[cut:])):
    with open(os.path.join("data/prepared", name), "w", newline="") as f:
        csv.writer(f).writerows(part)
print("prepare: done", flush=True)
"""

FEATURIZE = """\
import csv, json, os, sys
import yaml
n = yaml.safe_load(open("params.yaml"))["featurize"]["max_features"]
os.makedirs(sys.argv[2], exist_ok=True)
for name in ("train", "test"):
    rows = list(csv.reader(open(os.path.join(sys.argv[1], name + ".csv"))))
    feats = [[float(x) for x in r[:-1]][:n] + [int(r[-1])] for r in rows]
    json.dump(feats, open(os.path.join(sys.argv[2], name + ".json"), "w"))
print("featurize: done", flush=True)
"""

TRAIN = """\
import json, os, pickle, sys
import yaml
p = yaml.safe_load(open("params.yaml"))["train"]
rows = json.load(open(os.path.join(sys.argv[1], "train.json")))
w = [0.0] * (len(rows[0]) - 1)
for _ in range(p["epochs"]):
    for r in rows:
        x, y = r[:-1], r[-1]
        err = sum(a * b for a, b in zip(w, x)) - (1 if y else -1)
        w = [a - p["lr"] * err * b / len(rows) for a, b in zip(w, x)]
pickle.dump({"w": w, "lr": p["lr"]}, open(sys.argv[2], "wb"))
print("train: done", flush=True)
"""

EVALUATE = """\
import json, os, pickle, sys
model = pickle.load(open(sys.argv[1], "rb"))

def score(split):
    rows = json.load(open(os.path.join(sys.argv[2], split + ".json")))
    s = [(sum(a * b for a, b in zip(model["w"], r[:-1])), r[-1]) for r in rows]
    pos = [v for v, y in s if y]
    neg = [v for v, y in s if not y]
    auc = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg) / max(1, len(pos) * len(neg))
    ranked = sorted(s, key=lambda t: -t[0])
    hits, prec = 0, 0.0
    for i, (_, y) in enumerate(ranked, 1):
        if y:
            hits += 1
            prec += hits / i
    roc = [{"fpr": i / 4, "tpr": min(1.0, auc + i / 8)} for i in range(5)]
    return prec / max(1, hits), auc, roc

try:
    from dvclive import Live
except ImportError:
    Live = None
results = {split: score(split) for split in ("train", "test")}
# A test's stand-in for nondeterminism (float noise, a real change): PIPE_NOISE is added to
# avg_prec.test
noise = float(os.environ.get("PIPE_NOISE", "0"))
results["test"] = (results["test"][0] + noise, *results["test"][1:])
if Live is not None:
    with Live("eval", dvcyaml=False, save_dvc_exp=False) as live:
        for step in range(3):
            live.log_metric("loss", 1.0 / (step + 1 + model["lr"]))
            live.next_step()
        live.summary = {"avg_prec": {k: v[0] for k, v in results.items()},
                        "roc_auc": {k: v[1] for k, v in results.items()}}
else:
    os.makedirs("eval/plots/metrics", exist_ok=True)
    with open("eval/metrics.json", "w") as f:
        json.dump({"avg_prec": {k: v[0] for k, v in results.items()},
                   "roc_auc": {k: v[1] for k, v in results.items()}}, f, indent=4)
    with open("eval/plots/metrics/loss.tsv", "w") as f:
        f.write("step\\tloss\\n" + "".join(f"{s}\\t{1.0 / (s + 1 + model['lr'])}\\n"
                                           for s in range(3)))
os.makedirs("eval/plots/roc", exist_ok=True)
json.dump({"roc": results["test"][2]}, open("eval/plots/roc/test.json", "w"), indent=2)
print("evaluate: done", flush=True)
"""

DVC_GITIGNORE = "/config.local\n/tmp\n/cache\n"


def dvc(root: Path, *args: str) -> str:
    """The real `dvc` command line, in `root`."""
    proc = subprocess.run([str(BIN / "dvc"), *args], cwd=root, capture_output=True, text=True,
                          check=False, env=None)
    if proc.returncode != 0:
        raise AssertionError(f"dvc {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout + proc.stderr


def generate_data(rows: int = 200, features: int = 6, seed: int = 7) -> str:
    rng = random.Random(seed)
    lines = [",".join([f"f{i}" for i in range(features)] + ["label"])]
    for _ in range(rows):
        label = rng.random() < 0.4
        xs = [rng.gauss(0.8 if label and i % 2 == 0 else 0.0, 1.0) for i in range(features)]
        lines.append(",".join([f"{x:.5f}" for x in xs] + [str(int(label))]))
    return "\n".join(lines) + "\n"


def make_pipeline(root: Path, *, repro: bool = True, push: bool = True) -> Path:
    """The project at `root` (a git repo, committed), its remote at `root.parent/<name>-remote`.
    With `repro`, `dvc repro` has run and dvc.lock is committed; with `push`, every object
    (data and outputs) is on the remote too."""
    files = {"params.yaml": PARAMS, "dvc.yaml": DVC_YAML, "src/prepare.py": PREPARE,
             "src/featurize.py": FEATURIZE, "src/train.py": TRAIN, "src/evaluate.py": EVALUATE,
             "data/data.csv": generate_data(), ".dvcignore": "",
             ".dvc/.gitignore": DVC_GITIGNORE, ".dvc/config": ""}
    make_repo(root, files, commit=False)
    remote = root.parent / f"{root.name}-remote"
    remote.mkdir(exist_ok=True)
    # Relative (DVC keeps it relative to .dvc/): a copy of both directories is a new pair.
    dvc(root, "remote", "add", "-d", "local", f"../{remote.name}")
    dvc(root, "add", "data/data.csv")
    git("add", "-A", cwd=root)
    git("commit", "-qm", "pipeline", cwd=root)
    if repro:
        dvc(root, "repro")
        git("add", "-A", cwd=root)
        git("commit", "-qm", "repro", cwd=root)
    if push:
        dvc(root, "push")
    return root


def copy_pipeline(template: Path, parent: Path) -> Path:
    """A copy of a `make_pipeline` project and its remote under `parent`, same names (the
    remote is configured by relative path); much cheaper than building one."""
    root = parent / template.name
    shutil.copytree(template, root, symlinks=True)
    remote = f"{template.name}-remote"
    shutil.copytree(template.parent / remote, parent / remote, symlinks=True)
    # Absolute again: a worker's checkout (.git/gitexp/work/...) would resolve a relative
    # remote against itself.
    config = root / ".dvc" / "config"
    config.write_text(config.read_text().replace(f"../../{remote}", str(parent / remote)))
    git("commit", "-qam", "the remote, here", cwd=root)
    return root
