"""The service layer: launch runs, find them, follow them, cancel them, bring results home.

No printing, no CLI: functions take explicit objects and return data.
"""

from __future__ import annotations

import json
import math
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any, TypeGuard

from gitexp import metrics, refs
from gitexp.backends import Backend, Handle, backend_for
from gitexp.config import Config
from gitexp.errors import GitexpError, UnknownRunError
from gitexp.git import Repo
from gitexp.record import LIVE, Result, RunRecord, decode_message
from gitexp.results import RESULTS_DIR, write_back
from gitexp.stores import Store, open_store, read_range, run_key, size_of
from gitexp.stores.file import FileStore

LAUNCH_TIMEOUT = 120.0  # a run with no handle this long after launch was never started


@dataclass(frozen=True)
class Run:
    record: RunRecord
    result: Result | None  # the written-back result, or the live view of an unfinished run
    commit: str  # where the run's ref points: the snapshot, or its results commit
    written_back: bool

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def status(self) -> str:
        return self.result.status if self.result else "queued"


# -- reading --------------------------------------------------------------------------------
_FMT = "%(refname)%01%(objectname)%01%(parent)%01%(contents)"


def parse_ref_line(line: str) -> Run | None:
    refname, commit, parents, message = line.split("\x01", 3)
    run_id = refs.id_from_ref(refname)
    if run_id is None:
        return None
    try:
        record, result = decode_message(message, snapshot=commit)
    except GitexpError:
        return None
    if record.id != run_id:  # a forged record must not steer store keys, refs or scripts
        return None
    if result is not None:  # a results commit: the snapshot is its first parent
        record = record.with_snapshot(parents.split()[0] if parents else commit)
    return Run(record=record, result=result, commit=commit, written_back=result is not None)


def list_runs(repo: Repo, config: Config | None = None, *, refresh: bool = True) -> list[Run]:
    """Every run, newest first. With `refresh`, unfinished runs are looked at in their store:
    finished ones are written back, dead ones become `lost`."""
    from gitexp import index

    runs = [Run(record=e.record, result=e.result, commit=e.commit, written_back=e.written_back)
            for e in index.sync(repo)]
    if refresh:
        runs = _observe_all(repo, config or Config.load(repo), runs)
    runs.sort(key=lambda r: r.record.launched_at, reverse=True)
    return runs


def _observe_all(repo: Repo, config: Config, runs: list[Run]) -> list[Run]:
    """Observe every unfinished run; remote stores answer in tens of milliseconds each, so
    several live remote runs are looked at side by side rather than one after another."""
    live = [i for i, r in enumerate(runs) if not r.written_back]
    remote = sum(1 for i in live if runs[i].record.backend != "local")
    if remote < 2:
        return [observe(repo, config, r) if not r.written_back else r for r in runs]
    from concurrent.futures import ThreadPoolExecutor

    out = list(runs)
    with ThreadPoolExecutor(max_workers=min(8, len(live))) as pool:
        for i, seen in zip(live, pool.map(lambda i: observe(repo, config, runs[i]), live),
                           strict=True):
            out[i] = seen
    return out


def find(repo: Repo, spec: str, config: Config | None = None, *, refresh: bool = True) -> Run:
    """A run by id, or by a unique prefix or suffix of its id."""
    exact = repo.rev_parse(refs.PREFIX + spec) if refs.is_valid_id(spec) else None
    if exact:
        lines = list(repo.for_each_ref(refs.PREFIX + spec, _FMT))
        candidates = [r for line in lines if (r := parse_ref_line(line))]
    else:  # a prefix or suffix: match ref names, then read only the matching commits
        from gitexp import index

        ids = [i for i in index.run_ids(repo)
               if i.startswith(spec) or i.endswith(spec)] if spec else []
        if len(ids) > 1:
            raise GitexpError(f"{spec!r} matches {len(ids)} runs",
                              hint="give more of the id: " + ", ".join(sorted(ids)[:4]))
        exact = ids[0] if ids else None
        lines = list(repo.for_each_ref(refs.PREFIX + exact, _FMT)) if exact else []
        candidates = [r for line in lines if (r := parse_ref_line(line))]
        spec = exact or spec
    if not candidates:
        if exact:
            raise GitexpError(f"run {spec} has an unreadable record",
                              hint=f"`git exp rm {spec}` removes it")
        raise UnknownRunError(spec)
    if len(candidates) > 1:
        raise GitexpError(f"{spec!r} matches {len(candidates)} runs",
                          hint="give more of the id: " + ", ".join(r.id for r in candidates[:4]))
    run = candidates[0]
    if refresh and not run.written_back:
        run = observe(repo, config or Config.load(repo), run)
    return run


def store_of(repo: Repo, record: RunRecord) -> Store:
    if record.backend == "local":  # follows the repository if it moves
        return FileStore(repo.gitexp_dir / "store")
    return open_store(record.store)


def _observable(repo: Repo, record: RunRecord) -> bool:
    """A local run is ours to judge only if it ran from this repository's store (or this
    repository moved): a teammate's unfinished run fetched here must not be called lost."""
    if record.backend != "local":
        return True
    local = repo.gitexp_dir / "store"
    return record.store == local.as_uri() or (local / "runs" / record.id).is_dir()


