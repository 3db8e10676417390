"""What the web view shows, as JSON-ready data: the runs table (the `ls` query), a run's
page, metric series, the `diff` sections, a log chunk, parallel coordinates.

The server (`ui.server`) answers with these, and the frozen report (`ui.report`) embeds
them. Every text that came from a run is made `printable` here, once; the browser puts it
into the page with `textContent` only. Run ids are checked (`ids.is_valid_id`) before any
git object is named after them.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import math
import operator
import shlex
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

try:  # the `ui` extra's faster JSON (see `loads`)
    import orjson
except ImportError:  # pragma: no cover - a plain install reads with `json`
    orjson = None  # type: ignore[assignment]

from gitexp.errors import GitexpError
from gitexp.git import Repo, refs_stamp
from gitexp.git.config import Config
from gitexp.git.writeback import MAX_LOG_IN_GIT, RESULTS_DIR
from gitexp.model import dvcplots, ids
from gitexp.model import metrics as metric_series
from gitexp.model.record import LIVE
from gitexp.model.row import Row, as_json, row_of
from gitexp.printable import LIMIT, printable
from gitexp.service import diff, params, plots, runs, tagging
from gitexp.service import where as w
from gitexp.stores import run_key, size_of

PAGE = 200  # rows per request of the table: the browser asks for more as it scrolls
MAX_PAGE = 2000
MAX_COMPARE = 64  # runs whose series one request reads
MAX_PARALLEL = 10_000  # lines of the parallel-coordinates chart
MAX_AXES = 12  # params on it
LOG_TAIL = 64 << 10  # bytes of a log shown at first; the rest arrives as it grows
LOG_CHUNK = 256 << 10
MAX_PATCH = 1 << 20  # bytes of a code diff shown (and of a file diffed as text)
# A run's curves as sent: a series of 10^6 points (or a forged metrics.jsonl of 256 MB, a
# few KB once git compresses it) is read once as bytes, never as a dict per point.
MAX_CURVE = 10_000  # points of one run: more are thinned evenly through the file
MAX_CURVE_TEXT = 8 << 20  # bytes of those points' lines, all together
MAX_POINT = 64 << 10  # bytes of one line, when thinned: a longer one is no point
MAX_CURVES = 1000  # metric names of one run with a curve
MAX_CHECKPOINTS = 1000  # checkpoint lines always kept
BATCH_SERIES = 1 << 20  # a series at most this big is read with the others at once
TABLE_FIELDS = ("id", "name", "status", "target", "sweep", "user", "launched_at", "started",
                "ended", "duration", "exit_code", "command", "error", "written_back")


def clean_rows(rows: list[Row]) -> list[Row]:
    """`clean` of each table row (`slim`); one that needs nothing (nearly all) is kept as it
    is, not copied: 10,000 rows are looked at in tens of milliseconds."""
    return [clean(row) if _dirty(row) else row for row in rows]


def _dirty(row: Row) -> bool:
    """Whether `clean` might change a row: flat, as rows are (a nested param: yes)."""
    items = [*row.items(), *row["metrics"].items(), *row["params"].items()]
    for key, value in items:
        if len(key) > LIMIT or not key.isprintable():
            return True
        kind = type(value)
        if (kind is str and (len(value) > LIMIT or not value.isprintable())) or \
                (kind is float and value - value != 0) or kind in (list, tuple):
            return True
        if kind is dict and key not in ("metrics", "params"):
            return True
    return False


def clean(value: Any) -> Any:
    """`value` with every string (keys too) `printable`; numbers that JSON cannot carry
    (NaN, infinities) become strings, as the browser could not parse them."""
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, dict):
        return {printable(str(k)): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


# -- the table ------------------------------------------------------------------------------
@dataclass
class Table:
    """The rows a query selects (cleaned, as the browser gets them), and what is known of
    their columns: every metric and param name, and those equal across all the rows."""
    rows: list[Row]
    metrics: list[str]
    params: list[str]
    same: list[str]  # "metrics.NAME" / "params.NAME" with one value across the rows
    made: float = field(default_factory=time.monotonic)
    heads: str = ""  # the refs it was listed from (`heads`)

    @property
    def live(self) -> bool:
        return any(r["status"] in LIVE for r in self.rows)

    def page(self, offset: int, limit: int) -> dict[str, Any]:
        return {"total": len(self.rows), "offset": offset, "metrics": self.metrics,
                "params": self.params, "same": self.same,
                "rows": self.rows[offset:offset + limit]}


def query_of(where: str | None, sort: str | None, status: Iterable[str] = ()) -> w.Query:
    """The `ls` query of the table's filter box and sort (GitexpError: the one-line reason)."""
    return w.Query(where=where or None, sort=sort or None, status=w.words(status))


