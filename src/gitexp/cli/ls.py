"""`git exp ls`: the runs of this repository, newest first."""

from __future__ import annotations

from gitexp.cli._app import JSON_OPTION, app


@app.command("ls")
def ls(as_json: bool = JSON_OPTION) -> int:
    """List runs: id, status, target, start, duration, command and final metrics."""
    from rich.table import Table

    from gitexp import runs
    from gitexp.cli import _render as r
    from gitexp.cli._app import console, open_repo, print_json

    repo, config = open_repo()
    found = runs.list_runs(repo, config)
    if as_json:
        print_json([r.as_json(run) for run in found])
        return 0
    metric_names: list[str] = []
    for run in found:
        for key in (run.result.metrics if run.result else {}):
            if key not in metric_names:
                metric_names.append(key)
    table = Table(box=None, header_style="bold", pad_edge=False)
    table.add_column("run", no_wrap=True)
    for col in ("status", "target", "started", "duration"):
        table.add_column(col, no_wrap=True)
    table.add_column("command", overflow="ellipsis", no_wrap=True, max_width=50)
    for col in metric_names:
        table.add_column(col, justify="right", no_wrap=True)
    for run in found:
        res = run.result
        mets = res.metrics if res else {}
        table.add_row(
            run.id, f"[{r.STATUS_STYLE[run.status]}]{run.status}[/]", run.record.target,
            r.when(res.started_at if res and res.started_at else run.record.launched_at),
            r.duration(r.run_duration(run)), r.command(run.record.argv),
            *(r.value(mets.get(k)) for k in metric_names),
        )
    if not found:
        console(stderr=True).print("no runs yet: `git exp run -- CMD` starts one")
        return 0
    console().print(table)
    return 0
