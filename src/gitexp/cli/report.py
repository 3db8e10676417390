"""`git exp report [RUN...] [-o runs.html]`: one self-contained offline HTML page."""

from __future__ import annotations

from pathlib import Path

import typer

from gitexp import extras
from gitexp.cli import _render as r
from gitexp.cli._app import HELP, app, open_repo
from gitexp.service import plots, runs
from gitexp.service import report as core


@app.command(help=HELP["report"])
def report(
    run_specs: list[str] = typer.Argument(None, metavar="[RUN]...",
                                          help="Runs to include (default: all)."),
    output: Path = typer.Option(None, "-o", "--output",
                                help="The page to write (default: .git/gitexp/out/runs.html)."),
    title: str = typer.Option(None, "--title", help="The page's title."),
) -> int:
    repo, config = open_repo()
    found = ([runs.find(repo, spec, config) for spec in run_specs] if run_specs
             else runs.list_runs(repo, config))
    output = output or plots.default_output(repo, "runs.html")
    output.write_text(core.render(repo, found, title=title), encoding="utf-8")
    r.wrote_report(output, len(found))
    if lack := extras.lacking("curves", "matplotlib"):
        r.note(f"gitexp: the page has no curves: {lack.message} ({lack.hint})")
    return 0
