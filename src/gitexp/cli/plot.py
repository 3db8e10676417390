"""`git exp plot RUN... | --sweep ID | --where EXPR [-m loss] [-o loss.png]`: overlay the
metric curves of runs, and draw each plot their dvc.yaml declares."""

from __future__ import annotations

from pathlib import Path

import typer

from gitexp import disk
from gitexp.cli import _render as r
from gitexp.cli._app import HELP, SWEEP_OPTION, WHERE_OPTION, app
from gitexp.cli._common import open_repo
from gitexp.errors import GitexpError
from gitexp.service import plots
from gitexp.service import where as w


@app.command(help=HELP["plot"])
def plot(
    run_specs: list[str] = typer.Argument(None, metavar="[RUN]...", help="Runs to overlay."),
    sweep: str = SWEEP_OPTION,
    where: str = WHERE_OPTION,
    metric: list[str] = typer.Option([], "-m", "--metric", help="A metric, or a plot of "
                                     "dvc.yaml, to draw (repeatable; default: all)."),
    output: Path = typer.Option(None, "-o", "--output", help="The PNG to write (default: "
                                ".git/gitexp/out/METRIC.png); other pictures go beside it."),
) -> int:
    repo, config = open_repo()
    if not run_specs and sweep is None and where is None:
        raise GitexpError("name the runs to plot", hint="git exp plot RUN..., or select them: "
                          "--sweep ID, --where 'loss<1'")
    found = w.pick(repo, config, run_specs or (), sweep=sweep, where=where)
    drawn = plots.draw(repo, found, metric or None)
    paths = []
    for i, (name, picture) in enumerate(drawn.files):
        path = plots.default_output(repo, name) if output is None else output if i == 0 \
            else output.with_name(f"{output.stem}-{name}")
        with disk.writing(path, partial=False):
            path.write_bytes(picture)
        paths.append(path)
    r.plotted(paths, drawn.metrics + drawn.plots, len(found), drawn.empty, drawn.problems)
    return 0
