"""Shared renderings of runs: short times, durations, commands, metric values."""

from __future__ import annotations

import shlex
import time
from typing import TYPE_CHECKING, Any

from gitexp.model.record import format_duration

if TYPE_CHECKING:
    from gitexp.service.runs import Run

STATUS_STYLE = {
    "queued": "dim", "running": "cyan", "succeeded": "green", "failed": "red",
    "cancelled": "yellow", "lost": "magenta",
}


def when(ts: float | None) -> str:
    if ts is None:
        return "-"
    try:  # a record from elsewhere may hold any number: year 10^300 is no time to show
        local = time.localtime(ts)
    except (OverflowError, ValueError, OSError):
        return "-"
    return time.strftime("%H:%M:%S" if time.time() - ts < 86400 else "%Y-%m-%d %H:%M", local)


duration = format_duration


def command(argv: list[str], width: int = 60) -> str:
    text = shlex.join(argv)
    return text if len(text) <= width else text[: width - 1] + "…"


def printable(text: str) -> str:
    """`text` on one line with control characters shown escaped: a command or name from a
    teammate's run must not move the cursor, recolour or clear the user's terminal."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


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
    return {
        "id": run.id, "status": run.status, "commit": run.commit,
        "snapshot": run.record.snapshot, "record": run.record.to_dict(),
        "result": run.result.to_dict() if run.result else None,
    }
