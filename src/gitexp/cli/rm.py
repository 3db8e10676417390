"""`git exp rm RUN... [--dry-run]`: remove runs (refs, local store data, index rows)."""

from __future__ import annotations

import typer

from gitexp.cli._app import app


@app.command()
def rm(
    run_specs: list[str] = typer.Argument(..., metavar="RUN...", help="Run ids (or unique parts)."),
    dry_run: bool = typer.Option(False, "-n", "--dry-run", help="Only list what would go."),
) -> int:
    """Remove runs. Their objects stay until `git gc` prunes them."""
    from gitexp import gc, runs
    from gitexp.cli._app import open_repo

    repo, config = open_repo()
    found = list({r.id: r for r in (runs.find(repo, s, config) for s in run_specs)}.values())
    if dry_run:
        for run in found:
            print(f"would remove {run.id} ({run.status})")
        return 0
    for run_id in gc.remove(repo, found):
        print(f"removed {run_id}")
    return 0
