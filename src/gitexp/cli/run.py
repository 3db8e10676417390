"""`git exp run`: snapshot, record, launch; follow the log unless detached."""

from __future__ import annotations

import typer

from gitexp.cli import _ranges as ranges
from gitexp.cli import _render as r
from gitexp.cli._app import HELP, app, command_of, job_dir, open_repo
from gitexp.cli._follow import follow_run, follow_sweep
from gitexp.cli._sweep import launch_sweep
from gitexp.notify import dev as notify
from gitexp.service import launch


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
    repo, config = open_repo()
    with r.data_progress() as progress:
        req = launch.LaunchRequest(argv=command_of(command, "run"), cwd=job_dir(repo), name=name,
                                   target=target, outs=tuple(out), commit_data=commit_data,
                                   progress=progress, force=force, keep=keep,
                                   allow_large=allow_large, say=r.note,
                                   prepare=notify.preparer(repo, config, r.note))
        if sweep or max_parallel:
            launched = launch_sweep(repo, config, req, sweep, max_parallel, detach=detach)
        else:
            started = launch.start(repo, config, req)
    if sweep or max_parallel:
        return 0 if detach else follow_sweep(repo, config, launched)
    if detach:
        print(started.id)
        return 0
    return follow_run(repo, config, started)

