"""The agent's mailer: a background thread that watches the job's metric lines for
checkpoints and mails digests by the policy; `finish` sends the terminal mail.

Nothing here may hurt the run: every entry point swallows its own failures (and logs them
to the agent's stderr), the thread is a daemon, and sending is bounded by `deliver`'s retries.
Secrets come from the agent's environment, which the job itself does not inherit.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from gitexp.model import dvcplots, metrics
from gitexp.model.record import Attempt, Result, RunRecord
from gitexp.model.runstate import RunState
from gitexp.notify import Outbox, content, deliver, failed, policy, sender_for
from gitexp.notify.maildir import MaildirOutbox, StoreOutbox
from gitexp.notify.settings import NotifySettings, secrets_from
from gitexp.secrets import redact, values_to_redact
from gitexp.stores import Store, run_key

SETTINGS_KEY = "notify-settings.json"
JOIN_TIMEOUT = 120.0
LOG_TAIL_BYTES = 1 << 16  # enough for the last lines a mail quotes

log = logging.getLogger("gitexp.notify")


class RunMailer:
    def __init__(self, *, settings: NotifySettings, record: RunRecord, store: Store,
                 outbox: Outbox, secrets: Mapping[str, str], spool: Path, cwd: Path | None,
                 poll: float = 2.0, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.record = record
        self.store = store
        self.outbox = outbox
        self.sender = sender_for(settings, secrets, outbox)
        self.metrics_path = spool / "metrics.jsonl"
        self.log_path = spool / "log"
        self.cwd = cwd
        self.poll = poll
        self.clock = clock
        self.started = clock()
        self.state = policy.load(store, record.id)
        self._checkpoints: list[dict[str, Any]] = []
        self._offset = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.masked: list[str] = []  # secret values the job may have put in its metrics

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="gitexp-mail", daemon=True)
        self._thread.start()

    def finish(self, result: Result) -> None:
        """The terminal mail (with the checkpoints still pending as a digest). Never raises."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(JOIN_TIMEOUT)
        try:
            with self._lock:
                self._read_checkpoints()
                digest = policy.end(self.state, self.settings, result.status)
                policy.save(self.store, self.record.id, self.state)
                if digest is not None:
                    self._mail(result.status, digest, result)
        except Exception:  # mail never hurts a run
            failed("the %s mail failed", result.status)

    def resumed(self, attempts: list[Attempt], step: int | None) -> None:
        """Attempt `attempts[-1]` began after the platform stopped the one before: one mail,
        in the run's thread (`preempted at step 1,200 - resumed on attempt 2`). Never
        raises."""
        if not attempts:
            return
        try:
            with self._lock:
                due = policy.resumed(self.state, self.settings, attempts[-1].n)
                policy.save(self.store, self.record.id, self.state)
                if due:
                    live = replace(self._live_result(), attempts=list(attempts))
                    self._mail("resumed", [], live, preempted_at=step)
        except Exception:  # mail never hurts a run
            failed("the resumed mail failed")

    def _loop(self) -> None:
        self._guarded(self._maybe_start_mail)
        while not self._stop.wait(self.poll):
            self._guarded(self.tick)

    def _guarded(self, step: Callable[[], None]) -> None:
        try:
            with self._lock:
                step()
        except Exception:  # mail never hurts a run
            failed("mail step failed")

    # -- one look ----------------------------------------------------------------------------
    def tick(self) -> None:
        """Read new checkpoint lines; mail a digest when the policy says one is due."""
        before = (self.state.seen, len(self.state.pending))
        self._read_checkpoints()
        digest = policy.due_digest(self.state, self.settings, self.clock())
        if digest is not None or (self.state.seen, len(self.state.pending)) != before:
            policy.save(self.store, self.record.id, self.state)
        if digest:
            self._mail("checkpoint", digest, self._live_result())

    def _maybe_start_mail(self) -> None:
        if policy.start(self.state, self.settings):
            policy.save(self.store, self.record.id, self.state)
            self._mail("start", [], self._live_result())

    def _read_checkpoints(self) -> None:
        try:
            with self.metrics_path.open("rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return
        whole = data[: data.rfind(b"\n") + 1]  # a line still being written waits
        self._offset += len(whole)
        self._checkpoints += [p for p in metrics.parse_series(whole) if "_checkpoint" in p]
        policy.add_checkpoints(self.state, self.settings, self._checkpoints)

    def _mail(self, event: str, digest: list[dict[str, Any]], result: Result | None, *,
              preempted_at: int | None = None) -> None:
        seq = self.state.next_seq()
        policy.save(self.store, self.record.id, self.state)  # a sequence number is never reused
        points = self._mask(self._points())
        extra = metrics.from_files(self.cwd) if self.cwd and event != "checkpoint" else {}
        message = content.build(self.settings, self.record, event=event, seq=seq,
                                digest=self._mask(digest), points=points, result=result,
                                log_bytes=_read_tail(self.log_path),
                                extra_metrics=self._mask(extra),
                                declared=self._declared() if event in policy.TERMINAL_EVENTS
                                else None, preempted_at=preempted_at)
        outcome = deliver(message, self.sender, self.outbox)
        log.info("gitexp: %s mail %s", event, outcome)

    def _points(self) -> list[dict[str, Any]]:
        points = metrics.parse_series(_read(self.metrics_path))
        if self.cwd is not None:  # dvclive's live series (the agent adds them at the end)
            known = {json.dumps(p, sort_keys=True) for p in points}
            points += [p for p in metrics.series_from_files(self.cwd)
                       if json.dumps(p, sort_keys=True) not in known]
        return points

    def _declared(self) -> list[dvcplots.Plot]:
        """The plots dvc.yaml declares, as the agent sent them (masked) to the store: the
        final mail shows what the run keeps."""
        try:
            return RunState(self.store, self.record.id).plots()
        except Exception:  # damaged, or the store is away: a mail without them
            failed("the declared plots are left out of the mail")
            return []

    def _mask(self, data: Any) -> Any:
        """`data` (metrics the job wrote itself: not yet masked) with secret values masked."""
        if not self.masked:
            return data

        return json.loads(redact(json.dumps(data), self.masked))

    def _live_result(self) -> Result:
        return Result(status="running", started_at=self.started, host=socket.gethostname())


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


def _read_tail(path: Path, size: int = LOG_TAIL_BYTES) -> bytes:
    """The end of the log, for the mail's last lines: the log itself may be gigabytes."""
    try:
        with path.open("rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - size))
            return f.read()
    except OSError:
        return b""


def for_agent(*, store: Store, record: RunRecord, spool: Path, cwd: Path | None,
              repo: Path | None, start: bool = True) -> RunMailer | None:
    """The mailer of a run, started; None when the run has no mail settings (or they cannot
    be read). Spools to the dev repository's outbox when the worker can reach it, otherwise
    to the store, from where the dev side collects. Never raises."""
    try:
        raw = store.read(run_key(record.id, SETTINGS_KEY))
        if raw is None:
            return None
        settings = NotifySettings.from_json(raw)
        if not settings.on or settings.on == ["none"]:
            return None
        outbox: Outbox = (MaildirOutbox(repo / "gitexp" / "outbox") if repo is not None
                          else StoreOutbox(store, record.id))
        mailer = RunMailer(settings=settings, record=record, store=store, outbox=outbox,
                           secrets=secrets_from(os.environ), spool=spool, cwd=cwd)

        mailer.masked = values_to_redact(store, record.id, os.environ)
        if start:
            mailer.start()
    except Exception:  # mail never hurts a run
        failed("mail is off for this run")
        return None
    return mailer
