"""Everything the CLI draws: the `ls` table, `show`, `diff`, the `rerun --check` verdict, a
log as it grows, the data progress bar, and the lines each verb reports. Verbs compute and
hand their results here; this module calls no service, so it stays cheap to import."""

from __future__ import annotations

import csv
import json
import shlex
import signal
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gitexp.cli._common import console
from gitexp.model import dvcyaml, ids
from gitexp.model.record import format_duration
from gitexp.model.row import as_json as json_of
from gitexp.model.row import json_text
from gitexp.printable import LIMIT, printable
from gitexp.service import trust

if TYPE_CHECKING:
    from gitexp.hooks.install import HookState
    from gitexp.model.annotations import Annotations
    from gitexp.service.diff import Report
    from gitexp.service.runs import Run
    from gitexp.service.sharing import FetchReport, PushReport
    from gitexp.service.sweep import Sweep

STATUS_STYLE = {
    "queued": "dim", "running": "cyan", "succeeded": "green", "failed": "red",
    "cancelled": "yellow", "lost": "magenta", "timeout": "yellow",
}
TAIL_LINES = 15  # of the log, in `show`


# -- values -------------------------------------------------------------------------------
def when(ts: float | None) -> str:
    if ts is None:
        return "-"
    try:  # a record from elsewhere may hold any number: year 10^300 is no time to show
        local = time.localtime(ts)
    except (OverflowError, ValueError, OSError):
        return "-"
    return time.strftime("%H:%M:%S" if time.time() - ts < 86400 else "%Y-%m-%d %H:%M", local)


duration = format_duration


def by(user: str, host: str | None) -> str:
    """Who launched a run someone else launched, as its record says (forgeable: a hint)."""
    email = trust.email_of(user)
    return printable(f"{email} on {host}" if host else email)


def value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "-" if v is None else str(v)


def run_duration(run: Run) -> float | None:
    res = run.result
    if res is None or res.started_at is None:
        return None
    end = res.ended_at if res.ended_at is not None else time.time()
    return end - res.started_at


def as_json(run: Run) -> dict[str, Any]:
    return json_of(run.record, run.result, run.commit, own=run.own)


def json_texts(runs: Iterable[Run]) -> list[str]:
    """Each run as `ls --json` prints it (`print_json_list`)."""
    return [json_text(as_json(run)) for run in runs]


def print_json_list(texts: list[str]) -> None:
    """`print_json` of a list whose items are already `row.json_text`s: the very same text
    (inside the list each item is indented two more; a newline in a JSON text is always
    between tokens, never inside a string)."""
    if not texts:
        sys.stdout.write("[]\n")
        return
    sys.stdout.write("[\n  " + ",\n  ".join(t.replace("\n", "\n  ") for t in texts)
                     + "\n]\n")


def note(line: str) -> None:
    """A line about what gitexp does: stderr, so stdout stays the job's (or the run id)."""
    print(line, file=sys.stderr)


# -- run, rerun, logs ---------------------------------------------------------------------
def started(run: Run) -> None:
    note(f"gitexp: run {run.id} on {printable(run.record.target)} "
         f"(snapshot {printable(run.record.snapshot[:10])})")


def rerunning(run: Run, original: Run) -> None:
    note(f"gitexp: run {run.id} reruns {original.id} on {printable(run.record.target)}")


def stopped_following(run: Run) -> None:
    note(f"\ngitexp: stopped following; run {run.id} goes on "
         f"(`git exp logs -f {run.id}`, `git exp cancel {run.id}`)")


def ended(run: Run, what: str = "") -> None:
    code = run.result.exit_code if run.result else None
    note(f"gitexp: run {run.id}{what} {run.status}"
         + (f" (exit {code})" if code is not None else ""))


