"""A run's state in its store: the one owner of the files under `runs/<id>/` that say how a
run is doing, and of the rule that says when a silent run is lost.

    status.json   queued (by the launcher, naming itself) -> running (by the agent)
    heartbeat     the agent's sign of life: time and interval
    handle.json   how the backend finds the job again (pid, job id, VM name), and the target
    result.json   how the run ended, stamped with the run and snapshot it is about
    cancel        a request to stop, honoured by the agent (and by a sweep's slots)
    claim         which slot of a sweep took the run (create-only: one claimer wins)
    latest.json   the latest value of each metric of a live run (by the agent, throttled):
                  `ls`/`show`/`watch` read this one small file, never the whole series
    dvc/dvc.lock, dvc/dvc.yaml   a DVC pipeline as the run left it (by the agent), for the
                  results commit: restoring the run's outputs restores its lock with them
    plots/plots.json, plots/img-<k>.<ext>   the plots dvc.yaml declares (by the agent:
                  `model.dvcplots`), for the results commit
    checkpoints/<n>/<path>   the files of the job's checkpoint n (`gitexp.checkpoint(files=)`)
    checkpoint.json   which checkpoint is the latest whole one: written after its files, so
                  a half-uploaded checkpoint is never the latest; older ones are then removed
    attempts.json the run's attempts so far (by the agent): a requeued or retried agent of the
                  same run reads it and goes on as the next attempt
    retry-<n>     created once by the developer's side that starts attempt n itself (a new VM
                  for a preempted one): two looks at once start one

What a store holds is untrusted: it may be shared, stale, damaged or written by anyone with
access to it. Every reader here validates and returns a typed value or None; nothing else
in gitexp names these files.
"""

from __future__ import annotations

import json
import math
import os
import re
import socket
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeGuard

from gitexp.errors import GitexpError
from gitexp.model import dvcplots, metrics
from gitexp.model.checks import path_problem, text_problem
from gitexp.model.liveness import DEFAULT_INTERVAL, default_lost_after
from gitexp.model.record import LIVE, MAX_ATTEMPTS, Attempt, Result, RunRecord, attempts_of
from gitexp.stores import Store, get_file, put_file, read_range, run_key

STATUS, HEARTBEAT, HANDLE, RESULT, CANCEL, LATEST, CLAIM = (
    "status.json", "heartbeat", "handle.json", "result.json", "cancel", "latest.json", "claim")
CHECKPOINT, CHECKPOINTS, ATTEMPTS, RETRY = ("checkpoint.json", "checkpoints", "attempts.json",
                                           "retry")
MAX_CHECKPOINT_FILES = 256  # files one checkpoint may name: more is a forged pointer
MAX_CHECKPOINT_N = 1 << 31
MAX_LATEST = 64 << 10  # bytes of latest.json read: more is a damaged or forged file
MAX_STATE = 64 << 10  # bytes of status, heartbeat or handle read (same reason)
MAX_RESULT = 1 << 20  # bytes of result.json read: metrics and outputs, as a record's message
PIPELINE = ("dvc.lock", "dvc.yaml")
MAX_PIPELINE = 1 << 20  # bytes of each: a real lock is a few KB
LAUNCH_TIMEOUT = 120.0  # s: a run with no handle this long after launch was never started

Handle = dict[str, Any]  # backend-specific; it always names its `target`


@dataclass(frozen=True)
class Launcher:
    host: str
    pid: int


@dataclass(frozen=True)
class JobPlace:
    """Where the job's processes are on `Status.host`, so that `cancel` can still stop them
    after their agent died - and know a recycled pid for what it is."""
    pid: int  # the job's main process
    group: int  # its process group (led by its guard, worker/guard.py)
    start: int  # the main process's start, in clock ticks after boot (/proc/PID/stat)
    boot: str  # the host's boot id: the same pid in another boot is another process


