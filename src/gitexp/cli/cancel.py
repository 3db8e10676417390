"""`git exp cancel RUN… | --sweep ID`: stop runs; the job and all its children end as
`cancelled`."""

from __future__ import annotations

import typer

from gitexp.cli import _render as r
from gitexp.cli._app import HELP, SWEEP_OPTION, app
from gitexp.cli._common import open_repo
from gitexp.errors import GitexpError
from gitexp.service import runs
from gitexp.service import where as w


@app.command(help=HELP["cancel"])
def cancel(
    runs_: list[str] = typer.Argument(None, metavar="[RUN]...", help="Runs to stop."),
    sweep: str = SWEEP_OPTION,
) -> int:
    repo, config = open_repo()
    if sweep is not None:  # a sweep: its live runs; the ended ones are no error
        stopped, ended = runs.cancel_live(repo, config, w.pick(repo, config, runs_ or (),
                                                               sweep=sweep))
        r.cancelled_sweep(stopped, ended)
        return 0
    if not runs_:
        raise GitexpError("name the runs to stop", hint="git exp cancel RUN..., or "
                          "git exp cancel --sweep ID (its live runs)")
    for spec in runs_:
        found = runs.find(repo, spec, config)
        leftover = runs.cancel(repo, config, found)  # an ended run's job that still ran
        if leftover is None:
            r.cancelling(found)
        else:
            r.stopped_leftover(found, leftover)
    return 0
