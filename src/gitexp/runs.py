"""The service layer: launch runs, find them, follow them, cancel them, bring results home.

No printing, no CLI: functions take explicit objects and return data.
"""

from __future__ import annotations

import getpass
import json
import math
import os
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeGuard

from gitexp import data, environment, faults, metrics, preflight, refs, snapshot
from gitexp.backends import Backend, Handle, Launch, backend_for
from gitexp.config import Config, Target
from gitexp.errors import GitexpError, UnknownRunError
from gitexp.git import ZERO_OID, Repo
from gitexp.record import LIVE, Result, RunRecord, decode_message, encode_message
from gitexp.results import RESULTS_DIR, write_back
from gitexp.stores import Store, open_store, run_key, size_of
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


# -- launch ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class LaunchRequest:
    argv: list[str]
    cwd: Path  # where the user stood; the job runs in the same subdirectory
    name: str | None = None
    target: str | None = None
    outs: tuple[str, ...] = ()
    params: dict[str, Any] | None = None
    rerun_of: str | None = None
    sweep: str | None = None
    commit_data: bool = False  # record changed DVC-tracked data (dvc commit) instead of refusing
    progress: Callable[[str, int, int], None] | None = None  # (what, done, total): data push
    say: Callable[[str], None] | None = None  # one-line notices for the user (e.g. committed)
    force: bool = False  # launch even if the same run already succeeded


def launch(repo: Repo, config: Config, req: LaunchRequest) -> Run:
    recorded = record_runs(repo, config, [req])
    return submit(repo, config, recorded.records[0], target=recorded.target,
                  backend=recorded.backend, store=recorded.store, progress=req.progress)


@dataclass(frozen=True)
class Recorded:
    target: Target
    backend: Backend
    store: Store
    records: list[RunRecord]


def record_runs(repo: Repo, config: Config, reqs: list[LaunchRequest]) -> Recorded:
    """Snapshot the work tree once and record one run per request (a sweep: one per point),
    all on the same target. Nothing is started yet."""
    if not reqs or not all(req.argv and req.argv[0] for req in reqs):
        raise GitexpError("no command given", hint="git exp run -- python train.py --lr 3e-4")
    target = config.target(reqs[0].target)
    subdirs = [_subdir(repo, req.cwd) for req in reqs]
    for req in reqs:
        _check_command(req.argv, req.cwd)
    names = [refs.check_name(req.name) if req.name is not None else refs.default_name(req.argv)
             for req in reqs]
    preflight.check(repo, config)
    data.check_worktree(repo, commit=reqs[0].commit_data, say=reqs[0].say)
    snap = snapshot.take(repo)
    if snap.secret_files and reqs[0].say:  # tracked, so shipped: say so, and launch anyway
        reqs[0].say(_secret_files_warning(snap.secret_files))
    if len(reqs) == 1 and not reqs[0].force:  # the same code, command and data: say so
        from gitexp.rerun import refuse_if_succeeded

        refuse_if_succeeded(repo, snap.tree, reqs[0].argv, subdirs[0])
    data_version, data_plan = data.prepare_launch(
        repo, config, target, snap.tree, outs=any(r.outs for r in reqs),
        progress=reqs[0].progress)
    backend = backend_for(target, repo)
    store = open_store(backend.store_url())
    env = environment.capture(repo, reqs[0].argv)
    records = []
    for req, subdir, name in zip(reqs, subdirs, names, strict=True):
        record = RunRecord(
            id="", argv=list(req.argv), cwd=subdir, base=snap.base,
            branch=repo.branch(), user=_user(config), launched_at=time.time(),
            target=target.name, backend=target.backend, store=store.url, env=env,
            params=req.params or {}, name=req.name, rerun_of=req.rerun_of, sweep=req.sweep,
            outs=list(req.outs), data=data_version,
        )
        records.append(_commit_record(repo, record, snap.tree, name))
        # At once: a launch killed from here on is seen as interrupted (`_launch_lost`).
        store.write(run_key(records[-1].id, "status.json"), queued_status())
        if data_plan is not None:  # how the agent gets the data: names and paths, no secrets
            data.write_plan(store, records[-1].id, data_plan)
    return Recorded(target=target, backend=backend, store=store, records=records)


def relaunch(repo: Repo, config: Config, run: Run, *, target: str | None = None) -> Run:
    """A rerun: a new run of `run`'s snapshot tree and parents, argv, subdirectory and data
    version, recorded with `rerun_of`. The current work tree is not looked at."""
    old = run.record
    tgt = config.target(target or old.target)
    tree = repo.rev_parse(f"{old.snapshot}^{{tree}}")
    if tree is None:
        raise GitexpError(f"the snapshot of run {old.id} is not in this repository",
                          hint="git fetch origin 'refs/experiments/*:refs/experiments/*'")
    _, data_plan = data.prepare_launch(repo, config, tgt, tree, outs=bool(old.outs))
    backend = backend_for(tgt, repo)
    store = open_store(backend.store_url())
    record = RunRecord(
        id="", argv=list(old.argv), cwd=old.cwd, base=old.base, branch=old.branch,
        user=_user(config), launched_at=time.time(), target=tgt.name, backend=tgt.backend,
        store=store.url, env=environment.capture(repo, old.argv), data=old.data,
        params=dict(old.params), name=old.name, rerun_of=old.id, sweep=old.sweep,
        outs=list(old.outs),
    )
    record = _commit_record(repo, record, tree, old.name or refs.default_name(old.argv))
    if data_plan is not None:
        data.write_plan(store, record.id, data_plan)
    return submit(repo, config, record, target=tgt, backend=backend, store=store)