def stream(log: Iterable[bytes | Run], run: Run) -> Run:
    """Print the log as it grows (`log`: `runs.follow`, which yields chunks, then the ended
    run). Ctrl-C stops following, never the run. `git exp` reaches us through git, which
    answers Ctrl-C by also sending SIGTERM to its child: one Ctrl-C brings two signals, and
    only the first may interrupt (the second would cut short the caller's goodbye)."""
    _interruptible()
    out = sys.stdout.buffer
    for item in log:
        if isinstance(item, bytes):
            out.write(item)
            out.flush()
        else:
            return item
    return run


def _interruptible() -> None:
    """Ctrl-C (and git's SIGTERM that comes with it) raises KeyboardInterrupt, once."""
    stopping: list[bool] = []

    def interrupted(*_: object) -> None:
        if not stopping:
            stopping.append(True)
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, interrupted)
    signal.signal(signal.SIGTERM, interrupted)


def label(run: Run) -> str:
    """A sweep member by its point (`lr=1e-3 bs=32`), else by its id."""
    point = " ".join(f"{k}={v}" for k, v in run.record.params.items())
    return printable(point or run.id, limit=40)


def stream_all(log: Iterable[tuple[int, bytes | Run]], runs: list[Run]) -> list[Run]:
    """The logs of several runs as they grow (`runs.follow_all`), each whole line behind
    its run's label, and a line as each run ends; returns the ended runs."""
    _interruptible()
    labels = [label(run) for run in runs]
    width = max(map(len, labels), default=0)
    partial = [b""] * len(runs)
    ended_runs = list(runs)
    out = sys.stdout.buffer
    for i, item in log:
        prefix = f"{labels[i]:<{width}} | ".encode()
        if isinstance(item, bytes):
            *lines, partial[i] = (partial[i] + item).split(b"\n")
            out.write(b"".join(prefix + line + b"\n" for line in lines))
            out.flush()
            continue
        if partial[i]:
            out.write(prefix + partial[i] + b"\n")
            partial[i] = b""
        out.flush()
        ended_runs[i] = item
        ended(item, f" ({labels[i]})" if labels[i] != item.id else "")
    return ended_runs


def write_log(chunks: Iterable[bytes]) -> None:
    for chunk in chunks:
        sys.stdout.buffer.write(chunk)


def sweep(launched: Sweep, max_parallel: int, detach: bool) -> None:
    """The runs of a sweep just launched: detached, their ids on stdout (for scripts);
    followed, on stderr (stdout is the jobs' logs)."""
    for run in launched.runs:
        if detach:
            print(run.id)
        else:
            note(f"gitexp: run {run.id} ({label(run)})")
    limit = f", at most {max_parallel} at once" if max_parallel else ""
    note(f"gitexp: sweep {launched.id}: {len(launched.runs)} runs on "
         f"{printable(launched.runs[0].record.target)}{limit} "
         f"(`git exp ls --sweep {launched.id}`)")


def sweep_ended(sweep_id: str, runs: list[Run]) -> None:
    counts: dict[str, int] = {}
    for run in runs:
        counts[run.status] = counts.get(run.status, 0) + 1
    note(f"gitexp: sweep {sweep_id}: " + ", ".join(f"{n} {s}" for s, n in counts.items()))


def stopped_following_sweep(sweep_id: str) -> None:
    note(f"\ngitexp: stopped following; sweep {sweep_id} goes on "
         f"(`git exp ls --sweep {sweep_id}`, `git exp cancel --sweep {sweep_id}`)")


def reproduction(original: Run, ended: Run, verdict: dict[str, Any], rtol: float,
                 atol: float) -> None:
    """`rerun --check`: the verdict of `rerun.check`, metric by metric."""
    out = console()
    word = "[green]reproduced[/]" if verdict["reproduced"] else "[red]NOT reproduced[/]"
    out.print(f"run {ended.id} {word} run {original.id} (rtol={rtol:g}, atol={atol:g})")
    st = verdict["status"]
    # a verdict shows the values compared with every digit: str(), not value()
    out.print(f"  {'same' if st['same'] else 'DIFF'} status {printable(str(st['a']))} -> "
              f"{printable(str(st['b']))}", markup=False, highlight=False)
    for kind in ("metrics", "outputs"):
        for name, m in verdict[kind].items():
            mark = "same" if m["same"] else "DIFF"
            out.print(f"  {mark} {kind[:-1]} {printable(name)}: {printable(str(m['a']))} -> "
                      f"{printable(str(m['b']))}", markup=False, highlight=False)
            for note in m.get("differs") or ():  # what differs inside an output
                out.print(f"    {printable(str(note))}", markup=False, highlight=False)


