"""`git exp import dvc` against real `dvc exp run` experiments on the tutorial-shaped
pipeline (tests/dvcpipe): runs like any other for ls/show/diff, marked imported, idempotent;
what refs/exps holds is untrusted."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import make_repo
from tests.dvcpipe import copy_pipeline, dvc, make_pipeline
from tests.helpers import exp, git, own_home

# One worker builds the module's fixture, not each of them.
pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.xdist_group("dvc_import")]


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One built pipeline (repro'd, nothing pushed) per module; tests work on copies."""
    base = tmp_path_factory.mktemp("pipe")
    with own_home(base):
        yield make_pipeline(base / "proj", push=False)


def test_dvc_experiments_become_runs_once_and_read_like_any_other(template: Path,
                                                                  tmp_path: Path) -> None:
    root = copy_pipeline(template, tmp_path)
    for lr in ("0.2", "0.05"):
        dvc(root, "exp", "run", "-S", f"train.lr={lr}")
    exps = git("for-each-ref", "--format=%(refname)", "refs/exps/", cwd=root).split()
    assert len([r for r in exps if "/exec/" not in r]) == 2

    first = exp("import", "dvc", cwd=root)
    assert "imported 2, already imported 0, refused 0" in first.stdout, first.stdout
    again = exp("import", "dvc", cwd=root)  # idempotent: nothing new, nothing changed
    assert "imported 0, already imported 2, refused 0" in again.stdout

    rows = json.loads(exp("ls", "--json", cwd=root).stdout)
    assert len(rows) == 2 and {r["status"] for r in rows} == {"succeeded"}
    by_lr, ours = {}, []
    for row in rows:
        shown = json.loads(exp("show", row["id"], "--json", cwd=root).stdout)
        assert shown["record"]["target"] == "dvc-exp"  # marked imported
        assert shown["record"]["env"]["python"] == "" and shown["record"]["seal"] is None
        assert shown["record"]["argv"] == ["dvc", "exp", "run"]
        metrics = shown["result"]["metrics"]
        assert {"avg_prec.test", "avg_prec.train", "roc_auc.test"} <= metrics.keys()
        ours.append(metrics["avg_prec.test"])
        assert {"model.pkl", "eval"} <= shown["result"]["outputs"].keys()
        assert shown["own"] is False  # not launched here: rerun asks for --trust
        params = git("show", f"{shown['snapshot']}:params.yaml", cwd=root)
        by_lr["0.2" if "lr: 0.2" in params else "0.05"] = row["id"]
    assert by_lr.keys() == {"0.2", "0.05"}
    # The same numbers DVC shows for the same experiments.
    shown_by_dvc = dvc(root, "exp", "show", "--json")
    table = json.loads(shown_by_dvc[shown_by_dvc.index("["):])
    dvc_values = sorted(rev["data"]["metrics"]["eval/metrics.json"]["data"]["avg_prec"]["test"]
                        for base in table for e in base.get("experiments") or []
                        for rev in e["revs"])
    assert sorted(ours) == pytest.approx(dvc_values)

    text = exp("show", by_lr["0.2"], cwd=root).stdout
    assert "python     (not recorded)" in text and " on \n" not in text
    diff = exp("diff", by_lr["0.05"], by_lr["0.2"], cwd=root).stdout
    assert "train.lr: 0.05 -> 0.2" in diff and "avg_prec.test" in diff
    where = exp("ls", "--where", "train.lr > 0.1", "--json", cwd=root).stdout
    assert [r["id"] for r in json.loads(where)] == [by_lr["0.2"]]


def test_a_forged_experiment_ref_is_refused_and_the_rest_imported(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "proj", {"params.yaml": "train:\n  lr: 1\n"})
    head = git("rev-parse", "HEAD", cwd=root).strip()
    tree = git("rev-parse", "HEAD^{tree}", cwd=root).strip()
    # Written with plain git in DVC's layout: one true, one whose parent is not its baseline.
    good = git("commit-tree", tree, "-p", head, "-m", "exp", cwd=root).strip()
    orphan = git("commit-tree", tree, "-m", "forged", cwd=root).strip()
    git("update-ref", f"refs/exps/{head[:2]}/{head[2:]}/Good_One", good, cwd=root)
    git("update-ref", f"refs/exps/{head[:2]}/{head[2:]}/forged", orphan, cwd=root)
    proc = exp("import", "dvc", cwd=root, check=False)
    assert proc.returncode == 1
    assert "imported 1, already imported 0, refused 1" in proc.stdout
    assert "forged" in proc.stderr and "baseline" in proc.stderr and "Traceback" not in proc.stderr
    ids = [r["id"] for r in json.loads(exp("ls", "--json", cwd=root).stdout)]
    assert ids == [f"good-one-{good[:8]}"]


def test_import_without_dvc_experiments_says_so(repo: Path) -> None:
    root = repo
    proc = exp("import", "dvc", cwd=root, check=False)
    assert proc.returncode == 1 and "no DVC experiments" in proc.stderr and "hint:" in proc.stderr
    assert exp("import", "mlflow", cwd=root, check=False).returncode == 2
