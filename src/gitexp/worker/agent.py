"""The agent: the one worker-side program every backend starts.

It materialises the snapshot (verified by hash), pulls its data version, runs the command,
streams the log and metrics to the store, beats a heartbeat, honours cancel requests, and
writes the result. Its exit code is the job's.

    python -m gitexp.worker.agent --store URL --run ID --snapshot SHA --code SRC [--repo GITDIR]
    python -m gitexp.worker.agent --store URL --sweep ID --slot K --code SRC ...   (worker.slots)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

from gitexp import (
    CHECKPOINTS_ENV,
    MAX_CHECKPOINT_ENV,
    METRICS_ENV,
    RESUME_ENV,
    disk,
    faults,
    secrets,
)
from gitexp.data import worker as data
from gitexp.errors import GitexpError
from gitexp.git import GIT_LOCATION, Commit, Repo, is_object_id, writeback
from gitexp.model import dvcplots, ids, metrics
from gitexp.model.record import Attempt, Result, RunRecord, decode_run
from gitexp.model.runstate import JobPlace, RunState
from gitexp.stores import Store, open_store, run_key, transport
from gitexp.worker import (
    ATTEMPTS,
    CHECKPOINT_BYTES,
    PREEMPTED_EXIT,
    checkpoints,
    guard,
    slots,
    workspace,
)
from gitexp.worker.guard import Guard

CHUNK = 1 << 20  # streamed to the store in pieces of at most this: memory stays bounded
KILL_GRACE = 5.0
STORE_PATIENCE = 300.0  # s: how long a finished run waits for its store to come back
MAX_WARM = 64  # warm checkouts a worker may keep (each a copy of the project's files)
KEEP_UNSENT = 64 << 10  # bytes of an unsent log kept when the disk holding it is full
# s between two looks for a cancel request in the store while the job runs (a SIGTERM, how
# a single run's cancel comes, is seen at once): the store need not be asked at every flush
CANCEL_POLL = 0.5
# s an ending attempt waits for its last checkpoint to reach the store (a platform's grace
# before its SIGKILL is about 30 s: Slurm's KillWait, a pod's, a VM's shutdown)
DRAIN = 20.0
# How a job dies when the platform stops it (SIGTERM: Kubernetes, Slurm, a VM's shutdown; the
# guard reports a signal N as 128+N): an attempt so ended by no one of gitexp's is preempted.
# The agent so stopped exits with it too (a Job retries that exit only).
PREEMPTED_CODE = PREEMPTED_EXIT
assert PREEMPTED_CODE == 128 + signal.SIGTERM


@dataclass
class Agent:
    store: Store
    run_id: str
    snapshot: str
    code: str
    workdir: Path
    repo: Path | None = None  # the dev repository's git dir, when the worker can reach it
    sweep: str | None = None  # a sweep's slot runs only that sweep's runs (its plan is data)
    heartbeat: float = 2.0
    flush: float = 0.5
    record: RunRecord | None = None
    _cancel: threading.Event = field(default_factory=threading.Event)
    # wakes the loop that streams the job's output: a cancel, the job's first output (what
    # the user waits for goes at once, later output in batches) and its end
    _wake: threading.Event = field(default_factory=threading.Event)
    _offsets: dict[str, int] = field(default_factory=dict)
    _mailer: Any = None  # notify.mailer.RunMailer, once the job runs
    _mailed_attempt: int = 0  # the last attempt _mail_attempt saw (0: no mailer made yet)
    _secrets: list[str] = field(default_factory=list)  # values masked in the log and metrics
    _latest: dict[str, Any] = field(default_factory=dict)  # each metric's latest value
    _latest_due: bool = False  # _latest changed since it was last sent
    _latest_sent: float = -math.inf  # time.monotonic() of that
    _full: str | None = None  # why the spool could not be written (a full disk): run fails
    _store_full: bool = False  # the last send failed for want of space in the store
    _guard: Guard | None = None  # the job's guard (worker/guard.py), started ahead of it
    warm: workspace.Pool | None = None  # the worker's warm checkouts, when it keeps some
    _checkout: workspace.Checkout | None = None  # the one this run holds
    _cancel_asked: float = -math.inf  # time.monotonic() of the last look for a request
    max_attempts: int = 1  # exp.target.<n>.maxAttempts: 1 never tries again
    max_checkpoint: int = CHECKPOINT_BYTES  # exp.maxCheckpointSize
    _signal: str | None = None  # the signal that told the agent to stop: term, int, usr1
    _attempts: list[Attempt] = field(default_factory=list)  # this run's, so far
    _uploader: checkpoints.Uploader | None = None
    _source: Path | None = None  # where the checkout came from (a new attempt's too)
    _resume_dir: Path | None = None  # the restored checkpoint's files, for this attempt
    _carried: dict[str, Any] = field(default_factory=dict)  # metrics of earlier agents' attempts
    _last_step: int | None = None  # the job's latest `step`, for the log
    _preempted_at: int | None = None  # `_last_step` when the platform stopped the last attempt

    def key(self, name: str) -> str:
        return run_key(self.run_id, name)

    @property
    def state(self) -> RunState:
        return RunState(self.store, self.run_id)

    # -- lifecycle ---------------------------------------------------------------------------
    def main(self) -> int:
        signal.signal(signal.SIGTERM, lambda *_: self._stop("term"))
        signal.signal(signal.SIGINT, lambda *_: self._stop("int"))
        signal.signal(signal.SIGUSR1, lambda *_: self._stop("usr1"))
        return self.run()

    def _stop(self, kind: str) -> None:
        """A signal to the agent. SIGINT and a SIGTERM after `cancel` (which marks the store
        first) cancel; a SIGTERM without that mark is the platform taking the machine
        (Slurm's requeue, a pod's eviction, a VM's shutdown): the attempt ends `preempted`
        and the platform's retry goes on as the next one. SIGUSR1 is Slurm's warning ahead
        of the time limit (`--signal=B:USR1@...`): the run ends `timeout`."""
        self._signal = self._signal or kind
        self.cancel()

    def cancel(self) -> None:
        self._cancel.set()
        self._wake.set()

    def run(self) -> int:
        """The run, start to end (a sweep's slot calls this once per run it takes)."""
        started = time.time()
        beat = threading.Thread(target=self._beat_forever, daemon=True)
        beat.start()
        try:
            self.workdir.mkdir(parents=True, exist_ok=True)
            self.spool("log").touch()
            self.spool("metrics.jsonl").touch()
            self._secrets = secrets.values_to_redact(self.store, self.run_id, os.environ)
            # Started now, it is ready when the job is: its start-up costs the job nothing.
            if self.state.has_result():  # a platform's retry of a run that ended
                _warn(f"gitexp: run {self.run_id} already ended: not started again")
                if self._guard is not None:
                    self._guard.close()
                return 0
            self._guard = self._guard or self.start_guard()
            checkout = self.prepare()
            # cancelled while queued (a sweep's slot took it meanwhile): never started
            stop = self._cancel.is_set() or self._cancel_requested()
            if stop and self._interruption() == "preempted":
                self._leave()
                return PREEMPTED_CODE
            result = self.cancelled(started) if stop else self.attempts(checkout, started)
        except (GitexpError, OSError) as exc:  # OSError: the machine's (a disk), not a bug
            why, hint = _why(exc)
            self.say(f"gitexp: {why}" + (f" ({hint})" if hint else ""))
            result = Result(status="failed", started_at=started, ended_at=time.time(),
                            host=socket.gethostname(), error=why,
                            attempts=self._attempts if len(self._attempts) > 1 else [])
        if self._guard is not None:
            self._guard.close()  # a guard with no job yet just exits
        if result is None:  # preempted: the platform starts the next attempt
            self._leave()
            return PREEMPTED_CODE
        self.finish(result)
        return result.exit_code if result.exit_code is not None else 1

    def attempts(self, checkout: Path, started: float) -> Result | None:
        """The run's attempts from here on: the first, or the next after those an earlier
        agent of the same run made (a requeued Slurm job, a Job's next pod, a new VM). A
        preempted attempt is followed by another, here when only the job was stopped, by
        the platform when the agent was too (None: this agent leaves it to that)."""
        self._attempts = self.state.attempts()
        if self._attempts and self._attempts[-1].reason is None:  # its agent never said
            beat = self.state.heartbeat()
            self._attempts[-1] = replace(self._attempts[-1], reason="interrupted",
                                         ended_at=beat.time if beat else time.time())
        if self._attempts:
            self._carried = self.state.latest()
        while True:
            n = len(self._attempts) + 1
            if n > self.max_attempts:
                return Result(status="lost", started_at=started, ended_at=time.time(),
                              host=socket.gethostname(), attempts=self._attempts,
                              error=f"interrupted on every one of {self.max_attempts} attempts")
            resumed = self._resume(n) if n > 1 else None
            self._attempts.append(Attempt(n=n, host=socket.gethostname(),
                                          started_at=time.time(), resumed_from=resumed))
            if self.max_attempts > 1:  # a platform's retry of this agent finds it there
                self.state.set_attempts(self._attempts)
            result, how = self.execute(checkout, started, n)
            self._attempts[-1] = replace(self._attempts[-1], ended_at=result.ended_at,
                                         reason=how)
            many = self._attempts if n > 1 or how == "preempted" else []
            if how != "preempted":  # the result carries them: no write more (a full disk
                return replace(result, attempts=many)  # may have no room for one)
            self._patiently(lambda: self.state.set_attempts(self._attempts))
            if n >= self.max_attempts:
                return replace(result, attempts=many, status="lost" if self._signal else
                               "failed", error=f"preempted on attempt {n} of "
                               f"{self.max_attempts} (maxAttempts)")
            if self._signal is not None:
                return None
            self._preempted_at = self._last_step  # the mail's, before the next attempt moves on
            self.say(f"gitexp: attempt {n} preempted at step {self._last_step}: "
                     f"attempt {n + 1} of {self.max_attempts} resumes")
            checkout = self._fresh_checkout()
            self._guard = self.start_guard()

    def _interruption(self) -> str:
        """How a stop the agent was told of ends the attempt (see `_stop`)."""
        if self._signal == "usr1":
            return "timeout"
        if self._signal == "term" and self.max_attempts > 1 and not self._cancel_requested():
            return "preempted"
        return "cancelled"

    def _resume(self, n: int) -> str | None:
        """Attempt n's start: the latest checkpoint restored, or None (from scratch)."""
        restored = checkpoints.restore(self.state, self.workdir / "resume", self.say)
        self._resume_dir = self.workdir / "resume" if restored else None
        if restored is None:
            self.say(f"gitexp: attempt {n} of {self.max_attempts}: no checkpoint, from the "
                     "start")
            return None
        at = f" (step {restored.step})" if restored.step is not None else ""
        self.say(f"gitexp: attempt {n} of {self.max_attempts}: resuming from checkpoint "
                 f"{restored.label!r}{at}")
        return restored.label or f"checkpoint {restored.n}"

    def _fresh_checkout(self) -> Path:
        """The snapshot checked out again for the next attempt (the job may have changed
        its files), and its data."""
        if self._checkout is not None:
            with contextlib.suppress(OSError):
                self._checkout.discard()
        assert self._source is not None and self.record is not None
        self._checkout = workspace.Checkout(
            tree=workspace.checkout(self._source, self.snapshot, self.workdir / "code"))
        if self.record.data:
            data.materialise(self.record, self._checkout.tree, store=self.store, log=self.say)
        return self._checkout.tree

    def _leave(self) -> None:
        """An agent the platform stops leaves the run to its next attempt: the log sent, no
        result, nothing left behind."""
        self._patiently(self.stream)
        self._cancel.set()  # stops the heartbeat
        if self._checkout is not None:
            with contextlib.suppress(OSError):
                self._checkout.discard()
        if not os.environ.get("GITEXP_KEEP_WORKDIR"):
            shutil.rmtree(self.workdir, ignore_errors=True)

    def start_guard(self) -> Guard:
        # From the main thread: the guard's parent-death signal follows the thread that
        # started it (the socket's EOF does not depend on it).
        try:  # the guard never holds the mail secrets either
            return Guard.start(cwd=str(self.workdir), env=_job_env())
        except OSError as exc:
            raise GitexpError(f"cannot start the job's guard: {exc.strerror}") from None

    def prepare(self) -> Path:
        source = Path(self.code)
        if not source.exists():
            source = transport.fetch_code(self.code, self.snapshot, self.workdir.parent / "cache")
        self._source = source
        # The record is read while the checkout is made: the job waits for one, not both.
        # The object as stored (no replace refs, no log settings); a tag's id gives its
        # commit here, and the checkout's HEAD check refuses it.
        objects, asked = Repo.at_git_dir(source), ("cat-file", "commit", self.snapshot)
        unreplaced = {"GIT_NO_REPLACE_OBJECTS": "1"}
        shown = objects.started(*asked, env=unreplaced)
        self._checkout = self._take_checkout(source)
        raw = shown()
        if raw is None:  # once more, for git's own words
            raw = objects.git(*asked, env=unreplaced).encode(errors="surrogateescape")
        commit = Commit.parse(raw)
        checkout = self._checkout.tree
        faults.point("agent.prepare")
        run = decode_run(commit.message, ref=ids.PREFIX + self.run_id, commit=self.snapshot,
                         parents=commit.parents)
        if run.result is not None:  # the snapshot is what runs, never a results commit
            raise GitexpError(f"{self.snapshot[:12]} is the results commit of run "
                              f"{self.run_id}, not its snapshot")
        if self.sweep is not None and run.record.sweep != self.sweep:
            raise GitexpError(f"run {self.run_id} is not a run of sweep {self.sweep}",
                              hint="the sweep's plan in the store was changed by hand")
        self.record = run.record
        if self.record.data:
            self.say("gitexp: pulling the data version")
            data.materialise(self.record, checkout, store=self.store, log=self.say)
        return checkout

    def _take_checkout(self, source: Path) -> workspace.Checkout:
        """A warm checkout when one is free (a kept work directory is always fresh)."""
        if self.warm is not None and not os.environ.get("GITEXP_KEEP_WORKDIR"):
            taken = self.warm.take(source, self.snapshot, say=self.say)
            if taken is not None:
                return taken
        return workspace.Checkout(
            tree=workspace.checkout(source, self.snapshot, self.workdir / "code"))

    def cancelled(self, started: float) -> Result:
        return Result(status="cancelled", started_at=started, ended_at=time.time(),
                      host=socket.gethostname(), error="cancelled before it started")

    def _mail_attempt(self, cwd: Path, attempt: int) -> None:
        """The run's mailer, once its job's first output went or it ended (the mail modules'
        import never delays the line the user waits for; one per agent: a next attempt
        mails in the same thread), and for an attempt after a preempted one its one mail."""
        if self._mailed_attempt >= attempt:
            return
        if not self._mailed_attempt:  # made once: a run without mail has none (None)
            self._mailer = _mailer_for(store=self.store, record=self.record,
                                       spool=self.workdir, cwd=cwd, repo=self.repo)
        self._mailed_attempt = attempt
        if attempt > 1 and self._mailer is not None:  # "preempted at step N - resumed on 2"
            step = self._preempted_at if self._preempted_at is not None else \
                self._carried.get("step")
            self._mailer.resumed(self._attempts, step if isinstance(step, int) else None)

    def execute(self, checkout: Path, started: float, attempt: int = 1) -> tuple[Result, str]:
        """One attempt of the job: its result, and how it ended (its status, or
        `preempted`)."""
        assert self.record is not None
        cwd = checkout / self.record.cwd if self.record.cwd else checkout
        saved = self.workdir / "checkpoints"  # the job's copies, until they are uploaded
        saved.mkdir(exist_ok=True)
        if self._uploader is None:
            self._uploader = checkpoints.Uploader(self.state, saved, self.max_checkpoint,
                                                  self._note)
        resume = {RESUME_ENV: str(self._resume_dir)} if self._resume_dir else {}
        env = _job_env(**{guard.RUN_ENV: self.run_id,
                          METRICS_ENV: str(self.spool("metrics.jsonl")), "PWD": str(cwd),
                          CHECKPOINTS_ENV: str(saved),
                          MAX_CHECKPOINT_ENV: str(self.max_checkpoint), **resume})
        argv, why = data.job_argv(self.record)
        if why:  # never silently: the log says what ran instead of the recorded argv
            self.say(why)
        assert self._guard is not None
        proc = self._guard.proc
        try:
            job = self._guard.run(argv, cwd=str(cwd), env=env)
        except OSError as exc:
            raise GitexpError(f"cannot start {self.record.argv[0]!r}: {exc}") from None
        stopped = self._watch(proc, job, cwd, attempt)
        code = proc.wait()
        self.stream()  # the job's last lines: its last checkpoint among them
        if not self._uploader.drain(DRAIN):
            self.say("gitexp: the last checkpoint did not reach the store in time")
        exit_code = code if code >= 0 else 128 - code
        how = stopped or ("succeeded" if code == 0 else "preempted"
                          if exit_code == PREEMPTED_CODE and self.max_attempts > 1 else "failed")
        # dvclive's series (plots/metrics/*.tsv) travel and plot like gitexp.log's: the last
        # attempt's files only, which hold the whole series when dvclive resumed (its
        # directory among the checkpoint's files); an earlier attempt's would come twice
        dvclive = metrics.series_from_files(cwd) if how != "preempted" else []
        with self.spool("metrics.jsonl").open("a", encoding="utf-8") as spool:
            spool.writelines(json.dumps(p) + "\n" for p in dvclive)
        # the plots dvc.yaml declares that are no series (ROC, confusion, images), masked
        plots = dvcplots.files_of(cwd, lambda b: secrets.redact_bytes(b, self._secrets))
        self._patiently(lambda: self.state.set_plots(plots))
        self.stream()
        ended = time.time()
        series = metrics.parse_series(
            secrets.redact_bytes(self.spool("metrics.jsonl").read_bytes(), self._secrets))
        final = {**self._carried, **metrics.final_of(series), **metrics.from_files(cwd)}
        status = how if how in ("cancelled", "timeout", "succeeded") else "failed"
        outputs = self._outputs(checkout) if how != "preempted" else {}
        return Result(status=status, exit_code=exit_code, started_at=started, ended_at=ended,
                      host=socket.gethostname(), metrics=final, outputs=outputs), how

    def _watch(self, proc: subprocess.Popen[bytes], job: int, cwd: Path,
               attempt: int) -> str | None:
        """Stream the job's output while it runs (its first output and its end at once,
        the rest every `flush`); None when it ended by itself, else how the agent stopped
        it (`_interruption`)."""
        assert proc.stdout is not None
        reader = threading.Thread(target=self._copy, args=(proc.stdout,), daemon=True)
        reader.start()
        self.state.set_running(started=time.time(), pid=job, job=_place(job), attempt=attempt)
        stopped: str | None = None
        while proc.poll() is None:
            self._wake.wait(self.flush)
            self._wake.clear()
            if self._cancel.is_set() or self._cancel_due():
                stopped = self._interruption()
                assert self._guard is not None
                _terminate(proc, job, self._guard)
                break
            self.stream()
            self._mail_attempt(cwd, attempt)
        self._mail_attempt(cwd, attempt)
        proc.wait()
        reader.join(timeout=10)
        return stopped

    def _outputs(self, checkout: Path) -> dict[str, Any]:
        assert self.record is not None
        if not self.record.outs and not data.is_pipeline(self.record):
            return {}  # a pipeline's outputs (and dvc.lock) count even with no data pinned

        return data.save_outputs(self.record, checkout, store=self.store, log=self.say)

    def finish(self, result: Result) -> None:
        full = self._full or (disk.full_at(self.workdir) if result.status == "failed" else None)
        if full:
            result = self._out_of_space(result, full)
        self._patiently(self.stream)
        faults.point("agent.result")
        self._patiently(lambda: self.state.write_result(result, snapshot=self.snapshot))
        self._cancel.set()  # stops the heartbeat
        if self.repo is not None and self.record is not None:
            repo = Repo.at_git_dir(self.repo)
            try:
                writeback.write_back(repo, self.record, result, self.store)
            except GitexpError as exc:  # `git exp ls` will write it back later
                _warn(f"gitexp: write-back deferred: {exc.message}")
            faults.point("agent.finish")
        if not self._mailed_attempt and self.record is not None:  # it failed before the job ran
            self._mailer = _mailer_for(store=self.store, record=self.record,
                                            spool=self.workdir, cwd=None, repo=self.repo,
                                            start=False)
        if self._mailer is not None:
            self._mailer.finish(result)  # bounded, and never raises: mail never hurts a run
        if self._checkout is not None:
            self._checkout.release()
        if not os.environ.get("GITEXP_KEEP_WORKDIR"):
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _out_of_space(self, result: Result, full: str) -> Result:
        """The disk filled: free the job's files first (they are what fills it, most often),
        so the log's tail and the result fit; a spool the store has no room for is given up
        (the store keeps the log up to there)."""
        if self._checkout is not None:
            with contextlib.suppress(OSError):
                self._checkout.discard()
        self.say(f"gitexp: {full}: the run ends here")
        if not self.stream() and self._store_full:
            self._give_up_spool(full)
        status = "failed" if self._full or result.status == "failed" else result.status
        return replace(result, status=status, error=result.error or full)

    def _give_up_spool(self, full: str) -> None:
        """The store has no room for the spool, which holds that very room (one disk): keep
        the unsent log's first KEEP_UNSENT bytes in memory, free the spool, and send what
        fits, in small pieces."""
        offset = self._offsets.get("log", 0)
        try:
            with self.spool("log").open("rb") as f:
                f.seek(offset)
                head = f.read(KEEP_UNSENT)
        except OSError:
            head = b""
        for name in ("log", "metrics.jsonl"):
            self.spool(name).unlink(missing_ok=True)
        with contextlib.suppress(GitexpError):
            for at in range(0, len(head), 4096):
                self.store.append(self.key("log"), head[at:at + 4096])
            self.store.append(self.key("log"), f"\ngitexp: {full}: the log ends here\n"
                              .encode())

    # -- streaming ---------------------------------------------------------------------------
    def spool(self, name: str) -> Path:
        return self.workdir / name

    def say(self, line: str) -> None:
        try:
            with self.spool("log").open("ab") as f:
                f.write(secrets.redact(line, self._secrets).encode() + b"\n")
        except OSError as exc:  # a full disk: said in the result instead
            self._spool_failed(exc)
        self.stream()

    def _note(self, line: str) -> None:
        """A line for the log from another thread: spooled only (the main loop sends it)."""
        with contextlib.suppress(OSError), self.spool("log").open("ab") as f:
            f.write(secrets.redact(line, self._secrets).encode() + b"\n")

    def _spool_failed(self, exc: OSError) -> None:
        full = disk.error_for(exc, self.workdir)
        self._full = self._full or (full.message if full else f"the log spool: {exc}")

    def _copy(self, pipe: IO[bytes]) -> None:
        # Masked before the spool: a secret the job prints never reaches a disk or the store.
        redactor = secrets.Redactor(self._secrets)
        first = True
        try:
            with self.spool("log").open("ab") as out:
                while chunk := pipe.read1(65536):  # type: ignore[attr-defined]
                    masked = redactor.feed(chunk)
                    out.write(masked)
                    out.flush()
                    if first and masked:
                        first = False
                        self._wake.set()
                out.write(redactor.flush())
            self._wake.set()  # the job closed its output: most often, it ended
        except OSError as exc:  # the disk is full: the job is stopped (`_cancel_requested`)
            self._spool_failed(exc)
            while pipe.read1(65536):  # type: ignore[attr-defined]
                pass  # drained until it ends: a job blocked on a full pipe would not stop

    def stream(self) -> bool:
        """Send what the spool files gained since the last call; False when the store failed.
        A store outage must not end the run: what was not sent stays in the spool, and the
        next call sends it, in order."""
        try:
            self._send()
        except GitexpError as exc:
            self._store_full = isinstance(exc, disk.DiskFullError)
            _warn(f"gitexp: the store failed, sending later: {exc.message}")
            return False
        self._store_full = False
        return True

    def _send(self) -> None:
        for name in ("log", "metrics.jsonl"):
            path = self.spool(name)
            offset = self._offsets.get(name, 0)
            if _size(path) == offset:  # nothing new: not even an open (every flush, per file)
                continue
            with contextlib.suppress(FileNotFoundError), path.open("rb") as f:
                f.seek(offset)
                while chunk := f.read(CHUNK):
                    if name == "metrics.jsonl" and not chunk.endswith(b"\n"):
                        chunk = chunk[: chunk.rfind(b"\n") + 1]  # whole lines only
                        if not chunk:
                            break
                    read = len(chunk)
                    if name == "metrics.jsonl":  # the job writes it itself; whole lines here
                        chunk = secrets.redact_bytes(chunk, self._secrets)
                        points = metrics.parse_series(chunk)
                        self._latest.update(metrics.final_of(points))
                        self._latest_due = True
                        self._saw(points, chunk)
                    self.store.append(self.key(name), chunk)
                    faults.point("agent.append")
                    offset += read
                    f.seek(offset)  # a metrics line cut short above is read again whole
                    self._offsets[name] = offset  # per chunk: a failure resends only the rest
            self._offsets[name] = offset
        self._send_latest()

    def _saw(self, points: list[dict[str, Any]], chunk: bytes) -> None:
        """The job's latest step, and its checkpoints' files handed to the uploader."""
        steps = [p["step"] for p in points if isinstance(p.get("step"), int)]
        self._last_step = steps[-1] if steps else self._last_step
        if b'"_save"' not in chunk or self._uploader is None:
            return
        for line in chunk.splitlines():
            try:
                point = json.loads(line)
            except (ValueError, RecursionError):
                continue
            if isinstance(point, dict) and "_save" in point:
                self._uploader.offer(point)

    def _send_latest(self) -> None:
        """latest.json, so that `ls` shows a live run's metrics reading one small file: at
        most once per heartbeat interval (a cloud store takes about one write per second
        per object), and the last change always goes (`stream` is called every `flush`)."""
        if self._latest_due and time.monotonic() - self._latest_sent >= max(self.heartbeat, 1.0):
            self.state.set_latest(dict(self._latest))
            self._latest_sent, self._latest_due = time.monotonic(), False

    def _patiently(self, step: Callable[[], bool | None]) -> bool:
        """Retry a last word to the store (the log's tail, the result) through an outage of
        up to STORE_PATIENCE seconds; False if the store never came back."""
        delay, deadline = 0.5, time.monotonic() + STORE_PATIENCE
        while True:
            try:
                if step() is not False:
                    return True
            except GitexpError as exc:
                _warn(f"gitexp: the store failed, retrying: {exc.message}")
            if time.monotonic() + delay > deadline:
                return False
            time.sleep(delay)
            delay = min(delay * 2, 10.0)

    # -- liveness ----------------------------------------------------------------------------
    def _beat_forever(self) -> None:
        while not self._cancel.is_set():
            with contextlib.suppress(Exception):  # a store hiccup must not kill the run
                self.state.beat(self.heartbeat)
            faults.point("agent.heartbeat")
            self._cancel.wait(self.heartbeat)

    def _cancel_due(self) -> bool:
        """`_cancel_requested`, the store asked at most every CANCEL_POLL seconds."""
        now = time.monotonic()
        if not self._full and now - self._cancel_asked < CANCEL_POLL:
            return False
        self._cancel_asked = now
        return self._cancel_requested()

    def _cancel_requested(self) -> bool:
        if self._full:  # the log cannot be kept: the job stops, and `finish` says why
            return True
        try:
            return self.state.cancel_requested()
        except Exception:
            return False


def _mailer_for(**how: Any) -> Any:
    """`notify.mailer.for_agent`, imported only now: mail's modules (email, mailbox, html)
    load after the job has started, never before its first line."""
    from gitexp.notify import mailer

    return mailer.for_agent(**how)


def _why(exc: GitexpError | OSError) -> tuple[str, str | None]:
    """A failure's one line and hint, for the log and the result."""
    if isinstance(exc, OSError):
        full = disk.error_for(exc)
        if full is None:
            return f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else ""), None
        exc = full
    return exc.message, exc.hint


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


def _warn(text: str) -> None:
    # Unbuffered, and silent when stderr's own disk is full: nothing left to flush at exit
    # (that would change the agent's exit code), no exception in an exception handler.
    with contextlib.suppress(OSError):
        os.write(2, text.encode(errors="replace") + b"\n")


def _job_env(**extra: str) -> dict[str, str]:
    # The job never sees the mail secrets: only the agent's mailer uses them. Nor the
    # launcher's GIT_DIR & co (`git --git-dir=X exp run`): its git is its checkout's.
    return {**{k: v for k, v in os.environ.items()
               if k not in secrets.OWN and k not in GIT_LOCATION}, **extra}


def _place(job: int) -> JobPlace | None:
    """Where the job is, for a cancel after its agent died; None where /proc cannot say.
    It leads its own session, so its group is its pid."""
    start, boot = guard.start_ticks(job), guard.boot_id()
    return JobPlace(pid=job, group=job, start=start, boot=boot) \
        if start is not None and boot is not None else None


def _terminate(proc: subprocess.Popen[bytes], job: int, guard: Guard) -> None:
    """End the job and every process it started: SIGTERM to its group, and after the grace
    the guard let go of (it SIGKILLs the whole tree, setsid'd descendants too)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(job, signal.SIGTERM)
    for step in (guard.close, lambda: os.killpg(proc.pid, signal.SIGKILL)):
        try:
            proc.wait(timeout=KILL_GRACE)
            return
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                step()
    proc.wait()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="gitexp agent")
    p.add_argument("--store", required=True)
    p.add_argument("--run")
    p.add_argument("--snapshot", help="its commit; '-': read from stdin, when taken "
                   "(started ahead: backends.StartsAhead)")
    p.add_argument("--log", type=Path, help="where its own output goes, once it runs")
    p.add_argument("--sweep", help="be slot --slot of this sweep: run its runs one by one")
    p.add_argument("--slot", type=int)
    p.add_argument("--code", required=True)
    p.add_argument("--workdir", type=Path)
    p.add_argument("--repo", type=Path)
    p.add_argument("--heartbeat", type=float, default=2.0)
    p.add_argument("--flush", type=float, default=0.5)
    p.add_argument("--warm", type=int, default=0, help="keep up to N warm checkouts")
    p.add_argument("--warm-dir", type=Path, help="where they are kept")
    p.add_argument("--max-attempts", type=int, default=ATTEMPTS,
                   help="attempts a preempted run may take (1: it is never tried again)")
    p.add_argument("--max-checkpoint", type=int, default=CHECKPOINT_BYTES,
                   help="bytes one checkpoint's files may hold")
    a = p.parse_args(argv)
    if not 0 <= a.warm <= MAX_WARM or (a.warm and a.warm_dir is None):
        p.error(f"--warm takes 0 to {MAX_WARM}, and a --warm-dir")
    if a.sweep is not None:
        if a.slot is None or a.slot < 0 or not ids.is_valid_id(a.sweep) or a.run:
            p.error("a slot needs --sweep ID and --slot K (K >= 0), and no --run")
        return _slot(a)
    if not a.run or not a.snapshot:
        p.error("give --run and --snapshot, or --sweep and --slot")
    ahead = None
    if a.snapshot == "-":
        # The job's guard starts while the launch takes the snapshot, as this agent did (a
        # guard that cannot start is started again, and its error told, by `Agent.run`).
        with contextlib.suppress(OSError):
            ahead = Guard.start(cwd=".", env=_job_env())
        a.snapshot = _awaited_snapshot(a.log)
        if a.snapshot is None:  # the launch stopped before its snapshot: nothing to do
            if ahead is not None:
                ahead.close()
            return 0
    # Absolute: the job runs elsewhere and is told where to write its metrics.
    workdir = (a.workdir or Path.home() / ".cache" / "gitexp" / "work" / a.run).absolute()
    agent = Agent(store=open_store(a.store), run_id=a.run, snapshot=a.snapshot, code=a.code,
                  workdir=workdir, repo=a.repo, heartbeat=a.heartbeat, flush=a.flush,
                  warm=_pool(a), max_attempts=max(1, a.max_attempts),
                  max_checkpoint=max(0, a.max_checkpoint), _guard=ahead)
    return agent.main()


def _awaited_snapshot(log: Path | None) -> str | None:
    """The snapshot of the run this agent was started ahead of: one line on stdin, or
    nothing (the launch was refused or interrupted). Then its own output goes to `log`."""
    line = sys.stdin.buffer.readline(200).strip().decode("ascii", "replace")
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)  # nothing of the launcher's stays open
    if not is_object_id(line):
        return None
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
        for fd in (1, 2):
            os.dup2(out, fd)
        os.close(out)
    return line


def _slot(a: argparse.Namespace) -> int:
    """A sweep's slot: the runs it claims, one after another, each as its own Agent would
    run it alone, in this one process. SIGTERM cancels the run at hand and ends the slot
    (the other slots take what is left)."""
    root = (a.workdir or Path.home() / ".cache" / "gitexp" / "work").absolute()
    store = open_store(a.store)
    pool = _pool(a)
    stop = threading.Event()
    current: list[Agent] = []

    def on_signal(*_: object) -> None:
        stop.set()
        for agent in current:
            agent.cancel()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def run_one(run_id: str, snapshot: str) -> None:
        agent = Agent(store=store, run_id=run_id, snapshot=snapshot, code=a.code,
                      workdir=root / run_id, repo=a.repo, heartbeat=a.heartbeat, flush=a.flush,
                      sweep=a.sweep, warm=pool)
        current[:] = [agent]
        if stop.is_set():
            agent.cancel()
        agent.run()
        current.clear()
    return slots.run_slot(store, a.sweep, a.slot, run_one, stop)


def _pool(a: argparse.Namespace) -> workspace.Pool | None:
    return workspace.Pool(a.warm_dir.expanduser().absolute(), a.warm) if a.warm else None


if __name__ == "__main__":
    sys.exit(main())