def imported(added: list[tuple[str, str]], present: int,
             refused: list[tuple[str, str]]) -> None:
    """`import dvc`: one line per run made, then what was skipped and refused (stderr)."""
    out = console()
    for ref, run_id in added:
        out.print(f"{run_id}  <- {printable(ref)}", markup=False, highlight=False)
    out.print(f"imported {len(added)}, already imported {present}, refused {len(refused)}",
              markup=False, highlight=False)
    err = console(stderr=True)
    for ref, why in refused:
        err.print(f"refused {printable(ref)}: {printable(why)}", markup=False, highlight=False)


@contextmanager
def data_progress() -> Iterator[Callable[[str, int, int], None]]:
    """A rich progress bar (stderr) fed by the data layer's (what, done, total) callback;
    made only once something actually moves: a launch that moves no data never loads
    rich.progress (a few hundred ms of imports on a loaded machine)."""
    bars: list[Any] = []  # the bar, once made
    tasks: dict[str, Any] = {}

    def update(what: str, done: int, total: int) -> None:
        if not bars:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            bars.append(Progress(TextColumn("{task.description}"), BarColumn(),
                                 MofNCompleteColumn(), console=console(stderr=True),
                                 transient=True))
            bars[0].start()
        if what not in tasks:
            tasks[what] = bars[0].add_task(what, total=total or None)
        bars[0].update(tasks[what], completed=done, total=total or None)

    try:
        yield update
    finally:
        if bars:  # never started: leave the terminal alone
            bars[0].stop()


@contextmanager
def count_progress(what: str) -> Iterator[Callable[[int, int], None] | None]:
    """`data_progress` of one count (the index's first sync of many runs, a first fetch's
    judging of them, a migration's fold), on a terminal only."""
    if not sys.stderr.isatty():
        yield None
        return
    with data_progress() as bar:
        yield lambda done, total: bar(what, done, total)


# -- ls -----------------------------------------------------------------------------------
def paged(page: int, more: bool) -> None:
    """Below a page of `ls` that left runs out: how to see them."""
    if more:
        note(f"gitexp: showing the newest {page} runs; `--all` shows every one, "
             "`--limit N` the newest N")


def unreadable(refs: list[str]) -> None:
    """One line naming the refs that hold no readable run: listed, never silently hidden."""
    bad = [printable(ref[len(ids.PREFIX):], limit=CELL_LIMIT) for ref in refs]
    if bad:
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        console(stderr=True).print(
            f"warning: {len(bad)} run(s) cannot be read: {', '.join(bad[:3])}{more} "
            f"(`git exp rm {bad[0]}` removes one)", markup=False, highlight=False,
            soft_wrap=True)  # one line, however long: a terminal wraps it, not rich


def no_runs(filtered: bool) -> None:
    console(stderr=True).print("no runs match" if filtered
                               else "no runs yet: `git exp run -- CMD` starts one")


def default_columns(rows: list[dict[str, Any]]) -> list[str]:
    cols = ["run", "status", "target", "started", "duration", "command"]
    if any(row["rerun_of"] for row in rows):
        cols.append("rerun")
    if not all(row["own"] for row in rows):  # someone else's runs, fetched: say whose
        cols.append("by")
    # sorted: the same runs give the same columns on every call, whatever order each run
    # logged its metrics in
    return cols + sorted(set(chain.from_iterable(row["metrics"] for row in rows)))


