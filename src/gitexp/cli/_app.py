"""The typer app and the helpers every subcommand shares."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from gitexp.errors import UsageError
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


# Each verb's help, in one place: `git exp -h` lists the verbs from here without importing
# any (together they would load most of gitexp); each verb module takes its own from here.
HELP: dict[str, str] = {
    "apply": "Put a run's files (its snapshot) into the work tree; HEAD, branch and index "
        "stay. Refuses on uncommitted changes.",
    "cancel": "Stop running runs (those named, or the live runs of a sweep).",
    "completion": "Print the shell completion script for `git exp` (bash or zsh).",
    "checkout": "Check out the snapshot a run launched from. Refuses on uncommitted changes.",
    "diff": "Compare command, params, data, code, metrics and environment.",
    "fetch": "Fetch runs and exp/* tags; new runs show up in `git exp ls`. Never overwrites a "
        "local run.",
    "gc": "Remove ended runs matching every criterion given; live runs are never touched.",
    "import": "Import DVC experiments (`git exp import dvc`: refs/exps/) as runs; again "
        "imports only new ones.",
    "logs": "Print a run's log.",
    "ls": "List runs (newest first): id, status, target, start, duration, command, metrics.",
    "note": "Add a note to a run, or list its notes. Kept in git; `git exp push` shares them.",
    "outputs": "Restore the outputs a run recorded (`--out`, dvc.yaml outs), byte-identical.",
    "plot": "Draw metric curves of one or more runs into a PNG, one colour per run.",
    "push": "Push finished runs (all, or the ones named) and their exp/* tags; never forces.",
    "report": "Write the runs table, metric curves and every run's record into one offline "
        "HTML file: the web view of `git exp ui`, frozen.",
    "rerun": "A new run of RUN's snapshot, argv, directory and data version (not of the work "
        "tree).",
    "rm": "Remove runs. Their objects stay until `git gc` prunes them.",
    "run": "Snapshot the work tree and run CMD on a target, from exactly that snapshot.",
    "show": "Show everything about one run.",
    "ui": "Look at the runs in the browser: a local web view (table, curves, diffs, logs).",
    "tag": "Tag a run (-d: untag), or list its tags. Kept in git; `git exp push` shares them.",
    "targets": "List the targets (`exp.target.<name>.*` in .gitexp/config and git config).",
    "watch": "Observe live runs in a loop; print each status change.",
    "hooks": "Install, remove or inspect gitexp's git hooks.",
    "image": "The project's container image (dev = prod).",
}
GROUPS = ("hooks", "image")  # verbs that are typer groups of their own (hooks install, ...)


@app.callback()
def _group() -> None:
    # A callback keeps `app` a group when only one verb is loaded (typer would otherwise make
    # that verb the whole program): `cli.load` imports just the verb being run.
    pass


JSON_OPTION = typer.Option(False, "--json", help="Print JSON instead of a table.")
SWEEP_OPTION = typer.Option(None, "--sweep", metavar="ID",
                            help="The runs of one sweep (its id, or a unique part of it).")
WHERE_OPTION = typer.Option(None, "--where", metavar="EXPR",
                            help="A filter over fields, metrics and params, "
                                 "e.g. 'lr<0.01 and status==succeeded'.")
TRUST_OPTION = typer.Option(False, "--trust", help="Act on a run someone else launched "
                            "(its command, its outputs): you have read it and trust it.")


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