def _backend_of(repo: Repo, config: Config, record: RunRecord) -> Backend | None:
    target = config.targets().get(record.target)
    if target is None or target.backend != record.backend:
        return None
    return backend_for(target, repo)


def observe(repo: Repo, config: Config, run: Run) -> Run:
    """The live status of an unfinished run; writes back finished and lost runs."""
    record = run.record
    if not _observable(repo, record):
        return run  # launched from another clone (fetched): its own repo writes it back
    store: Store | None
    try:
        store = store_of(repo, record)
        result = _live_result(repo, config, store, record)
    except ForeignResultError as exc:  # end the run, taking nothing from that store
        store, result = None, Result(status="lost", ended_at=time.time(), error=exc.message)
    except GitexpError:
        return run  # store unreachable: say what we know
    if result.status in LIVE:
        return replace(run, result=result)
    commit = write_back(repo, record, result, store)
    from gitexp.notify import dev as notify  # a dead worker's `lost` mail; never raises

    if store is not None:
        notify.observed(repo, store, record, result)
    return Run(record=record, result=result, commit=commit, written_back=True)


def _json(store: Store, run_id: str, name: str) -> dict[str, Any] | None:
    raw = store.read(run_key(run_id, name))
    try:
        data = json.loads(raw) if raw else None
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _live_result(repo: Repo, config: Config, store: Store, record: RunRecord) -> Result:
    done = _json(store, record.id, "result.json")
    if done:
        return _stored_result(record, done)
    status = _live_status(store, record.id)
    beat = _heartbeat(store, record.id)
    handle: Handle | None = _json(store, record.id, "handle.json")
    now = time.time()
    lost_why = None
    ended_as = "lost"
    if beat:
        interval = float(beat.get("interval", 2.0))
        lost_after = config.get_float("exp.lostafter", max(5 * interval + 5, 10.0))
        if now - float(beat["time"]) > lost_after:
            lost_why = f"no heartbeat for {now - float(beat['time']):.0f}s"
    if lost_why is None and handle:
        backend = _backend_of(repo, config, record)
        if backend is not None and backend.alive(record=record, handle=handle) is False:
            lost_why = "the agent is gone"
            # The engine may know better (Slurm's FAILED, a Kubernetes Job's Failed condition).
            ended = getattr(backend, "ended_as", lambda **_: None)(record=record, handle=handle)
            if ended:
                ended_as, lost_why = ended
    if lost_why is None and handle is None and not beat:  # no agent has shown up (yet)
        lost_why = _launch_lost(config, store, record, status, now)
    if lost_why is not None:
        done = _json(store, record.id, "result.json")  # it may have just finished
        if done:
            return _stored_result(record, done)
        series = metrics.parse_series(store.read(run_key(record.id, "metrics.jsonl")) or b"")
        return Result(status=ended_as, started_at=status.get("started"),
                      ended_at=float(beat["time"]) if beat else now, host=status.get("host"),
                      metrics=metrics.final_of(series), error=lost_why)
    return Result(status=str(status.get("status", "queued")), started_at=status.get("started"),
                  host=status.get("host"))


class ForeignResultError(GitexpError):
    """The store's result.json names another run or snapshot (a store shared or copied
    between repositories): it must never be written back into this run."""


def result_json(record: RunRecord, result: Result) -> bytes:
    """result.json as the store keeps it: stamped with the run and snapshot it is about."""
    return json.dumps({**result.to_dict(), "run": record.id,
                       "snapshot": record.snapshot}).encode()


def _stored_result(record: RunRecord, done: dict[str, Any]) -> Result:
    for key, mine in (("run", record.id), ("snapshot", record.snapshot)):
        theirs = done.get(key)
        if theirs is not None and theirs != mine:  # unstamped: written by an older gitexp
            raise ForeignResultError(
                f"the store holds a result for {key} {str(theirs)[:40]!r}, not {mine!r}: "
                "it was not taken", hint=f"is store {record.store} shared with another "
                                         "repository? give each its own prefix")
    try:
        return Result.from_dict(done)
    except GitexpError as exc:  # our own run's result, damaged: the run ended, how is unknown
        return Result(status="lost", ended_at=time.time(), error=f"result.json: {exc.message}")


def _live_status(store: Store, run_id: str) -> dict[str, Any]:
    """status.json with only what it may hold: a live status, a start time, a host."""
    raw = _json(store, run_id, "status.json") or {}
    if not raw:
        return raw  # none yet: the launch may not have reached the store
    started, host = raw.get("started"), raw.get("host")
    return {**raw, "status": raw.get("status") if raw.get("status") in LIVE else "queued",
            "started": float(started) if _is_number(started) else None,
            "host": host if isinstance(host, str) else None}


def _heartbeat(store: Store, run_id: str) -> dict[str, Any] | None:
    beat = _json(store, run_id, "heartbeat")
    if beat is None or not _is_number(beat.get("time")):
        return None  # a garbled beat is no sign of life
    interval = beat.get("interval")
    return {**beat, "time": float(beat["time"]),
            "interval": float(interval) if _is_number(interval) and interval > 0 else 2.0}


