"""From a run's raw material (metric points, log) to a composed mail: shared by the agent
and the dev side so both write the same kind of mail."""

from __future__ import annotations

import logging
from email.message import EmailMessage
from typing import Any

from gitexp import charts
from gitexp.model import metrics
from gitexp.model.record import Result, RunRecord
from gitexp.notify.compose import Mail, compose
from gitexp.notify.settings import NotifySettings

MAX_PLOTS = 4  # one PNG per metric; losses first
LOG_TAIL_LINES = 30
LOG_TAIL_EVENTS = ("failed", "lost")

log = logging.getLogger("gitexp.notify")


def build(settings: NotifySettings, record: RunRecord, *, event: str, seq: int,
          digest: list[dict[str, Any]], points: list[dict[str, Any]],
          result: Result | None, log_bytes: bytes = b"",
          extra_metrics: dict[str, Any] | None = None) -> EmailMessage:
    latest = {**metrics.final_of(points), **(extra_metrics or {})}
    if result is not None and result.metrics:
        latest = {**latest, **result.metrics}
    mail = Mail(event=event, seq=seq, digest=digest, metrics=latest, result=result,
                log_tail=tail(log_bytes) if event in LOG_TAIL_EVENTS else "",
                plots=curve_pngs(record.id, points))
    return compose(settings, record, mail)


def curve_pngs(run_id: str, points: list[dict[str, Any]]) -> dict[str, bytes]:
    """One PNG per metric (the first MAX_PLOTS, losses first); none if matplotlib fails."""
    series = charts.curves(points)
    out: dict[str, bytes] = {}
    for metric in charts.metric_order(set(series))[:MAX_PLOTS]:
        try:
            out[charts.file_name(metric)] = charts.render({run_id: series}, [metric],
                                                        title=run_id)
        except Exception as exc:  # a mail without a picture beats no mail
            log.warning("gitexp: cannot draw %s: %s", metric, exc)
            break
    return out


def tail(data: bytes, lines: int = LOG_TAIL_LINES) -> str:
    text = data[-16384:].decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])
