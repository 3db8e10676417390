"""`git exp diff A [B] [--patch] [--json]`: what differs between two runs, or a run and its base."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import typer

from gitexp.cli._app import JSON_OPTION, app, console, open_repo, print_json
from gitexp.cli._render import value
from gitexp.service import diff as core
from gitexp.service import runs


@app.command()
def diff(
    a: str = typer.Argument(..., help="A run id (or a unique part of it)."),
    b: str = typer.Argument(None, help="Another run; without it, A's base commit."),
    patch: bool = typer.Option(False, "-p", "--patch", help="The full code diff, not --stat."),
    as_json: bool = JSON_OPTION,
) -> int:
    """Compare command, params, data, code, metrics and environment."""
    repo, config = open_repo()
    run_a = runs.find(repo, a, config)
    report = (core.runs(repo, run_a, runs.find(repo, b, config), patch=patch) if b
              else core.against_base(repo, run_a, patch=patch))
    if as_json:
        print_json(report.to_dict())
        return 0
    out = console()

    def say(text: str) -> None:
        out.print(text, markup=False, highlight=False)

    say(f"diff {report.a[:12] if report.against_base else report.a} -> {report.b}")
    if report.command:
        import shlex

        say("command")
        say(f"  a: {shlex.join(report.command['a'])}\n  b: {shlex.join(report.command['b'])}")
    if report.cwd:
        _section(say, "directory", {"cwd": report.cwd})
    if report.bases:
        _section(say, "base commit", {"base": report.bases})
    _section(say, "params", report.params)
    _section(say, "data", report.data)
    say(f"code ({report.code.a[:10]}..{report.code.b[:10]})")
    say((report.code.patch if patch else report.code.stat) or "  (same code)")
    if not report.against_base:
        _section(say, "metrics", report.metrics, metric=True)
        _section(say, "environment", report.environment)
    return 0


def _section(say: Callable[[str], None], title: str, rows: dict[str, dict[str, Any]],
             metric: bool = False) -> None:

    say(f"{title}" + ("" if rows else " (same)"))
    for key, ch in rows.items():
        extra = ""
        if metric and ch.get("delta") is not None:
            pct = f", {ch['pct']:+.2f}%" if ch.get("pct") is not None else ""
            sign = "+" if ch["delta"] >= 0 else ""
            extra = f"  ({sign}{value(ch['delta'])}{pct})"
        say(f"  {key}: {value(ch['a'])} -> {value(ch['b'])}{extra}")
