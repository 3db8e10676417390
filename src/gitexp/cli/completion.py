"""`git exp completion bash|zsh`: print the completion script (see cli/_completer.py)."""

from __future__ import annotations

import sys

import typer

from gitexp.cli import _completer
from gitexp.cli._app import HELP, app
from gitexp.errors import GitexpError


@app.command(help=HELP["completion"])
def completion(shell: str = typer.Argument(..., metavar="bash|zsh")) -> int:
    if shell not in _completer.SHELLS:
        raise GitexpError(f"no completion for {shell!r}",
                          hint="`git exp completion bash` or `git exp completion zsh`")
    sys.stdout.write(_completer.script(shell))
    return 0
