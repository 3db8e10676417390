"""Metric curves of runs: their points (from git once written back, else the store), drawn
by `charts` into one PNG (`git exp plot`, `report`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gitexp import charts, extras
from gitexp.errors import GitexpError
from gitexp.git import Repo
from gitexp.model import metrics as metric_series
from gitexp.service.runs import Run, results_file, store_of
from gitexp.stores import run_key

MAX_SERIES = 256 << 20  # a metrics series in git: far more points than any chart can show


def default_output(repo: Repo, name: str) -> Path:
    """Where `plot` and `report` write unless told (`-o`): never the work tree, where the next
    snapshot would take the file along."""
    folder = repo.gitexp_dir / "out"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name


def run_points(repo: Repo, run: Run) -> list[dict[str, Any]]:
    """A run's metric points: from its results commit once written back, else its store."""
    data: bytes | None = None
    if run.written_back:
        data = results_file(repo, run, "metrics.jsonl", MAX_SERIES)
    if not data:
        try:
            data = store_of(repo, run).read(run_key(run.id, "metrics.jsonl"))
        except Exception:  # a store out of reach: no curve, not an error
            data = None
    return metric_series.parse_series(data or b"")


def overlay(repo: Repo, runs: list[Run], metrics: list[str] | None = None
            ) -> tuple[bytes, list[str], list[str]]:
    """A PNG overlaying `metrics` (default: every metric, losses first, at most 6) of `runs`;
    returns it, the metrics drawn, and the runs left out for having no series.
    GitexpError when there is nothing to draw."""
    extras.require("drawing curves", "matplotlib")  # before reading any run
    everything = {run.id: charts.curves(run_points(repo, run)) for run in runs}
    by_run = {run_id: series for run_id, series in everything.items() if series}
    empty = [run_id for run_id in everything if run_id not in by_run]
    known = charts.metric_order({m for series in by_run.values() for m in series})
    if not known:
        raise GitexpError("no metric series to plot in " + ", ".join(everything),
                          hint="log them from the job: gitexp.log(step=i, loss=...)")
    wanted = metrics or known[:6]
    missing = [m for m in wanted if m not in known]
    if missing:
        raise GitexpError(f"no series named {', '.join(missing)}",
                          hint="known metrics: " + ", ".join(known))
    png = charts.render(by_run, wanted, title=_title(list(by_run)))
    return png, wanted, empty


def _title(run_ids: list[str]) -> str:
    return run_ids[0] if len(run_ids) == 1 else f"{len(run_ids)} runs"