TIMES = frozenset({"launched_at", "started", "ended"})  # epoch seconds: shown as ISO 8601


def export(cols: list[str], cells: list[list[Any]], sep: str) -> None:
    """`ls --csv/--tsv`: every digit, nothing cut, times in ISO 8601. A run's texts are
    anyone's: no control characters, and none starts a spreadsheet formula."""
    out = csv.writer(sys.stdout, delimiter=sep, lineterminator="\n")
    out.writerow(cols)
    for row in cells:
        out.writerow([_cell(col, v) for col, v in zip(cols, row, strict=True)])


def _cell(col: str, value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        if col in TIMES:
            return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(value))
        return repr(value)
    text = printable(value if isinstance(value, str) else json.dumps(value), limit=None)
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text


def print_table(rows: list[dict[str, Any]], cols: list[str],
                value_of: Callable[[dict[str, Any], str], Any]) -> None:
    """Plain aligned columns: rich's Table costs seconds at 10,000 runs, this milliseconds.
    `value_of` looks up a column that is no metric (the query's own rule for a name)."""
    columns = [_cells(_column(rows, col, value_of)) for col in cols]
    cols = [printable(col, limit=CELL_LIMIT) for col in cols]  # metric names come from runs
    widths = [max(len(col), *map(len, cells)) for col, cells in zip(cols, columns, strict=True)]
    if sys.stdout.isatty() and "status" in cols:  # colour after measuring: escapes are wide
        i = cols.index("status")
        columns[i] = [_ANSI.get(STATUS_STYLE.get(s, ""), "") + s.ljust(widths[i]) + "\033[0m"
                      for s in columns[i]]
        widths[i] = 0
    line = "  ".join(f"{{:{'<' if c in _TEXT else '>'}{w}}}" for c, w in zip(cols, widths,
                                                                             strict=True))
    out = [line.format(*cols).rstrip()]
    out += [line.format(*cells).rstrip() for cells in zip(*columns, strict=True)]
    sys.stdout.write("\n".join(out) + "\n")


def _cells(cells: list[str]) -> list[str]:
    """A column's cells shown: escaped and cut. One check for the whole column in the usual
    case where every cell is short and printable: `ls` lists 10,000 runs."""
    if "".join(cells).isprintable() and max(map(len, cells), default=0) <= CELL_LIMIT:
        return cells
    return [printable(c, limit=CELL_LIMIT) for c in cells]


CELL_LIMIT = 200  # characters of one `ls` cell: one huge value must not widen every row
_TEXT = {"run", "id", "status", "target", "started", "duration", "command", "rerun", "user", "by",
         "branch", "name", "sweep", "host", "cwd", "verdict", "backend", "error"}
_ANSI = {"dim": "\033[2m", "cyan": "\033[36m", "green": "\033[32m", "red": "\033[31m",
         "yellow": "\033[33m", "magenta": "\033[35m"}


def _column(rows: list[dict[str, Any]], col: str,
            value_of: Callable[[dict[str, Any], str], Any]) -> list[str]:
    if col == "status":  # a fetched run's store is not ours to look at: not `queued`, not lost
        return [(row["status"] + (f" (attempt {row['attempt']})" if row["status"] == "running"
                                  and row.get("attempt", 1) > 1 else ""))
                if row["written_back"] or row["own"] else "elsewhere" for row in rows]
    if col == "by":
        return [by(row["user"], row["launched_from"]) if not row["own"] else ""
                for row in rows]
    if col in ("run", "id", "target"):
        return [printable(str(row[col if col != "run" else "id"])) for row in rows]
    if col == "started":
        return [when(row["started"] or row["launched_at"]) for row in rows]
    if col == "duration":
        now = time.time()
        return [duration(now - row["started"] if row["status"] == "running" and row["started"]
                         else row["duration"]) for row in rows]
    if col == "command":
        return [c if len(c) <= 50 else c[:49] + "…"
                for c in (printable(row["command"]) for row in rows)]
    if col == "rerun":
        return [f"{row['rerun_of']} ({row['verdict'] or 'unchecked'})" if row["rerun_of"]
                else "" for row in rows]
    return [value(m[col] if col in (m := row["metrics"]) else value_of(row, col))
            for row in rows]


