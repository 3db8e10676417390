"""Metric curves and dvc.yaml's plots as PNG (matplotlib, Agg backend, imported only when
a picture is drawn).

`curves` turns `gitexp.log` points into one (x, y) series per metric; `render` draws one
panel per metric with one colour per run, a title, labelled axes and a legend. The metric
names are also written into the PNG's metadata (`Title`, `Description`). `render_plot`
draws one plot a `dvc.yaml` declares (`model.dvcplots`), every run in its colour.
"""

from __future__ import annotations

import io
import math
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from gitexp.model.dvcplots import Plot, Value

Curve = list[tuple[float, float]]
RESERVED = ("time", "step", "_checkpoint")
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
           "#17becf", "#7f7f7f", "#bcbd22")


def curves(points: list[dict[str, Any]]) -> dict[str, Curve]:
    """metric -> [(step, value)]. Points with a step are placed at it; a metric logged without
    steps (e.g. only via `checkpoint`) is placed at 1, 2, 3, ..."""
    stepped: dict[str, Curve] = {}
    unstepped: dict[str, Curve] = {}
    for point in points:
        step = point.get("step")
        for name, value in point.items():
            if name in RESERVED or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if not math.isfinite(value):
                continue
            if isinstance(step, (int, float)) and not isinstance(step, bool):
                stepped.setdefault(name, []).append((float(step), float(value)))
            else:
                series = unstepped.setdefault(name, [])
                series.append((float(len(series) + 1), float(value)))
    return {name: stepped.get(name) or unstepped[name] for name in {**stepped, **unstepped}}


def metric_order(names: list[str] | set[str]) -> list[str]:
    """Losses first (what a glance is for), then the rest alphabetically."""
    return sorted(set(names), key=lambda n: ("loss" not in n.lower(), n))


STYLES = ("-", "--", ":", "-.")  # a run's lines: one style per series (train, test)
MARKERS = ("o", "s", "^", "D", "v", "P")
MAX_CONFUSION_RUNS = 6  # matrices side by side in one picture


def file_name(metric: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", metric).strip("_") + ".png"


def image_name(name: str, suffix: str) -> str:
    """`eval/cm.png` -> `eval_cm.png`: a file name for an image kept as it is."""
    return file_name(re.sub(r"\.[A-Za-z]{1,4}$", "", name)).removesuffix(".png") + suffix


def can_draw() -> bool:
    """Whether matplotlib (the `plots` extra) is there to draw with."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def colours_of(run_ids: list[str]) -> dict[str, str]:
    return {run: COLOURS[i % len(COLOURS)] for i, run in enumerate(run_ids)}


def render(by_run: dict[str, dict[str, Curve]], metrics: list[str],
           title: str | None = None, colours: dict[str, str] | None = None) -> bytes:
    """A PNG: one panel per metric, each run in its own colour (the same in every panel)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    cols = 1 if len(metrics) == 1 else 2
    rows = math.ceil(len(metrics) / cols)
    fig = Figure(figsize=(7.5 if cols == 1 else 12, 4.2 * rows), dpi=100, layout="constrained")
    colour = colours or colours_of(list(by_run))
    for index, metric in enumerate(metrics):
        ax = fig.add_subplot(rows, cols, index + 1)
        for run, series in by_run.items():
            points = sorted(series.get(metric, []))
            if not points:
                continue
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, color=colour[run], linewidth=1.8, label=run,
                    marker="o" if len(points) < 30 else None, markersize=3)
        ax.set_title(metric if title is None or len(metrics) > 1 else f"{metric} \u2014 {title}",
                     fontsize=12, fontweight="bold")
        ax.set_xlabel("step")
        ax.set_ylabel(metric)
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=9, loc="best", title="run", title_fontsize=9)
    if title and len(metrics) > 1:
        fig.suptitle(title, fontsize=13, fontweight="bold")
    out = io.BytesIO()
    fig.savefig(out, format="png", metadata={
        "Title": ", ".join(metrics), "Description": "gitexp metric curves: "
        + ", ".join(metrics) + " of " + ", ".join(by_run), "Software": "gitexp"})
    return out.getvalue()


