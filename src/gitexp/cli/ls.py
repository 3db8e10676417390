"""`git exp ls`: the runs of this repository, newest first."""

from __future__ import annotations

import time
from itertools import chain
from typing import Any

import typer

from gitexp.cli import _render as r
from gitexp.cli._app import JSON_OPTION, app, console, open_repo, print_json
from gitexp.model import ids
from gitexp.service import index, runs
from gitexp.service import where as w
from gitexp.service.where import value_of


@app.command("ls")
def ls(  # noqa: PLR0917 - typer reads options from the signature
    as_json: bool = JSON_OPTION,
    sweep: str = typer.Option(None, "--sweep", metavar="ID", help="Only the runs of one sweep."),
    status: list[str] = typer.Option(None, "--status", metavar="STATUS",
                                     help="Only runs with this status (repeatable, or a,b)."),
    target: list[str] = typer.Option(None, "--target", metavar="NAME",
                                     help="Only runs on this target (repeatable, or a,b)."),
    where: str = typer.Option(None, "--where", metavar="EXPR",
                              help="A filter over fields, metrics and params, "
                                   "e.g. 'lr<0.01 and status==succeeded'."),
    sort: str = typer.Option(None, "--sort", metavar="KEYS",
                             help="Sort keys, '-' for descending: -acc,loss."),
    limit: int = typer.Option(None, "--limit", metavar="N", help="Show at most N runs."),
    columns: str = typer.Option(None, "--columns", metavar="COLS",
                                help="Columns to show, e.g. run,status,lr,loss "
                                     "(default: the usual ones and all metrics)."),
) -> int:
    """List runs (newest first): id, status, target, start, duration, command, metrics."""
    repo, config = open_repo()
    split = [c.strip() for c in (columns or "").split(",") if c.strip()]
    query = w.Query(status=_many(status), target=_many(target), where=where, sort=sort,
                    limit=limit, columns=tuple(split), sweep=sweep)
    rows = w.listing(repo, config, query)
    _warn_unreadable(repo)
    if as_json:
        by_id = {run.id: run for run in runs.list_runs(repo, config, refresh=False)}
        print_json([r.as_json(by_id[row["id"]]) for row in rows if row["id"] in by_id])
        return 0
    if not rows:
        console(stderr=True).print("no runs yet: `git exp run -- CMD` starts one"
                                   if not query.filters() else "no runs match")
        return 0
    _print_table(rows, split or _default_columns(rows))
    return 0


def _warn_unreadable(repo: Any) -> None:
    """One line naming the refs that hold no readable run: listed, never silently hidden."""
    bad = [ref[len(ids.PREFIX):] for ref in index.unreadable(repo)]
    if bad:
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        console(stderr=True).print(
            f"warning: {len(bad)} run(s) cannot be read: {', '.join(bad[:3])}{more} "
            f"(`git exp rm {bad[0]}` removes one)", markup=False, highlight=False)


def _many(values: list[str] | None) -> tuple[str, ...]:
    return tuple(v.strip() for item in values or () for v in item.split(",") if v.strip())


def _default_columns(rows: list[dict[str, Any]]) -> list[str]:
    cols = ["run", "status", "target", "started", "duration", "command"]
    if any(row["rerun_of"] for row in rows):
        cols.append("rerun")
    return cols + list(dict.fromkeys(chain.from_iterable(row["metrics"] for row in rows)))


def _print_table(rows: list[dict[str, Any]], cols: list[str]) -> None:
    """Plain aligned columns: rich's Table costs seconds at 10,000 runs, this milliseconds."""
    import sys


    columns = [_column(rows, col, r, value_of) for col in cols]
    widths = [max(len(col), *map(len, cells)) for col, cells in zip(cols, columns, strict=True)]
    if sys.stdout.isatty() and "status" in cols:  # colour after measuring: escapes are wide
        i = cols.index("status")
        columns[i] = [_ANSI.get(r.STATUS_STYLE.get(s, ""), "") + s.ljust(widths[i]) + "\033[0m"
                      for s in columns[i]]
        widths[i] = 0
    line = "  ".join(f"{{:{'<' if c in _TEXT else '>'}{w}}}" for c, w in zip(cols, widths,
                                                                             strict=True))
    out = [line.format(*cols).rstrip()]
    out += [line.format(*cells).rstrip() for cells in zip(*columns, strict=True)]
    sys.stdout.write("\n".join(out) + "\n")


_TEXT = {"run", "id", "status", "target", "started", "duration", "command", "rerun", "user",
         "branch", "name", "sweep", "host", "cwd", "verdict", "backend", "error"}
_ANSI = {"dim": "\033[2m", "cyan": "\033[36m", "green": "\033[32m", "red": "\033[31m",
         "yellow": "\033[33m", "magenta": "\033[35m"}


def _column(rows: list[dict[str, Any]], col: str, r: Any, value_of: Any) -> list[str]:
    if col in ("run", "id", "status", "target"):
        return [str(row[col if col != "run" else "id"]) for row in rows]
    if col == "started":
        return [r.when(row["started"] or row["launched_at"]) for row in rows]
    if col == "duration":
        now = time.time()
        return [r.duration(now - row["started"] if row["status"] == "running" and row["started"]
                           else row["duration"]) for row in rows]
    if col == "command":
        return [c if len(c) <= 50 else c[:49] + "…"
                for c in (r.printable(row["command"]) for row in rows)]
    if col == "rerun":
        return [f"{row['rerun_of']} ({row['verdict'] or 'unchecked'})" if row["rerun_of"]
                else "" for row in rows]
    return [r.value(m[col] if col in (m := row["metrics"]) else value_of(row, col))
            for row in rows]
