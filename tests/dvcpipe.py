"""A pipeline shaped like DVC's tutorial (iterative/example-get-started), built in a test from
data it generates: prepare -> featurize -> train -> evaluate, params in `params.yaml`, the
raw data tracked with `dvc add`, a local DVC remote, metrics and plots written by dvclive into
`eval/` (by hand in dvclive's shapes when dvclive is not installed).

The stages use only the standard library (and dvclive), so `dvc repro` takes about a second.
Building one costs several `dvc` calls: build it once per module and `copy_pipeline` it for
each test that changes it.

    make_pipeline(root) -> root        # committed, repro'd, everything pushed
    copy_pipeline(root, parent) -> copy   # the same project and its own remote, under parent
    dvc(root, *args) -> stdout         # the real `dvc` command line

`PIPE_NOISE` in the environment of `evaluate` is added to avg_prec.test: a test's stand-in
for nondeterminism (float noise, a real change).
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
  split: 0.25
  seed: 20170428

featurize:
  max_features: 3
  ngrams: 2

train:
  seed: 20170428
  n_est: 20
  lr: 0.1
"""

# The tutorial's dvc.yaml, stage for stage; dvclive's series directory declared as a plot.
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
    cmd: python src/featurization.py data/prepared data/features
    deps:
    - data/prepared
    - src/featurization.py
    params:
    - featurize.max_features
    - featurize.ngrams
    outs:
    - data/features
  train:
    cmd: python src/train.py data/features model.pkl
    deps:
    - data/features
    - src/train.py
    params:
    - train.lr
    - train.n_est
    - train.seed
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
- ROC:
    template: simple
    x: fpr
    y:
      eval/plots/sklearn/roc/train.json: tpr
      eval/plots/sklearn/roc/test.json: tpr
- eval/plots/metrics:
    x: step