# -- show ---------------------------------------------------------------------------------
class _Page:
    """What `show` and `diff` print, written in one go: a rich `print` per line costs about
    0.3 ms (seconds at 10,000 metrics), and rich's wrapping of a long line costs more. Every
    piece from a run is `printable` before it gets here, and is never parsed as markup."""

    def __init__(self) -> None:
        self.parts: list[tuple[str, str]] = []  # (text, rich style or "")

    def add(self, text: str, style: str = "") -> None:
        self.parts.append((text, style))

    def line(self, text: str = "", style: str = "") -> None:
        self.parts.append((text + "\n", style))

    def write(self) -> None:
        out = console()
        if out.color_system is None:  # piped, NO_COLOR, dumb terminal: no styles to draw
            sys.stdout.write("".join(text for text, _ in self.parts))
            return
        from rich.text import Text

        text = Text()
        for part, style in self.parts:
            text.append(part, style or None)
        out.print(text, soft_wrap=True, end="")  # soft: the terminal wraps, not rich


def command_line(argv: list[str]) -> str:
    """An argv as one shell line, shown: quoted, escaped and cut (after quoting, so an
    escaped control character never sits inside a shell word unquoted)."""
    return printable(shlex.join(argv))


def show(run: Run, params: dict[str, Any] | None = None) -> None:
    rec, res = run.record, run.result
    page = _Page()
    status = run.status if run.written_back or run.own else "elsewhere"
    page.add(f"run {rec.id}  ", "bold")
    page.line(status, STATUS_STYLE.get(status, "dim"))
    rows = [
        ("command", command_line(rec.argv)),
        ("directory", printable(rec.cwd or ".")),
        ("snapshot", printable(rec.snapshot)),
        ("base", printable(rec.base or "(no commits)")
         + (f" ({printable(rec.branch)})" if rec.branch else "")),
        ("target", f"{printable(rec.target)} ({printable(rec.backend)})"),
        ("launched", f"{when(rec.launched_at)} by {printable(rec.user)}"
         + (f" on {printable(rec.launched_from)}" if rec.launched_from else "")
         + ("" if run.own else " (foreign: not launched by you here)")),
        ("python", f"{printable(rec.env.python)} on {printable(rec.env.platform)}"
         if rec.env.python else "(not recorded)"),  # an imported run: no environment
    ]
    if rec.sweep:
        rows.append(("sweep", printable(rec.sweep)))
    if rec.rerun_of:
        rows.append(("rerun of", printable(rec.rerun_of)))
    if res is not None:
        rows += [("host", printable(res.host or "-")), ("started", when(res.started_at)),
                 ("duration", duration(run_duration(run)))]
        if res.exit_code is not None:
            rows.append(("exit code", str(res.exit_code)))
        if res.error:
            rows.append(("error", printable(res.error)))
    for key, text in rows:
        page.add(f"  {key:<10}", "bold")
        page.line(f" {text}")
    if params:
        page.line("params", "bold")
        for key, v in sorted(params.items()):
            page.line(f"  {printable(key)} = {shown(v)}")
    if inputs := dvcyaml.inputs(rec.data):  # what it read; its outputs are below
        page.line("inputs", "bold")
        for path, item in sorted(inputs.items()):
            info = item if isinstance(item, dict) else {}
            extra = f", {shown(info['nfiles'])} files" if info.get("nfiles") else ""
            page.line(f"  {printable(path)}  {shown(info.get('hash', '?'))}  "
                      f"({shown(info.get('size', '?'))} bytes{extra})")
    if res is not None and res.attempts:
        page.line("attempts", "bold")
        for att in res.attempts:
            resumed = f", resumed from {printable(att.resumed_from)}" if att.resumed_from \
                else ""
            page.line(f"  {att.n}  {printable(att.host or '-')}  {when(att.started_at)} - "
                      f"{when(att.ended_at) if att.ended_at else 'now'}  "
                      f"{printable(att.reason or 'running')}{resumed}")
    if res is not None and res.metrics:
        page.line("metrics", "bold")
        for key, v in sorted(res.metrics.items()):
            page.line(f"  {printable(key)} = {shown(v)}")
    if res is not None and res.outputs:
        page.line("outputs", "bold")
        for path, info in sorted(res.outputs.items()):
            page.line(f"  {printable(path)}  "
                      f"{shown(info.get('hash', '?') if isinstance(info, dict) else info)}")
    page.write()