@dataclass(frozen=True)
class Status:
    """status.json, with only what it may hold: a live status, a start time, hosts, pids."""
    status: str  # queued or running: anything else a store says reads as queued
    started: float | None = None
    host: str | None = None
    launcher: Launcher | None = None  # the process that launched a queued run
    pid: int | None = None  # the job's process (group) on `host`
    job: JobPlace | None = None  # the job, as cancel finds it after its agent died
    attempt: int = 1  # which attempt of the run is running


@dataclass(frozen=True)
class Heartbeat:
    time: float
    interval: float

    def stale(self, now: float, lost_after: float | None = None) -> bool:
        """Silent for longer than `lost_after` seconds (default: `default_lost_after`)."""
        limit = default_lost_after(self.interval) if lost_after is None else lost_after
        return now - self.time > limit


@dataclass(frozen=True)
class Checkpoint:
    """checkpoint.json: the latest checkpoint whose files are all in the store."""
    n: int  # its number in the run: its files are under checkpoints/<n>/
    label: str  # what the job called it (`gitexp.checkpoint("epoch 3")`)
    step: int | None  # the step it was saved at, when the job said
    files: tuple[tuple[str, int], ...]  # (path under the job's directory, size)
    time: float


@dataclass(frozen=True)
class Claim:
    slot: int | None  # the sweep's slot that runs it; None: not a slot (a cancel took it)


class ForeignResultError(GitexpError):
    """The store's result.json names another run or snapshot (a store shared or copied
    between repositories): it must never be written back into this run."""


