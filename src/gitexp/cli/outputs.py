"""`git exp outputs RUN`: bring a run's recorded outputs into the work tree (via DVC)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import typer

from gitexp import data
from gitexp.cli._app import app, console, open_repo
from gitexp.service import runs


@app.command()
def outputs(
    run: str = typer.Argument(..., help="Run id (or a unique part of it)."),
    paths: list[str] = typer.Argument(None, help="Only these outputs (default: all)."),
    force: bool = typer.Option(False, "--force", help="Overwrite files that differ."),
) -> int:
    """Restore the outputs a run recorded (`--out`, dvc.yaml outs), byte-identical."""
    repo, config = open_repo()
    found = runs.find(repo, run, config)
    with data_progress() as progress:
        restored = data.restore_outputs(repo, found.id, found.outputs, paths=paths or (),
                                        force=force,
                                        progress=progress)
    for path in restored:
        console().print(f"restored {path} (run {found.id})", markup=False)
    return 0


@contextmanager
def data_progress() -> Iterator[Callable[[str, int, int], None]]:
    """A rich progress bar (stderr) fed by the data layer's (what, done, total) callback;
    shown only once something actually moves."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn


    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   console=console(stderr=True), transient=True)
    tasks: dict[str, TaskID] = {}

    def update(what: str, done: int, total: int) -> None:
        if what not in tasks:
            bar.start()
            tasks[what] = bar.add_task(what, total=total or None)
        bar.update(tasks[what], completed=done, total=total or None)

    try:
        yield update
    finally:
        if tasks:  # never started: leave the terminal alone
            bar.stop()
