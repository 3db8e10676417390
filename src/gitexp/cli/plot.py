"""`git exp plot RUN... [-m loss] [-o loss.png]`: overlay the metric curves of runs."""

from __future__ import annotations

from pathlib import Path

import typer

from gitexp import charts
from gitexp.cli import _render as r
from gitexp.cli._app import HELP, app, open_repo
from gitexp.service import plots, runs


@app.command(help=HELP["plot"])
def plot(
    run_specs: list[str] = typer.Argument(..., metavar="RUN...", help="Runs to overlay."),
    metric: list[str] = typer.Option([], "-m", "--metric",
                                     help="A metric to draw (repeatable; default: all)."),
    output: Path = typer.Option(None, "-o", "--output",
                                help="The PNG to write (default: .git/gitexp/out/METRIC.png)."),
) -> int:
    repo, config = open_repo()
    found = [runs.find(repo, spec, config) for spec in run_specs]
    png, drawn, empty = plots.overlay(repo, found, metric or None)
    path = output or plots.default_output(
        repo, charts.file_name(drawn[0]) if len(drawn) == 1 else "metrics.png")
    path.write_bytes(png)
    r.plotted(path, drawn, len(found), empty)
    return 0
