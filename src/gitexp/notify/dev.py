"""The dev side of mail: freeze the settings at launch, and speak for a dead worker.

A lost run's worker cannot send anything, so `git exp watch` sends the `lost` mail, once,
continuing the run's thread, whoever noticed the loss first (`ls` and `show` only write it
back: looking never sends mail). Mail a worker could not deliver and spooled in its store is
moved into the local outbox at the same moment.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from gitexp.git import Repo
from gitexp.git.config import Config, Target
from gitexp.model import metrics
from gitexp.model.record import LIVE, Result, RunRecord
from gitexp.notify import content, deliver, failed, policy, sender_for
from gitexp.notify.maildir import UNDELIVERED_HEADER, MaildirOutbox, collect
from gitexp.notify.mailer import LOG_TAIL_BYTES, SETTINGS_KEY
from gitexp.notify.settings import NotifySettings, from_config, secrets_from
from gitexp.service import runs
from gitexp.stores import Store, read_range, run_key, size_of

SETTLE_WINDOW = 86400.0  # s: `watch` mails losses that anyone noticed in the last day


def outbox(repo: Repo) -> MaildirOutbox:
    return MaildirOutbox(repo.gitexp_dir / "outbox")


def at_launch(repo: Repo, config: Config, record: RunRecord, target: Target,
              store: Store) -> None:
    """Write the run's (secret-free) mail settings to its store; ConfigError if malformed."""
    settings = from_config(config, target, repo.root.name)
    store.write(run_key(record.id, SETTINGS_KEY), settings.to_json())


def settings_of(store: Store, run_id: str) -> NotifySettings | None:
    raw = store.read(run_key(run_id, SETTINGS_KEY))
    return NotifySettings.from_json(raw) if raw else None


def preparer(repo: Repo, config: Config, say: Callable[[str], None] | None = None
             ) -> Callable[[RunRecord, Target, Store], None]:
    """What a launch adds to each run's store for mail (`service.launch.Prepare`); the first
    run of a sweep also sends the sweep's root mail, before any of its runs can mail. `say`
    is told, once per repository, that mail goes to the outbox and how to have it sent."""
    rooted: set[str] = set()

    def prepare(record: RunRecord, target: Target, store: Store) -> None:
        at_launch(repo, config, record, target, store)
        settings = from_config(config, target, repo.root.name)
        if not settings.on or settings.on == ["none"]:
            return
        if say is not None and settings.sender == "maildir":
            tell_outbox(repo, say)
        if record.sweep and record.sweep not in rooted:
            rooted.add(record.sweep)
            send_sweep_root(repo, settings, record)

    return prepare


TOLD = "outbox-told"  # under .git/gitexp: the outbox notice was given


def tell_outbox(repo: Repo, say: Callable[[str], None]) -> None:
    """Once per repository: where mail goes when nothing else is configured."""
    told = repo.gitexp_dir / TOLD
    if told.exists():
        return
    path = outbox(repo).path
    box = path.relative_to(repo.root) if path.is_relative_to(repo.root) else path
    say(f"mail about runs goes to the outbox {box} (read it: mutt -f {box}); to have it "
        "sent: git config exp.notify.sender smtp, exp.notify.smtp.host HOST, exp.notify.to "
        "ADDRESS (see README, Mail); exp.notify.on none turns mail off. Said once.")
    with contextlib.suppress(OSError):  # a full disk: the notice is given again next time
        told.parent.mkdir(parents=True, exist_ok=True)
        told.write_text("")


def send_sweep_root(repo: Repo, settings: NotifySettings, record: RunRecord,
                    environ: Mapping[str, str] | None = None) -> str:
    """The sweep's root mail; returns the outcome. Never raises (mail never stops a launch)."""
    try:
        box = outbox(repo)
        sender = sender_for(settings, secrets_from(environ or os.environ), box)
        return deliver(content.sweep_root(settings, record), sender, box,
                       attempts=2, backoff=0.5)
    except Exception:
        failed("the mail of sweep %s failed", record.sweep)
        return "dropped"


