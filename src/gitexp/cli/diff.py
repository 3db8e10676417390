"""`git exp diff A [B] [--patch] [--json]`: what differs between two runs, or a run and its base."""

from __future__ import annotations

import typer

from gitexp.cli import _render as r
from gitexp.cli._app import HELP, JSON_OPTION, app
from gitexp.cli._common import open_repo, print_json
from gitexp.service import diff as core
from gitexp.service import runs


@app.command(help=HELP["diff"])
def diff(
    a: str = typer.Argument(..., metavar="RUN", help="A run id (or a unique part of it)."),
    b: str = typer.Argument(None, metavar="[RUN]",
                            help="Another run; without it, the first one's base commit."),
    patch: bool = typer.Option(False, "-p", "--patch", help="The full code diff, not --stat."),
    as_json: bool = JSON_OPTION,
) -> int:
    repo, config = open_repo()
    run_a = runs.find(repo, a, config)
    report = (core.runs(repo, run_a, runs.find(repo, b, config), patch=patch) if b
              else core.against_base(repo, run_a, patch=patch))
    if as_json:
        print_json(report.to_dict())
        return 0
    r.diff(report, patch)
    return 0
