"""`git exp rm RUN... | --sweep ID [--dry-run]`: remove runs (refs, local store data, index
rows)."""

from __future__ import annotations

import typer

from gitexp.cli import _render as r
from gitexp.cli._app import HELP, SWEEP_OPTION, app, open_repo
from gitexp.errors import GitexpError
from gitexp.service import gc
from gitexp.service import where as w


@app.command(help=HELP["rm"])
def rm(
    run_specs: list[str] = typer.Argument(None, metavar="[RUN]...",
                                          help="Run ids (or unique parts)."),
    sweep: str = SWEEP_OPTION,
    dry_run: bool = typer.Option(False, "-n", "--dry-run", help="Only list what would go."),
) -> int:
    repo, config = open_repo()
    broken: list[str] = []  # named runs whose record is unreadable: removable by name only
    if sweep is not None:
        found = w.pick(repo, config, run_specs or (), sweep=sweep)
    elif run_specs:
        found, broken = gc.resolve(repo, config, run_specs)
    else:
        raise GitexpError("name the runs to remove", hint="git exp rm RUN..., or "
                          "git exp rm --sweep ID (all its runs)")
    if dry_run:
        r.would_remove(found, broken)
        return 0
    r.removed(gc.remove(repo, found) + gc.remove_broken(repo, broken))
    return 0
