"""From a run's raw material (metric points, log) to a composed mail: shared by the agent
and the dev side so both write the same kind of mail."""

from __future__ import annotations

import logging
from dataclasses import replace
from email.message import EmailMessage
from typing import Any

from gitexp import charts
from gitexp.model import dvcplots, metrics
from gitexp.model.record import Result, RunRecord
from gitexp.notify.compose import Mail, compose
from gitexp.notify.compose import sweep_root as compose_root
from gitexp.notify.settings import NotifySettings
from gitexp.printable import printable

MAX_PLOTS = 4  # one PNG per metric; losses first
MAX_DECLARED = 4  # the plots dvc.yaml declares, one PNG each (the final mail only)
MAX_IMAGES_BYTES = 1 << 20  # declared images attached as they are, together at most this
LOG_TAIL_LINES = 30
LOG_TAIL_EVENTS = ("failed", "lost")
NO_MATPLOTLIB = ("no curves: matplotlib is not installed where this mail was written; "
                 "pip install 'gitexp[plots]' there for loss curves in mail")

log = logging.getLogger("gitexp.notify")


def build(settings: NotifySettings, record: RunRecord, *, event: str, seq: int,
          digest: list[dict[str, Any]], points: list[dict[str, Any]],
          result: Result | None, log_bytes: bytes = b"",
          extra_metrics: dict[str, Any] | None = None,
          declared: list[dvcplots.Plot] | None = None,
          preempted_at: int | None = None) -> EmailMessage:
    latest = {**metrics.final_of(points), **(extra_metrics or {})}
    if result is not None and result.metrics:
        latest = {**latest, **result.metrics}
    plots = curve_pngs(record.id, points)
    drawn = declared_pngs(record.id, declared or [])
    images, left_out = declared_images(declared or [])
    mail = Mail(event=event, seq=seq, digest=[_shown_point(p) for p in digest],
                metrics=_shown_point(latest), result=_shown_result(result),
                log_tail=tail(log_bytes) if event in LOG_TAIL_EVENTS else "",
                plots={**plots, **drawn}, images=images, left_out=left_out,
                no_plots=NO_MATPLOTLIB if (points or declared) and not plots and not drawn
                and not charts.can_draw() else "", preempted_at=preempted_at)
    return compose(_shown_settings(settings), _shown_record(record), mail)


def sweep_root(settings: NotifySettings, record: RunRecord) -> EmailMessage:
    return compose_root(_shown_settings(settings), _shown_record(record))


# What a mail says of a run is data from the run (or the store): every text in it is
# `printable` before `compose` puts it in a header or a body, so no CR/LF reaches a header
# (where it would add headers or fail the mail) and no escape sequence reaches a reader's
# terminal mail client. The run id and the snapshot are checked by the decoder already.
def _shown_record(record: RunRecord) -> RunRecord:
    def p(text: str | None) -> str | None:
        return None if text is None else printable(text)

    return replace(record, argv=[printable(a) for a in record.argv], cwd=printable(record.cwd),
                   base=p(record.base), branch=p(record.branch), user=printable(record.user),
                   target=printable(record.target), backend=printable(record.backend),
                   sweep=p(record.sweep), name=p(record.name))


def _shown_result(result: Result | None) -> Result | None:
    if result is None:
        return None
    return replace(result, host=None if result.host is None else printable(result.host),
                   error=None if result.error is None else printable(result.error),
                   attempts=[replace(a, resumed_from=None if a.resumed_from is None
                                     else printable(a.resumed_from)[:80])
                             for a in result.attempts])


def _shown_point(point: dict[str, Any]) -> dict[str, Any]:
    return {printable(k): printable(v) if isinstance(v, str) else v for k, v in point.items()}


def _shown_settings(settings: NotifySettings) -> NotifySettings:
    # Frozen into the store at launch, so read back from it: the subject and the thread
    # ids are built from these.
    return replace(settings, repo=printable(settings.repo), to=[printable(a) for a in settings.to],
                   sender_address=printable(settings.sender_address),
                   id_domain=printable(settings.id_domain))


def curve_pngs(run_id: str, points: list[dict[str, Any]]) -> dict[str, bytes]:
    """One PNG per metric (the first MAX_PLOTS, losses first); none if matplotlib fails."""
    # the title of a panel is the metric's name: from the run, and matplotlib warns (on
    # stderr) of each glyph it lacks
    series = {printable(name): curve for name, curve in charts.curves(points).items()}
    out: dict[str, bytes] = {}
    for metric in charts.metric_order(set(series))[:MAX_PLOTS]:
        try:
            out[charts.file_name(metric)] = charts.render({run_id: series}, [metric],
                                                        title=run_id)
        except Exception as exc:  # a mail without a picture beats no mail
            log.warning("gitexp: cannot draw %s: %s", metric, exc)
            break
    return out


def declared_pngs(run_id: str, declared: list[dvcplots.Plot]) -> dict[str, bytes]:
    """One PNG per plot dvc.yaml declares (the first MAX_DECLARED): `plot-<id>.png`."""
    out: dict[str, bytes] = {}
    for plot in [p for p in declared if p.template != dvcplots.IMAGE][:MAX_DECLARED]:
        try:
            out["plot-" + charts.file_name(printable(plot.id))] = charts.render_plot(
                {run_id: plot})
        except Exception as exc:  # a mail without a picture beats no mail
            log.warning("gitexp: cannot draw %s: %s", printable(plot.id), exc)
            break
    return out


def declared_images(declared: list[dvcplots.Plot]) -> tuple[dict[str, bytes], list[str]]:
    """The declared images as they are (`<name>.<ext>`), while they fit MAX_IMAGES_BYTES
    together; and the names of those that did not fit (the mail says so)."""
    images: dict[str, bytes] = {}
    left_out: list[str] = []
    room = MAX_IMAGES_BYTES
    for plot in (p for p in declared if p.image is not None):
        name = charts.image_name(printable(plot.id), plot.suffix)
        if plot.image is not None and len(plot.image) <= room:
            images[name] = plot.image
            room -= len(plot.image)
        else:
            left_out.append(printable(plot.id))
    return images, left_out


def tail(data: bytes, lines: int = LOG_TAIL_LINES) -> str:
    text = data[-16384:].decode("utf-8", errors="replace")
    return "\n".join(printable(line) for line in text.splitlines()[-lines:])
