"""gitexp: every experiment run is an auditable, rerunnable git object.

Inside a job launched by `git exp run`, report metrics with::
    import gitexp
    gitexp.log(step=3, loss=0.25, acc=0.91)
    gitexp.checkpoint("epoch 3 done", loss=0.25)

Outside a run both are cheap no-ops. This module imports nothing heavy on purpose.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "checkpoint", "log"]

METRICS_ENV = "GITEXP_METRICS"


def _append(line: dict[str, Any]) -> None:
    path = os.environ.get(METRICS_ENV)
    if not path:
        return
    # One short append per call keeps lines whole even if the job is killed mid-way.
    with open(path, "a", encoding="utf-8") as f:  # noqa: PTH123 - the cheapest path
        f.write(json.dumps(line, default=_plain) + "\n")


def log(step: int | None = None, **metrics: Any) -> None:
    """Append one point of the run's metric series (e.g. `log(step=3, loss=0.25)`)."""
    if METRICS_ENV in os.environ:
        _append({"time": time.time(), "step": step, **metrics})


def checkpoint(message: str = "", **metrics: Any) -> None:
    """Mark a checkpoint (it may trigger a mail); also logs `metrics` as a point."""
    if METRICS_ENV in os.environ:
        _append({"time": time.time(), "_checkpoint": message, **metrics})


def _plain(value: Any) -> Any:
    # numpy/torch scalars and the like: anything that converts to a float
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)
