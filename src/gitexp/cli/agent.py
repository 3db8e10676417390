"""`gitexp agent …`: the worker-side program (started by backends, not by people)."""

from __future__ import annotations

import typer

from gitexp.cli._app import app
from gitexp.worker.agent import main


@app.command(hidden=True, context_settings={"ignore_unknown_options": True,
                                            "allow_extra_args": True})
def agent(ctx: typer.Context) -> int:
    """Run one job on this worker (internal)."""
    return main(list(ctx.args))
