"""The plots a run's `dvc.yaml` declares that are no step series: ROC and precision-recall
curves, confusion matrices, bar charts, scatter plots, images. Read in the job's checkout at
the end of the run (`collect`), kept as files (`encode`: `plots.json` and `img-<k>.<ext>`),
and read back through one decoder (`decode`) wherever they come from.

DVC's rules (its `dvc.yaml` schema and `dvc plots show`): a plot is a path (a file, or a
directory whose every file is one) with optional `x`, `y` (a field, or a list), `template`,
`title`, `x_label`, `y_label`, `header`; or an id whose `y` maps files to fields
(`{eval/roc/train.json: tpr}`), `x` a field of each or `{file: field}`. Data files are JSON
or YAML (a list of objects, or objects holding such lists, merged point by point), CSV or
TSV (a header row unless `header: false`: then the columns are `0`, `1`, ...). Without `x`
the points are numbered (DVC's `step`); without `y` the last field of the first point is it.
Image files (png, jpg, gif, svg) are plots as they are.

Everything here is untrusted twice: the job wrote the files (paths go through
`dvcyaml.inside`/`files_under`, sizes are bounded), and what comes back from a store or a ref
may be forged (`decode` holds it to the same bounds and raises one PlotsError).
"""

from __future__ import annotations

import csv
import io
import json
import math
import posixpath
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gitexp.errors import GitexpError
from gitexp.model import checks, dvcyaml

SCHEMA = 1
INDEX = "plots.json"
MAX_PLOTS = 32  # plots of one run, images included
MAX_SERIES = 16  # lines of one plot
MAX_POINTS = 10_000  # points of one plot, all its lines together: more are thinned evenly
MAX_IMAGES = 8
MAX_IMAGE = dvcyaml.MAX_FILE  # bytes of one image
MAX_TEXT = 200  # characters of an id, a title, a label, a line's name
MAX_VALUE = 64  # characters of a string value (a class name, a feature name)
MAX_INDEX = 4 << 20  # bytes of plots.json: MAX_PLOTS * MAX_POINTS never reach it honestly
LINEAR = ("linear", "simple", "smooth")
TEMPLATES = (*LINEAR, "scatter", "confusion", "confusion_normalized", "bar_horizontal",
             "bar_horizontal_sorted")
IMAGE = "image"
IMAGE_TYPES = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".gif": "gif",
               ".svg": "svg+xml"}
DATA_SUFFIXES = (".json", ".yaml", ".yml", ".csv", ".tsv")
_IMAGE_NAME = re.compile(r"img-([0-9]{1,2})\.(png|jpg|jpeg|gif|svg)")
_MAGIC = {"png": (b"\x89PNG\r\n\x1a\n",), "jpeg": (b"\xff\xd8\xff",),
          "gif": (b"GIF87a", b"GIF89a")}

Value = float | str


class PlotsError(GitexpError):
    """Declared plots read back that `encode` would not have written (or a newer gitexp did)."""


@dataclass(frozen=True)
class Series:
    """One line (or, for a confusion matrix, the counted cells: `n[i]` times actual `x[i]`
    predicted as `y[i]`)."""
    name: str
    x: tuple[Value, ...]
    y: tuple[Value, ...]
    n: tuple[int, ...] = ()


@dataclass(frozen=True)
class Plot:
    id: str  # the plot id of dvc.yaml: a name, or the data file's path
    template: str  # one of TEMPLATES, or IMAGE
    title: str
    x_label: str = ""
    y_label: str = ""
    series: tuple[Series, ...] = ()
    image: bytes | None = None  # an image plot's file, as the job wrote it
    image_type: str = ""  # its type: IMAGE_TYPES' values ("png", "svg+xml")

    @property
    def suffix(self) -> str:
        return "." + ("svg" if self.image_type == "svg+xml" else
                      "jpg" if self.image_type == "jpeg" else self.image_type)