def heads(repo: Repo) -> str:
    """What the run refs are now: a listing made from the same refs is the same listing,
    but for what live runs say meanwhile (`refresh`). Where the refs are stored, when that
    tells (`git.refs_stamp`: no ref listed, whatever their number); else a digest of every
    run's ref and commit."""
    stamp = refs_stamp(repo, ids.PREFIX)
    if stamp is not None:
        return stamp
    listed = repo.git("for-each-ref", "--format=%(objectname) %(refname)", ids.PREFIX)
    return hashlib.sha256(listed.encode()).hexdigest()


def table(repo: Repo, config: Config, query: w.Query, refs: str = "") -> Table:
    """The runs `git exp ls --where/--sort` selects, in its order, every field and param."""
    out = clean_rows([slim(row) for row in w.listing(repo, config, query, whole=True)])
    return Table(rows=out, metrics=names(out, "metrics"), params=names(out, "params"),
                 same=same(out), heads=refs)


def refresh(repo: Repo, config: Config, found: Table) -> None:
    """Look again at the table's live runs (status, latest metrics), in place: one look at
    each, not a new listing of every run. One that ended is written back, which moves its
    ref: the next request lists again."""
    for i, row in enumerate(found.rows):
        if row["status"] not in LIVE or row["written_back"]:
            continue
        try:
            run = runs.find(repo, row["id"], config)
        except GitexpError:
            continue
        new = slim(row_of(run.record, run.result, run.commit, own=run.own))
        found.rows[i] = {**clean(new), "params": row["params"]}  # file params: unchanged
    found.made = time.monotonic()


def slim(row: Row) -> Row:
    """What the table and compare show of a row of `ls`."""
    out = {k: row.get(k) for k in TABLE_FIELDS}
    out["metrics"], out["params"] = row.get("metrics") or {}, row.get("params") or {}
    out["commit"] = row.get("commit") or ""
    return out


def names(rows: list[Row], kind: str) -> list[str]:
    seen: dict[str, None] = {}
    for row in rows:
        seen.update(dict.fromkeys(row[kind]))
    names = list(seen)
    return sorted(names, key=lambda n: ("loss" not in n.lower(), n)) if kind == "metrics" \
        else sorted(names)


def same(rows: list[Row]) -> list[str]:
    """Columns whose value is the same in every row (a missing value counts as one)."""
    out = []
    for kind in ("metrics", "params"):
        first: dict[str, Any] = {}
        differ: set[str] = set()
        for i, row in enumerate(rows):
            values = row[kind]
            for name in values.keys() | first.keys():
                if name in differ:
                    continue
                if name not in first:
                    if i:  # missing in an earlier row, present here
                        differ.add(name)
                    else:
                        first[name] = values[name]
                elif values.get(name, _MISSING) != first[name]:
                    differ.add(name)
        out += [f"{kind}.{n}" for n in first if n not in differ]
    return sorted(out)


_MISSING = object()


