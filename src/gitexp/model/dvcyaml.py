"""What a DVC pipeline's `dvc.yaml` declares as metrics and plots, read after the job; and
which of a record's data entries the run read (`inputs`).

The file comes from the run's checkout, so it is untrusted like everything a job leaves
behind: its paths are kept only when relative, normalised and (symlinks resolved) inside the
directory, files are read only up to MAX_FILE, and a broken file counts as declaring nothing.
"""

from __future__ import annotations

import contextlib
import json
import posixpath
from pathlib import Path
from typing import Any

from gitexp.model import checks

MAX_FILE = 1 << 20  # bytes: metrics, plots and dvc.yaml itself; a real one is a few KB
MAX_FILES = 1000  # files under one declared directory
DVCLIVE_DEFAULT = "dvclive"
METRIC_SUFFIXES = (".json", ".yaml", ".yml")


def declared(workdir: Path) -> tuple[list[str], list[str]]:
    """(metric paths, plot paths) that `workdir/dvc.yaml` declares: top-level `metrics:`
    and `plots:`, each stage's `metrics:`/`plots:`, outs marked `metric`/`plot(s)`, and the
    files a plot's `y:` names. Relative to `workdir`; unsafe or odd entries are dropped."""
    doc = load(workdir, "dvc.yaml")
    if not isinstance(doc, dict):
        return [], []
    metrics, plots = _paths(doc.get("metrics")), _plot_paths(doc.get("plots"))
    stages = doc.get("stages")
    for stage in stages.values() if isinstance(stages, dict) else []:
        if not isinstance(stage, dict):
            continue
        metrics += _paths(stage.get("metrics"))
        plots += _plot_paths(stage.get("plots"))
        for out in stage.get("outs") or [] if isinstance(stage.get("outs"), list) else []:
            if isinstance(out, dict) and len(out) == 1:
                (path, flags), = out.items()
                if isinstance(flags, dict) and flags.get("metric"):
                    metrics += _paths([path])
                elif isinstance(flags, dict) and (flags.get("plot") or flags.get("plots")):
                    plots += _paths([path])
    return _unique(metrics), _unique(plots)


def live_dirs(metric_paths: list[str], plot_paths: list[str]) -> list[str]:
    """Where dvclive may have written its series (`<dir>/plots/metrics/*.tsv`): its default
    directory, the directory of a declared `metrics.json`, and the parent of a declared
    `<dir>/plots/metrics` (what dvclive's own `dvcyaml` option declares)."""
    dirs = [DVCLIVE_DEFAULT]
    dirs += [posixpath.dirname(p) or "." for p in metric_paths
             if posixpath.basename(p) == "metrics.json"]
    dirs += [p.removesuffix("/plots/metrics") or "." for p in plot_paths
             if p == "plots/metrics" or p.endswith("/plots/metrics")]
    return _unique(dirs)


def files_under(workdir: Path, rel: str, suffixes: tuple[str, ...]) -> list[Path]:
    """The regular files at or below `workdir/rel` with one of `suffixes`, each inside
    `workdir` once symlinks are resolved; at most MAX_FILES."""
    root = workdir.resolve()
    start = inside(workdir, rel)
    if start is None:
        return []
    found = [start] if start.is_file() else sorted(start.rglob("*")) if start.is_dir() else []
    out: list[Path] = []
    for path in found:
        if len(out) >= MAX_FILES:
            break
        real = path.resolve()
        if path.suffix in suffixes and real.is_file() and real.is_relative_to(root):
            out.append(path)
    return out


def inside(workdir: Path, rel: str) -> Path | None:
    """`workdir/rel` when `rel` is a safe relative path and stays inside `workdir`."""
    if rel != "." and checks.path_problem(rel):
        return None
    path = workdir / rel
    with contextlib.suppress(OSError, RuntimeError):  # RuntimeError: a symlink loop
        if path.resolve().is_relative_to(workdir.resolve()):
            return path
    return None


def read_bounded(path: Path) -> bytes | None:
    """The file's bytes, or None if it is larger than MAX_FILE or unreadable."""
    try:
        with path.open("rb") as f:
            data = f.read(MAX_FILE + 1)
    except OSError:
        return None
    return data if len(data) <= MAX_FILE else None


def load(workdir: Path, rel: str) -> Any:
    """A JSON or YAML file under `workdir`, parsed; None when absent, too large or broken."""
    path = inside(workdir, rel)
    return parse(path) if path is not None and path.is_file() else None


def parse(path: Path) -> Any:
    """A JSON (by its suffix) or YAML file, parsed; None when too large or broken."""
    data = read_bounded(path)
    if data is None:
        return None
    if path.suffix == ".json":  # JSON allows tabs where YAML does not: parse it as JSON
        try:
            return json.loads(data)
        except (ValueError, RecursionError):
            return None
    import yaml  # only for runs that left YAML files (dvc.yaml, metrics.yaml)

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        return yaml.load(data, Loader=loader)  # noqa: S506 - a safe loader
    except (yaml.YAMLError, RecursionError, ValueError):
        return None


def inputs(data: dict[str, Any] | None) -> dict[str, Any]:
    """Of a record's data version, what the run read: `.dvc`-tracked files and the stage
    dependencies no stage produces. Outputs an earlier `dvc.lock` pinned are left out: the
    run's own outputs are its result's."""
    return {p: d for p, d in (data or {}).items() if not isinstance(d, dict)  # odd: kept
            or d.get("dep") or not str(d.get("source", "")).partition(":")[2]}


def _paths(entries: Any) -> list[str]:
    """`[a, {b: {cache: false}}]` -> `[a, b]`, each normalised and safe."""
    out = []
    for entry in entries if isinstance(entries, list) else []:
        names = [entry] if isinstance(entry, str) else list(entry) if isinstance(entry, dict) \
            else []
        for name in names:
            if isinstance(name, str) and name.strip():
                path = posixpath.normpath(name.strip())
                if not checks.path_problem(path):
                    out.append(path)
    return out


def _plot_paths(entries: Any) -> list[str]:
    """A plot is a path, or `{id or path: {x:, y: path or {file: column}}}`."""
    out = []
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, dict):
            for key, spec in entry.items():
                files = spec.get("y") if isinstance(spec, dict) else None
                out += _paths(list(files)) if isinstance(files, dict) else _paths([key])
        else:
            out += _paths([entry])
    return out


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))