# -- the job's side: what dvc.yaml declares, read ------------------------------------------
def collect(workdir: Path) -> list[Plot]:
    """Every plot `workdir/dvc.yaml` declares that is no dvclive step series (those travel
    as metric series), in the order declared; broken or unsafe ones are left out."""
    doc = dvcyaml.load(workdir, "dvc.yaml")
    if not isinstance(doc, dict):
        return []
    series_dirs = [f"{d}/plots/metrics" if d != "." else "plots/metrics"
                   for d in dvcyaml.live_dirs(*dvcyaml.declared(workdir))]
    definitions = _definitions(doc)
    by_path: dict[str, dict[str, Any]] = {}  # a data file or directory -> its properties
    for plot_id, props in definitions:
        if not isinstance(props.get("y"), dict) and (path := _clean(plot_id)) is not None:
            by_path.setdefault(path, props)
    plots: list[Plot] = []
    images, done = 0, set()
    for plot_id, props in definitions:  # in the order declared
        if isinstance(props.get("y"), dict):  # an id, `y: {file: field}`
            if (plot := _named_plot(workdir, plot_id, props)) is not None:
                plots.append(plot)
            continue
        path = _clean(plot_id)
        if path is None or path in done:  # unsafe, or declared twice
            continue
        done.add(path)
        for file in dvcyaml.files_under(workdir, path, DATA_SUFFIXES + tuple(IMAGE_TYPES)):
            rel = file.relative_to(workdir).as_posix()
            # a file under two declared directories takes the closest one's properties
            if _closest(rel, list(by_path)) != path or any(_under(rel, d) for d in series_dirs):
                continue
            if file.suffix.lower() in IMAGE_TYPES:
                if images < MAX_IMAGES and (plot := _image(file, rel)) is not None:
                    plots.append(plot)
                    images += 1
            elif (plot := _file_plot(workdir, rel, props)) is not None:
                plots.append(plot)
    return plots[:MAX_PLOTS]


