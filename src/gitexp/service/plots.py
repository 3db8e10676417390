"""Metric curves of runs: their points (from git once written back, else the store), drawn
by `charts` into one PNG (`git exp plot`, `report`); and the plots their `dvc.yaml`
declares (ROC curves, confusion matrices, images: `model.dvcplots`), one PNG per plot with
the runs overlaid."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gitexp import charts, extras
from gitexp.errors import GitexpError
from gitexp.git import Object, Repo
from gitexp.git.writeback import RESULTS_DIR
from gitexp.model import dvcplots
from gitexp.model import metrics as metric_series
from gitexp.model.runstate import RunState
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
    return metric_series.parse_series(run_series(repo, run))


def run_series(repo: Repo, run: Run) -> bytes:
    """The text of a run's metrics.jsonl, as `run_points` reads it (b"": none)."""
    data: bytes | None = None
    if run.written_back:
        data = results_file(repo, run, "metrics.jsonl", MAX_SERIES)
    if not data:
        try:
            data = store_of(repo, run).read(run_key(run.id, "metrics.jsonl"))
        except Exception:  # a store out of reach: no curve, not an error
            data = None
    return data or b""


def run_plots(repo: Repo, run: Run, index: Object | None = None) -> list[dvcplots.Plot]:
    """The plots the run's `dvc.yaml` declares, through the one decoder: from its results
    commit once written back (`index`: its plots.json, if already read), else its store ([]
    when out of reach). PlotsError, one line, when what is there is damaged or forged."""
    if not run.written_back:
        try:
            return RunState(store_of(repo, run), run.id).plots()
        except dvcplots.PlotsError:
            raise
        except Exception:  # a store out of reach: no plots, not an error
            return []
    base = _plots_dir(run)
    if index is None:
        (index,) = repo.read_objects([base + dvcplots.INDEX], max_size=dvcplots.MAX_INDEX)
    if index.type == "blob" and index.data is None:  # read_objects left a giant out
        raise dvcplots.PlotsError(f"declared plots are damaged: plots.json is over "
                                  f"{dvcplots.MAX_INDEX >> 20} MB")

    def image(name: str) -> bytes | None:
        (obj,) = repo.read_objects([base + name], max_size=dvcplots.MAX_IMAGE)
        return obj.data if obj.type == "blob" else None
    return dvcplots.decode(index.data if index.type == "blob" else None, image)


def _plots_dir(run: Run) -> str:
    return f"{run.commit}:{RESULTS_DIR}/plots/"


@dataclass
class Declared:
    """The declared plots of runs: per plot id (in the order first seen) each run's plot,
    and why a run's plots could not be read."""
    by_id: dict[str, dict[str, dvcplots.Plot]] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)  # run id -> one line

    def charts(self) -> dict[str, dict[str, dvcplots.Plot]]:
        """The plots to draw (runs overlaid): every one but the images."""
        return {pid: by_run for pid, by_run in self.by_id.items()
                if next(iter(by_run.values())).template != dvcplots.IMAGE}

    def images(self) -> list[tuple[str, dvcplots.Plot]]:
        """(run id, image plot): an image is shown as it is, one per run."""
        return [(run_id, plot) for by_run in self.by_id.values() for run_id, plot in
                by_run.items() if plot.template == dvcplots.IMAGE]


def declared(repo: Repo, runs: list[Run]) -> Declared:
    found = Declared()
    kept = [run for run in runs if run.written_back]  # their plots.json: one git process
    indexes = dict(zip((run.id for run in kept), repo.read_objects(
        [_plots_dir(run) + dvcplots.INDEX for run in kept], max_size=dvcplots.MAX_INDEX),
        strict=True)) if kept else {}
    for run in runs:
        try:
            plots = run_plots(repo, run, indexes.get(run.id))
        except dvcplots.PlotsError as exc:
            found.problems[run.id] = exc.message
            continue
        for plot in plots:
            mine = found.by_id.setdefault(plot.id, {})
            first = next(iter(mine.values()), plot)
            if first.template == plot.template:  # the same id drawn another way: not overlaid
                mine[run.id] = plot
    return found


@dataclass(frozen=True)
class Drawn:
    """What `git exp plot` drew: (file name, contents) of each picture, the series overlay
    first (when any); the metrics and declared plots drawn; runs with neither; and why a
    run's declared plots were left out."""
    files: list[tuple[str, bytes]]
    metrics: list[str]
    plots: list[str]
    empty: list[str]
    problems: dict[str, str]


def draw(repo: Repo, runs: list[Run], wanted: list[str] | None = None) -> Drawn:
    """The metric curves of `runs` in one PNG (default: every metric, losses first, at most
    6) and each plot their dvc.yaml declares in its own (images as they are, one per run);
    `wanted` names metrics and plots (by id or title). GitexpError when there is nothing to
    draw, or a name matches nothing."""
    extras.require("drawing curves", "matplotlib")  # before reading any run
    everything = {run.id: charts.curves(run_points(repo, run)) for run in runs}
    by_run = {run_id: series for run_id, series in everything.items() if series}
    known = charts.metric_order({m for series in by_run.values() for m in series})
    found = declared(repo, runs)
    titles = {name: pid for pid, plots in found.by_id.items()
              for name in (pid, next(iter(plots.values())).title)}
    missing = [m for m in wanted or [] if m not in known and m not in titles]
    why = "".join(f"; {run_id}: {msg}" for run_id, msg in found.problems.items())
    if missing:
        raise GitexpError(f"no series or plot named {', '.join(missing)}{why}",
                          hint="known metrics: " + (", ".join(known) or "none") +
                          "; declared plots: " + (", ".join(found.by_id) or "none"))
    metrics = [m for m in wanted if m in known] if wanted else known[:6]
    pick = {titles[m] for m in wanted if m in titles} if wanted else set(found.by_id)
    files = [(charts.file_name(metrics[0]) if len(metrics) == 1 else "metrics.png",
              charts.render(by_run, metrics, title=_title(list(by_run))))] if metrics else []
    drawn = [pid for pid, plots in found.charts().items() if pid in pick]
    files += [("plot-" + charts.file_name(pid), charts.render_plot(found.by_id[pid]))
              for pid in drawn]
    images = [(run_id, p) for run_id, p in found.images() if p.id in pick]
    files += [("plot-" + charts.image_name(f"{run_id}-{p.id}", p.suffix), p.image or b"")
              for run_id, p in images]
    if not files:
        raise GitexpError("nothing to plot in " + ", ".join(everything) + why,
                          hint="log series from the job: gitexp.log(step=i, loss=...), or "
                          "declare plots in dvc.yaml")
    with_any = {run_id for run_id in by_run if metrics} | {
        run_id for pid in drawn for run_id in found.by_id[pid]} | {r for r, _ in images}
    shown = drawn + list(dict.fromkeys(p.id for _, p in images))
    return Drawn(files=files, metrics=metrics, plots=shown,
                 empty=[r for r in everything if r not in with_any], problems=found.problems)


def _title(run_ids: list[str]) -> str:
    return run_ids[0] if len(run_ids) == 1 else f"{len(run_ids)} runs"
