"""`git exp logs RUN [-f]`: the run's log, from the store or from git."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import typer

from gitexp.cli._app import JSON_OPTION, app, open_repo, print_json
from gitexp.service import runs

if TYPE_CHECKING:
    from gitexp.git import Repo
    from gitexp.git.config import Config
    from gitexp.service.runs import Run


def stream(repo: Repo, config: Config, run: Run) -> Run:
    """Print the log as it grows. Ctrl-C stops following, never the run. `git exp` reaches
    us through git, which answers Ctrl-C by also sending SIGTERM to its child: one Ctrl-C
    brings two signals, and only the first may interrupt (the second would cut short the
    caller's goodbye)."""
    import signal


    stopping: list[bool] = []

    def interrupted(*_: object) -> None:
        if not stopping:
            stopping.append(True)
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, interrupted)
    signal.signal(signal.SIGTERM, interrupted)
    out = sys.stdout.buffer
    for item in runs.follow(repo, config, run):
        if isinstance(item, bytes):
            out.write(item)
            out.flush()
        else:
            return item
    return run


@app.command()
def logs(
    run: str = typer.Argument(..., help="Run id (or a unique part of it)."),
    follow: bool = typer.Option(False, "-f", "--follow", help="Keep printing until it ends."),
    as_json: bool = JSON_OPTION,
) -> int:
    """Print a run's log."""
    repo, config = open_repo()
    found = runs.find(repo, run, config)
    if as_json:
        print_json({"id": found.id, "status": found.status,
                    "log": runs.read_log(repo, found).decode(errors="replace")})
    elif follow:
        try:
            stream(repo, config, found)
        except KeyboardInterrupt:
            return 130
    else:
        for chunk in runs.iter_log(repo, found):
            sys.stdout.buffer.write(chunk)
    return 0
