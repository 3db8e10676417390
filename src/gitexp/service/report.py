"""`git exp report`: one self-contained, offline HTML page about runs.

The page holds the runs table, the metric curves (one panel per metric, every run in its
own colour, as inline base64 PNGs), the plots the runs' dvc.yaml declares (one picture per
plot with the runs overlaid; images as the job wrote them) and each run's record and
result. No script, no external stylesheet, font or image: it opens from a mail attachment
or a USB stick years later.
"""

from __future__ import annotations

import base64
import html
import json
import math
import shlex
import time
from typing import Any

from gitexp import charts
from gitexp.extras import MissingExtraError
from gitexp.git import Repo
from gitexp.printable import printable
from gitexp.service import plots
from gitexp.service.runs import Run

MAX_PANELS = 8
MAX_DECLARED = 16  # declared plots drawn; the rest are named

STATUS_COLOUR = {"queued": "#777", "running": "#0a7ea4", "succeeded": "#1a7f37",
                 "failed": "#cf222e", "cancelled": "#9a6700", "lost": "#8250df",
                 "timeout": "#9a6700"}

CSS = """
body { font: 14px/1.45 -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif;
       margin: 24px auto; max-width: 1150px; color: #1f2328; padding: 0 16px; }
h1 { font-size: 24px; margin-bottom: 2px; } h2 { font-size: 19px; margin-top: 32px;
     border-bottom: 1px solid #d0d7de; padding-bottom: 4px; }
.sub { color: #656d76; margin-top: 0; }
table.runs { border-collapse: collapse; width: 100%; font-size: 13px; }
table.runs th { text-align: left; background: #f6f8fa; border-bottom: 2px solid #d0d7de; }
table.runs th, table.runs td { padding: 6px 8px; border-bottom: 1px solid #eaeef2;
                               vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
code { font: 12px ui-monospace, Menlo, Consolas, monospace; }
.badge { color: #fff; border-radius: 10px; padding: 1px 8px; font-size: 12px; }
.swatch { display: inline-block; width: 10px; height: 10px; border-radius: 2px;
          margin-right: 6px; }
.curves { display: grid; grid-template-columns: repeat(auto-fill, minmax(540px, 1fr));
          gap: 12px; }
.curves img { width: 100%; border: 1px solid #eaeef2; }
figure { margin: 0; } figcaption { color: #656d76; font-size: 12px; }
details { margin: 6px 0; } summary { cursor: pointer; }
pre { background: #f6f8fa; padding: 10px; overflow-x: auto; font-size: 12px; }
"""


