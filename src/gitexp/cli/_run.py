"""`git exp run` once its options are read (by cli/_ahead.py's plain parse, or by typer's in
cli/run.py): snapshot, record, launch; follow the log unless detached."""

from __future__ import annotations

from gitexp.cli import _render as r
from gitexp.cli._ahead import RunOptions
from gitexp.cli._common import job_dir, open_repo
from gitexp.cli._follow import follow_run, follow_sweep
from gitexp.cli._sweep import launch_sweep
from gitexp.notify import dev as notify
from gitexp.service import launch


def run(options: RunOptions) -> int:
    repo, config = open_repo()
    sweeping = bool(options.sweep or options.max_parallel)
    with r.data_progress() as progress:
        req = launch.LaunchRequest(argv=options.command, cwd=job_dir(repo), name=options.name,
                                   target=options.target, outs=options.outs,
                                   commit_data=options.commit_data, progress=progress,
                                   force=options.force, keep=options.keep,
                                   allow_large=options.allow_large, say=r.note,
                                   prepare=notify.preparer(repo, config, r.note))
        if sweeping:
            launched = launch_sweep(repo, config, req, list(options.sweep),
                                    options.max_parallel, detach=options.detach)
        else:
            started = launch.start(repo, config, req)
    if sweeping:
        return 0 if options.detach else follow_sweep(repo, config, launched)
    if options.detach:
        print(started.id)
        return 0
    return follow_run(repo, config, started)
