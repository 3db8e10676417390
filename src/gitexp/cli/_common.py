"""The helpers every verb shares, typer-free: `git exp run` reads its plain options and
launches before typer is imported (cli/_ahead.py), so what it uses lives here."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gitexp.errors import UsageError
from gitexp.git import Repo
from gitexp.git.config import Config
from gitexp.printable import printable

if TYPE_CHECKING:
    from rich.console import Console


def command_of(words: list[str] | None, verb: str) -> list[str]:
    """CMD as typed after the verb's options, `--` dropped. A word like an option before it
    is one the verb lacks: said so, rather than run as the command (taking `-d` along)."""
    argv = list(words or [])
    if argv[:1] and argv[0].startswith("-") and argv[0] != "--":
        raise UsageError(f"no such option of `git exp {verb}`: {argv[0]}",
                         hint=f"{verb}'s options come first, then `--` and the command "
                              f"(`git exp {verb} -h` lists them)")
    return argv[1:] if argv[:1] == ["--"] else argv


# The repository and settings `git exp run` opened before its verb (cli/_ahead.py): its
# verb takes them rather than asking git again. Emptied when the command ends.
OPENED: list[tuple[Repo, Config]] = []


def open_repo() -> tuple[Repo, Config]:
    if OPENED:
        return OPENED.pop()
    repo = Repo.discover(Path.cwd(), user_env=True)
    return repo, Config.load(repo)


def job_dir(repo: Repo) -> Path:
    """Where a job runs: the user's subdirectory, or the root for a user outside the work
    tree (`git --work-tree=Y exp run`), as git's own commands then take the whole tree."""
    here = Path.cwd()
    return here if here.resolve().is_relative_to(repo.root.resolve()) else repo.root


def console(stderr: bool = False) -> Console:
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    # Piped output is for tools and files: never cut a column to fit an imaginary terminal.
    width = None if stream.isatty() else 400
    return Console(stderr=stderr, highlight=False, soft_wrap=False, width=width)


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, sort_keys=True, default=str)
    sys.stdout.write("\n")


def fail(message: str, hint: str | None) -> None:
    """An error as the user sees it: one line, and a hint."""
    # A message may quote a run, a ref or a store's answer: one line each, shown inert.
    print(f"error: {printable(message)}", file=sys.stderr)
    if hint:
        print(f"hint: {printable(hint)}", file=sys.stderr)