def render_plot(by_run: dict[str, Plot]) -> bytes:
    """A PNG of one declared plot of several runs (titles and labels from the first):
    lines (linear, simple, smooth) or points (scatter), each run in its colour and each of
    its series in its own style; horizontal bars (bar_horizontal, _sorted); or one matrix
    per run (confusion, confusion_normalized, as DVC: each y row summing to 1)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    first = next(iter(by_run.values()))
    colour = colours_of(list(by_run))
    if first.template.startswith("confusion"):
        fig = _confusion(Figure, by_run, normalised=first.template == "confusion_normalized")
    else:
        fig = Figure(figsize=(7.5, 4.8), dpi=100, layout="constrained")
        ax = fig.add_subplot()
        if first.template.startswith("bar_horizontal"):
            _bars(ax, by_run, colour, by_value=first.template.endswith("_sorted"))
        else:
            _lines(ax, by_run, colour, scatter=first.template == "scatter")
        ax.set_xlabel(first.x_label)
        ax.set_ylabel(first.y_label)
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc="best")
    fig.suptitle(first.title, fontsize=12, fontweight="bold")
    out = io.BytesIO()
    fig.savefig(out, format="png", metadata={
        "Title": first.title, "Description": f"gitexp: dvc.yaml plot {first.id} of "
        + ", ".join(by_run), "Software": "gitexp"})
    return out.getvalue()


def _lines(ax: Axes, by_run: dict[str, Plot], colour: dict[str, str], *, scatter: bool) -> None:
    for run, plot in by_run.items():
        for k, series in enumerate(plot.series):
            label = _label(run, series.name, len(by_run), len(plot.series))
            xs, ys = _axis(series.x), _axis(series.y)
            if scatter:
                ax.scatter(xs, ys, color=colour[run], marker=MARKERS[k % len(MARKERS)], s=12,
                           label=label, alpha=0.8)
            else:
                ax.plot(xs, ys, color=colour[run], linestyle=STYLES[k % len(STYLES)],
                        linewidth=1.6, label=label,
                        marker="o" if len(xs) < 30 else None, markersize=3)


def _bars(ax: Axes, by_run: dict[str, Plot], colour: dict[str, str], *,
          by_value: bool) -> None:
    """DVC's bar_horizontal: x the value, y the category; runs side by side in each row."""
    bars = {run: {str(_shown(y)): x for s in plot.series[:1] for x, y in zip(s.x, s.y,
                                                                            strict=True)
                  if isinstance(x, float)} for run, plot in by_run.items()}
    names = list(dict.fromkeys(n for values in bars.values() for n in values))
    if by_value:
        first = next(iter(bars.values()))
        names.sort(key=lambda n: first.get(n, -math.inf))
    height = 0.8 / max(len(bars), 1)
    for i, (run, values) in enumerate(bars.items()):
        rows = [r for r, n in enumerate(names) if n in values]
        ax.barh([r + i * height for r in rows], [values[names[r]] for r in rows],
                height=height, color=colour[run], label=run if len(bars) > 1 else None)
    ax.set_yticks([r + height * (len(bars) - 1) / 2 for r in range(len(names))], names)


def _confusion(figure: type[Figure], by_run: dict[str, Plot], *, normalised: bool) -> Figure:
    """One matrix per run (the first MAX_CONFUSION_RUNS): x (actual) across, y down."""
    runs = list(by_run.items())[:MAX_CONFUSION_RUNS]
    cells = {run: {(x, y): n for s in plot.series for x, y, n in zip(
        map(str, map(_shown, s.x)), map(str, map(_shown, s.y)), s.n, strict=True)}
        for run, plot in runs}
    xs = _classes({x for c in cells.values() for x, _ in c})
    ys = _classes({y for c in cells.values() for _, y in c})
    cols = min(len(runs), 3)
    rows = math.ceil(len(runs) / cols)
    side = max(3.6, 0.45 * max(len(xs), len(ys)) + 2)
    fig = figure(figsize=(side * cols, side * rows + 0.6), dpi=100, layout="constrained")
    first = runs[0][1]
    for k, (run, counted) in enumerate(cells.items()):
        matrix = [[float(counted.get((x, y), 0)) for x in xs] for y in ys]
        if normalised:
            matrix = [[v / (sum(row) or 1) for v in row] for row in matrix]
        ax = fig.add_subplot(rows, cols, k + 1)
        ax.imshow(matrix, cmap="Blues", aspect="auto", vmin=0)
        top = max((v for row in matrix for v in row), default=0) or 1
        for r, row in enumerate(matrix):
            for c, v in enumerate(row):
                ax.text(c, r, f"{v:.2f}" if normalised else f"{v:g}", ha="center",
                        va="center", fontsize=8, color="white" if v > top / 2 else "black")
        ax.set_xticks(range(len(xs)), xs)
        ax.set_yticks(range(len(ys)), ys)
        ax.set_xlabel(first.x_label)
        ax.set_ylabel(first.y_label)
        ax.set_title(run, fontsize=10)
    return fig


def _label(run: str, series: str, runs: int, lines: int) -> str:
    if runs == 1:
        return series
    return run if lines == 1 else f"{run} {series}"


def _axis(values: tuple[Value, ...]) -> list[float] | list[str]:
    """Numbers as numbers; an axis with any text is categorical (all of it text)."""
    if all(isinstance(v, float) for v in values):
        return [float(v) for v in values]
    return [str(_shown(v)) for v in values]


def _shown(value: Value) -> Value | int:
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _classes(names: set[str]) -> list[str]:
    """In numeric order when every class is a number (`2` before `10`), else by name."""
    try:
        return sorted(names, key=float)
    except ValueError:
        return sorted(names)
