"""`git exp show RUN`: record, result, data version and the tail of the log."""

from __future__ import annotations

import shlex

import typer

from gitexp.cli import _render as r
from gitexp.cli._app import JSON_OPTION, app, console, open_repo, print_json
from gitexp.service import runs

TAIL_LINES = 15


@app.command()
def show(
    run: str = typer.Argument(..., help="Run id (or a unique part of it)."),
    as_json: bool = JSON_OPTION,
) -> int:
    """Show everything about one run."""
    from rich.markup import escape


    repo, config = open_repo()
    found = runs.find(repo, run, config)
    rec, res = found.record, found.result
    if as_json:
        print_json(r.as_json(found))
        return 0
    out = console()
    out.print(f"[bold]run {rec.id}[/]  [{r.STATUS_STYLE[found.status]}]{found.status}[/]")
    rows = [
        ("command", shlex.join(rec.argv)),
        ("directory", rec.cwd or "."),
        ("snapshot", rec.snapshot),
        ("base", f"{rec.base or '(no commits)'}" + (f" ({rec.branch})" if rec.branch else "")),
        ("target", f"{rec.target} ({rec.backend})"),
        ("launched", f"{r.when(rec.launched_at)} by {rec.user}"),
        ("python", f"{rec.env.python} on {rec.env.platform}"),
    ]
    if rec.rerun_of:
        rows.append(("rerun of", rec.rerun_of))
    if res is not None:
        rows += [("host", res.host or "-"), ("started", r.when(res.started_at)),
                 ("duration", r.duration(r.run_duration(found)))]
        if res.exit_code is not None:
            rows.append(("exit code", str(res.exit_code)))
        if res.error:
            rows.append(("error", res.error))
    for key, text in rows:  # values are escaped: `[/]` in a command is no markup
        out.print(f"  [bold]{key:<10}[/] {escape(r.printable(text))}", highlight=False)
    if rec.data:
        out.print("[bold]data[/]")
        for path, item in sorted(rec.data.items()):
            info = item if isinstance(item, dict) else {}
            extra = f", {info['nfiles']} files" if info.get("nfiles") else ""
            out.print(f"  {path}  {info.get('hash', '?')}  ({info.get('size', '?')} bytes{extra})",
                      markup=False, highlight=False)
    if res is not None and res.metrics:
        out.print("[bold]metrics[/]")
        for key, value in sorted(res.metrics.items()):
            out.print(f"  {r.printable(key)} = {r.value(value)}", markup=False, highlight=False)
    if res is not None and res.outputs:
        out.print("[bold]outputs[/]")
        for path, info in sorted(res.outputs.items()):
            out.print(f"  {path}  {info.get('hash', '?') if isinstance(info, dict) else info}",
                      markup=False, highlight=False)
    tail = runs.read_log_tail(repo, found).decode(errors="replace").splitlines()[-TAIL_LINES:]
    if tail:
        out.print("[bold]log[/] (last lines)")
        for line in tail:
            out.print("  " + line, markup=False, highlight=False)
    return 0
