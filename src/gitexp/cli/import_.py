"""`git exp import dvc`: DVC experiments (refs/exps/) become runs; again adds only new ones."""

from __future__ import annotations

import typer

from gitexp.cli import _render as r
from gitexp.cli._app import HELP, app
from gitexp.cli._common import open_repo
from gitexp.errors import UsageError
from gitexp.service import dvcimport


@app.command(name="import", help=HELP["import"])
def import_(
    source: str = typer.Argument(..., metavar="SOURCE", help="What to import from: `dvc`."),
) -> int:
    if source != "dvc":
        raise UsageError(f"cannot import from {source!r}",
                         hint="`git exp import dvc` imports DVC experiments")
    repo, _ = open_repo()
    done = dvcimport.import_dvc(repo)
    r.imported(done.added, done.present, done.refused)
    return 1 if done.refused else 0
