"""Metric curves: series from `gitexp.log` and dvclive, PNGs a person reads at a glance, and
`git exp plot RUN... [-m loss] [-o loss.png]` overlaying runs."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gitexp import charts
from gitexp.model import metrics
from tests.conftest import make_repo
from tests.helpers import assert_user_error, exp, exp_json, git

TRAIN = """\
import sys, gitexp
lr = float(sys.argv[1])
for step in range(30):
    gitexp.log(step=step, loss=1.0 / (1 + lr * step), acc=min(1.0, lr * step / 10))
    if step % 10 == 9:
        gitexp.checkpoint(f"epoch {step // 10}", loss=1.0 / (1 + lr * step))
"""


def test_curves_place_points_at_their_steps_and_unstepped_metrics_in_order():
    points = [
        {"time": 1.0, "step": 0, "loss": 1.0, "note": "warm-up"},
        {"time": 2.0, "step": 5, "loss": 0.5, "flag": True},
        {"time": 3.0, "_checkpoint": "epoch 1", "loss": 0.5, "val": 0.7},  # no step
        {"time": 4.0, "_checkpoint": "epoch 2", "val": 0.8},
        {"time": 5.0, "step": 9, "loss": float("nan")},
    ]
    assert charts.curves(points) == {"loss": [(0.0, 1.0), (5.0, 0.5)],
                                    "val": [(1.0, 0.7), (2.0, 0.8)]}
    assert charts.metric_order(["acc", "val_loss", "lr", "loss"]) == \
        ["loss", "val_loss", "acc", "lr"]
    assert charts.file_name("train/loss") == "train_loss.png"


def test_dvclive_tsv_series_are_read_as_points(tmp_path: Path):
    base = tmp_path / "dvclive/plots/metrics"
    (base / "train").mkdir(parents=True)
    (base / "train/loss.tsv").write_text("timestamp\tstep\tloss\n1700000000000\t0\t0.9\n"
                                         "1700000001000\t1\t0.4\n1700000002")  # torn last row
    (base / "acc.tsv").write_text("timestamp\tstep\tacc\n1700000000000\t0\t0.5\n")
    points = metrics.series_from_files(tmp_path)
    assert {"time": 1700000000.0, "step": 0, "acc": 0.5} in points
    assert charts.curves(points)["train.loss"] == [(0.0, 0.9), (1.0, 0.4)]
    assert metrics.series_from_files(tmp_path / "nothing") == []


def test_render_draws_one_colour_per_run_with_title_and_metadata():
    by_run = {"run-a": {"loss": [(0, 1.0), (1, 0.5), (2, 0.25)]},
              "run-b": {"loss": [(0, 0.8), (1, 0.7), (2, 0.6)]}}
    png = charts.render(by_run, ["loss"], title="2 runs")
    image = Image.open(io.BytesIO(png))
    image.load()
    assert image.format == "PNG" and image.size == (750, 420)
    assert image.info["Title"] == "loss"
    assert image.info["Description"] == "gitexp metric curves: loss of run-a, run-b"
    pixels = np.asarray(image.convert("RGB")).reshape(-1, 3)
    for hex_colour in charts.COLOURS[:2]:  # both runs' lines are drawn, each in its colour
        rgb = np.array([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)])
        assert (np.abs(pixels - rgb).sum(axis=1) < 30).sum() > 200, hex_colour


@pytest.fixture
def two_runs(tmp_path: Path) -> tuple[Path, list[str]]:
    repo = make_repo(tmp_path / "proj", {"train.py": TRAIN})
    git_config(repo)
    for lr in ("0.1", "0.5"):
        exp("run", "--", "python", "train.py", lr, cwd=repo)
    return repo, [r["id"] for r in exp_json("ls", cwd=repo)]


def git_config(repo: Path) -> None:
    git("config", "exp.notify.on", "none", cwd=repo)  # these tests are about plots only


def test_git_exp_plot_overlays_runs_into_one_png(two_runs: tuple[Path, list[str]]):
    repo, ids = two_runs
    exp("plot", *ids, "-m", "loss", "-o", "loss.png", cwd=repo)
    image = Image.open(repo / "loss.png")
    assert image.info["Title"] == "loss"
    assert all(run_id in image.info["Description"] for run_id in ids)
    # Unasked, nothing lands in the work tree (the next snapshot would take it along): the
    # default is gitexp's own folder, and the command says where.
    proc = exp("plot", ids[0], cwd=repo)  # every metric, in two panels
    out = repo / ".git" / "gitexp" / "out" / "metrics.png"
    assert Image.open(out).info["Title"] == "loss, acc"
    assert f"wrote {out}" in proc.stderr
    assert git("status", "--porcelain", "--untracked-files=all", cwd=repo) == "?? loss.png\n"


def test_git_exp_plot_says_which_metrics_exist(two_runs: tuple[Path, list[str]]):
    repo, ids = two_runs
    proc = exp("plot", ids[0], "-m", "perplexity", cwd=repo, check=False)
    assert_user_error(proc, "perplexity", "known metrics: loss, acc")
    assert_user_error(exp("plot", "no-such-run", cwd=repo, check=False), "no-such-run")


DVCLIVE_JOB = """\
import os
os.makedirs("dvclive/plots/metrics/train", exist_ok=True)
with open("dvclive/plots/metrics/train/loss.tsv", "w") as f:
    f.write("timestamp\\tstep\\tloss\\n")
    for step in range(10):
        f.write(f"{1700000000000 + step}\\t{step}\\t{1 / (step + 1)}\\n")
"""


def test_a_dvclive_run_needs_no_change_its_series_are_plotted_and_mailed(tmp_path: Path):
    """The job writes dvclive's files only (no gitexp import); the default sender (the
    Maildir outbox) gets the end mail with its curve, and `git exp plot` draws it."""
    from gitexp.notify.maildir import MaildirOutbox
    from tests.test_notify_smtp import agent_done

    repo = make_repo(tmp_path / "proj", {"train.py": DVCLIVE_JOB})
    exp("run", "--", "python", "train.py", cwd=repo)
    run_id = exp_json("ls", cwd=repo)[0]["id"]
    exp("plot", run_id, "-m", "train.loss", cwd=repo)
    assert Image.open(repo / ".git/gitexp/out/train.loss.png").info["Title"] == "train.loss"
    agent_done(repo, run_id)
    [mail] = MaildirOutbox(repo / ".git/gitexp/outbox").messages()
    assert mail["X-Gitexp-Event"] == "succeeded"
    assert [p.get_filename() for p in mail.walk() if p.get_content_type() == "image/png"] \
        == ["train.loss.png"]
