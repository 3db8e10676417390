"""`git exp logs RUN [-f]`: the run's log, from the store or from git."""

from __future__ import annotations

import typer

from gitexp.cli import _render as r
from gitexp.cli._app import HELP, JSON_OPTION, app
from gitexp.cli._common import open_repo, print_json
from gitexp.errors import EXIT_INTERRUPTED
from gitexp.service import runs


@app.command(help=HELP["logs"])
def logs(
    run: str = typer.Argument(..., help="Run id (or a unique part of it)."),
    follow: bool = typer.Option(False, "-f", "--follow", help="Keep printing until it ends."),
    as_json: bool = JSON_OPTION,
) -> int:
    repo, config = open_repo()
    found = runs.find(repo, run, config)
    if as_json:
        print_json({"id": found.id, "status": found.status,
                    "log": runs.read_log(repo, found).decode(errors="replace")})
    elif follow:  # ends as the run ended: `runs.exit_code`, as `git exp run` does
        try:
            ended = r.stream(runs.follow(repo, config, found), found)
        except KeyboardInterrupt:
            return EXIT_INTERRUPTED
        return runs.exit_code(ended)
    else:
        r.write_log(runs.iter_log(repo, found))
    return 0
