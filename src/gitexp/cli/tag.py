"""`git exp tag RUN [NAME...] [-d]`: a run's tags (in git notes; `push` shares them)."""

from __future__ import annotations

import typer

from gitexp.cli import _render as r
from gitexp.cli._app import HELP, app
from gitexp.cli._common import open_repo
from gitexp.service import runs, tagging


@app.command(help=HELP["tag"])
def tag(
    run: str = typer.Argument(..., metavar="RUN", help="Run id (or a unique part of it)."),
    names: list[str] = typer.Argument(None, metavar="NAME",
                                      help="Tags to add (none: list the run's tags)."),
    delete: bool = typer.Option(False, "-d", "--delete", help="Remove these tags instead."),
) -> int:
    repo, config = open_repo()
    found = runs.find(repo, run, config)
    if names:
        r.annotated(found, tagging.tag(repo, found, names, remove=delete))
    else:
        r.annotated(found, tagging.of(repo, [found])[found.id])
    return 0
