"""Issue 16 part B against real DVC, on a pipeline shaped like DVC's tutorial (tests/dvcpipe):
inputs checked before launch (regenerated stage outputs not required), reruns that really
rerun every stage, and `rerun --check` comparing structured outputs field by field."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.dvcpipe import copy_pipeline, dvc, make_pipeline
from tests.helpers import assert_user_error, exp, git, own_home, wait_done

# One worker builds the module's fixture, not each of them.
pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.xdist_group("dvc_rerun")]
STAGES = ("prepare", "featurize", "train", "evaluate")


@pytest.fixture(autouse=True)
def _no_noise(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PIPE_NOISE", raising=False)


def run_refs(root: Path) -> list[str]:
    return git("for-each-ref", "--format=%(refname)", "refs/experiments/", cwd=root).split()


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One built pipeline (repro'd, everything pushed) per module; tests work on copies."""
    base = tmp_path_factory.mktemp("pipe")
    with own_home(base):
        yield make_pipeline(base / "proj")


def test_a_missing_input_is_refused_before_any_ref_and_regenerated_outputs_are_not_needed(
        template: Path, tmp_path: Path) -> None:
    origin = copy_pipeline(template, tmp_path)
    remote = tmp_path / f"{template.name}-remote"
    shutil.rmtree(remote)  # nothing on the DVC remote
    remote.mkdir()
    clone = tmp_path / "clone"
    git("clone", "-q", str(origin), str(clone), cwd=tmp_path)  # an empty DVC cache; the same remote
    proc = exp("run", "-d", "--", "dvc", "repro", cwd=clone, check=False)
    assert_user_error(proc, "data/data.csv", "neither in the DVC cache nor on the DVC remote",
                      "dvc push")
    # Only the input is listed: dvc.lock's outputs (data/prepared, model.pkl, ...) are the
    # pipeline's to make.
    assert "model.pkl" not in proc.stderr and "data/prepared" not in proc.stderr
    assert run_refs(clone) == [], "refused before any ref was written"

    dvc(origin, "push", "data/data.csv.dvc")  # the input only; no stage output
    run = exp("run", "-d", "--", "dvc", "repro", cwd=clone).stdout.strip().splitlines()[-1]
    done = wait_done(run, clone, timeout=90)
    log = exp("logs", run, cwd=clone).stdout
    assert done["status"] == "succeeded", log
    assert "missing from the DVC remote" not in log
    for stage in STAGES:
        assert f"Running stage '{stage}'" in log, log


def test_rerun_check_reruns_every_stage_and_compares_json_outputs_field_by_field(
        template: Path, tmp_path: Path) -> None:
    root = copy_pipeline(template, tmp_path)
    first = exp("run", "-d", "--", "dvc", "repro", cwd=root).stdout.strip().splitlines()[-1]
    assert wait_done(first, root, timeout=90)["status"] == "succeeded"
    assert "Running stage" not in exp("logs", first, cwd=root).stdout  # up to date: none ran

    # Last-bit float noise in eval/metrics.json: within --rtol, reproduced.
    noisy = exp("rerun", first, "--check", "--rtol", "1e-9", cwd=root, check=False,
                timeout=180, env={"PIPE_NOISE": "1e-13"})
    assert noisy.returncode == 0, noisy.stdout + noisy.stderr
    assert "reproduced" in noisy.stdout and "NOT" not in noisy.stdout
    rerun = json.loads(exp("ls", "--json", cwd=root).stdout)[0]["id"]
    log = exp("logs", rerun, cwd=root).stdout
    assert "dvc repro --force" in log and "every stage runs" in log  # said, never silent
    for stage in STAGES:  # DVC's run cache had every stage: none was answered from it
        assert f"Running stage '{stage}'" in log, log
    assert "is cached - skipping run" not in log and "didn't change, skipping" not in log
    shown = json.loads(exp("show", rerun, "--json", cwd=root).stdout)
    assert shown["record"]["argv"] == ["dvc", "repro"]  # the record keeps the user's argv
    assert shown["result"]["check"]["outputs"]["eval"]["same"] is True
    assert shown["result"]["check"]["outputs"]["eval"]["a"] != \
        shown["result"]["check"]["outputs"]["eval"]["b"]  # the bytes differ; the numbers not

    # A real difference: not reproduced, and the field is named (the others are not).
    changed = exp("rerun", first, "--check", "--rtol", "1e-9", cwd=root, check=False,
                  timeout=180, env={"PIPE_NOISE": "0.05"})
    assert changed.returncode == 1 and "NOT reproduced" in changed.stdout, changed.stdout
    lines = [ln for ln in changed.stdout.splitlines() if "eval/metrics.json" in ln]
    assert lines and all("avg_prec.test" in ln for ln in lines), changed.stdout
    # Every metric is listed; only avg_prec.test differs (roc_auc's lines all say "same").
    assert "DIFF metric avg_prec.test" in changed.stdout
    assert all(ln.lstrip().startswith("same metric roc_auc")
               for ln in changed.stdout.splitlines() if "roc_auc" in ln), changed.stdout
    assert "DIFF output eval" in changed.stdout and "same output model.pkl" in changed.stdout
