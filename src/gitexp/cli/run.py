"""`git exp run` as typer declares and reads it: its help, and every form the plain parse
leaves to typer (cli/_ahead.py); the work is cli/_run.py's."""

from __future__ import annotations

import typer

from gitexp.cli import _ranges as ranges
from gitexp.cli import _run
from gitexp.cli._ahead import RunOptions
from gitexp.cli._app import HELP, app
from gitexp.cli._common import command_of


@app.command(help=HELP["run"], context_settings={"allow_interspersed_args": False,
                               "ignore_unknown_options": True})
def run(  # noqa: PLR0917 - typer reads options from the signature
    command: list[str] = typer.Argument(None, metavar="-- CMD [ARGS]...",
                                        help="The command, exactly as it should run."),
    name: str = typer.Option(None, "-n", "--name", help="A prefix for the run id."),
    target: str = typer.Option(None, "-t", "--target", help="Where to run (default: local).",
                               callback=ranges.name),
    detach: bool = typer.Option(False, "-d", "--detach", help="Print the run id and return."),
    out: list[str] = typer.Option([], "--out", help="An output path to record (repeatable)."),
    sweep: list[str] = typer.Option([], "--sweep", metavar="NAME=V1,V2",
                                    help="One run per combination; {NAME} in CMD is replaced."),
    max_parallel: int = typer.Option(0, "--max-parallel", metavar="N",
                                     help="Run at most N runs of the sweep at once.",
                                     callback=ranges.count(0, 10_000, "a number of runs")),
    commit_data: bool = typer.Option(False, "--commit-data",
                                     help="Record changed DVC-tracked data (dvc commit) first."),
    keep: bool = typer.Option(False, "--keep",
                              help="Keep the VM or container after the run, for debugging."),
    force: bool = typer.Option(False, "--force",
                               help="Run even if the same run already succeeded."),
    allow_large: bool = typer.Option(False, "--allow-large", help="Snapshot files over "
                                     "exp.maxUntrackedSize/maxFileSize anyway."),
) -> int:
    return _run.run(RunOptions(
        command=command_of(command, "run"), name=name, target=target, detach=detach,
        outs=tuple(out), sweep=tuple(sweep), max_parallel=max_parallel,
        commit_data=commit_data, keep=keep, force=force, allow_large=allow_large))