@dataclass(frozen=True)
class RunState:
    """The state files of one run in one store."""
    store: Store
    run_id: str

    def key(self, name: str) -> str:
        return run_key(self.run_id, name)

    # -- status ---------------------------------------------------------------------------
    def set_queued(self) -> None:
        """Queued, naming the launching process: a launch killed before its agent started
        is then seen as lost without waiting for LAUNCH_TIMEOUT."""
        self._write(STATUS, {"status": "queued",
                             "launcher": {"host": socket.gethostname(), "pid": os.getpid()}})

    def set_running(self, *, started: float, pid: int, job: JobPlace | None = None,
                    attempt: int = 1) -> None:
        self._write(STATUS, {"status": "running", "started": started, "pid": pid,
                             "host": socket.gethostname(), "agent_pid": os.getpid(),
                             **({"job": asdict(job)} if job else {}),
                             **({"attempt": attempt} if attempt > 1 else {})})

    def status(self) -> Status | None:
        raw = self._json(STATUS)
        if raw is None:
            return None  # none yet: the launch may not have reached the store
        launcher = raw.get("launcher")
        return Status(
            status=raw["status"] if raw.get("status") in LIVE else "queued",
            started=_number(raw.get("started")),
            host=raw["host"] if isinstance(raw.get("host"), str) else None,
            launcher=Launcher(host=launcher["host"], pid=launcher["pid"])
            if isinstance(launcher, dict) and isinstance(launcher.get("host"), str)
            and _is_int(launcher.get("pid")) else None,
            pid=raw["pid"] if _is_int(raw.get("pid")) else None,
            job=_job_place(raw.get("job")),
            attempt=raw["attempt"] if _is_int(raw.get("attempt")) and
            1 <= raw["attempt"] <= MAX_ATTEMPTS else 1)

    # -- heartbeat ------------------------------------------------------------------------
    def beat(self, interval: float) -> None:
        self._write(HEARTBEAT, {"time": time.time(), "interval": interval,
                                "host": socket.gethostname(), "pid": os.getpid()})

    def heartbeat(self) -> Heartbeat | None:
        """The last beat; a garbled one is no sign of life."""
        raw = self._json(HEARTBEAT)
        beat = _number(raw.get("time")) if raw else None
        if raw is None or beat is None:
            return None
        interval = _number(raw.get("interval"))
        return Heartbeat(time=beat, interval=interval if interval and interval > 0
                         else DEFAULT_INTERVAL)

    def has_heartbeat(self) -> bool:
        return self._exists(HEARTBEAT)

    # -- handle ---------------------------------------------------------------------------
    def set_handle(self, target: str, handle: Handle) -> None:
        self._write(HANDLE, {**handle, "target": target})

    def handle(self) -> Handle | None:
        """How the backend knows the job, or None when there is none fit to use: its values go
        into argv (`scancel`, `docker stop`) and API calls, so each is a number or one plain
        word that no program could take for an option."""
        return fit_handle(self._json(HANDLE))

    # -- result ---------------------------------------------------------------------------
    def write_result(self, result: Result, *, snapshot: str) -> None:
        """Stamped with the run and snapshot it is about, so that a store shared by mistake
        cannot hand it to another repository's run of the same id."""
        self._write(RESULT, {**result.to_dict(), "run": self.run_id, "snapshot": snapshot})

    def write_result_once(self, result: Result, *, snapshot: str) -> bool:
        """`write_result` unless an agent is (or was) there to write its own; True if written."""
        if self.has_heartbeat() or self.has_result():
            return False
        self.write_result(result, snapshot=snapshot)
        return True

    def has_result(self) -> bool:
        return self._exists(RESULT)

    def result(self, record: RunRecord) -> Result | None:
        """The run's result, if it ended. ForeignResultError when it is stamped for another
        run or snapshot; a damaged result of our own run reads as `lost`."""
        raw = self._json(RESULT)
        if not raw:
            return None
        for key, mine in (("run", record.id), ("snapshot", record.snapshot)):
            theirs = raw.get(key)
            if theirs is not None and theirs != mine:  # unstamped: written by an older gitexp
                raise ForeignResultError(
                    f"the store holds a result for {key} {str(theirs)[:40]!r}, not {mine!r}: "
                    "it was not taken", hint=f"is store {record.store} shared with another "
                                             "repository? give each its own prefix")
        try:
            return Result.from_dict(raw)
        except GitexpError as exc:  # our own run's result, damaged: it ended, how is unknown
            return Result(status="lost", ended_at=time.time(),
                          error=f"result.json: {exc.message}")

    # -- latest metrics -------------------------------------------------------------------
    def set_latest(self, values: dict[str, Any]) -> None:
        """One metrics line holding the latest value of each metric (the first ones that fit
        in MAX_LATEST, should a job log thousands of names)."""
        data = (json.dumps(values) + "\n").encode()
        if len(data) > MAX_LATEST:
            kept: dict[str, Any] = {}
            size = 2  # "{}" and the newline, less one ", " below
            for key, value in values.items():
                size += len(json.dumps({key: value})) - 2 + 2  # `"k": v` and ", "
                if size > MAX_LATEST:
                    break
                kept[key] = value
            data = (json.dumps(kept) + "\n").encode()
        self.store.write(self.key(LATEST), data)

    def latest(self) -> dict[str, Any]:
        """The latest value of each metric the agent saw: one bounded read, decoded by the
        rules of the series itself (a line that is not a flat object of scalars gives {})."""
        raw = read_range(self.store, self.key(LATEST), 0, MAX_LATEST)
        return metrics.final_of(metrics.parse_series(raw or b""))

    # -- a DVC pipeline's files -----------------------------------------------------------
    def set_pipeline(self, files: dict[str, bytes]) -> None:
        for name in PIPELINE:
            if name in files and len(files[name]) <= MAX_PIPELINE:
                self.store.write(self.key(f"dvc/{name}"), files[name])

    def pipeline(self) -> dict[str, bytes]:
        """name -> bytes of the pipeline files the agent sent; one over MAX_PIPELINE is left
        out (a damaged or forged store), as is one that is missing."""
        found = {}
        for name in PIPELINE:
            raw = read_range(self.store, self.key(f"dvc/{name}"), 0, MAX_PIPELINE + 1)
            if raw is not None and len(raw) <= MAX_PIPELINE:
                found[name] = raw
        return found

    # -- the plots dvc.yaml declares ---------------------------------------------------------
    def set_plots(self, files: dict[str, bytes]) -> None:
        """`dvcplots.encode`'s files; plots.json last, so a reader finds whole images."""
        for name in sorted(files, key=lambda n: n == dvcplots.INDEX):
            self.store.write(self.key(f"plots/{name}"), files[name])

    def plots(self) -> list[dvcplots.Plot]:
        """The declared plots the agent sent, decoded (`dvcplots.decode`: PlotsError when
        damaged); [] when there are none."""
        index = read_range(self.store, self.key(f"plots/{dvcplots.INDEX}"), 0,
                           dvcplots.MAX_INDEX + 1)
        return dvcplots.decode(index, lambda name: read_range(
            self.store, self.key(f"plots/{name}"), 0, dvcplots.MAX_IMAGE + 1))

    # -- checkpoints ----------------------------------------------------------------------
    def put_checkpoint_file(self, n: int, path: str, source: Path) -> int:
        """Upload one file of checkpoint n (not yet the latest: see `set_checkpoint`)."""
        return put_file(self.store, self._checkpoint_key(n, path), source)

    def set_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Make `checkpoint` the latest (its files are all up), then remove the older ones."""
        self._write(CHECKPOINT, {"n": checkpoint.n, "label": checkpoint.label,
                                 "step": checkpoint.step, "time": checkpoint.time,
                                 "files": [list(f) for f in checkpoint.files]})
        prefix = self.key(CHECKPOINTS)
        older = {key[len(prefix) + 1:].partition("/")[0] for key in self.store.list(prefix)}
        for n in sorted(older - {str(checkpoint.n)}):
            self.store.delete(f"{prefix}/{n}")

    def checkpoint(self) -> Checkpoint | None:
        """The latest whole checkpoint; None when there is none, or the pointer is damaged or
        forged (its paths become files on the worker: each must be a clean relative path)."""
        raw = self._json(CHECKPOINT)
        if raw is None:
            return None
        n, label, step, files = (raw.get(k) for k in ("n", "label", "step", "files"))
        when = _number(raw.get("time"))
        if not (_is_int(n) and 0 <= n < MAX_CHECKPOINT_N and isinstance(label, str)
                and not text_problem(label) and (step is None or _is_int(step))
                and when is not None and isinstance(files, list)
                and 0 < len(files) <= MAX_CHECKPOINT_FILES):
            return None
        pairs: list[tuple[str, int]] = []
        for entry in files:
            if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str)
                    and not path_problem(entry[0]) and _is_int(entry[1]) and entry[1] >= 0):
                return None
            pairs.append((entry[0], entry[1]))
        names = [p for p, _ in pairs]
        # one name a prefix directory of another could not both be files
        if len(set(names)) != len(names) or any(a.startswith(b + "/") for a in names
                                                for b in names):
            return None
        return Checkpoint(n=n, label=label, step=step, files=tuple(pairs), time=when)

    def restore_checkpoint(self, checkpoint: Checkpoint, into: Path) -> bool:
        """Download the checkpoint's files under `into` (a new, empty directory, so nothing
        in it can be a symlink leading out); False when one is missing or not its size."""
        for path, size in checkpoint.files:
            dest = into / path
            dest.parent.mkdir(parents=True, exist_ok=True)
            if not get_file(self.store, self._checkpoint_key(checkpoint.n, path), dest) \
                    or dest.stat().st_size != size:
                return False
        return True

    def _checkpoint_key(self, n: int, path: str) -> str:
        return self.key(f"{CHECKPOINTS}/{n}/{path}")

    # -- attempts -------------------------------------------------------------------------
    def set_attempts(self, attempts: list[Attempt]) -> None:
        self.store.write(self.key(ATTEMPTS), json.dumps([asdict(a) for a in attempts]).encode())

    def attempts(self) -> list[Attempt]:
        """The run's attempts so far; [] when none was recorded, or the file is damaged."""
        raw = read_range(self.store, self.key(ATTEMPTS), 0, MAX_STATE)
        try:
            return attempts_of(json.loads(raw)) if raw else []
        except (ValueError, RecursionError, GitexpError):
            return []

    def claim_retry(self, attempt: int) -> bool:
        """Take the starting of `attempt` (a new VM for it): True for exactly one caller."""
        body = {"host": socket.gethostname(), "pid": os.getpid(), "nonce": uuid.uuid4().hex}
        return self.store.create(self.key(f"{RETRY}-{attempt}"), json.dumps(body).encode())

    # -- cancel ---------------------------------------------------------------------------
    def request_cancel(self) -> None:
        self.store.write(self.key(CANCEL), str(time.time()).encode())

    def cancel_requested(self) -> bool:
        return self._exists(CANCEL)

    # -- claim: a sweep's slots take their runs one by one --------------------------------
    def claim(self, slot: int | None) -> bool:
        """Take the run for the sweep's slot `slot` (None: to cancel it before any slot
        does); True for exactly one claimer, ever."""
        body = {"slot": slot, "host": socket.gethostname(), "pid": os.getpid(),
                "nonce": uuid.uuid4().hex}  # unique: a retried create knows its own
        return self.store.create(self.key(CLAIM), json.dumps(body).encode())

    def claimed(self) -> Claim | None:
        """Who took the run, or None while no one did; a garbled claim is still a claim."""
        raw = read_range(self.store, self.key(CLAIM), 0, MAX_STATE)
        if raw is None:
            return None
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError):
            body = None
        slot = body.get("slot") if isinstance(body, dict) else None
        return Claim(slot=slot if _is_int(slot) and 0 <= slot < 1 << 16 else None)

    # -- plumbing -------------------------------------------------------------------------
    def _write(self, name: str, body: dict[str, Any]) -> None:
        self.store.write(self.key(name), json.dumps(body).encode())

    def _exists(self, name: str) -> bool:
        return read_range(self.store, self.key(name), 0, 1) is not None

    def _json(self, name: str) -> dict[str, Any] | None:
        # Bounded: over the limit, the cut JSON is garbled and reads as none.
        raw = read_range(self.store, self.key(name), 0, MAX_RESULT if name == RESULT
                         else MAX_STATE)
        try:
            data = json.loads(raw) if raw else None
        except (ValueError, RecursionError):
            return None
        return data if isinstance(data, dict) else None