def _definitions(doc: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(id, properties) of top-level `plots:`, each stage's `plots:` and outs with `plot`."""
    found: list[tuple[str, dict[str, Any]]] = []
    entries: list[Any] = list(doc.get("plots") or []) if isinstance(doc.get("plots"), list) \
        else []
    stages = doc.get("stages")
    for stage in stages.values() if isinstance(stages, dict) else []:
        if isinstance(stage, dict) and isinstance(stage.get("plots"), list):
            entries += stage["plots"]
        outs = stage.get("outs") if isinstance(stage, dict) else None
        for out in outs if isinstance(outs, list) else []:
            if isinstance(out, dict) and len(out) == 1:
                (path, flags), = out.items()
                flag = flags.get("plot") or flags.get("plots") if isinstance(flags, dict) \
                    else None
                if flag:
                    entries.append({path: flag if isinstance(flag, dict) else {}})
    for entry in entries:
        if isinstance(entry, str):
            found.append((entry, {}))
        elif isinstance(entry, dict):
            found += [(k, v if isinstance(v, dict) else {}) for k, v in entry.items()
                      if isinstance(k, str)]
    return found


def _file_plot(workdir: Path, rel: str, props: dict[str, Any]) -> Plot | None:
    points = _datapoints(workdir, rel, header=props.get("header", True) is not False)
    if not points:
        return None
    x = props.get("x") if isinstance(props.get("x"), str) else None
    y = props.get("y")
    fields = [y] if isinstance(y, str) else [f for f in y if isinstance(f, str)] \
        if isinstance(y, list) else [list(points[0])[-1]]
    lines = [(f, [(p.get(x) if x else i, p.get(f)) for i, p in enumerate(points)])
             for f in fields[:MAX_SERIES]]
    return _plot(rel, props, x, fields, lines)


def _named_plot(workdir: Path, plot_id: str, props: dict[str, Any]) -> Plot | None:
    """`{id: {x: fpr | {file: field}, y: {file: field(s)}}}`: one line per file and field."""
    ys = [(path, f) for file, value in props["y"].items() if (path := _clean(file))
          for f in ([value] if isinstance(value, str) else value if isinstance(value, list)
                    else []) if isinstance(f, str)][:MAX_SERIES]
    x = props.get("x")
    xs = [(p, f) for file, f in x.items() if (p := _clean(file)) and isinstance(f, str)] \
        if isinstance(x, dict) else []
    cache: dict[str, list[dict[str, Any]]] = {}

    def points_of(path: str) -> list[dict[str, Any]]:
        if path not in cache:
            cache[path] = _datapoints(workdir, path, header=props.get("header", True)
                                      is not False)
        return cache[path]
    # short names: the files without the prefix they share (DVC's legend does the same)
    files = list(dict.fromkeys(path for path, _ in ys))
    common = posixpath.commonpath(files) if len(files) > 1 else ""
    several_fields = len({f for _, f in ys}) > 1
    lines = []
    for i, (path, field) in enumerate(ys):
        y_points = points_of(path)
        x_file, x_field = xs[i] if len(xs) == len(ys) else xs[0] if xs else \
            (path, x if isinstance(x, str) else None)
        x_points = points_of(x_file) if x_field else []
        pairs = [((x_points[j].get(x_field) if j < len(x_points) else None) if x_field else j,
                  p.get(field)) for j, p in enumerate(y_points)]
        name = path[len(common):].lstrip("/") if common else posixpath.basename(path)
        lines.append((f"{name}: {field}" if several_fields else name, pairs))
    if not any(pairs for _, pairs in lines):
        return None
    x_name = x if isinstance(x, str) else xs[0][1] if xs else None
    return _plot(plot_id, props, x_name, [f for _, f in ys], lines)


def _plot(plot_id: str, props: dict[str, Any], x: str | None, fields: list[str],
          lines: list[tuple[str, list[tuple[Any, Any]]]]) -> Plot | None:
    template = props.get("template") if props.get("template") in TEMPLATES else "linear"
    confusion = str(template).startswith("confusion")
    series = []
    for name, pairs in lines:
        if confusion:  # counted here: a matrix of a 50,000-sample test set is a few cells
            cells = Counter((a, b) for a, b in ((_label(p), _label(q)) for p, q in pairs)
                            if a is not None and b is not None)
            if cells:
                keys = sorted(cells)[:MAX_POINTS]
                series.append(Series(_text(name), tuple(k[0] for k in keys),
                                     tuple(k[1] for k in keys), tuple(cells[k] for k in keys)))
            continue
        kept = [(a, b) for a, b in ((_value(p), _value(q)) for p, q in pairs)
                if a is not None and b is not None]
        if kept:
            series.append(Series(_text(name), tuple(a for a, _ in kept),
                                 tuple(b for _, b in kept)))
    if not series:
        return None
    unique = list(dict.fromkeys(fields))
    return Plot(id=_text(plot_id), template=str(template),
                title=_text(_prop(props, "title") or plot_id),
                x_label=_text(_prop(props, "x_label") or x or "step"),
                y_label=_text(_prop(props, "y_label") or (unique[0] if len(unique) == 1
                                                            else "y")),
                series=_thinned(tuple(series)))


def _image(file: Path, rel: str) -> Plot | None:
    kind = IMAGE_TYPES[file.suffix.lower()]
    data = dvcyaml.read_bounded(file)
    if data is None or not _looks_like(kind, data):
        return None
    return Plot(id=_text(rel), template=IMAGE, title=_text(rel), image=data, image_type=kind)


def _datapoints(workdir: Path, rel: str, *, header: bool) -> list[dict[str, Any]]:
    """The file's points as DVC reads them: JSON/YAML lists of objects merged by position
    (objects holding lists: each list whose objects share their keys), CSV/TSV rows."""
    path = dvcyaml.inside(workdir, rel)
    if path is None or not path.is_file():
        return []
    if path.suffix.lower() in (".csv", ".tsv"):
        return _rows(path, header=header)
    try:
        doc = dvcyaml.parse(path)
    except RecursionError:  # a forged file nested deeper than any real one
        return []
    points: list[dict[str, Any]] = []
    for found in _lists(doc, 0):
        if found and all(isinstance(p, dict) for p in found) and \
                set(found[0]) == {k for p in found for k in p}:
            for index, point in enumerate(found):
                if len(points) <= index:
                    points.append({})
                points[index].update(point)
    return points


def _rows(path: Path, *, header: bool) -> list[dict[str, Any]]:
    """A CSV or TSV file's rows: by the header's names, or `0`, `1`, ... without one."""
    data = dvcyaml.read_bounded(path)
    if data is None:
        return []
    text = io.StringIO(data.decode("utf-8", errors="replace"))
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    try:
        if header:
            return [dict(row) for row in csv.DictReader(text, delimiter=delimiter)]
        return [{str(i): v for i, v in enumerate(row)}
                for row in csv.reader(text, delimiter=delimiter)]
    except csv.Error:
        return []


def _lists(doc: Any, depth: int) -> list[list[Any]]:
    if isinstance(doc, list):
        return [doc]
    if not isinstance(doc, dict) or depth > 8:
        return []
    found: list[list[Any]] = []
    for value in doc.values():
        found += [value] if isinstance(value, list) else _lists(value, depth + 1)
    return found


def _value(v: Any) -> Value | None:
    """A number (CSV cells are text: "0.5" is one), or a short text; None for anything else."""
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, (int, float)):
        return float(v) if math.isfinite(v) else None
    if isinstance(v, str):
        try:
            f = float(v)
        except ValueError:
            return _text(v, MAX_VALUE)
        return f if math.isfinite(f) else None
    return None