def submit(repo: Repo, config: Config, record: RunRecord, *, target: Target,
           backend: Backend, store: Store,
           progress: Callable[[str, int, int], None] | None = None) -> Run:
    """Start the agent for a recorded run; a failure to start leaves the run `failed`."""
    heartbeat = config.get_float("exp.heartbeat", 2.0)
    store.write(run_key(record.id, "status.json"), queued_status())
    faults.point("launch.submit")
    try:
        from gitexp.notify import dev as notify  # the run's mail settings, secret-free

        notify.at_launch(repo, config, record, target, store)
        from gitexp import secrets  # names only: the agent masks their values in the log

        secrets.publish_names(store, record.id, config, target)
        if target.backend != "local":  # the worker gets the snapshot from the store
            from gitexp import transport

            sent = (lambda done, total: progress("code", done, total)) if progress else None
            transport.push_code(repo, store, record.snapshot, progress=sent)
        handle = backend.submit(launch=Launch(repo=repo, record=record, store=store,
                                              heartbeat=heartbeat))
        faults.point("launch.handle")
    except GitexpError as exc:
        failed = Result(status="failed", error=exc.message, ended_at=time.time())
        store.append(run_key(record.id, "log"), f"gitexp: {exc.message}\n".encode())
        write_back(repo, record, failed, store)
        raise
    store.write(run_key(record.id, "handle.json"),
                json.dumps({"target": target.name, **handle}).encode())
    return Run(record=record, result=Result(status="queued"), commit=record.snapshot,
               written_back=False)


def queued_status() -> bytes:
    """A queued run's status; it names the launching process, so that a launch killed
    before the agent started is seen as lost without waiting for LAUNCH_TIMEOUT."""
    launcher = {"host": socket.gethostname(), "pid": os.getpid()}
    return json.dumps({"status": "queued", "launcher": launcher}).encode()


def _commit_record(repo: Repo, record: RunRecord, tree: str, name: str) -> RunRecord:
    parents = [record.base] if record.base else []
    for _ in range(8):
        run_id = refs.new_id(name)
        rec = replace(record, id=run_id)
        commit = repo.commit_tree(tree, parents, encode_message(rec, None))
        faults.point("launch.commit")
        # Create-only: an id that exists (or existed and was kept as a ref) is never reused.
        if repo.update_ref(refs.ref_for(run_id), commit, ZERO_OID, f"gitexp: launch {run_id}"):
            faults.point("launch.ref")
            return rec.with_snapshot(commit)
    raise GitexpError("could not allocate a run id", hint="retry; is the repository writable?")


def _secret_files_warning(paths: tuple[str, ...]) -> str:
    listed = ", ".join(paths[:5]) + (f" and {len(paths) - 5} more" if len(paths) > 5 else "")
    return (f"gitexp: warning: the snapshot ships tracked files that may hold credentials: "
            f"{listed} (`git rm --cached` them to keep them out)")


def _subdir(repo: Repo, cwd: Path) -> str:
    try:
        rel = cwd.resolve().relative_to(repo.root.resolve())
    except ValueError:
        raise GitexpError(f"{cwd} is outside the work tree {repo.root}") from None
    if rel.parts and rel.parts[0] == ".git":
        raise GitexpError("cannot run from inside .git", hint="cd to the work tree")
    return rel.as_posix() if rel.parts else ""


def _check_command(argv: list[str], cwd: Path) -> None:
    prog = argv[0]
    if "/" in prog:
        path = cwd / prog
        if not path.exists():
            raise GitexpError(f"command not found: {prog}",
                              hint="the path is relative to the directory you run from")
        if not os.access(path, os.X_OK):
            raise GitexpError(f"{prog} is not executable",
                              hint=f"chmod +x {prog}, or run it through its interpreter")
    elif shutil.which(prog) is None:
        raise GitexpError(f"command not found: {prog}",
                          hint="check the spelling, or activate the environment that has it")


def _user(config: Config) -> str:
    name, email = config.get("user.name"), config.get("user.email")
    if name and email:
        return f"{name} <{email}>"
    return name or email or getpass.getuser()


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
        cfg = config or Config.load(repo)
        runs = [observe(repo, cfg, r) if not r.written_back else r for r in runs]
    runs.sort(key=lambda r: r.record.launched_at, reverse=True)
    return runs


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


def _backend_of(repo: Repo, config: Config, record: RunRecord) -> Backend | None:
    target = config.targets().get(record.target)
    if target is None or target.backend != record.backend:
        return None
    return backend_for(target, repo)


def observe(repo: Repo, config: Config, run: Run) -> Run:
    """The live status of an unfinished run; writes back finished and lost runs."""
    record = run.record
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
def read_log(repo: Repo, run: Run, offset: int = 0) -> bytes:
    try:
        data = store_of(repo, run.record).read(run_key(run.id, "log"), offset=offset)
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


def follow(repo: Repo, config: Config, run: Run, poll: float = 0.2) -> Iterator[bytes | Run]:
    """Yield log chunks as they arrive, and finally the finished run."""
    offset = 0
    while True:
        chunk = read_log(repo, run, offset)
        if chunk:
            offset += len(chunk)
            yield chunk
        if run.written_back or (run.result and run.result.status not in LIVE):
            tail = read_log(repo, run, offset)
            if tail:
                yield tail
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
