"""`git exp fetch [REMOTE]`: bring in the runs and `exp/*` tags others pushed."""

from __future__ import annotations

import typer

from gitexp.cli import _render as r
from gitexp.cli._app import app, open_repo
from gitexp.service import sharing


@app.command()
def fetch(
    remote: str = typer.Argument(None, help="Remote to fetch from (default: the branch's)."),
) -> int:
    """Fetch runs and exp/* tags; new runs show up in `git exp ls`. Never overwrites a local run."""
    repo, _ = open_repo()
    r.fetched(sharing.fetch(repo, remote))
    return 0