def _is_number(value: Any) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and \
        math.isfinite(value)


def _launch_lost(config: Config, store: Store, record: RunRecord, status: dict[str, Any],
                 now: float) -> str | None:
    """Why a run without handle or heartbeat is lost; None while its launch may still go on.
    The launcher writes the queued status right after the ref and the handle after the
    agent started, so a missing status, or a dead launcher, past `exp.lostAfter` means the
    launch was killed (LAUNCH_TIMEOUT remains for launchers this host cannot see)."""
    waited = now - record.launched_at
    if waited > LAUNCH_TIMEOUT:
        return "the launch was interrupted before the agent started"
    interval = config.get_float("exp.heartbeat", 2.0)
    if waited < config.get_float("exp.lostafter", max(5 * interval + 5, 10.0)):
        return None
    if _json(store, record.id, "status.json") is None:
        return "the launch was interrupted before it reached the store"
    launcher = status.get("launcher")
    if not isinstance(launcher, dict) or launcher.get("host") != socket.gethostname():
        return None
    try:
        os.kill(int(launcher["pid"]), 0)
    except ProcessLookupError:
        if _json(store, record.id, "handle.json") is None:  # it may have just written it
            return "the launch was interrupted before the agent started"
    except (OSError, ValueError, KeyError, TypeError):
        pass  # alive under another user, or unreadable: wait for LAUNCH_TIMEOUT
    return None


# -- logs, cancel -----------------------------------------------------------------------------
LOG_CHUNK = 4 << 20  # logs may be gigabytes: readers take them a bounded piece at a time


def read_log(repo: Repo, run: Run, offset: int = 0, limit: int | None = None) -> bytes:
    """The log from `offset` on (at most `limit` bytes where the store can cut it)."""
    try:
        store, key = store_of(repo, run.record), run_key(run.id, "log")
        data = read_range(store, key, offset, limit) if limit else store.read(key, offset=offset)
    except GitexpError:
        data = None
    if data is None and not run.written_back:  # the agent never reached the store
        data = _engine_log(repo, run.record, offset)
    if data is None and run.written_back:  # e.g. a run fetched from a teammate
        blob = repo.git("cat-file", "blob", f"{run.commit}:{RESULTS_DIR}/log.txt", check=False)
        data = blob.encode(errors="surrogateescape")[offset:]
    return data or b""


def read_log_tail(repo: Repo, run: Run, size: int = 1 << 16) -> bytes:
    """About the last `size` bytes of the log (from a line start when it was cut): `show`
    quotes a few lines, and a log may be gigabytes."""
    try:
        total = size_of(store_of(repo, run.record), run_key(run.id, "log"))
    except GitexpError:
        total = None
    if total is None or total <= size:
        return read_log(repo, run)[-size:]
    tail = read_log(repo, run, offset=total - size)
    return tail[tail.find(b"\n") + 1:]


def _engine_log(repo: Repo, record: RunRecord, offset: int) -> bytes | None:
    """The job's own output as the engine keeps it (e.g. a Kubernetes pod's log)."""
    try:
        backend = _backend_of(repo, Config.load(repo), record)
        store = store_of(repo, record)
        handle = _json(store, record.id, "handle.json")
        logs = getattr(backend, "logs", None)
        data = logs(record=record, handle=handle) if logs and handle else None
    except GitexpError:
        return None
    return data[offset:] if isinstance(data, bytes) else None


def iter_log(repo: Repo, run: Run, offset: int = 0) -> Iterator[bytes]:
    """The log from `offset` to its current end, in bounded chunks."""
    while chunk := read_log(repo, run, offset, limit=LOG_CHUNK):
        offset += len(chunk)
        yield chunk


def follow(repo: Repo, config: Config, run: Run, poll: float = 0.2) -> Iterator[bytes | Run]:
    """Yield log chunks as they arrive, and finally the finished run."""
    offset = 0
    while True:
        for chunk in iter_log(repo, run, offset):
            offset += len(chunk)
            yield chunk
        if run.written_back or (run.result and run.result.status not in LIVE):
            yield from iter_log(repo, run, offset)
            yield run
            return
        time.sleep(poll)
        run = observe(repo, config, run)


def cancel(repo: Repo, config: Config, run: Run) -> Run:
    if run.written_back or run.status not in LIVE:
        raise GitexpError(f"run {run.id} already ended ({run.status})")
    store = store_of(repo, run.record)
    store.write(run_key(run.id, "cancel"), str(time.time()).encode())
    handle = _json(store, run.id, "handle.json")
    backend = _backend_of(repo, config, run.record)
    if backend is not None and handle is not None:
        backend.cancel(record=run.record, handle=handle)
    elif handle is None:  # never reached an agent: nothing to stop, just end it
        result = Result(status="cancelled", ended_at=time.time(), error="cancelled before start")
        store.write(run_key(run.id, "result.json"), result_json(run.record, result))
    return run
