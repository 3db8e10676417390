"""`git exp run`, before its verb's imports: its options read in their plain forms, the
walk of the work tree, and the run's agent on a target that starts it ahead (the local
one), so that both overlap the rest of the launch's start; the repository and its settings,
opened once for the verb too (`_common.open_repo`).

Read here (`plain`), `run` launches without typer's import and parse (cli/_run.py). Any
other form (help, a sweep, a bundled or unknown option, a missing or blank value) goes to
typer, with its errors (cli/run.py); the walk is started then too, no agent. The launch
takes the agent started here only if it is the very agent it would start (`backends.local`:
`start_early`, `start_ahead`). Anything amiss here is the verb's to say, in its own words:
here it only means nothing is started."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gitexp.backends import StartsAhead, backend_for, max_checkpoint
from gitexp.cli._common import OPENED
from gitexp.data import is_dvc_project
from gitexp.errors import GitexpError
from gitexp.git import Repo, snapshot
from gitexp.git.config import Config
from gitexp.model import ids
from gitexp.service import preflight


@dataclass(frozen=True)
class RunOptions:
    """What `git exp run` was asked, whichever parse read it (`plain`, or typer's)."""

    command: list[str]
    name: str | None = None
    target: str | None = None
    detach: bool = False
    outs: tuple[str, ...] = ()
    sweep: tuple[str, ...] = ()
    max_parallel: int = 0
    commit_data: bool = False
    keep: bool = False
    force: bool = False
    allow_large: bool = False


# Every option of `run` (cli/run.py; a test holds the two together): flags and options with
# a value, as RunOptions fields, and the sweep's, which only typer reads.
_FLAGS = {"-d": "detach", "--detach": "detach", "--commit-data": "commit_data",
          "--keep": "keep", "--force": "force", "--allow-large": "allow_large"}
_VALUED = {"-n": "name", "--name": "name", "-t": "target", "--target": "target",
           "--out": "outs"}
SWEEP_OPTIONS = frozenset({"--sweep", "--max-parallel"})


def plain(args: list[str]) -> RunOptions | None:
    """`run ARGS` (`args`: what follows the verb) when every option is in a form read here
    and a command follows; None otherwise, for typer to read."""
    found: dict[str, Any] = {}  # RunOptions' fields
    outs: list[str] = []
    i = 0
    while i < len(args):
        word = args[i]
        if word == "--" or not word.startswith("-"):
            command = args[i + 1:] if word == "--" else args[i:]
            if not command or command[0].startswith("-"):  # typer's to refuse, or not
                return None
            return RunOptions(command=command, outs=tuple(outs), **found)
        key, eq, value = word.partition("=")
        if word in _FLAGS:
            found[_FLAGS[word]] = True
        elif (key.startswith("--") and eq) or (word in _VALUED and i + 1 < len(args)):
            if not eq:
                key, value = word, args[i + 1]
                i += 1
            field = _VALUED.get(key)
            if field is None or not value.strip():  # a blank name is a slip: typer says so
                return None
            if field == "outs":
                outs.append(value)
            else:
                found[field] = value
        else:
            return None
        i += 1
    return None


def start(options: RunOptions | None) -> Callable[[], None]:
    """The walk started for `run`; when its options were read (`options`), its agent and
    (outside DVC projects) the preflight and snapshot too. The function returned drops what
    the launch did not take."""
    drops: list[Callable[[], None]] = [snapshot.forget_ahead, OPENED.clear]
    with contextlib.suppress(GitexpError, OSError):
        repo = Repo.discover(Path.cwd(), user_env=True)
        snapshot.walk_ahead(repo)  # the longest: ~60 ms of git at 20,000 files
        config = Config.load(repo)
        OPENED.append((repo, config))
        with contextlib.suppress(GitexpError):
            if options is not None:
                drops.append(_agent(repo, config, options))
        if options is not None and not is_dvc_project(repo.root):
            # dropped first: the thread is done before the walk it takes is forgotten
            drops.insert(0, preflight.take_ahead(repo, config, allow_large=options.allow_large))

    def forget() -> None:
        for drop in drops:
            drop()

    return forget


def _agent(repo: Repo, config: Config, options: RunOptions) -> Callable[[], None]:
    """The run's agent started early, where its target starts one ahead; what drops it."""
    backend = backend_for(config.target(options.target), repo)
    if not isinstance(backend, StartsAhead):
        return _nothing
    name = options.name
    return backend.start_early(
        name=ids.check_name(name) if name is not None else ids.default_name(options.command),
        heartbeat=config.heartbeat(), max_checkpoint=max_checkpoint(config))


def _nothing() -> None:
    pass
