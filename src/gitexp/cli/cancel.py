"""`git exp cancel RUN…`: stop runs; the job and all its children end as `cancelled`."""

from __future__ import annotations

import typer

from gitexp.cli import _render as r
from gitexp.cli._app import HELP, app, open_repo
from gitexp.service import runs


@app.command(help=HELP["cancel"])
def cancel(runs_: list[str] = typer.Argument(..., metavar="RUN...", help="Runs to stop.")) -> int:
    repo, config = open_repo()
    for spec in runs_:
        found = runs.find(repo, spec, config)
        runs.cancel(repo, config, found)
        r.cancelling(found)
    return 0