"""

PARAMS_READER = '''\
def params(section):
    """`section` of params.yaml (two levels, scalars): no YAML library needed."""
    out, current = {}, None
    for line in open("params.yaml", encoding="utf-8"):
        if line.strip() and not line.startswith(" "):
            current = line.split(":")[0].strip()
        elif line.strip() and current == section:
            key, value = (s.strip() for s in line.split(":", 1))
            out[key] = float(value) if "." in value else int(value)
    return out
'''

PREPARE = PARAMS_READER + '''
import os, random, sys
p = params("prepare")
rows = open(sys.argv[1], encoding="utf-8").read().splitlines()
head, rows = rows[0], rows[1:]
random.Random(p["seed"]).shuffle(rows)
cut = int(len(rows) * p["split"])
os.makedirs("data/prepared", exist_ok=True)
for name, part in (("test", rows[:cut]), ("train", rows[cut:])):
    with open(f"data/prepared/{name}.csv", "w", encoding="utf-8") as f:
        f.write("\\n".join([head, *part]) + "\\n")
'''

FEATURIZE = PARAMS_READER + '''
import os, sys
p = params("featurize")
os.makedirs(sys.argv[2], exist_ok=True)
for name in ("train", "test"):
    lines = open(f"{sys.argv[1]}/{name}.csv", encoding="utf-8").read().splitlines()[1:]
    with open(f"{sys.argv[2]}/{name}.csv", "w", encoding="utf-8") as out:
        for line in lines:
            label, *xs = line.split(",")
            feats = [float(x) for x in xs][: p["max_features"]]
            feats += [v ** p["ngrams"] for v in feats]
            out.write(",".join([label, *(f"{v:.6f}" for v in feats)]) + "\\n")
'''

TRAIN = PARAMS_READER + '''
import math, pickle, random, sys
p = params("train")
rows = [line.split(",") for line in open(f"{sys.argv[1]}/train.csv", encoding="utf-8")]
data = [(int(r[0]), [float(v) for v in r[1:]]) for r in rows]
rng = random.Random(p["seed"])
w, b, history = [0.0] * len(data[0][1]), 0.0, []
for epoch in range(p["n_est"]):
    rng.shuffle(data)
    loss = 0.0
    for y, x in data:
        z = max(-30.0, min(30.0, b + sum(wi * xi for wi, xi in zip(w, x))))
        prob = 1 / (1 + math.exp(-z))
        loss -= math.log(prob if y else 1 - prob)
        g = (prob - y) * p["lr"]
        w = [wi - g * xi for wi, xi in zip(w, x)]
        b -= g
    history.append(loss / len(data))
with open(sys.argv[2], "wb") as f:
    pickle.dump({"w": w, "b": b, "history": history}, f)
'''

EVALUATE = '''\
import json, math, os, pickle, sys
model = pickle.load(open(sys.argv[1], "rb"))

def scores(name):
    out = []
    for line in open(f"{sys.argv[2]}/{name}.csv", encoding="utf-8"):
        y, *x = line.split(",")
        z = model["b"] + sum(w * float(v) for w, v in zip(model["w"], x))
        out.append((1 / (1 + math.exp(-max(-30.0, min(30.0, z)))), int(y)))
    return sorted(out, reverse=True)

def avg_prec(s):
    hits, total = 0, 0.0
    for i, (_, y) in enumerate(s, 1):
        if y:
            hits += 1
            total += hits / i
    return total / max(hits, 1)

def roc(s):
    pos = sum(y for _, y in s) or 1
    neg = (len(s) - sum(y for _, y in s)) or 1
    tp = fp = 0
    points = [{"fpr": 0.0, "tpr": 0.0, "threshold": 1.0}]
    for score, y in s:
        tp, fp = tp + y, fp + (1 - y)
        points.append({"fpr": fp / neg, "tpr": tp / pos, "threshold": score})
    auc = sum((b["fpr"] - a["fpr"]) * (a["tpr"] + b["tpr"]) / 2
              for a, b in zip(points, points[1:]))
    return points, auc

summary = {"avg_prec": {}, "roc_auc": {}}
curves = {}
for split in ("train", "test"):
    s = scores(split)
    curves[split], summary["roc_auc"][split] = roc(s)
    summary["avg_prec"][split] = avg_prec(s)
summary["avg_prec"]["test"] += float(os.environ.get("PIPE_NOISE", "0"))

try:
    from dvclive import Live
except ImportError:  # dvclive's shapes, by hand
    os.makedirs("eval/plots/metrics/train", exist_ok=True)
    with open("eval/plots/metrics/train/loss.tsv", "w", encoding="utf-8") as f:
        f.write("step\\tloss\\n")
        for step, loss in enumerate(model["history"]):
            f.write(f"{step}\\t{loss}\\n")
    summary.update(step=len(model["history"]) - 1, train={"loss": model["history"][-1]})
    json.dump(summary, open("eval/metrics.json", "w"), indent=4)
else:
    with Live("eval", dvcyaml=False, save_dvc_exp=False) as live:
        for loss in model["history"]:
            live.log_metric("train/loss", loss)
            live.next_step()
        live.summary.update(summary)
for split, points in curves.items():
    os.makedirs("eval/plots/sklearn/roc", exist_ok=True)
    with open(f"eval/plots/sklearn/roc/{split}.json", "w", encoding="utf-8") as f:
        json.dump({"roc": points}, f)
'''

GITIGNORE = "/model.pkl\n/eval\n"
DATA_GITIGNORE = "/data.csv\n/prepared\n/features\n"


def generate(n: int = 240, seed: int = 7) -> str:
    """A labelled CSV: two informative features and one of noise."""
    rng = random.Random(seed)
    lines = ["label,x1,x2,x3"]
    for _ in range(n):
        label = rng.random() < 0.4
        centre = 1.0 if label else -0.5
        xs = [rng.gauss(centre, 1.0), rng.gauss(centre / 2, 1.0), rng.gauss(0, 1.0)]
        lines.append(",".join([str(int(label)), *(f"{x:.5f}" for x in xs)]))
    return "\n".join(lines) + "\n"


def make_pipeline(root: Path, *, remote: Path | None = None, repro: bool = True,
                  push: bool = True) -> Path:
    """The tutorial-shaped project at `root`, a committed git + DVC repository whose default
    DVC remote `local` is `remote`. Without `remote`, it is `<root>-remote` next to `root`,
    configured by relative path so that `copy_pipeline` can pair a copy with a copy of it.
    With `repro`, `dvc repro` has run and dvc.lock is committed; with `push`, every object in
    the DVC cache (the data, and the stages' outputs if repro'd) is on the remote."""
    if remote is None:
        remote = root.parent / f"{root.name}-remote"
        url = f"../../{remote.name}"  # relative to .dvc/
    else:
        url = str(remote)
    remote.mkdir(parents=True, exist_ok=True)
    files = {
        "params.yaml": PARAMS, "dvc.yaml": DVC_YAML, ".gitignore": GITIGNORE,
        "data/.gitignore": DATA_GITIGNORE, "data/data.csv": generate(),
        "src/prepare.py": PREPARE, "src/featurization.py": FEATURIZE, "src/train.py": TRAIN,
        "src/evaluate.py": EVALUATE,
        # What `dvc init` + `dvc remote add -d` write, without two slow `dvc` calls.
        ".dvcignore": "", ".dvc/.gitignore": "/config.local\n/tmp\n/cache\n",
        ".dvc/config": f"[core]\n    remote = local\n    analytics = false\n"
                       f"['remote \"local\"']\n    url = {url}\n",
    }
    make_repo(root, files, commit=False)
    dvc(root, "add", "-q", "data/data.csv")
    git("add", "-A", cwd=root)
    git("commit", "-qm", "tutorial-shaped pipeline", cwd=root)
    if repro:
        dvc(root, "repro", "-q")
        git("add", "-A", cwd=root)
        git("commit", "-qm", "repro", cwd=root)
    if push:
        dvc(root, "push", "-q")
    return root


def copy_pipeline(template: Path, parent: Path) -> Path:
    """A copy of a `make_pipeline(template)` project (default remote) and of its remote under
    `parent`, same names; much cheaper than building one. The copy's remote is absolute and
    committed: a worker's checkout (.git/gitexp/work/...) would resolve a relative one
    against itself."""
    root = parent / template.name
    remote = f"{template.name}-remote"
    shutil.copytree(template, root, symlinks=True)
    shutil.copytree(template.parent / remote, parent / remote, symlinks=True)
    config = root / ".dvc" / "config"
    relative = f"url = ../../{remote}\n"
    assert relative in config.read_text(), "copy_pipeline needs make_pipeline's own remote"
    config.write_text(config.read_text().replace(relative, f"url = {parent / remote}\n"))
    git("commit", "-qam", "the remote, here", cwd=root)
    return root


def dvc(root: Path, *args: str) -> str:
    """Real DVC, as its user would call it; its stdout."""
    proc = subprocess.run([str(BIN / "dvc"), *args], cwd=root, capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0:
        raise AssertionError(f"dvc {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout
