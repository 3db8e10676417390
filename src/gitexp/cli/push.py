"""`git exp push [REMOTE] [RUN...]`: share finished runs and their `exp/*` tags."""

from __future__ import annotations

import typer

from gitexp.cli import _render as r
from gitexp.cli._app import HELP, app
from gitexp.cli._common import open_repo
from gitexp.service import runs, sharing


@app.command(help=HELP["push"])
def push(
    args: list[str] = typer.Argument(None, metavar="[REMOTE] [RUN]...",
                                     help="Remote (default: the branch's), then run ids."),
) -> int:
    repo, config = open_repo()
    words = list(args or [])
    remote = words.pop(0) if words and sharing.is_remote(repo, words[0]) else None
    ids = [runs.find(repo, w, config).id for w in words]
    with r.count_progress("folding runs into archives") as bar:  # a migration: minutes
        report = sharing.push(repo, remote, ids, progress=bar)
    r.pushed(report)
    return 1 if report.rejected else 0
