"""`git exp note RUN [TEXT...]`: notes on a run (in git notes; `push` shares them)."""

from __future__ import annotations

import typer

from gitexp.cli import _render as r
from gitexp.cli._app import HELP, app
from gitexp.cli._common import open_repo
from gitexp.service import runs, tagging


@app.command(help=HELP["note"])
def note(
    run: str = typer.Argument(..., metavar="RUN", help="Run id (or a unique part of it)."),
    text: list[str] = typer.Argument(None, metavar="TEXT",
                                     help="The note, one line (none: list the run's notes)."),
) -> int:
    repo, config = open_repo()
    found = runs.find(repo, run, config)
    if text:
        r.annotated(found, tagging.note(repo, found, " ".join(text)))
    else:
        r.annotated(found, tagging.of(repo, [found])[found.id])
    return 0