def fit_handle(raw: dict[str, Any] | None) -> Handle | None:
    """`raw` if every value is fit for a handle (see `RunState.handle`), else None."""
    return raw if raw is not None and all(_fits_handle(k, v) for k, v in raw.items()) \
        else None


_HANDLE_WORD = re.compile(r"[A-Za-z0-9_.:/@+=][A-Za-z0-9_.:/@+=-]{0,255}|")


_BOOT_ID = re.compile(r"[0-9a-f-]{1,64}")


def _job_place(raw: Any) -> JobPlace | None:
    """A job's place as status.json says it: positive pids, a start time, a boot id; any
    other shape is none (it decides which processes a cancel may kill)."""
    if not isinstance(raw, dict):
        return None
    pid, group, start, boot = (raw.get(k) for k in ("pid", "group", "start", "boot"))
    if not (_is_int(pid) and _is_int(group) and _is_int(start)) or min(pid, group) <= 1 \
            or start < 0 or not isinstance(boot, str) or not _BOOT_ID.fullmatch(boot):
        return None
    return JobPlace(pid=pid, group=group, start=start, boot=boot)


def _fits_handle(key: str, value: Any) -> bool:
    if _is_int(value):
        return True
    if not isinstance(value, str):
        return False
    # The target is a config name, shown and compared but never passed on.
    return bool(_HANDLE_WORD.fullmatch(value)) or (key == "target" and not text_problem(value))


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any) -> float | None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None