def render(repo: Repo, runs: list[Run], *, title: str | None = None) -> str:
    """The HTML page for `runs` (newest first, as given)."""
    # Metric names from a run title the panels too, and matplotlib warns (on stderr) of
    # each glyph it lacks: both see the names `printable`.
    by_run = {run.id: {printable(name): curve for name, curve in
                       charts.curves(plots.run_points(repo, run)).items()} for run in runs}
    colour = charts.colours_of([run_id for run_id, series in by_run.items() if series])
    metric_names = _metric_columns(runs)
    title = title or f"gitexp runs: {repo.root.name}"
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{_s(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{_s(title)}</h1><p class='sub'>{len(runs)} run(s), generated "
        f"{_e(time.strftime('%Y-%m-%d %H:%M'))} by gitexp</p>",
        "<h2>Runs</h2>", _table(runs, metric_names, colour),
        "<h2>Curves</h2>", _curves(by_run, colour),
        *_declared(plots.declared(repo, runs)),
        "<h2>Records</h2>", *(_record(run) for run in runs),
        "</body></html>\n",
    ]
    return "".join(parts)


def _table(runs: list[Run], metric_names: list[str], colour: dict[str, str]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in ("run", "status", "target", "started",
                                                  "duration", "command", "commit"))
    head += "".join(f"<th class='num'>{_s(m)}</th>" for m in metric_names)
    rows = []
    for run in runs:
        res = run.result
        mets = res.metrics if res else {}
        cells = [
            f"<span class='swatch' style='background:{colour.get(run.id, 'transparent')}'>"
            "</span>"
            f"<a href='#run-{_e(run.id)}'><code>{_e(run.id)}</code></a>",
            f"<span class='badge' style='background:{STATUS_COLOUR.get(run.status, '#777')}'>"
            f"{_e(run.status)}</span>",
            _s(run.record.target),
            _e(_when(res.started_at if res and res.started_at else run.record.launched_at)),
            _e(_duration(res.duration if res else None)),
            f"<code>{_s(shlex.join(run.record.argv))}</code>",
            f"<code>{_e(run.record.snapshot[:10])}</code>",
        ]
        row = "".join(f"<td>{c}</td>" for c in cells)
        row += "".join(f"<td class='num'>{_s(_value(mets.get(m)))}</td>" for m in metric_names)
        rows.append(f"<tr>{row}</tr>")
    if not rows:
        return "<p>No runs yet: <code>git exp run -- CMD</code> starts one.</p>"
    return f"<table class='runs'><tr>{head}</tr>{''.join(rows)}</table>"


def _curves(by_run: dict[str, dict[str, charts.Curve]], colour: dict[str, str]) -> str:
    names = charts.metric_order({m for series in by_run.values() for m in series})
    if not names:
        return "<p>No metric series: log them with <code>gitexp.log(step=i, loss=…)</code>.</p>"
    images = []
    for metric in names[:MAX_PANELS]:
        try:
            png = charts.render({r: s for r, s in by_run.items() if r in colour}, [metric],
                               colours=colour)
        except ImportError:
            lack = MissingExtraError("curves", "matplotlib")
            return f"<p>{_s(lack.message)}: <code>{_s(lack.hint or '')}</code>.</p>"
        data = base64.b64encode(png).decode()
        images.append(f"<img alt='{_s(metric)} curves' src='data:image/png;base64,{data}'>")
    more = (f"<p>{len(names) - MAX_PANELS} more metric(s) not drawn: "
            f"{_s(', '.join(names[MAX_PANELS:]))}</p>") if len(names) > MAX_PANELS else ""
    return f"<div class='curves'>{''.join(images)}</div>{more}"


def _declared(found: plots.Declared) -> list[str]:
    """The "Plots" section: each declared plot as a PNG, each image as it is; nothing when
    no run declares any."""
    if not found.by_id and not found.problems:
        return []
    figures = []
    charted = list(found.charts().items())
    for pid, by_run in charted[:MAX_DECLARED]:
        first = next(iter(by_run.values()))
        try:
            png = charts.render_plot(by_run)
        except ImportError:
            lack = MissingExtraError("plots", "matplotlib")
            figures.append(f"<p>{_s(lack.message)}: <code>{_s(lack.hint or '')}</code>.</p>")
            break
        figures.append(_figure(f"{first.title} ({pid})" if first.title != pid else pid,
                               "image/png", png))
    for run_id, plot in found.images()[:MAX_DECLARED]:
        figures.append(_figure(f"{plot.title} — {run_id}", f"image/{plot.image_type}",
                               plot.image or b""))
    more = [pid for pid, _ in charted[MAX_DECLARED:]]
    notes = [f"<p>{len(more)} more plot(s) not drawn: {_s(', '.join(more))}</p>"] if more else []
    notes += [f"<p>plots of <code>{_e(run_id)}</code> left out: {_s(why)}</p>"
              for run_id, why in found.problems.items()]
    return ["<h2>Plots</h2>", f"<div class='curves'>{''.join(figures)}</div>", *notes]


def _figure(caption: str, mime: str, data: bytes) -> str:
    # An SVG in an <img> runs no script and loads nothing: safe where inline <svg> is not.
    src = f"data:{mime};base64,{base64.b64encode(data).decode()}"
    return (f"<figure><img alt='{_s(caption)}' src='{src}'>"
            f"<figcaption>{_s(caption)}</figcaption></figure>")


def _record(run: Run) -> str:
    body = {"record": run.record.to_dict(), "snapshot": run.record.snapshot,
            "commit": run.commit, "result": run.result.to_dict() if run.result else None}
    # ensure_ascii (the default): every control, bidi or invisible character is a \u escape
    text = json.dumps(body, indent=2, sort_keys=True, default=str)
    return (f"<details id='run-{_e(run.id)}'><summary><code>{_e(run.id)}</code> "
            f"({_e(run.status)})</summary><pre>{_e(text)}</pre></details>")


def _metric_columns(runs: list[Run]) -> list[str]:
    names: list[str] = []
    for run in runs:
        for key in run.result.metrics if run.result else {}:
            if key not in names:
                names.append(key)
    return charts.metric_order(names)


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def _s(text: str) -> str:
    """A value from a run, for a table cell or an attribute: escaped for HTML, and first
    made `printable`, so a bidi override cannot reorder what the page shows."""
    return _e(printable(text))


def _value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)


def _when(ts: float | None) -> str:
    try:  # a record from elsewhere may hold any number
        return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts)) if ts else ""
    except (OverflowError, ValueError, OSError):
        return ""


def _duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return ""
    s = int(seconds)
    return f"{seconds:.1f}s" if s < 60 else (f"{s // 60}m{s % 60:02d}s" if s < 3600
                                             else f"{s // 3600}h{s % 3600 // 60:02d}m")
