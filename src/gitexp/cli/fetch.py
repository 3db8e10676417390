"""`git exp fetch [REMOTE]`: bring in the runs and `exp/*` tags others pushed."""

from __future__ import annotations

import typer

from gitexp.cli import _render as r
from gitexp.cli._app import HELP, app
from gitexp.cli._common import open_repo
from gitexp.service import sharing


@app.command(help=HELP["fetch"])
def fetch(
    remote: str = typer.Argument(None, help="Remote to fetch from (default: the branch's)."),
) -> int:
    repo, _ = open_repo()
    with r.count_progress("checking runs") as bar:  # a first fetch of a shared remote
        report = sharing.fetch(repo, remote, progress=bar)
    r.fetched(report)
    return 0
