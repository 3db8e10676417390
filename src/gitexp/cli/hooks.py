"""`git exp hooks install|uninstall|status`: the git hooks that tag commits and push runs."""

from __future__ import annotations

import typer

from gitexp.cli import _render as r
from gitexp.cli._app import HELP, app
from gitexp.cli._common import open_repo
from gitexp.hooks import install as hooks

hooks_app = typer.Typer(help=HELP["hooks"],
                        no_args_is_help=True, add_completion=False)
app.add_typer(hooks_app, name="hooks")


@hooks_app.command()
def install() -> int:
    """Install the hooks; a hook already there is kept and still runs first."""
    repo, _ = open_repo()
    r.hooks(hooks.install(repo))
    return 0


@hooks_app.command()
def uninstall() -> int:
    """Remove the hooks and put back exactly what was there before."""
    repo, _ = open_repo()
    r.hooks(hooks.uninstall(repo))
    return 0


@hooks_app.command()
def status() -> int:
    """Show which hooks are installed, where, and which Python they call."""
    repo, _ = open_repo()
    r.hooks(hooks.status(repo))
    return 0

