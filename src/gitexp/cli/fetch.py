"""`git exp fetch [REMOTE]`: bring in the runs and `exp/*` tags others pushed."""

from __future__ import annotations

import typer

from gitexp.cli._app import app, console, open_repo
from gitexp.service import sharing


@app.command()
def fetch(
    remote: str = typer.Argument(None, help="Remote to fetch from (default: the branch's)."),
) -> int:
    """Fetch runs and exp/* tags; new runs show up in `git exp ls`. Never overwrites a local run."""
    repo, _ = open_repo()
    report = sharing.fetch(repo, remote)
    out = console()
    new_runs = [r for r in report.new if not r.startswith("refs/tags/")]
    out.print(f"{len(new_runs)} new run(s), {len(report.new) - len(new_runs)} new tag(s), "
              f"{len(report.updated)} run(s) updated from {report.remote}")
    for ref, why in report.kept:
        console(stderr=True).print(f"kept local {ref}: {why}")
    return 0