def shown(v: Any) -> str:
    """A value from a run (any JSON), as `show` and `diff` print it."""
    return printable(value(v))


def log_tail(log: bytes) -> None:
    """The last lines of the log, quoted: unlike `git exp logs`, which hands the job's own
    bytes to the terminal, a quote inside gitexp's report is escaped like any run value."""
    tail = log.decode(errors="replace").splitlines()[-TAIL_LINES:]
    if tail:
        page = _Page()
        page.add("log", "bold")
        page.line(" (last lines)")
        for line in tail:
            page.line("  " + _quoted(line))
        page.write()


# -- diff ---------------------------------------------------------------------------------
def diff(report: Report, patch: bool) -> None:
    page = _Page()
    say = page.line
    a = report.a[:12] if report.against_base else report.a
    say(f"diff {printable(a)} -> {printable(report.b)}")
    if report.command:
        say("command")
        say(f"  a: {command_line(report.command['a'])}")
        say(f"  b: {command_line(report.command['b'])}")
        span = report.command.get("span")
        if span:
            say(f"  from argument {span['at']}: {_args(span['a'])} -> {_args(span['b'])}")
    if report.cwd:
        _section(say, "directory", {"cwd": report.cwd})
    if report.bases:
        _section(say, "base commit", {"base": report.bases})
    _section(say, "params", report.params)
    if report.has_inputs:
        _section(say, "inputs", report.data)
    else:  # neither run read recorded data: nothing was compared
        say("no inputs")
    say(f"code ({printable(report.code.a[:10])}..{printable(report.code.b[:10])})")
    code = report.code.patch if patch else report.code.stat
    if code:
        # git's own text, but of a teammate's files: names and lines may hold anything
        for line in code.split("\n"):
            say(_quoted(line, limit=None))
    else:
        say("  (same code)")
    if not report.against_base:
        if report.metrics:
            _section(say, "metrics", report.metrics, metric=True)
        else:  # neither run has any: nothing was compared
            say("no metrics")
        if report.has_outputs:
            _section(say, "outputs", report.outputs)
        else:
            say("no outputs")
        _section(say, "environment", report.environment)
    page.write()


def _quoted(line: str, limit: int | None = LIMIT) -> str:
    """One line of a log or of a patch, `printable`, but for its tabs: common in both, and
    a tab only moves to the next column."""
    if "\t" not in line:
        return printable(line, limit)
    return "\t".join(printable(part, limit) for part in line.split("\t"))


def _args(args: list[str]) -> str:
    return command_line(args) if args else "(nothing)"


def _section(say: Callable[[str], None], title: str, rows: dict[str, dict[str, Any]],
             metric: bool = False) -> None:
    say(f"{title}" + ("" if rows else " (same)"))
    for key, ch in rows.items():
        extra = ""
        if metric and ch.get("delta") is not None:
            pct = f", {ch['pct']:+.2f}%" if ch.get("pct") is not None else ""
            sign = "+" if ch["delta"] >= 0 else ""
            extra = f"  ({sign}{value(ch['delta'])}{pct})"
        say(f"  {printable(key)}: {shown(ch['a'])} -> {shown(ch['b'])}{extra}")


