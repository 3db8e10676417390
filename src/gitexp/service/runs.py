"""Runs as the developer sees them: find them, observe them (bringing results home), follow
their logs, cancel them. Launching is `service.launch`.

No printing, no CLI: functions take explicit objects and return data.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

from gitexp import disk
from gitexp.backends import (
    Backend,
    Explains,
    KeepsLogs,
    Launch,
    Retries,
    backend_for,
    max_checkpoint,
)
from gitexp.errors import GitexpError, UnknownRunError, exit_for
from gitexp.extras import MissingExtraError
from gitexp.git import Commit, Repo
from gitexp.git.config import Config
from gitexp.git.writeback import MAX_LOG_IN_GIT, RESULTS_DIR, write_back
from gitexp.model import ids, metrics
from gitexp.model.record import LIVE, Result, RunRecord, decode_run
from gitexp.model.row import as_json, json_text
from gitexp.model.runstate import (
    LAUNCH_TIMEOUT,
    ForeignResultError,
    Handle,
    RunState,
    Status,
)
from gitexp.service import index, slots, trust
from gitexp.stores import Store, open_store, read_range, run_key, size_of
from gitexp.stores.file import FileStore
from gitexp.worker import guard

log = logging.getLogger("gitexp.runs")


@dataclass(frozen=True)
class Run:
    record: RunRecord
    result: Result | None  # the written-back result, or the live view of an unfinished run
    commit: str  # where the run's ref points: the snapshot, or its results commit
    written_back: bool
    own: bool = False  # launched by this user here: sealed (service/trust.py)

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def status(self) -> str:
        return self.result.status if self.result else "queued"

    @property
    def outputs(self) -> dict[str, Any]:
        """The outputs the run recorded (`--out`, dvc.yaml outs): path -> DVC entry."""
        return self.result.outputs if self.result else {}


def exit_code(run: Run) -> int:
    """What a command that waited for `run` exits with (`errors.exit_for`)."""
    return exit_for(run.status, run.result.exit_code if run.result else None)


# -- reading --------------------------------------------------------------------------------
def read_run(repo: Repo, ref: str, commit: str) -> Run:
    """The run the ref `ref` at `commit` holds; GitexpError says why it cannot be read. Its
    commit is read bounded: a forged giant costs a pass over it, never memory."""
    (obj,) = repo.read_objects([commit], max_size=index.MAX_COMMIT)
    if obj.type != "commit" or obj.data is None:
        raise GitexpError("over the size a record may have" if obj.type == "commit"
                          else "not a commit")
    parsed = Commit.parse(obj.data)
    run = decode_run(parsed.message, ref=ref, commit=commit, parents=parsed.parents)
    return Run(record=run.record, result=run.result, commit=commit,
               written_back=run.result is not None,
               own=trust.sealed(repo, run, parsed.tree if run.result is None else None))


def _read_all(repo: Repo, pattern: str) -> tuple[list[Run], str | None]:
    """The readable runs of the refs `pattern` names, and why the last unreadable one is not."""
    runs, why = [], None
    for line in repo.for_each_ref(pattern, "%(refname) %(objectname)"):
        ref, _, commit = line.partition(" ")
        try:
            runs.append(read_run(repo, ref, commit))
        except GitexpError as exc:
            why = exc.message
    return runs, why


def list_runs(repo: Repo, config: Config | None = None, *, refresh: bool = True) -> list[Run]:
    """Every run, newest first. With `refresh`, unfinished runs are looked at in their store:
    finished ones are written back, dead ones become `lost`."""
    runs = [Run(record=e.record, result=e.result, commit=e.commit, written_back=e.written_back,
                own=e.own) for e in index.sync(repo)]
    if refresh:
        runs = _observe_all(repo, config or Config.load(repo), runs)
    runs.sort(key=lambda r: r.record.launched_at, reverse=True)
    return runs


def unfinished_runs(repo: Repo, config: Config) -> list[Run]:
    """The runs not written back, looked at in their stores as `list_runs` does (those that
    ended are written back): what `gc` must leave alone, without reading every run."""
    return _observe_all(repo, config, [
        Run(record=e.record, result=e.result, commit=e.commit, written_back=False, own=e.own)
        for e in index.unfinished(repo)])


def list_json(repo: Repo, config: Config) -> list[str]:
    """`list_runs`, each run as `ls --json` prints it (`row.json_text`): the texts the index
    keeps for runs written back (10,000 of them are not decoded and encoded again, which
    took seconds), the unfinished ones looked at as `list_runs` does. Same runs, same order."""
    found = index.listed(repo)
    texts = [item.text for item in found]
    live = [(i, item.entry) for i, item in enumerate(found) if item.entry is not None]
    seen = _observe_all(repo, config, [Run(record=e.record, result=e.result, commit=e.commit,
                                           written_back=False, own=e.own) for _, e in live])
    for (i, _), run in zip(live, seen, strict=True):
        texts[i] = json_text(as_json(run.record, run.result, run.commit, own=run.own))
    order = sorted(range(len(found)), key=lambda i: found[i].launched_at, reverse=True)
    return [texts[i] for i in order]


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
    exact = repo.rev_parse(ids.PREFIX + spec) if ids.is_valid_id(spec) else None
    if exact:
        candidates, why = _read_all(repo, ids.PREFIX + spec)
    else:  # a prefix or suffix: match ref names, then read only the matching commits
        exact = ids.match(spec, index.run_ids(repo))
        candidates, why = _read_all(repo, ids.PREFIX + exact) if exact else ([], None)
        spec = exact or spec
    if not candidates:
        if exact:
            raise GitexpError(f"run {spec} has an unreadable record"
                              + (f" ({why})" if why else ""),
                              hint=f"`git exp rm {spec}` removes it")
        raise UnknownRunError(spec, hint=_sweep_hint(repo, spec))
    run = candidates[0]  # one ref read (`ids.match` named it): at most one run
    if refresh and not run.written_back:
        run = observe(repo, config or Config.load(repo), run)
    return run


def _sweep_hint(repo: Repo, spec: str) -> str | None:
    """When `spec` names a sweep rather than a run, say how to act on the sweep."""
    try:
        sweep = ids.match(spec, {r["sweep"] for r in index.rows(repo, summary=True)
                                 if r.get("sweep")}, "sweep")
    except GitexpError:
        sweep = spec  # several sweeps: still a sweep's name
    return f"{sweep} is a sweep: give it with --sweep {spec}" if sweep else None


def store_of(repo: Repo, run: Run, config: Config | None = None) -> Store:
    """Where the run's live state is: only for a run this user launched here, through a store
    this clone's configuration names today. A fetched record must never make gitexp open a
    connection (with the user's ssh keys, cloud credentials) or read a path it chose."""
    record = run.record
    if not run.own:
        raise GitexpError(f"run {record.id} was launched elsewhere; its store is not read here",
                          hint="its results arrive with `git exp fetch` once it is shared")
    if record.backend == "local":  # follows the repository if it moves
        return FileStore(repo.gitexp_dir / "store")
    backend = _backend_of(repo, config or Config.load(repo), record)
    if backend is None or backend.store_url() != record.store:
        raise GitexpError(f"the store of run {record.id} is no longer {record.target!r}'s",
                          hint=f"set exp.target.{record.target}.store back to {record.store}")
    return open_store(record.store)


def lacking_extra(repo: Repo, config: Config, run: Run) -> MissingExtraError | None:
    """Why an unfinished run of ours cannot be looked at here: the optional module its
    target or store needs is not installed (so its status is unknown, not known live)."""
    if run.written_back or not run.own or not _observable(repo, run.record):
        return None
    try:
        store_of(repo, run, config)
    except MissingExtraError as exc:
        return exc
    except GitexpError:
        return None
    return None


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
    """The live status of an unfinished run; a run that ended (or is found lost) is written
    back, and the Run returned says so (`written_back`). Sends nothing: whether an ending
    deserves mail is the caller's business (`git exp watch`).

    Only a run this user launched here, through a store this clone's configuration names
    today, is looked at: a fetched record must never make gitexp open a connection (the
    user's ssh keys, cloud credentials) or read a path it chose."""
    record = run.record
    if not run.own or not _observable(repo, record):
        return run  # launched elsewhere (fetched): its own clone writes it back
    state: RunState | None
    try:
        state = RunState(store_of(repo, run, config), record.id)
        result = _live_result(repo, config, state, record)
    except ForeignResultError as exc:  # end the run, taking nothing from that store
        state, result = None, Result(status="lost", ended_at=time.time(), error=exc.message)
    except GitexpError:
        return run  # store unreachable: say what we know
    if result.status in LIVE:
        return replace(run, result=result)
    if result.status == "lost" and record.backend == "local":  # its agent left it behind
        # first: on a full disk this is the space write-back needs
        drop_workdir(repo, record.id, record.sweep)
    try:
        commit = write_back(repo, record, result, state.store if state else None)
    except disk.DiskFullError as exc:  # shown as it ended; written back by a later look
        log.warning("warning: run %s ended (%s) but is not written back: %s\nhint: %s; "
                    "the next `git exp ls` writes it back", record.id, result.status,
                    exc.message, exc.hint)
        return replace(run, result=result)
    return Run(record=record, result=result, commit=commit, written_back=True, own=run.own)


def drop_workdir(repo: Repo, run_id: str, sweep: str | None = None) -> bool:
    """Remove the local work directory of a run that ended, unless an agent of that run
    still runs on this machine (a run seen `lost` may only be stalled); True if removed."""
    work = repo.gitexp_dir / "work" / run_id
    if not ids.is_valid_id(run_id) or not work.is_dir() or guard.agent_running(run_id, sweep):
        return False
    shutil.rmtree(work, ignore_errors=True)
    return True


def _live_result(repo: Repo, config: Config, state: RunState, record: RunRecord) -> Result:
    done = state.result(record)
    if done:
        return done
    status = state.status()
    beat = state.heartbeat()
    handle = state.handle()
    now = time.time()
    lost_why = None
    ended_as = "lost"
    if beat and beat.stale(now, config.lost_after(beat.interval)):
        lost_why = f"no heartbeat for {now - beat.time:.0f}s"
        if handle and _between_attempts(repo, config, record, handle, state):
            lost_why = None  # a requeued job, a Job's next pod: its next attempt will beat
    if lost_why is None and handle:
        backend = _backend_of(repo, config, record)
        if backend is not None and _alive(backend, record, handle, state) is False:
            lost_why = "the agent is gone"
            # The engine may know better (Slurm's FAILED, a Kubernetes Job's Failed condition);
            # of a sweep's slot it knows nothing about this one run.
            if isinstance(backend, Explains) and not slots.in_slot(record, handle):
                ended = backend.ended_as(record=record, handle=handle)
                if ended:
                    ended_as, lost_why = ended
    if lost_why is None and handle is None and not beat:  # no agent has shown up (yet)
        lost_why = _launch_lost(config, state, record, status, now)
    if lost_why is not None and handle and (
            again := _next_attempt(repo, config, record, handle, state)):
        return again
    if lost_why is not None:
        done = state.result(record)  # it may have just finished
        if done:
            return done
        full = disk.full_at(state.store.root) if isinstance(state.store, FileStore) else None
        if full:  # the agent could not write there either: the likeliest reason
            lost_why += f" ({full})"
        series = metrics.parse_series(state.store.read(run_key(record.id, "metrics.jsonl"))
                                      or b"")
        return Result(status=ended_as, started_at=status.started if status else None,
                      ended_at=beat.time if beat else now,
                      host=status.host if status else None,
                      metrics=metrics.final_of(series), error=lost_why)
    return Result(status=status.status if status else "queued",
                  started_at=status.started if status else None,
                  host=status.host if status else None,
                  # only an agent that beats can have written any: a queued run costs no read
                  metrics=state.latest() if beat else {},
                  # read only for a run that came back: a first attempt costs nothing more
                  attempts=state.attempts() if status and status.attempt > 1 else [])


def _between_attempts(repo: Repo, config: Config, record: RunRecord, handle: Handle,
                      state: RunState) -> bool:
    """The last attempt was preempted and the platform still holds the job to retry."""
    attempts = state.attempts()
    if not attempts or attempts[-1].reason != "preempted":
        return False
    backend = _backend_of(repo, config, record)
    return backend is not None and _alive(backend, record, handle, state) is True


def _next_attempt(repo: Repo, config: Config, record: RunRecord, handle: Handle,
                  state: RunState) -> Result | None:
    """A run whose last attempt the platform took with its machine (a preempted VM), on a
    target whose platform does not retry it: the next attempt started here, on a new machine
    with the same snapshot, within maxAttempts. A running result then; else None (the run
    is lost). Two looks at once start one (`claim_retry`)."""
    backend = _backend_of(repo, config, record)
    target = config.targets().get(record.target)
    if not isinstance(backend, Retries) or target is None or slots.in_slot(record, handle) \
            or state.result(record):
        return None
    attempts = state.attempts()
    launch = Launch(repo=repo, record=record, store=state.store, heartbeat=config.heartbeat(),
                    max_checkpoint=max_checkpoint(config))
    n, most = len(attempts) + 1, launch.limits(target)[0]
    if not attempts or attempts[-1].reason != "preempted" or n > most:
        return None
    between = Result(status="running", started_at=attempts[0].started_at,
                     host=attempts[-1].host, attempts=attempts, metrics=state.latest())
    started = handle.get("attempt")
    if isinstance(started, int) and started >= n:
        return None  # attempt n's machine was started, and is gone before its agent said
    if not state.claim_retry(n):  # another look is starting it
        return between
    try:
        again = backend.retry(launch=launch, handle=handle, attempt=n)
    except GitexpError as exc:  # said, and the run is lost
        log.warning("warning: run %s was preempted; attempt %d could not start: %s", record.id,
                    n, exc.message)
        return None
    state.set_handle(record.target, {**again, "attempt": n})
    log.info("gitexp: run %s was preempted: attempt %d of %d started", record.id, n, most)
    return between


def _alive(backend: Backend, record: RunRecord, handle: Handle, state: RunState) -> bool | None:
    """What the backend says of the job (of a sweep's slot: `service.slots`); a handle that
    is not its own shape (read from a store, so not to be trusted) names no job that could
    be alive."""
    try:
        if slots.in_slot(record, handle):
            return slots.alive(backend, state, record, handle)
        return backend.alive(record=record, handle=handle)
    except (KeyError, TypeError, ValueError):
        return False


def _launch_lost(config: Config, state: RunState, record: RunRecord, status: Status | None,
                 now: float) -> str | None:
    """Why a run without handle or heartbeat is lost; None while its launch may still go on.
    The launcher writes the queued status right after the ref and the handle after the
    agent started, so a missing status, or a dead launcher, past `exp.lostAfter` means the
    launch was killed (LAUNCH_TIMEOUT remains for launchers this host cannot see)."""
    waited = now - record.launched_at
    if waited > max(LAUNCH_TIMEOUT, config.lost_after()):
        return "the launch was interrupted before the agent started"
    if waited < config.lost_after():
        return None
    if status is None:
        return "the launch was interrupted before it reached the store"
    launcher = status.launcher
    if launcher is None or launcher.host != socket.gethostname():
        return None
    try:
        os.kill(launcher.pid, 0)
    except ProcessLookupError:
        if state.handle() is None:  # it may have just written it
            return "the launch was interrupted before the agent started"
    except (OSError, OverflowError):
        pass  # alive under another user, or no pid at all: wait for LAUNCH_TIMEOUT
    return None


# -- logs, cancel -----------------------------------------------------------------------------
LOG_CHUNK = 4 << 20  # logs may be gigabytes: readers take them a bounded piece at a time


def read_log(repo: Repo, run: Run, offset: int = 0, limit: int | None = None,
             config: Config | None = None) -> bytes:
    """The log from `offset` on (at most `limit` bytes where the store can cut it). An
    unfinished run's log that only a missing extra could read says so (MissingExtraError).
    `config`: the caller's, when it reads often (a follower), else read here."""
    lacking = None
    config = config or Config.load(repo)
    try:
        store, key = store_of(repo, run, config), run_key(run.id, "log")
        data = read_range(store, key, offset, limit) if limit else store.read(key, offset=offset)
    except MissingExtraError as exc:
        data, lacking = None, exc
    except GitexpError:
        data = None
    if data is None and not run.written_back:  # the agent never reached the store
        data = _engine_log(repo, run, offset, config)
        if data is None and lacking is not None:
            raise lacking
    if data is None and run.written_back:  # e.g. a run fetched from a teammate
        data = results_file(repo, run, "log.txt", MAX_LOG_IN_GIT)[offset:]
    return data or b""


def results_file(repo: Repo, run: Run, name: str, limit: int) -> bytes:
    """A file of the run's results tree, if it is a blob of at most `limit` bytes (write-back
    never writes a larger one: a forged giant is not read, let alone held)."""
    (obj,) = repo.read_objects([f"{run.commit}:{RESULTS_DIR}/{name}"], max_size=limit)
    return obj.data if obj.type == "blob" and obj.data is not None else b""


def read_log_tail(repo: Repo, run: Run, size: int = 1 << 16) -> bytes:
    """About the last `size` bytes of the log (from a line start when it was cut): `show`
    quotes a few lines, and a log may be gigabytes."""
    try:
        total = size_of(store_of(repo, run), run_key(run.id, "log"))
    except GitexpError:
        total = None
    try:
        if total is None or total <= size:
            return read_log(repo, run)[-size:]
        tail = read_log(repo, run, offset=total - size)
    except MissingExtraError:  # `show` works without it: no log to quote, the rest is known
        return b""
    return tail[tail.find(b"\n") + 1:]


def _engine_log(repo: Repo, run: Run, offset: int, config: Config) -> bytes | None:
    """The job's own output as the engine keeps it (e.g. a Kubernetes pod's log)."""
    record = run.record
    try:
        backend = _backend_of(repo, config, record)
        handle = RunState(store_of(repo, run, config), record.id).handle()
        data = backend.logs(record=record, handle=handle) \
            if isinstance(backend, KeepsLogs) and handle else None
    except GitexpError:
        return None
    return data[offset:] if isinstance(data, bytes) else None


def iter_log(repo: Repo, run: Run, offset: int = 0,
             config: Config | None = None) -> Iterator[bytes]:
    """The log from `offset` to its current end, in bounded chunks."""
    config = config or Config.load(repo)
    while chunk := read_log(repo, run, offset, limit=LOG_CHUNK, config=config):
        offset += len(chunk)
        yield chunk


# A run's first QUICK_FOR seconds: its log is looked at every QUICK_POLL s, its state every
# QUICK_OBSERVE s, so the job's first line and a short run's end are seen at once (a look at
# the log ~0.3 ms of CPU, at the state ~0.4 ms: ~4% of a core for those two seconds).
QUICK_POLL = 0.01
QUICK_OBSERVE = 0.03
QUICK_FOR = 2.0


def follow(repo: Repo, config: Config, run: Run, poll: float = 0.2) -> Iterator[bytes | Run]:
    """Yield log chunks as they arrive, and finally the finished run. The first looks come
    quickly (the job's first line and a short run's end are seen within tens of ms), then
    every `poll` seconds: a long run costs no more looks than before."""
    offset, wait, quick_until = 0, min(QUICK_POLL, poll), time.monotonic() + QUICK_FOR
    observed = time.monotonic()
    while True:
        for chunk in iter_log(repo, run, offset, config):
            offset += len(chunk)
            yield chunk
        if run.written_back or (run.result and run.result.status not in LIVE):
            yield from iter_log(repo, run, offset, config)
            yield run
            return
        time.sleep(wait)
        now = time.monotonic()
        if now > quick_until:
            wait = min(max(wait, QUICK_OBSERVE) * 1.5, poll)
        if now - observed >= QUICK_OBSERVE or now > quick_until:
            run, observed = observe(repo, config, run), now


def follow_all(repo: Repo, config: Config, runs: list[Run],
               poll: float = 0.5) -> Iterator[tuple[int, bytes | Run]]:
    """`follow` for several runs at once (a sweep): (index in `runs`, log chunk), and
    (index, the ended run) once each ends; one look at every live run per turn."""
    runs = list(runs)
    offsets = [0] * len(runs)
    live = list(range(len(runs)))
    while live:
        for i in list(live):
            run = runs[i]
            for chunk in iter_log(repo, run, offsets[i], config):
                offsets[i] += len(chunk)
                yield i, chunk
            if run.written_back or (run.result and run.result.status not in LIVE):
                for chunk in iter_log(repo, run, offsets[i], config):
                    yield i, chunk
                live.remove(i)
                yield i, run
        if live:
            time.sleep(poll)
            for i in live:
                runs[i] = observe(repo, config, runs[i])


def cancel_live(repo: Repo, config: Config, found: list[Run]) -> tuple[list[Run], list[Run]]:
    """Cancel the live runs of `found` (a sweep); returns them, and the ones already ended."""
    live = [run for run in found if not run.written_back and run.status in LIVE]
    for run in live:
        cancel(repo, config, run)
    return live, [run for run in found if run not in live]


def cancel(repo: Repo, config: Config, run: Run) -> int | None:
    """Stop a live run (None); or, for a run that ended (its agent killed: `lost`), what
    is left of its job on this machine: that job's pid. GitexpError when there is neither."""
    if run.written_back or run.status not in LIVE:
        pid = stop_leftovers(repo, config, run)
        if pid is None:
            raise GitexpError(f"run {run.id} already ended ({run.status})")
        return pid
    state = RunState(store_of(repo, run, config), run.id)
    state.request_cancel()
    handle = state.handle()
    if handle is not None and slots.in_slot(run.record, handle):
        slots.cancel(state, run.record)  # never the slot: it runs the sweep's other runs
        return None
    backend = _backend_of(repo, config, run.record)
    if backend is not None and handle is not None:
        backend.cancel(record=run.record, handle=handle)
    elif handle is None and (not run.record.sweep or state.claim(None)):
        # never reached an agent (nor a sweep's slot): nothing to stop, just end it
        state.write_result(Result(status="cancelled", ended_at=time.time(),
                                  error="cancelled before start"), snapshot=run.record.snapshot)
    return None


def stop_leftovers(repo: Repo, config: Config, run: Run) -> int | None:
    """Stop the processes of an ended run's job that still run on this machine (their
    agent died and its guard with it); the job's pid if any were there. Only the run's own
    processes are touched: same host and boot, the job's start time or the run's mark in
    the environment (worker/guard.py), never a recycled pid."""
    try:
        status = RunState(store_of(repo, run, config), run.id).status()
    except GitexpError:
        return None
    job = status.job if status else None
    if status is None or job is None or status.host != socket.gethostname():
        return None
    stopped = guard.stop_job(run.id, pid=job.pid, group=job.group, start=job.start,
                             boot=job.boot)
    return (job.pid if job.pid in stopped else min(stopped)) if stopped else None
