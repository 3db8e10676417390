"""`git exp rm RUN... [--dry-run]`: remove runs (refs, local store data, index rows)."""

from __future__ import annotations

import typer

from gitexp.cli._app import app, open_repo
from gitexp.service import gc


@app.command()
def rm(
    run_specs: list[str] = typer.Argument(..., metavar="RUN...", help="Run ids (or unique parts)."),
    dry_run: bool = typer.Option(False, "-n", "--dry-run", help="Only list what would go."),
) -> int:
    """Remove runs. Their objects stay until `git gc` prunes them."""
    repo, config = open_repo()
    found, broken = gc.resolve(repo, config, run_specs)
    if dry_run:
        for run in found:
            print(f"would remove {run.id} ({run.status})")
        for run_id in broken:
            print(f"would remove {run_id} (unreadable record)")
        return 0
    for run_id in gc.remove(repo, found) + gc.remove_broken(repo, broken):
        print(f"removed {run_id}")
    return 0
