"""Metric series and final metrics, from `gitexp.log` lines and files a job leaves behind."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gitexp.model import dvcyaml

RESERVED = frozenset({"time", "step", "_checkpoint"})


def parse_series(data: bytes) -> list[dict[str, Any]]:
    """Lines of `gitexp.log`; a torn last line (a killed job) is skipped, not fatal. Points
    are flat (`gitexp.log` writes scalars): anything nested is dropped here, so a forged
    series 10,000 levels deep reaches nothing that recurses."""
    points = []
    for line in data.decode("utf-8", errors="replace").splitlines():
        try:
            point = json.loads(line)
        except (ValueError, RecursionError):
            continue
        if isinstance(point, dict):
            points.append({k: v for k, v in point.items() if _is_scalar(v)})
    return points


def final_of(series: list[dict[str, Any]]) -> dict[str, Any]:
    final: dict[str, Any] = {}
    for point in series:
        for key, value in point.items():
            if key not in RESERVED and _is_scalar(value):
                final[key] = value
    return final


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """`{"eval": {"acc": 1}}` -> `{"eval.acc": 1}`: scalars only."""
    out: dict[str, Any] = {}
    if isinstance(data, dict):
        for key, value in data.items():
            out.update(flatten(value, f"{prefix}{key}."))
    elif _is_scalar(data) and prefix:
        out[prefix[:-1]] = data
    return out


def from_files(workdir: Path) -> dict[str, Any]:
    """Final metrics a job wrote as files: `metrics.json`, dvclive's `dvclive/metrics.json`,
    and the metrics files `dvc.yaml` declares (`eval/metrics.json` -> `avg_prec.test`)."""
    declared, _ = dvcyaml.declared(workdir)
    found: dict[str, Any] = {}
    for name in ("dvclive/metrics.json", "metrics.json", *declared):
        for path in dvcyaml.files_under(workdir, name, dvcyaml.METRIC_SUFFIXES):
            try:
                found.update(flatten(dvcyaml.parse(path)))
            except RecursionError:  # a forged file nested deeper than any real one
                continue
    return found


def series_from_files(workdir: Path) -> list[dict[str, Any]]:
    """dvclive's series, `<dir>/plots/metrics/<name>.tsv` (columns: step, value; first a
    timestamp in ms if dvclive was asked for one) in each directory dvclive may have written
    to (`dvcyaml.live_dirs`), as points like `gitexp.log` writes: `{"step", "<name>":
    value}` (and "time" when recorded). The agent appends them to the run's metrics.jsonl
    when the job ends."""
    points: list[dict[str, Any]] = []
    for live in dvcyaml.live_dirs(*dvcyaml.declared(workdir)):
        base = f"{live}/plots/metrics" if live != "." else "plots/metrics"
        for path in dvcyaml.files_under(workdir, base, (".tsv",)):
            # `train/loss.tsv` -> `train.loss`, the name flatten() gives the metrics.json's
            rel = path.relative_to(workdir / base).with_suffix("").as_posix()
            points += _tsv_points(path, rel.replace("/", "."))
    return points


def _tsv_points(path: Path, name: str) -> list[dict[str, Any]]:
    """dvclive 3 writes `step<TAB>value`, with `timestamp` (ms) first when asked: columns
    are found by the header's names, the value is the last one."""
    lines = (dvcyaml.read_bounded(path) or b"").decode("utf-8", errors="replace").splitlines()
    head = lines[0].split("\t") if lines else []
    step = head.index("step") if "step" in head else None
    stamp = head.index("timestamp") if "timestamp" in head else None
    points: list[dict[str, Any]] = []
    for row in lines[1:]:
        cells = row.split("\t")
        try:
            point: dict[str, Any] = {name: float(cells[len(head) - 1])}
            if step is not None:
                point["step"] = int(float(cells[step]))
            if stamp is not None:
                point["time"] = float(cells[stamp]) / 1000
        except (ValueError, IndexError, OverflowError):
            continue  # a torn last row of a live file
        points.append(point)
    return points


def _is_scalar(value: Any) -> bool:
    return isinstance(value, (int, float, str, bool)) or value is None
