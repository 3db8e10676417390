"""`git exp ls`: the runs of this repository, newest first; a page of them unless asked."""

from __future__ import annotations

import typer

from gitexp.cli import _ranges as ranges
from gitexp.cli import _render as r
from gitexp.cli._app import HELP, JSON_OPTION, SWEEP_OPTION, WHERE_OPTION, app
from gitexp.cli._common import open_repo
from gitexp.service import index, runs
from gitexp.service import where as w

PAGE = 50  # runs a plain `ls` shows, newest first (like `git log` through a pager)


@app.command(help=HELP["ls"])
def ls(  # noqa: PLR0917 - typer reads options from the signature
    as_json: bool = JSON_OPTION,
    sweep: str = SWEEP_OPTION,
    status: list[str] = typer.Option(None, "--status", metavar="STATUS",
                                     help="Only runs with this status (repeatable, or a,b)."),
    target: list[str] = typer.Option(None, "--target", metavar="NAME",
                                     help="Only runs on this target (repeatable, or a,b)."),
    where: str = WHERE_OPTION,
    sort: str = typer.Option(None, "--sort", metavar="KEYS",
                             help="Sort keys, '-' for descending: -acc,loss."),
    limit: int = typer.Option(None, "--limit", metavar="N", help=f"At most N (default {PAGE}).",
                              callback=ranges.count(0, 10**9, "a number of runs")),
    every: bool = typer.Option(False, "--all", help="Show every run, not only a page."),
    columns: str = typer.Option(None, "--columns", metavar="COLS", help="Columns to show, "
                                "e.g. run,status,lr,loss (default: usual ones, all metrics)."),
    csv: bool = typer.Option(False, "--csv", help="Print CSV: the columns, unabridged."),
    tsv: bool = typer.Option(False, "--tsv", help="Print tab-separated values, the same."),
) -> int:
    repo, config = open_repo()
    with r.count_progress("reading runs") as bar:  # a first `ls` of many reads them all
        index.refresh(repo, bar)
    paged = limit is None and not every and not (as_json or csv or tsv)  # scripts: all
    split = [c.strip() for c in (columns or "").split(",") if c.strip()]
    query = w.Query(status=w.words(status), target=w.words(target), where=where, sort=sort,
                    limit=PAGE + 1 if paged else limit, columns=tuple(split), sweep=sweep)
    if as_json:  # the runs themselves, live ones as just seen; all: the index's texts
        everything = not (query.filters() or query.sort or query.limit is not None)
        texts = runs.list_json(repo, config) if everything else \
            r.json_texts(w.runs_of(repo, config, query))
        r.unreadable(index.unreadable(repo))
        r.print_json_list(texts)
        return 0
    rows = w.listing(repo, config, query)
    r.unreadable(index.unreadable(repo))
    cols = split or r.default_columns(rows)
    if csv or tsv:  # a header even for no runs: a script reads the same shape either way
        r.export(cols, w.values(rows, cols), "\t" if tsv else ",")
    elif not rows:
        r.no_runs(filtered=query.filters())
    else:
        r.print_table(rows[:PAGE] if paged else rows, cols, w.value_of)
        r.paged(PAGE, len(rows) > PAGE and paged)
    return 0