def parallel(found: Table, metric: str) -> dict[str, Any]:
    """Params -> `metric` across the table's runs: the params that vary (at most MAX_AXES,
    numbers before words), each run one line."""
    rows = found.rows[:MAX_PARALLEL]
    same = {n.removeprefix("params.") for n in found.same if n.startswith("params.")}
    varying = [p for p in found.params if p not in same]
    numeric = [p for p in varying if all(_number(r["params"].get(p)) or r["params"].get(p)
                                         is None for r in rows)]
    axes = (numeric + [p for p in varying if p not in numeric])[:MAX_AXES]
    data = [[r["params"].get(p) for p in axes] + [r["metrics"].get(metric), r["id"]]
            for r in rows if _number(r["metrics"].get(metric))]
    return {"axes": axes, "numeric": [p in numeric for p in axes], "metric": metric,
            "rows": [[_scalar(v) for v in line] for line in data]}


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _scalar(v: Any) -> Any:
    return v if v is None or _number(v) else str(v)


# -- one run --------------------------------------------------------------------------------
def find(repo: Repo, config: Config, spec: str) -> runs.Run:
    """The run `spec` names (an id or a unique part of it, as every verb takes it)."""
    if not spec or len(spec) > 200 or not all(c.isalnum() or c in "-_." for c in spec):
        raise GitexpError(f"no run {printable(spec[:80])!r}", hint="run ids are like "
                          "train-1127-0930-abcd")
    return runs.find(repo, spec, config)


def run_page(repo: Repo, config: Config, run: runs.Run) -> dict[str, Any]:
    """Everything the run page shows but the log and the code diff (asked for apart)."""
    shown = as_json(run.record, run.result, run.commit, own=run.own)
    notes = tagging.of(repo, [run])[run.id]
    points = curve_points(plots.run_series(repo, run))
    checkpoints = [{"time": _finite_or_none(p.get("time")),
                    "step": _finite_or_none(p.get("step")),
                    "message": str(p["_checkpoint"]) if type(p["_checkpoint"]) in _SCALARS
                    else "", "metrics": _scalars(p)}
                   for p in points if "_checkpoint" in p]
    try:
        declared, problem = [_plot(p) for p in plots.run_plots(repo, run)], None
    except dvcplots.PlotsError as exc:
        declared, problem = [], exc.message
    page: dict[str, Any] = clean({
        **shown, "command": shlex.join(run.record.argv), "live": run.status in LIVE,
        "params": params.of_run(repo, run.record), "outputs": run.outputs,
        "tags": list(notes.tags), "notes": [{"time": at, "text": t} for at, t in notes.notes],
        "checkpoints": checkpoints, "plots": declared, "plots_problem": problem,
        "series": _columns(points),
    })
    return page


def _plot(plot: dvcplots.Plot) -> dict[str, Any]:
    """A declared plot for the browser: its lines, or its image as a data: URL (an image in
    an <img> runs no script, an SVG included)."""
    out: dict[str, Any] = {"id": plot.id, "title": plot.title, "template": plot.template,
                           "x_label": plot.x_label, "y_label": plot.y_label}
    if plot.template == dvcplots.IMAGE:
        data = base64.b64encode(plot.image or b"").decode()
        out["image"] = f"data:image/{plot.image_type};base64,{data}"
    else:
        out["series"] = [{"name": s.name, "x": list(s.x), "y": list(s.y), "n": list(s.n)}
                         for s in plot.series]
    return out


def _columns(points: list[dict[str, Any]]) -> dict[str, Any]:
    """Points as columns: `step` and `time` (None where a point lacks one) and one list per
    numeric metric (its name `printable`), aligned with them: what the charts draw from.
    Only finite numbers pass: the rest of a point is no curve (and no text to clean)."""
    seen: dict[str, None] = {}
    for p in points:
        seen.update(p)  # at C speed; the names that are no metric go below
    metrics = [n for n in list(seen)[:MAX_CURVES + len(metric_series.RESERVED)]
               if n not in metric_series.RESERVED][:MAX_CURVES]
    raw = _transpose(points, ["step", "time", *metrics])
    cols: dict[str, list[Any]] = {}
    for name in metrics:
        col = _column(raw[name])
        if any(v is not None for v in col):
            cols[printable(name)] = col
    return {"step": _column(raw["step"]), "time": _column(raw["time"]), "metrics": cols}


