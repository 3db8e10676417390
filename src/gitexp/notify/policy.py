"""When to mail: few mails, none lost, none twice.

- checkpoint: at most one mail per run per `min_interval`; checkpoints in between wait in
  `pending` and go out together (a digest) once the interval has passed, or with the
  terminal mail, whichever comes first.
- succeeded / failed / cancelled / lost: always mailed (when in `exp.notify.on`), once.
- start: only when asked for.
- resumed: once per attempt that follows a preempted one.

The state lives in the store (`runs/<id>/notify.json`) so a restarted agent or a second look
from the dev side never mails the same thing again. The functions here are pure: the caller
loads, decides, saves, then sends.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from gitexp.notify.settings import NotifySettings
from gitexp.stores import Store, run_key

STATE_KEY = "notify.json"
TERMINAL_EVENTS = ("succeeded", "failed", "cancelled", "lost", "timeout")


@dataclass
class NotifyState:
    seq: int = 0  # the sequence number of the last mail of the run (0: none yet)
    last_checkpoint_mail: float | None = None
    pending: list[dict[str, Any]] = field(default_factory=list)  # checkpoints not yet mailed
    seen: int = 0  # checkpoint lines already handled (a restarted reader skips these)
    started: bool = False  # the start mail is decided
    ended: str | None = None  # the terminal event already decided; nothing follows it
    resumed: int = 0  # the last attempt whose resumption is decided

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq


def load(store: Store, run_id: str) -> NotifyState:
    try:
        raw = json.loads(store.read(run_key(run_id, STATE_KEY)) or b"{}")
    except ValueError:
        raw = {}
    known = {f.name for f in fields(NotifyState)}
    return NotifyState(**{k: v for k, v in raw.items() if k in known})


def save(store: Store, run_id: str, state: NotifyState) -> None:
    store.write(run_key(run_id, STATE_KEY), json.dumps(asdict(state)).encode())


def start(state: NotifyState, settings: NotifySettings) -> bool:
    """True once, when a start mail is wanted."""
    if state.started or state.ended:
        return False
    state.started = True
    return settings.wants("start")


def resumed(state: NotifyState, settings: NotifySettings, attempt: int) -> bool:
    """True once per attempt after the first (a restarted agent of the same attempt never
    mails it again), when resumptions are wanted."""
    if state.ended or attempt <= max(state.resumed, 1):
        return False
    state.resumed = attempt
    return settings.wants("resumed")


def add_checkpoints(state: NotifyState, settings: NotifySettings,
                    points: list[dict[str, Any]]) -> None:
    """Queue checkpoint lines (all checkpoint lines read so far, in order, from a reader that
    may have restarted: the first `state.seen` of them were handled before)."""
    fresh = points[state.seen:]
    state.seen = max(state.seen, len(points))
    if settings.wants("checkpoint") and not state.ended:
        state.pending.extend(fresh)


def due_digest(state: NotifyState, settings: NotifySettings,
               now: float) -> list[dict[str, Any]] | None:
    """The checkpoints to mail now, or None: the interval since the last one has not passed."""
    if not state.pending or state.ended:
        return None
    last = state.last_checkpoint_mail
    if last is not None and now - last < settings.min_interval:
        return None
    digest, state.pending = state.pending, []
    state.last_checkpoint_mail = now
    return digest


def end(state: NotifyState, settings: NotifySettings,
        event: str) -> list[dict[str, Any]] | None:
    """The digest to fold into the terminal mail, or None when no terminal mail is due
    (already sent, or `event` not wanted)."""
    if state.ended is not None:
        return None
    state.ended = event
    digest, state.pending = state.pending, []
    return digest if settings.wants(event) else None