def settle(repo: Repo, run: runs.Run, environ: Mapping[str, str] | None = None) -> None:
    """A run has ended: collect the mail its worker spooled; mail its loss unless that was
    done already. Never raises."""
    if not run.written_back or run.result is None:
        return
    try:
        store = runs.store_of(repo, run)
        collect(store, run.id, outbox(repo))
        if run.result.status == "lost":
            send_lost(repo, store, run.record, run.result, environ)
    except Exception:  # mail must not break `git exp watch`
        failed("mail for %s failed", run.id)


def send_lost(repo: Repo, store: Store, record: RunRecord, result: Result,
              environ: Mapping[str, str] | None = None) -> str | None:
    """The `lost` mail, unless the run already had its terminal mail; returns the outcome."""
    settings = settings_of(store, record.id)
    if settings is None:
        return None
    state = policy.load(store, record.id)
    digest = policy.end(state, settings, "lost")
    # Claim before sending: a second observer finds `ended` set and stays quiet.
    policy.save(store, record.id, state)
    if digest is None:
        return None
    seq = state.next_seq()
    policy.save(store, record.id, state)
    points = metrics.parse_series(store.read(run_key(record.id, "metrics.jsonl")) or b"")
    message = content.build(settings, record, event="lost", seq=seq, digest=digest,
                            points=points, result=result,
                            log_bytes=_log_tail(store, record.id))
    box = outbox(repo)
    sender = sender_for(settings, secrets_from(environ or os.environ), box)
    # Someone is waiting at a prompt: retry briefly, then the outbox keeps it.
    return deliver(message, sender, box, attempts=2, backoff=0.5)


def _log_tail(store: Store, run_id: str) -> bytes:
    """The end of a run's log, for the mail's last lines (the log may be gigabytes)."""
    key = run_key(run_id, "log")
    size = size_of(store, key)
    if size is None or size <= LOG_TAIL_BYTES:
        return store.read(key) or b""
    return read_range(store, key, size - LOG_TAIL_BYTES, LOG_TAIL_BYTES) or b""


def _recent(run: runs.Run) -> bool:
    ended = run.result.ended_at if run.result else None
    return ended is not None and time.time() - ended < SETTLE_WINDOW


def resend(repo: Repo, config: Config, environ: Mapping[str, str] | None = None) -> int:
    """Try once more to send the outbox's undelivered mail (with the repository's current
    settings); a sent mail leaves the outbox. Returns how many went out. Never raises."""
    try:
        box = outbox(repo)
        pending = box.undelivered()
        if not pending:
            return 0
        settings = from_config(config, config.target(None), repo.root.name)
        if settings.sender == "maildir":
            return 0
        sender = sender_for(settings, secrets_from(environ or os.environ), box)
        sent = 0
        for key, message in pending:
            del message[UNDELIVERED_HEADER]
            try:
                sender.send(message)
            except Exception:  # still down: it stays where it is
                break
            box.remove(key)
            sent += 1
    except Exception:  # a broken outbox or config must not stop `git exp watch`
        failed("resending mail failed")
        return 0
    return sent


def watch(repo: Repo, config: Config, *, interval: float = 60.0, until_idle: bool = False,
          sleep: Callable[[float], None] = time.sleep
          ) -> Iterator[tuple[str, str, str, dict[str, Any]]]:
    """Look at live runs every `interval` seconds (so finished ones are written back, lost
    ones mailed, undelivered mail tried again) and yield `(run id, old status, new status,
    metrics)` for each change of status or, while the run is live, of its latest metrics.
    With `until_idle`, stop once no run is live."""
    done = set()
    for run in runs.list_runs(repo, config, refresh=False):
        if not run.own:  # launched elsewhere: its own clone watches it, and mails
            done.add(run.id)
        elif run.written_back:
            done.add(run.id)
            if run.status == "lost" and _recent(run):  # noticed by `ls`: not mailed yet
                settle(repo, run)
    seen: dict[str, tuple[str, dict[str, Any]]] = {}
    while True:
        live = 0
        for run in runs.list_runs(repo, config, refresh=True):
            if run.id in done or not run.own:
                continue
            now = (run.status, run.result.metrics if run.result else {})
            before = seen.get(run.id, ("", {}))
            if before != now:
                yield run.id, before[0], now[0], now[1]
            seen[run.id] = now
            if run.status in LIVE:
                live += 1
            else:
                done.add(run.id)
                settle(repo, run)
        resend(repo, config)
        if until_idle and not live:
            return
        sleep(interval)
