"""Following what `git exp run` started, to its end: one run, or every run of a sweep."""

from __future__ import annotations

from gitexp.cli import _render as r
from gitexp.errors import EXIT_INTERRUPTED
from gitexp.git import Repo
from gitexp.git.config import Config
from gitexp.service import runs, sweep
from gitexp.service.runs import Run


def follow_run(repo: Repo, config: Config, started: Run) -> int:
    """The run's log as it grows; the run's exit code (`runs.exit_code`)."""
    r.started(started)
    try:
        ended = r.stream(runs.follow(repo, config, started), started)
    except KeyboardInterrupt:
        r.stopped_following(started)
        return EXIT_INTERRUPTED
    r.ended(ended)
    return runs.exit_code(ended)


def follow_sweep(repo: Repo, config: Config, launched: sweep.Sweep) -> int:
    """Every run's log, line by line behind its point; the exit code of the first run (in
    sweep order) that did not succeed, or 0."""
    try:
        ended = r.stream_all(runs.follow_all(repo, config, launched.runs), launched.runs)
    except KeyboardInterrupt:
        r.stopped_following_sweep(launched.id)
        return EXIT_INTERRUPTED
    r.sweep_ended(launched.id, ended)
    return next((code for code in map(runs.exit_code, ended) if code), 0)
