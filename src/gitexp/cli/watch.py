"""`git exp watch [--interval 60]`: keep an eye on live runs, so finished runs are written
back and lost ones are marked and mailed even when nobody runs `git exp ls`."""

from __future__ import annotations

import typer

from gitexp.cli import _ranges as ranges
from gitexp.cli import _render as r
from gitexp.cli._app import HELP, app
from gitexp.cli._common import open_repo
from gitexp.notify import dev


@app.command(help=HELP["watch"])
def watch(
    interval: float = typer.Option(60.0, "--interval", help="Seconds between looks.",
                                   callback=ranges.number(0.2, 86400, "seconds")),
    until_idle: bool = typer.Option(False, "--until-idle", help="Stop when no run is live."),
) -> int:
    repo, config = open_repo()
    r.changes(dev.watch(repo, config, interval=interval, until_idle=until_idle))
    return 0
