"""`git exp ui [--port N] [--no-open]`: the runs in a local web view (see gitexp/ui/)."""

from __future__ import annotations

import os
import socket
import sys
import webbrowser

import typer

from gitexp.cli import _ranges as ranges
from gitexp.cli import _render as r
from gitexp.cli._app import HELP, app
from gitexp.cli._common import open_repo
from gitexp.errors import UsageError
from gitexp.ui import server


@app.command(help=HELP["ui"])
def ui(
    port: int = typer.Option(0, "--port", metavar="N", help="The port (default: a free one).",
                             callback=ranges.count(0, 65535, "a port")),
    no_open: bool = typer.Option(False, "--no-open", help="Do not open a browser."),
    host: str = typer.Option("127.0.0.1", "--host", metavar="ADDR",
                             help="Listen on ADDR (other than loopback: with --expose)."),
    expose: bool = typer.Option(False, "--expose", help="Allow a --host other than loopback: "
                                "anyone who reaches it sees every run (and can cancel live "
                                "ones with the page's token)."),
) -> int:
    if host not in ("127.0.0.1", "localhost", "::1") and not expose:
        raise UsageError(f"--host {host} would show the runs to the network",
                         hint="add --expose if that is what you want")
    repo, config = open_repo()
    sock = server.listen(host, port)
    bound = sock.getsockname()[1]
    view = server.View(repo=repo, config=config,
                       hosts=server.hosts_for(host, bound, exposed=expose))
    view.warm()
    shown = socket.getfqdn() if host in ("0.0.0.0", "::") else host  # noqa: S104
    name = f"[{shown}]" if ":" in shown else shown
    url = f"http://{name}:{bound}/"
    if expose:
        r.note(f"warning: serving {repo.root} to whoever reaches {name}:{bound}")
    r.note(f"gitexp: the runs of {repo.root} at {url} (Ctrl-C stops)")
    print(url, flush=True)  # stdout: for a script that waits for the server
    if not no_open and _has_browser():
        webbrowser.open(url)
    server.serve(view, sock)
    return 0


def _has_browser() -> bool:
    """A graphical browser to open: not on a headless box, where webbrowser would start a
    text one in this very terminal."""
    return sys.platform in ("darwin", "win32") or bool(
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