def _transpose(points: list[dict[str, Any]], names: list[str]) -> dict[str, list[Any]]:
    """Each name's values through the points (None where one lacks it). When every point
    has every name (the usual series), at C speed: one tuple per point, then zipped."""
    try:
        rows = list(map(operator.itemgetter(*names), points))
    except KeyError:  # a point without some name (a checkpoint's, a metric logged later)
        return {n: list(map(dict.get, points, itertools.repeat(n))) for n in names}
    if not rows:
        return {n: [] for n in names}
    return {n: list(col) for n, col in zip(names, zip(*rows, strict=True), strict=True)}


def _column(col: list[Any]) -> list[Any]:
    if set(map(type, col)) <= _NUMBERS:  # the usual column, checked at C speed
        try:
            if math.isfinite(math.fsum(col)):
                return col
        except (OverflowError, ValueError):
            pass
    return [_finite_or_none(v) for v in col]


_NUMBERS = {int, float}  # exactly: a bool is no point of a curve


def _finite_or_none(v: Any) -> Any:
    return v if type(v) in _NUMBERS and v - v == 0 else None  # NaN, inf: v - v != 0


def points_of(data: bytes) -> list[dict[str, Any]]:
    """The points of a metrics.jsonl for `_columns`, at the speed of one JSON parse when
    every line is whole (the usual case): only then is the text read as one array; a torn
    line or anything odd goes the line-by-line way of the one parser
    (`metrics.parse_series`). A point's values are not looked at here: `_columns` keeps
    finite numbers only, and checkpoints keep scalars only (`_scalars`)."""
    lines = [line for line in data.split(b"\n") if line.strip()]
    try:
        found = loads(b"[" + b",".join(lines) + b"]")
    except (ValueError, RecursionError):
        return metric_series.parse_series(data)
    if type(found) is list and all(type(p) is dict for p in found):
        points: list[dict[str, Any]] = found
        return points
    return metric_series.parse_series(data)


def loads(text: bytes) -> Any:
    """JSON text read by orjson when it is there (the `ui` extra: about 4 times the speed
    of the standard library on metric series), else by `json`. orjson refuses NaN and
    integers past 64 bits; the caller's slower path reads those."""
    return orjson.loads(text) if orjson else json.loads(text)


def dumps(value: Any) -> str:
    """Compact JSON text, by orjson when it is there (an integer past 64 bits falls back)."""
    if orjson:
        try:
            return str(orjson.dumps(value), "utf-8")
        except TypeError:
            pass
    return json.dumps(value, separators=(",", ":"), allow_nan=False)


def _scalars(point: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in point.items()
            if k not in metric_series.RESERVED and type(v) in _SCALARS}


_SCALARS = (int, float, str, bool, type(None))


