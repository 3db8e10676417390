"""Metric series and final metrics, from `gitexp.log` lines and files a job leaves behind."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

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
    """Final metrics a job wrote as files: `metrics.json`, and dvclive's `dvclive/metrics.json`."""
    found: dict[str, Any] = {}
    for name in ("dvclive/metrics.json", "metrics.json"):
        path = workdir / name
        if path.is_file():
            try:
                found.update(flatten(json.loads(path.read_text(encoding="utf-8"))))
            except (ValueError, OSError):
                continue
    return found


def series_from_files(workdir: Path) -> list[dict[str, Any]]:
    """dvclive's series, `dvclive/plots/metrics/<name>.tsv` (columns: timestamp in ms, step,
    value), as points like `gitexp.log` writes: `{"time", "step", "<name>": value}`. The agent
    appends them to the run's metrics.jsonl when the job ends."""
    base = workdir / "dvclive" / "plots" / "metrics"
    points: list[dict[str, Any]] = []
    for path in sorted(base.rglob("*.tsv")) if base.is_dir() else []:
        # `train/loss.tsv` -> `train.loss`, the name flatten() gives dvclive/metrics.json's
        name = path.relative_to(base).with_suffix("").as_posix().replace("/", ".")
        try:
            rows = path.read_text(encoding="utf-8").splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cells = row.split("\t")
            try:
                points.append({"time": float(cells[0]) / 1000, "step": int(float(cells[1])),
                               name: float(cells[-1])})
            except (ValueError, IndexError):
                continue  # a torn last row of a live file
    return points


def _is_scalar(value: Any) -> bool:
    return isinstance(value, (int, float, str, bool)) or value is None
