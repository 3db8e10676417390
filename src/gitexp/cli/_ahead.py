"""`git exp run`, before its verb's imports and parse: the walk of the work tree, and the
run's agent on a target that starts it ahead (the local one), so that both overlap them;
the repository and its settings, opened once for the verb too (`_app.open_repo`).

The agent's name comes from a guess at run's options, in their plain forms only; when
unsure (a sweep, help, an option this guess does not know), no agent is started here and
the launch starts its own, as it would anyway. The launch takes this one only if it is the
very agent it would start (`backends.local`: `start_early`, `start_ahead`). Anything amiss
here is the verb's to say, in its own words: here it only means nothing is started."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

from gitexp.backends import StartsAhead, backend_for, max_checkpoint
from gitexp.cli._app import OPENED
from gitexp.errors import GitexpError
from gitexp.git import Repo, snapshot
from gitexp.git.config import Config
from gitexp.model import ids

# Every option of `run` (cli/run.py; a test holds the two together): flags, options with a
# value (what the guess keeps of them), and the sweep's, for which it starts nothing.
_FLAGS = frozenset({"-d", "--detach", "--commit-data", "--keep", "--force", "--allow-large"})
_VALUED = {"-n": "name", "--name": "name", "-t": "target", "--target": "target", "--out": ""}
SWEEP_OPTIONS = frozenset({"--sweep", "--max-parallel"})


def start(args: list[str]) -> Callable[[], None]:
    """Both started for `run ARGS` (`args`: what follows the verb); the function returned
    drops what the launch did not take."""
    drops: list[Callable[[], None]] = [snapshot.forget_ahead, OPENED.clear]
    with contextlib.suppress(GitexpError, OSError):
        repo = Repo.discover(Path.cwd(), user_env=True)
        snapshot.walk_ahead(repo)
        config = Config.load(repo)
        OPENED.append((repo, config))
        plain = _plain(args)
        if plain is not None:
            name, target_name, command = plain
            backend = backend_for(config.target(target_name), repo)
            if isinstance(backend, StartsAhead):
                drops.append(backend.start_early(
                    name=ids.check_name(name) if name is not None else ids.default_name(command),
                    heartbeat=config.heartbeat(), max_checkpoint=max_checkpoint(config)))

    def forget() -> None:
        for drop in drops:
            drop()

    return forget


def _plain(args: list[str]) -> tuple[str | None, str | None, list[str]] | None:
    """(name, target, command) of `run ARGS` when every option is in a form this knows;
    None otherwise, or with no command."""
    found: dict[str, str] = {}
    i = 0
    while i < len(args):
        word = args[i]
        if word == "--" or not word.startswith("-"):
            command = args[i + 1:] if word == "--" else args[i:]
            return (found.get("name"), found.get("target"), command) if command else None
        key, eq, value = word.partition("=")
        if word in _FLAGS:
            pass
        elif key.startswith("--") and eq and key in _VALUED:
            found[_VALUED[key]] = value
        elif word in _VALUED and i + 1 < len(args):
            i += 1
            found[_VALUED[word]] = args[i]
        else:  # -h, --sweep, -dn, an option this does not know: the verb decides
            return None
        i += 1
    return None
