"""`git exp hooks install|uninstall|status`: the git hooks that tag commits and push runs."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from gitexp.cli._app import app, console, open_repo
from gitexp.hooks import install as hooks

if TYPE_CHECKING:
    from gitexp.hooks.install import HookState

hooks_app = typer.Typer(help="Install, remove or inspect gitexp's git hooks.",
                        no_args_is_help=True, add_completion=False)
app.add_typer(hooks_app, name="hooks")


@hooks_app.command()
def install() -> int:
    """Install the hooks; a hook already there is kept and still runs first."""
    repo, _ = open_repo()
    _render(hooks.install(repo))
    return 0


@hooks_app.command()
def uninstall() -> int:
    """Remove the hooks and put back exactly what was there before."""
    repo, _ = open_repo()
    _render(hooks.uninstall(repo))
    return 0


@hooks_app.command()
def status() -> int:
    """Show which hooks are installed, where, and which Python they call."""
    repo, _ = open_repo()
    _render(hooks.status(repo))
    return 0


def _render(states: list[HookState]) -> None:
    out = console()
    for s in states:
        if s.state == "installed":
            python = s.python if s.python_ok else f"{s.python} [red](gone: reinstall)[/]"
            also = f"; also runs {', '.join(p.name for p in s.also_runs)}" if s.also_runs else ""
            out.print(f"[green]{s.name:<19}[/] {s.path}  (python {python}{also})")
        else:
            other = "; another tool's hook is here" if s.state == "foreign" else ""
            out.print(f"[dim]{s.name:<19}[/] not installed{other}")