# -- the other verbs ----------------------------------------------------------------------
def cancelling(run: Run) -> None:
    print(f"cancelling {run.id}")


def stopped_leftover(run: Run, pid: int) -> None:
    ended = "was lost" if run.status == "lost" else f"had ended ({run.status})"
    print(f"cancelled: run {run.id} {ended} but its job (pid {pid}) still ran; stopped it")


def cancelled_sweep(stopped: list[Run], ended: list[Run]) -> None:
    for run in stopped:
        cancelling(run)
    if ended:
        note(f"gitexp: {len(ended)} run(s) of the sweep already ended: left as they are")


def checked_out(run: Run, branch: str | None) -> None:
    where = f"branch {branch}" if branch else "a detached HEAD (`git switch -` goes back)"
    note(f"gitexp: the code of run {run.id} ({run.record.snapshot[:10]}) is checked out "
         f"on {where}")


def applied(run: Run, changes: list[str]) -> None:
    note(f"gitexp: the work tree now holds run {run.id}'s files ({len(changes)} change(s) "
         "against HEAD, which has not moved)")
    note("gitexp: `git status` lists them; `git stash -u` puts them aside")


def annotated(run: Run, ann: Annotations) -> None:
    """`git exp tag` / `note`: the run's tags and notes as they now are."""
    print(f"{run.id}  tags: {printable(', '.join(ann.tags)) or '-'}")
    for at, text in ann.notes:
        print(f"  {when(at)}  {printable(text)}")


def tags_and_notes(ann: Annotations) -> None:
    """`show`: tags and notes, when the run has any."""
    if ann.tags:
        print(f"  {'tags':<10} {printable(', '.join(ann.tags))}")
    for at, text in ann.notes:
        print(f"  {'note':<10} {when(at)}  {printable(text)}")


def tags_and_notes_json(ann: Annotations) -> dict[str, Any]:
    return {"tags": list(ann.tags), "notes": [{"at": at, "text": t} for at, t in ann.notes]}


def restored_outputs(paths: Iterable[str]) -> None:
    for path in paths:
        note(f"gitexp: restored output {printable(path)}")


def restored(paths: Iterable[str], run: Run) -> None:
    for path in paths:
        console().print(f"restored {printable(path)} (run {run.id})", markup=False,
                        highlight=False)


def would_remove(found: Iterable[Run], broken: Iterable[str] = ()) -> None:
    for run in found:
        print(f"would remove {run.id} ({run.status})")
    for run_id in broken:
        print(f"would remove {run_id} (unreadable record)")


def removed(run_ids: list[str], *, none: str | None = None) -> None:
    """One line per run removed; `none`, if given, when there was none."""
    for run_id in run_ids:
        print(f"removed {run_id}")
    if none is not None and not run_ids:
        print(none)


def fetched(report: FetchReport) -> None:
    new_runs = [r for r in report.new if not r.startswith("refs/tags/")]
    console().print(f"{len(new_runs)} new run(s), {len(report.new) - len(new_runs)} new tag(s), "
                    f"{len(report.updated)} run(s) updated from {printable(report.remote)}",
                    markup=False, highlight=False)
    for ref, why in report.kept:  # ref names and reasons may come from the remote
        console(stderr=True).print(f"kept local {printable(ref)}: {printable(why)}",
                                   markup=False, highlight=False)
    for _, line in report.refused:  # one line each, naming the run and the remote
        console(stderr=True).print(printable(line), markup=False, highlight=False,
                                   soft_wrap=True)
    if report.notes == "merged":
        print(f"tags and notes merged from {printable(report.remote)}")
    elif report.notes:
        print(f"tags and notes of {printable(report.remote)} {printable(report.notes)}",
              file=sys.stderr)


