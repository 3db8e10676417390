"""`git exp gc [--older-than 30d] [--failed] [--keep-best METRIC N] [--dry-run]`."""

from __future__ import annotations

import typer

from gitexp.cli import _ranges as ranges
from gitexp.cli import _render as r
from gitexp.cli._app import HELP, app
from gitexp.cli._common import open_repo
from gitexp.service import gc


@app.command("gc", help=HELP["gc"])
def gc_command(
    older_than: str = typer.Option(None, "--older-than", metavar="AGE",
                                   help="Runs launched longer ago than AGE (30d, 12h).",
                                   callback=ranges.duration),
    failed: bool = typer.Option(False, "--failed", help="Runs that failed, were cancelled or "
                                "were lost."),
    keep_best: tuple[str, int] = typer.Option(None, "--keep-best",
                                              metavar="METRIC N",
                                              help="Keep the N best by METRIC (lowest; -METRIC: "
                                                   "highest), remove the others that have it.",
                                              callback=ranges.metric_and_count),
    checkouts: bool = typer.Option(False, "--checkouts", help="Remove this machine's warm "
                                   "checkouts (kept to start runs fast) that no run holds."),
    dry_run: bool = typer.Option(False, "-n", "--dry-run", help="Only list what would go."),
) -> int:
    repo, config = open_repo()
    if checkouts and not dry_run:
        cleared = gc.clear_checkouts(repo)
        r.note(f"gitexp: removed {len(cleared)} warm checkout(s)")
        if older_than is None and not failed and not keep_best:
            return 0
    policy = gc.Policy.parse(older_than=older_than, failed=failed,
                             keep_best=keep_best or None)
    doomed, seen = gc.plan(repo, config, policy)
    if dry_run:
        r.would_remove(doomed)
        return 0
    done = gc.remove(repo, doomed)
    r.removed(done.ids, none=None if done.failed else "nothing to remove")
    freed = gc.sweep_work(repo, seen)
    if freed:
        r.note(f"gitexp: freed the work directories of {len(freed)} ended run(s)")
    done.check()  # every run kept: one error line naming them, exit 1
    return 0
