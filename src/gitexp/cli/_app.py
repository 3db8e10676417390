"""The typer app and the helpers every subcommand shares."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from gitexp.git import Repo
from gitexp.git.config import Config

if TYPE_CHECKING:
    from rich.console import Console

app = typer.Typer(
    name="git exp",
    help="Git-integrated experiment tracking: every run is an auditable, rerunnable git object.",
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _group() -> None:
    # A callback keeps `app` a group when only one verb is loaded (typer would otherwise make
    # that verb the whole program): `cli.load` imports just the verb being run.
    pass


JSON_OPTION = typer.Option(False, "--json", help="Print JSON instead of a table.")


def open_repo() -> tuple[Repo, Config]:
    repo = Repo.discover(Path.cwd())
    return repo, Config.load(repo)


def console(stderr: bool = False) -> Console:
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    # Piped output is for tools and files: never cut a column to fit an imaginary terminal.
    width = None if stream.isatty() else 400
    return Console(stderr=stderr, highlight=False, soft_wrap=False, width=width)


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, sort_keys=True, default=str)
    sys.stdout.write("\n")
