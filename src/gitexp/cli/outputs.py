"""`git exp outputs RUN`: bring a run's recorded outputs into the work tree (via DVC)."""

from __future__ import annotations

import typer

from gitexp.cli import _render as r
from gitexp.cli._app import HELP, TRUST_OPTION, app
from gitexp.cli._common import open_repo
from gitexp.data import outputs as data
from gitexp.service import rerun, runs, trust


@app.command(help=HELP["outputs"])
def outputs(
    run: str = typer.Argument(..., help="Run id (or a unique part of it)."),
    paths: list[str] = typer.Argument(None, help="Only these outputs (default: all)."),
    force: bool = typer.Option(False, "--force", help="Overwrite files that differ."),
    trusted: bool = TRUST_OPTION,
) -> int:
    repo, config = open_repo()
    found = runs.find(repo, run, config)
    trust.require(repo, found.record, own=found.own, trust=trusted,
                  doing="write its outputs into your work tree")
    with r.data_progress() as progress:
        restored = data.restore_outputs(repo, found.id, found.outputs, paths=paths or (),
                                        force=force, progress=progress,
                                        lock=rerun.lock_of(repo, found))
    r.restored(restored, found)
    return 0

