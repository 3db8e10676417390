"""`git exp rerun RUN [-t TARGET] [--check] [--script]`: replay a run from its own snapshot."""

from __future__ import annotations

import math
import sys

import typer

from gitexp.cli import _ranges as ranges
from gitexp.cli import _render as r
from gitexp.cli._app import HELP, TRUST_OPTION, app
from gitexp.cli._common import open_repo
from gitexp.notify import dev as notify
from gitexp.service import launch, runs, trust
from gitexp.service import rerun as replay


@app.command(help=HELP["rerun"])
def rerun(  # noqa: PLR0917 - typer reads options from the signature
    run: str = typer.Argument(..., help="Run id (or a unique part of it)."),
    target: str = typer.Option(None, "-t", "--target", help="Where to run (default: the run's).",
                               callback=ranges.name),
    check: bool = typer.Option(False, "--check", help="Wait, then say whether it reproduced."),
    rtol: float = typer.Option(0.0, "--rtol", help="Relative tolerance per metric "
                               "and per number in JSON/YAML/CSV/TSV outputs (--check).",
                               callback=ranges.number(0, math.inf, "a tolerance")),
    atol: float = typer.Option(0.0, "--atol", help="Absolute tolerance per metric (--check).",
                               callback=ranges.number(0, math.inf, "a tolerance")),
    script: bool = typer.Option(False, "--script", help="Print a shell script that replays the "
                                "run with git and DVC alone; launch nothing."),
    remote: str = typer.Option(None, "--remote", help="URL the script fetches from "
                               "(default: origin, else this repository)."),
    detach: bool = typer.Option(False, "-d", "--detach", help="Print the new run id and return."),
    trusted: bool = TRUST_OPTION,
) -> int:
    repo, config = open_repo()
    original = runs.find(repo, run, config)
    trust.require(repo, original.record, own=original.own, trust=trusted,
                  doing="write a script that runs its command" if script
                  else "run its command")
    if script:
        sys.stdout.write(replay.script(repo, original, remote))
        return 0
    started = launch.relaunch(repo, config, original, target=target,
                              prepare=notify.preparer(repo, config, r.note))
    if detach and not check:
        print(started.id)
        return 0
    r.rerunning(started, original)
    ended = r.stream(runs.follow(repo, config, started), started)
    if not check:
        return runs.exit_code(ended)
    ended = runs.find(repo, ended.id, config)
    verdict = replay.check(original, ended, rtol=rtol, atol=atol, repo=repo)
    replay.record_verdict(repo, ended, verdict)
    r.reproduction(original, ended, verdict, rtol, atol)
    return 0 if verdict["reproduced"] else 1
