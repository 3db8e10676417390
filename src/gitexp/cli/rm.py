"""`git exp rm [--remote [REMOTE]] RUN... | --sweep ID [--dry-run]`: remove runs (refs, local
store data, index rows; with --remote, the remote's refs and tags first)."""

from __future__ import annotations

import typer

from gitexp.cli import _render as r
from gitexp.cli._app import HELP, SWEEP_OPTION, app
from gitexp.cli._common import open_repo
from gitexp.service import gc, sharing


@app.command(help=HELP["rm"])
def rm(
    run_specs: list[str] = typer.Argument(None, metavar="[REMOTE] [RUN]...",
                                          help="Run ids (or unique parts); with --remote, "
                                          "first the remote (default: the branch's)."),
    sweep: str = SWEEP_OPTION,
    dry_run: bool = typer.Option(False, "-n", "--dry-run", help="Only list what would go."),
    remote: bool = typer.Option(False, "--remote", help="Also delete them (refs and exp/* "
                                "tags) from the remote, before removing them here."),
) -> int:
    repo, config = open_repo()
    words = list(run_specs or [])
    name = words.pop(0) if remote and words and (len(words) > 1 or sweep is not None) \
        and sharing.is_remote(repo, words[0]) else None
    found, broken = gc.named(repo, config, words, sweep)
    if dry_run:
        r.would_remove(found, broken)
        return 0
    if not remote:
        done = gc.remove(repo, found, config, say=r.note) + gc.remove_broken(repo, broken)
        r.removed(done.ids)
        done.check()  # every run kept: one error line naming them, exit 1
        return 0
    report, done = gc.remove_everywhere(repo, found, broken, name, config=config, say=r.note)
    r.unpublished(report)
    r.removed(done.ids)
    done.check()
    return 1 if report.rejected else 0
