"""Metric curves as PNG (matplotlib, Agg backend, imported only when a picture is drawn).

`curves` turns `gitexp.log` points into one (x, y) series per metric; `render` draws one
panel per metric with one colour per run, a title, labelled axes and a legend. The metric
names are also written into the PNG's metadata (`Title`, `Description`).
"""

from __future__ import annotations

import io
import math
import re
from typing import Any

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


def file_name(metric: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", metric).strip("_") + ".png"


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
