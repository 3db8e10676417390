"""`git exp show RUN`: record, params, result, data version and the tail of the log."""

from __future__ import annotations

import typer

from gitexp.cli import _render as r
from gitexp.cli._app import HELP, JSON_OPTION, app
from gitexp.cli._common import open_repo, print_json
from gitexp.service import params, runs, tagging


@app.command(help=HELP["show"])
def show(
    run: str = typer.Argument(..., help="Run id (or a unique part of it)."),
    as_json: bool = JSON_OPTION,
) -> int:
    repo, config = open_repo()
    found = runs.find(repo, run, config)
    known = params.of_run(repo, found.record)  # params files, argv flags, the record's own
    notes = tagging.of(repo, [found])[found.id]
    if as_json:
        print_json({**r.as_json(found), "params": known} | r.tags_and_notes_json(notes))
        return 0
    r.show(found, known)
    r.tags_and_notes(notes)
    # the log last: reading it may be slow or fail, and must not hide the rest
    r.log_tail(runs.read_log_tail(repo, found))
    return 0