def curve_points(data: bytes) -> list[dict[str, Any]]:
    """The points of a metrics.jsonl the web view shows: all of them when they are few (the
    usual case), else at most MAX_CURVE lines taken at even places through the text (its
    first and last line, and its checkpoints, always), none longer than MAX_POINT."""
    lines = data.count(b"\n") + 1
    if lines <= MAX_CURVE and len(data) <= MAX_CURVE_TEXT:
        return points_of(data)
    end = len(data)
    while end and data[end - 1] in b"\r\n \t":
        end -= 1
    # fewer places where lines are long: the text parsed stays within MAX_CURVE_TEXT
    most = max(2, min(MAX_CURVE, lines, MAX_CURVE_TEXT * lines // max(1, end)))
    starts = {data.rfind(b"\n", 0, end * k // most) + 1 for k in range(most)}
    starts.add(data.rfind(b"\n", 0, end) + 1)
    at = 0
    for _ in range(MAX_CHECKPOINTS):
        at = data.find(b'"_checkpoint"', at, end) + 1
        if not at:
            break
        starts.add(data.rfind(b"\n", 0, at) + 1)
    picked = []
    for start in sorted(starts):
        stop = data.find(b"\n", start, end)
        stop = end if stop < 0 else stop
        if stop - start <= MAX_POINT:
            picked.append(data[start:stop])
    return points_of(b"\n".join(picked))


def series(repo: Repo, config: Config, found: Table | None,
           wanted: list[str]) -> dict[str, Any]:
    """The metric series of the runs named (exact ids), read together: the written-back
    ones in one `git cat-file`, the others from their store."""
    wanted = [i for i in dict.fromkeys(wanted) if ids.is_valid_id(i)][:MAX_COMPARE]
    known = {r["id"]: r for r in found.rows} if found else {}
    kept = [i for i in wanted if known.get(i, {}).get("written_back") and known[i]["commit"]]
    specs = [f"{known[i]['commit']}:{RESULTS_DIR}/metrics.jsonl" for i in kept]
    # the usual small ones in one `git cat-file`; a big one alone: one held at a time
    blobs = repo.read_objects(specs, max_size=BATCH_SERIES) if kept else []
    out: dict[str, Any] = {}
    for run_id, spec, small in zip(kept, specs, blobs, strict=True):
        obj = small if small.type != "blob" or small.data is not None else \
            repo.read_objects([spec], max_size=plots.MAX_SERIES)[0]
        data = obj.data if obj.type == "blob" and obj.data else b""
        out[run_id] = _columns(curve_points(data))
    rows = {i: known[i] for i in wanted if i in known}
    for run_id in wanted:
        if run_id not in out:
            try:
                run = runs.find(repo, run_id, config)
            except GitexpError:
                continue
            out[run_id] = _columns(curve_points(plots.run_series(repo, run)))
            rows.setdefault(run_id, clean(slim(row_of(run.record, run.result, run.commit))))
    return {"runs": rows, "series": out}


def log_chunk(repo: Repo, config: Config, run: runs.Run, offset: int, *,
              tail: int = LOG_TAIL) -> dict[str, Any]:
    """The log from `offset` (bounded), or with a negative offset its tail: the text (each
    line `printable`), the offset to ask from next, and whether the run is still live."""
    run = runs.observe(repo, config, run) if not run.written_back else run
    live = run.status in LIVE
    cut = False
    if offset < 0:
        try:
            total = size_of(runs.store_of(repo, run, config), run_key(run.id, "log"))
        except GitexpError:
            total = None
        if total is None:  # from git (written back): bounded there
            whole = runs.read_log(repo, run, config=config)[:MAX_LOG_IN_GIT]
            total = len(whole)
            data = whole[-tail:]
        else:
            data = runs.read_log(repo, run, max(0, total - tail), tail, config)
            total = max(0, total - tail) + len(data)
        cut = total > len(data)
        offset = total
        if cut:
            data = data[data.find(b"\n") + 1:]
    else:
        data = runs.read_log(repo, run, offset, LOG_CHUNK, config)
        offset += len(data)
    text = data.decode("utf-8", errors="replace")
    lines = "\n".join(printable(line, limit=None) for line in text.split("\n"))
    return {"id": run.id, "status": run.status, "live": live, "offset": offset,
            "text": lines, "cut": cut}


def code_diff(repo: Repo, config: Config, run: runs.Run,
              other: runs.Run | None) -> dict[str, Any]:
    """`git exp diff RUN [OTHER]` as data, the patch included (cut at MAX_PATCH)."""
    report = (diff.runs(repo, other, run, patch=True, max_patch=MAX_PATCH) if other
              else diff.against_base(repo, run, patch=True, max_patch=MAX_PATCH))
    out = report.to_dict()
    # the patch keeps its lines: each one printable, as the log's
    out["code"]["patch"] = "\n".join(printable(line, limit=None)
                                     for line in (out["code"]["patch"] or "").split("\n"))
    return {k: clean(v) if k != "code" else {**clean({**v, "patch": ""}), "patch":
            out["code"]["patch"]} for k, v in out.items()}


def cancel(repo: Repo, config: Config, run: runs.Run) -> dict[str, Any]:
    """Stop a live run, as `git exp cancel RUN` does."""
    if run.status not in LIVE:
        raise GitexpError(f"run {run.id} already ended ({run.status})")
    runs.cancel(repo, config, run)
    return {"id": run.id, "cancelling": True}