def pushed(report: PushReport) -> None:
    from rich.markup import escape

    out, err = console(), console(stderr=True)
    out.print(f"{len(report.pushed)} ref(s) pushed to {escape(printable(report.remote))}, "
              f"{report.up_to_date} already there")
    if report.folded:  # the remote's oldest runs, one ref each no more (service/archives.py)
        out.print(f"{report.folded} older run(s) folded into {len(report.archived)} archive(s) "
                  f"on {escape(printable(report.remote))}")
    if report.live:
        err.print(f"{len(report.live)} unfinished run(s) not pushed: they go once they end")
    for ref, why in report.rejected:  # `why` is the remote's own words
        err.print(f"[red]rejected[/] {escape(printable(ref))}: {escape(printable(why))}")


def unpublished(report: PushReport) -> None:
    from rich.markup import escape

    console().print(f"{len(report.pushed)} ref(s) deleted from "
                    f"{escape(printable(report.remote))}, {report.up_to_date} run(s) not there")
    for ref, why in report.rejected:  # `why` is the remote's own words
        console(stderr=True).print(f"[red]kept[/] {escape(printable(ref))}: "
                                   f"{escape(printable(why))}")


def hooks(states: list[HookState]) -> None:
    from rich.markup import escape

    out = console()
    for s in states:
        if s.state == "installed":  # paths are local, but may hold `[` or anything else
            shown_python = escape(printable(str(s.python)))
            python = shown_python if s.python_ok else f"{shown_python} [red](gone: reinstall)[/]"
            also = (f"; also runs {escape(printable(', '.join(p.name for p in s.also_runs)))}"
                    if s.also_runs else "")
            out.print(f"[green]{s.name:<19}[/] {escape(printable(str(s.path)))}  "
                      f"(python {python}{also})")
        else:
            other = "; another tool's hook is here" if s.state == "foreign" else ""
            out.print(f"[dim]{s.name:<19}[/] not installed{other}")


def built(argv: list[str]) -> None:
    note(f"gitexp: built {argv[argv.index('-t') + 1]} with {argv[0]}")


def plotted(paths: list[Path], drawn: list[str], runs: int, empty: list[str],
            problems: dict[str, str]) -> None:
    err = console(stderr=True)
    where = printable(str(paths[0])) + (f" (and {len(paths) - 1} more beside it)"
                                        if len(paths) > 1 else "")
    err.print(f"wrote {where}: {printable(', '.join(drawn))} of {runs - len(empty)} run(s)",
              markup=False, highlight=False)
    for path in paths[1:]:
        err.print(f"  {printable(str(path))}", markup=False, highlight=False)
    if empty:
        err.print(f"nothing to plot in {printable(', '.join(empty))}: left out",
                  markup=False, highlight=False)
    for run_id, why in problems.items():
        err.print(f"warning: {printable(run_id)}: {printable(why)}", markup=False,
                  highlight=False)


def wrote_report(path: Path, runs: int) -> None:
    console(stderr=True).print(f"wrote {path}: {runs} run(s)")


def targets(rows: list[dict[str, Any]]) -> None:
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("TARGET", "BACKEND", "STORE", "SETTINGS"):
        table.add_column(column, overflow="fold")
    for row in rows:
        cells = (row["name"] + (" *" if row["default"] else ""), row["backend"] or "?",
                 (row["store"] or "-") + (f" (needs {row['needs']})" if row.get("needs") else ""),
                 " ".join(f"{k}={v}" for k, v in row["settings"].items()) or "-")
        table.add_row(*(Text(printable(c)) for c in cells))  # Text: `[` is no markup
    console().print(table)


def changes(seen: Iterable[tuple[str, str, str, dict[str, Any]]]) -> None:
    """`watch`: one line per change of status (or of a live run's metrics), as it happens."""
    out = console()
    for run_id, old, new, metrics in seen:
        change = f"{old} -> {new}" if old and old != new else new
        values = "".join(f"  {printable(k)}={value(v)}" for k, v in sorted(metrics.items()))
        out.print(f"{time.strftime('%H:%M:%S')}  {printable(run_id)}  {printable(change)}"
                  f"{printable(values)}", markup=False, highlight=False)
