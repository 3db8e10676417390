"""`git exp rm RUN... [--dry-run]`: remove runs (refs, local store data, index rows)."""

from __future__ import annotations

import typer

from gitexp.cli import _render as r
from gitexp.cli._app import HELP, app, open_repo
from gitexp.service import gc


@app.command(help=HELP["rm"])
def rm(
    run_specs: list[str] = typer.Argument(..., metavar="RUN...", help="Run ids (or unique parts)."),
    dry_run: bool = typer.Option(False, "-n", "--dry-run", help="Only list what would go."),
) -> int:
    repo, config = open_repo()
    found, broken = gc.resolve(repo, config, run_specs)
    if dry_run:
        r.would_remove(found, broken)
        return 0
    r.removed(gc.remove(repo, found, config, say=r.note) + gc.remove_broken(repo, broken))
    return 0
