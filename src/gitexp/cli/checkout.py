"""`git exp checkout RUN [-b NAME] [--outputs]`: the run's code (and outputs) in the work tree."""

from __future__ import annotations

import sys

import typer

from gitexp import data
from gitexp.cli._app import app, open_repo
from gitexp.service import rerun, runs


@app.command()
def checkout(
    run: str = typer.Argument(..., help="Run id (or a unique part of it)."),
    branch: str = typer.Option(None, "-b", "--branch", metavar="NAME",
                               help="Create branch NAME at the run's snapshot and switch to it."),
    outputs: bool = typer.Option(False, "--outputs", help="Also restore the run's recorded "
                                 "outputs (through DVC)."),
) -> int:
    """Check out the snapshot a run launched from. Refuses on uncommitted changes."""
    repo, config = open_repo()
    found = runs.find(repo, run, config)
    rerun.restore_code(repo, found, branch, outputs=outputs)
    where = f"branch {branch}" if branch else "a detached HEAD (`git switch -` goes back)"
    print(f"gitexp: the code of run {found.id} ({found.record.snapshot[:10]}) is checked out "
          f"on {where}", file=sys.stderr)
    if outputs:
        for path in data.restore_outputs(repo, found.id, found.outputs):
            print(f"gitexp: restored output {path}", file=sys.stderr)
    return 0
