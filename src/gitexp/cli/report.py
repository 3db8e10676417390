"""`git exp report [RUN...] [--sweep ID] [--where EXPR] [-o runs.html]`: the web view of
`git exp ui`, frozen into one self-contained offline HTML page."""

from __future__ import annotations

from pathlib import Path

import typer

from gitexp import disk
from gitexp.cli import _render as r
from gitexp.cli._app import HELP, SWEEP_OPTION, WHERE_OPTION, app
from gitexp.cli._common import open_repo
from gitexp.service import plots
from gitexp.service import where as w
from gitexp.ui import report as core


@app.command(help=HELP["report"])
def report(
    run_specs: list[str] = typer.Argument(None, metavar="[RUN]...",
                                          help="Runs to include (default: all)."),
    sweep: str = SWEEP_OPTION,
    where: str = WHERE_OPTION,
    output: Path = typer.Option(None, "-o", "--output",
                                help="The page to write (default: .git/gitexp/out/runs.html)."),
    title: str = typer.Option(None, "--title", help="The page's title."),
) -> int:
    repo, config = open_repo()
    found = w.pick(repo, config, run_specs or (), sweep=sweep, where=where)
    output = output or plots.default_output(repo, "runs.html")
    html = core.render(repo, config, found, title=title)
    with disk.writing(output, partial=False):
        output.write_text(html, encoding="utf-8")
    r.wrote_report(output, len(found))
    return 0
