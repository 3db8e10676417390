"""The typer app: every verb's registration, help and shared options, and the parse of a
command line by typer (`main`). `git exp run` in its plain forms never comes here
(cli/_ahead.py): typer's import alone is ~50 ms of its start."""

from __future__ import annotations

import contextlib
import sys
from importlib import import_module
from pathlib import Path

import typer
from typer import Abort
from typer._click import exceptions as click_exc
from typer.main import get_command

from gitexp.cli._common import fail

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
    # that verb the whole program): `load` imports just the verb being run.
    pass


JSON_OPTION = typer.Option(False, "--json", help="Print JSON instead of a table.")
SWEEP_OPTION = typer.Option(None, "--sweep", metavar="ID",
                            help="The runs of one sweep (its id, or a unique part of it).")
WHERE_OPTION = typer.Option(None, "--where", metavar="EXPR",
                            help="A filter over fields, metrics and params, "
                                 "e.g. 'lr<0.01 and status==succeeded'.")
TRUST_OPTION = typer.Option(False, "--trust", help="Act on a run someone else launched "
                            "(its command, its outputs): you have read it and trust it.")


# Each subcommand module (cli/<verb>.py) registers itself on `app` when imported. Only the
# verb being run is imported, with the part of gitexp it needs: `git exp ls` never loads the
# code that launches runs, and `git exp -h` lists the verbs by their help alone (`HELP`).
# A verb that is a Python keyword lives in `<verb>_.py` (`import_.py`: `git exp import`).
_MODULES = {m.stem.removesuffix("_"): m.stem for m in Path(__file__).parent.glob("[!_]*.py")}
VERBS = tuple(sorted(_MODULES))


def main(args: list[str]) -> int:
    """`git exp ARGS` parsed by typer, and the verb it names run; click's own errors (a bad
    option, a value not a number) in gitexp's one line and hint."""
    load(args)
    try:
        rv = get_command(app).main(args, prog_name="git exp", standalone_mode=False)
    except click_exc.NoArgsIsHelpError as exc:
        exc.show()  # the help: not an error to put in one line
        return exc.exit_code
    except click_exc.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx else "git exp"
        fail(exc.format_message(), f"`{where} -h` lists its options and what they take")
        return exc.exit_code
    except click_exc.ClickException as exc:
        exc.show()
        return exc.exit_code
    except Abort:
        raise KeyboardInterrupt from None  # the one way an interruption is told (cli.main)
    return rv if isinstance(rv, int) else 0


def load(args: list[str] | None = None) -> None:
    """Register the verb `args` names (their first word); without one (help, a typo), list
    every verb by name and help, importing none."""
    verb = next((a for a in args or [] if not a.startswith("-")), None)
    if verb in VERBS:
        import_module(f"gitexp.cli.{_MODULES[verb]}")
        return
    for name, text in HELP.items():
        if name in GROUPS:
            app.add_typer(typer.Typer(help=text), name=name)
        else:
            app.command(name=name, help=text)(_listed)


def load_all() -> None:
    """Register every verb, whole (for tools that inspect the real commands)."""
    for name in VERBS:
        import_module(f"gitexp.cli.{_MODULES[name]}")


def _listed() -> None:
    """Stands for a verb in the list of verbs; never runs (a named verb is imported)."""


def complete(shell: str, words: list[str]) -> int:
    """What may come next after `words`, for `shell` (cli/completion.bash, .zsh)."""
    # By name, as the verbs are: only a shell asking pays for it (run ids need model.ids).
    completer = import_module("gitexp.cli._completer")
    # A completion that fails offers nothing and says nothing: the user is typing.
    with contextlib.suppress(Exception):
        load(words[:-1])  # the verb being typed, or none (the verbs by their help)
        found = completer.candidates(get_command(app), words)
        sys.stdout.write(completer.render(found, shell))
    return 0
