"""Shell completion: what may come next on a `git exp` command line.

The shell scripts (`completion.bash`, `completion.zsh` beside this module, printed by
`git exp completion SHELL`) call `git-exp` with `_GITEXP_COMPLETE=bash|zsh` and the words
after `exp`, the last one being the word under the cursor; this prints one candidate a line
(zsh: `value:description`). Verbs and options come from the real commands (click's own
completion); a RUN argument completes to the ids under `refs/experiments/`, a REMOTE to the
repository's remotes. Never an error on the terminal: a completion that fails offers nothing.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from typer._click import Command
from typer._click.shell_completion import CompletionItem, _resolve_context, _resolve_incomplete

from gitexp.model import ids
from gitexp.printable import printable

SHELLS = ("bash", "zsh")


def candidates(command: Command, words: list[str]) -> list[CompletionItem]:
    args, incomplete = words[:-1], (words[-1] if words else "")
    # click's own resolution (what ShellComplete.get_completions does): which command or
    # parameter the word under the cursor fills, then that one's candidates
    ctx = _resolve_context(command, {}, "git exp", args)
    param, incomplete = _resolve_incomplete(ctx, args, incomplete)
    items = param.shell_complete(ctx, incomplete)
    if items or incomplete.startswith("-") or getattr(param, "param_type_name", "") != "argument":
        return items
    wants = str(getattr(param, "metavar", None) or getattr(param, "name", "") or "").upper()
    found: list[str] = []
    if "REMOTE" in wants:
        found += _git("remote")
    if "RUN" in wants:
        found += [i for i in (ref.removeprefix(ids.PREFIX) for ref in _git(
            "for-each-ref", "--format=%(refname)", ids.PREFIX)) if ids.is_valid_id(i)]
    return [CompletionItem(w) for w in found if w.startswith(incomplete)]


def render(items: list[CompletionItem], shell: str) -> str:
    if shell == "zsh":  # `_describe` splits value and description at the first bare ':'
        lines = [item.value.replace(":", r"\:") + (f":{printable(item.help)}" if item.help
                                                    else "") for item in items]
    else:
        lines = [item.value for item in items]
    return "".join(f"{line}\n" for line in lines)


def script(shell: str) -> str:
    return (Path(__file__).parent / f"completion.{shell}").read_text()


def _git(*args: str) -> list[str]:
    # Only ids and remote names that are plain words reach the shell: a ref is anyone's.
    proc = subprocess.run(["git", *args], capture_output=True, text=True, errors="replace",
                          check=False)
    return [w for w in proc.stdout.split("\n") if w and w.isprintable() and " " not in w]
