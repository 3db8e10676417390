"""`git exp apply RUN`: the run's files in the work tree, HEAD unmoved (`dvc exp apply`)."""

from __future__ import annotations

import typer

from gitexp.cli import _render as r
from gitexp.cli._app import HELP, app
from gitexp.cli._common import open_repo
from gitexp.service import rerun, runs


@app.command(help=HELP["apply"])
def apply(run: str = typer.Argument(..., help="Run id (or a unique part of it).")) -> int:
    repo, config = open_repo()
    found = runs.find(repo, run, config)
    r.applied(found, rerun.apply_code(repo, found))
    return 0
