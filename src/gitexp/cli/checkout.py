"""`git exp checkout RUN [-b NAME] [--outputs]`: the run's code (and outputs) in the work tree."""

from __future__ import annotations

import typer

from gitexp.cli import _render as r
from gitexp.cli._app import HELP, TRUST_OPTION, app
from gitexp.cli._common import open_repo
from gitexp.service import rerun, runs, trust


@app.command(help=HELP["checkout"])
def checkout(
    run: str = typer.Argument(..., help="Run id (or a unique part of it)."),
    branch: str = typer.Option(None, "-b", "--branch", metavar="NAME",
                               help="Create branch NAME at the run's snapshot and switch to it."),
    outputs: bool = typer.Option(False, "--outputs", help="Also restore the run's recorded "
                                 "outputs (through DVC)."),
    trusted: bool = TRUST_OPTION,
) -> int:
    repo, config = open_repo()
    found = runs.find(repo, run, config)
    if outputs:  # before anything moves: refused, nothing is half done
        trust.require(repo, found.record, own=found.own, trust=trusted,
                      doing="write its outputs into your work tree")
    restored = rerun.checkout(repo, found, branch, outputs=outputs)
    r.checked_out(found, branch)
    if outputs:
        r.restored_outputs(restored)
    return 0