def _label(v: Any) -> str | None:
    """A class of a confusion matrix: `1`, `1.0` and "1" are the same class."""
    value = _value(v)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return value


def _thinned(series: tuple[Series, ...]) -> tuple[Series, ...]:
    """At most MAX_POINTS points together: every k-th of each line, its last one kept."""
    total = sum(len(s.x) for s in series)
    if total <= MAX_POINTS:
        return series
    out = []
    for s in series:
        keep = max(2, len(s.x) * MAX_POINTS // total)
        step = max(1, math.ceil((len(s.x) - 1) / (keep - 1)))
        picked = [*range(0, len(s.x) - 1, step), len(s.x) - 1]
        out.append(Series(s.name, tuple(s.x[i] for i in picked), tuple(s.y[i] for i in picked),
                          tuple(s.n[i] for i in picked) if s.n else ()))
    return tuple(out)


def _clean(path: Any) -> str | None:
    if not isinstance(path, str) or not path.strip():
        return None
    norm = posixpath.normpath(path.strip())
    return None if checks.path_problem(norm) else norm


def _under(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def _closest(path: str, declared: list[str]) -> str:
    return max((d for d in declared if _under(path, d)), key=len, default="")


def _prop(props: dict[str, Any], name: str) -> str | None:
    value = props.get(name)
    return value if isinstance(value, str) else None


def _text(text: str, limit: int = MAX_TEXT) -> str:
    """One line, at most `limit` characters: what `decode` accepts (the job's words may be
    anything; a title with a newline is still a title)."""
    text = text[:limit]
    return text if text.isprintable() else "".join(c if c.isprintable() else " " for c in text)


# -- kept as files, and read back ---------------------------------------------------------
def encode(plots: list[Plot]) -> dict[str, bytes]:
    """`plots.json` and one `img-<k>.<ext>` per image plot: what the store and the results
    commit hold (`.gitexp-results/plots/`). Nothing when there are no plots."""
    if not plots:
        return {}
    files: dict[str, bytes] = {}
    entries = []
    for plot in plots:
        entry: dict[str, Any] = {"id": plot.id, "template": plot.template, "title": plot.title}
        if plot.image is not None:
            entry["image"] = name = f"img-{len(files)}{plot.suffix}"
            files[name] = plot.image
        else:
            entry.update(x_label=plot.x_label, y_label=plot.y_label, series=[
                {"name": s.name, "x": list(s.x), "y": list(s.y), **({"n": list(s.n)}
                                                                   if s.n else {})}
                for s in plot.series])
        entries.append(entry)
    files[INDEX] = json.dumps({"schema": SCHEMA, "plots": entries},
                              separators=(",", ":")).encode()
    return files


def files_of(workdir: Path, mask: Callable[[bytes], bytes]) -> dict[str, bytes]:
    """`encode(collect(workdir))`, plots.json passed through `mask` (the agent's: secret
    values the job wrote become `***`, as in its metrics lines); nothing if the masked
    index no longer decodes (a secret cut through JSON's syntax: better no plots)."""
    try:
        files = encode(collect(workdir))
    except (OSError, ValueError, RecursionError):  # the job's files must never fail its run
        return {}
    if INDEX in files:
        files[INDEX] = mask(files[INDEX])
        try:
            decode(files[INDEX], files.get)
        except PlotsError:
            return {}
    return files


def decode(index: bytes | None, image: Callable[[str], bytes | None]) -> list[Plot]:
    """The plots `encode` wrote, from untrusted bytes: `index` is plots.json (None: no
    plots), `image(name)` reads one of its images (at most MAX_IMAGE + 1 bytes, None when
    missing). PlotsError, in one line, for anything `encode` would not have written."""
    if index is None or not index:
        return []
    if len(index) > MAX_INDEX:
        raise _damaged(f"plots.json is over {MAX_INDEX >> 20} MB")
    try:
        doc = json.loads(index)
    except (ValueError, RecursionError):
        raise _damaged("plots.json is not JSON") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("plots"), list):
        raise _damaged("plots.json holds no list of plots")
    if doc.get("schema") != SCHEMA:
        raise PlotsError(f"declared plots of schema {doc.get('schema')!r}: this gitexp "
                          f"reads schema {SCHEMA}", hint="upgrade gitexp to draw them")
    if len(doc["plots"]) > MAX_PLOTS:
        raise _damaged(f"more than {MAX_PLOTS} plots")
    images: set[str] = set()
    return [_decoded(i, entry, image, images) for i, entry in enumerate(doc["plots"])]


def _decoded(i: int, entry: Any, image: Callable[[str], bytes | None],
             images: set[str]) -> Plot:
    if not isinstance(entry, dict):
        raise _damaged(f"plot {i} is not an object")
    plot_id, template, title = (_field(entry, k, i) for k in ("id", "template", "title"))
    if template == IMAGE:
        name = entry.get("image")
        match = _IMAGE_NAME.fullmatch(name) if isinstance(name, str) else None
        if match is None or match[0] in images or len(images) >= MAX_IMAGES:
            raise _damaged(f"plot {i} names no image of its own")
        name = match[0]
        images.add(name)
        kind = IMAGE_TYPES["." + match[2]]
        data = image(name)
        if data is None or len(data) > MAX_IMAGE or not _looks_like(kind, data):
            raise _damaged(f"image {name} is missing, over {MAX_IMAGE >> 20} MB or no {kind}")
        return Plot(id=plot_id, template=IMAGE, title=title, image=data, image_type=kind)
    if template not in TEMPLATES:
        raise _damaged(f"plot {i} has an unknown template")
    lines = entry.get("series")
    if not isinstance(lines, list) or not 0 < len(lines) <= MAX_SERIES:
        raise _damaged(f"plot {i} has no series, or more than {MAX_SERIES}")
    series = tuple(_decoded_series(i, s, template.startswith("confusion")) for s in lines)
    if sum(len(s.x) for s in series) > MAX_POINTS:
        raise _damaged(f"plot {i} has more than {MAX_POINTS} points")
    return Plot(id=plot_id, template=template, title=title,
                x_label=_field(entry, "x_label", i), y_label=_field(entry, "y_label", i),
                series=series)


def _decoded_series(i: int, raw: Any, counted: bool) -> Series:
    if not isinstance(raw, dict):
        raise _damaged(f"a series of plot {i} is not an object")
    xs, ys, ns = raw.get("x"), raw.get("y"), raw.get("n", [])
    if not (isinstance(xs, list) and isinstance(ys, list) and isinstance(ns, list)) \
            or len(xs) != len(ys) or len(xs) > MAX_POINTS or (counted and len(ns) != len(xs)):
        raise _damaged(f"a series of plot {i} has x and y of different lengths")
    if not all(_is_value(v) for v in (*xs, *ys)) or not all(
            isinstance(n, int) and not isinstance(n, bool) and 0 <= n < 1 << 53 for n in ns):
        raise _damaged(f"a series of plot {i} holds a value that is no number or short text")
    return Series(_field(raw, "name", i), tuple(float(v) if isinstance(v, int) else v
                                                 for v in xs),
                  tuple(float(v) if isinstance(v, int) else v for v in ys),
                  tuple(ns) if counted else ())


def _is_value(v: Any) -> bool:
    if isinstance(v, bool):
        return False
    if isinstance(v, (int, float)):
        return math.isfinite(v)
    return isinstance(v, str) and checks.text_problem(v, MAX_VALUE) is None


def _field(entry: dict[str, Any], key: str, i: int) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or checks.text_problem(value, MAX_TEXT):
        raise _damaged(f"plot {i}'s {key} is not a short line of text")
    return value


def _looks_like(kind: str, data: bytes) -> bool:
    if kind == "svg+xml":
        head = data[:4096].lstrip().lower()
        return head.startswith(b"<") and b"<svg" in data[:65536].lower()
    return data.startswith(_MAGIC[kind])


def _damaged(why: str) -> PlotsError:
    return PlotsError(f"declared plots are damaged: {why}",
                       hint="they were changed after the run wrote them; the rest of the "
                       "run is unaffected")
