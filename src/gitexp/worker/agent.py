"""The agent: the one worker-side program every backend starts.

It materialises the snapshot (verified by hash), pulls its data version, runs the command,
streams the log and metrics to the store, beats a heartbeat, honours cancel requests, and
writes the result. Its exit code is the job's.

    python -m gitexp.worker.agent --store URL --run ID --snapshot SHA --code SRC [--repo GITDIR]
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from gitexp import METRICS_ENV, data, faults, secrets
from gitexp.errors import GitexpError
from gitexp.git import Repo, run_git, writeback
from gitexp.model import ids, metrics
from gitexp.model.record import Result, RunRecord, decode_run
from gitexp.model.runstate import RunState
from gitexp.notify import mailer
from gitexp.notify.settings import SECRET_ENV
from gitexp.stores import Store, open_store, run_key, transport
from gitexp.worker import turns, workspace

CHUNK = 1 << 20  # streamed to the store in pieces of at most this: memory stays bounded
KILL_GRACE = 5.0
STORE_PATIENCE = 300.0  # s: how long a finished run waits for its store to come back


@dataclass
class Agent:
    store: Store
    run_id: str
    snapshot: str
    code: str
    workdir: Path
    repo: Path | None = None  # the dev repository's git dir, when the worker can reach it
    heartbeat: float = 2.0
    flush: float = 0.5
    record: RunRecord | None = None
    _cancel: threading.Event = field(default_factory=threading.Event)
    _offsets: dict[str, int] = field(default_factory=dict)
    _mailer: Any = None  # notify.mailer.RunMailer, once the job runs
    _secrets: list[str] = field(default_factory=list)  # values masked in the log and metrics
    _latest: dict[str, Any] = field(default_factory=dict)  # each metric's latest value
    _latest_due: bool = False  # _latest changed since it was last sent
    _latest_sent: float = -math.inf  # time.monotonic() of that

    def key(self, name: str) -> str:
        return run_key(self.run_id, name)

    @property
    def state(self) -> RunState:
        return RunState(self.store, self.run_id)

    # -- lifecycle ---------------------------------------------------------------------------
    def main(self) -> int:
        signal.signal(signal.SIGTERM, lambda *_: self._cancel.set())
        signal.signal(signal.SIGINT, lambda *_: self._cancel.set())
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.spool("log").touch()
        self.spool("metrics.jsonl").touch()
        self._secrets = secrets.values_to_redact(self.store, self.run_id, os.environ)
        started = time.time()
        beat = threading.Thread(target=self._beat_forever, daemon=True)
        beat.start()
        try:
            checkout = self.prepare()
            turn = self.wait_turn(started)
            result = self.execute(checkout, turn) if turn else self.cancelled(started)
        except GitexpError as exc:
            self.say(f"gitexp: {exc.message}" + (f" ({exc.hint})" if exc.hint else ""))
            result = Result(status="failed", started_at=started, ended_at=time.time(),
                            host=socket.gethostname(), error=exc.message)
        self.finish(result)
        return result.exit_code if result.exit_code is not None else 1

    def prepare(self) -> Path:
        source = Path(self.code)
        if not source.exists():
            source = transport.fetch_code(self.code, self.snapshot, self.workdir.parent / "cache")
        checkout = workspace.checkout(source, self.snapshot, self.workdir / "code")
        faults.point("agent.prepare")
        shown = run_git(["-C", str(checkout), "log", "-1", "--format=%P%n%B", self.snapshot])
        parents, _, message = shown.stdout.partition(b"\n")
        run = decode_run(message, ref=ids.PREFIX + self.run_id, commit=self.snapshot,
                         parents=parents.decode().split())
        if run.result is not None:  # the snapshot is what runs, never a results commit
            raise GitexpError(f"{self.snapshot[:12]} is the results commit of run "
                              f"{self.run_id}, not its snapshot")
        self.record = run.record
        if self.record.data:
            self.say("gitexp: pulling the data version")
            data.materialise(self.record, checkout, store=self.store, log=self.say)
        return checkout

    def wait_turn(self, started: float) -> float | None:
        """A sweep run under --max-parallel waits for a free slot (worker.turns): returns
        when the run really starts, or None when it was cancelled while waiting."""
        assert self.record is not None
        if not self.record.sweep:
            return started
        return turns.wait_turn(self.store, self.record, self._cancel, started=started)

    def cancelled(self, started: float) -> Result:
        return Result(status="cancelled", started_at=started, ended_at=time.time(),
                      host=socket.gethostname(), error="cancelled before its turn in the sweep")

    def execute(self, checkout: Path, started: float) -> Result:
        assert self.record is not None
        cwd = checkout / self.record.cwd if self.record.cwd else checkout
        # The job never sees the mail secrets: only the agent's mailer uses them.
        env = {**{k: v for k, v in os.environ.items() if k not in SECRET_ENV},
               "GITEXP_RUN_ID": self.run_id,
               METRICS_ENV: str(self.spool("metrics.jsonl")), "PWD": str(cwd)}
        argv, why = data.job_argv(self.record)
        if why:  # never silently: the log says what ran instead of the recorded argv
            self.say(why)
        try:
            proc = subprocess.Popen(
                argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
            )
        except OSError as exc:
            raise GitexpError(f"cannot start {self.record.argv[0]!r}: {exc.strerror}") from None
        self.state.set_running(started=time.time(), pid=proc.pid)
        self._mailer = mailer.for_agent(store=self.store, record=self.record,
                                        spool=self.workdir, cwd=cwd, repo=self.repo)
        assert proc.stdout is not None
        reader = threading.Thread(target=self._copy, args=(proc.stdout,), daemon=True)
        reader.start()
        cancelled = False
        while proc.poll() is None:
            if self._cancel.wait(self.flush) or self._cancel_requested():
                cancelled = True
                _terminate(proc)
                break
            self.stream()
        code = proc.wait()
        reader.join(timeout=10)
        with self.spool("metrics.jsonl").open("a", encoding="utf-8") as spool:
            # dvclive's series (plots/metrics/*.tsv) travel and plot like gitexp.log's
            spool.writelines(json.dumps(p) + "\n" for p in metrics.series_from_files(cwd))
        self.stream()
        ended = time.time()
        series = metrics.parse_series(
            secrets.redact_bytes(self.spool("metrics.jsonl").read_bytes(), self._secrets))
        final = {**metrics.final_of(series), **metrics.from_files(cwd)}
        exit_code = code if code >= 0 else 128 - code
        status = "cancelled" if cancelled else ("succeeded" if code == 0 else "failed")
        outputs = self._outputs(checkout)
        return Result(status=status, exit_code=exit_code, started_at=started, ended_at=ended,
                      host=socket.gethostname(), metrics=final, outputs=outputs)

    def _outputs(self, checkout: Path) -> dict[str, Any]:
        assert self.record is not None
        if not self.record.outs and not self.record.data:  # data: `dvc repro` stage outputs
            return {}

        return data.save_outputs(self.record, checkout, store=self.store, log=self.say)

    def finish(self, result: Result) -> None:
        self._patiently(self.stream)
        faults.point("agent.result")
        self._patiently(lambda: self.state.write_result(result, snapshot=self.snapshot))
        self._cancel.set()  # stops the heartbeat
        if self.repo is not None and self.record is not None:
            repo = Repo.at_git_dir(self.repo)
            try:
                writeback.write_back(repo, self.record, result, self.store)
            except GitexpError as exc:  # `git exp ls` will write it back later
                print(f"gitexp: write-back deferred: {exc.message}", file=sys.stderr)
            faults.point("agent.finish")
        if self._mailer is None and self.record is not None:  # it failed before the job ran
            self._mailer = mailer.for_agent(store=self.store, record=self.record,
                                            spool=self.workdir, cwd=None, repo=self.repo,
                                            start=False)
        if self._mailer is not None:
            self._mailer.finish(result)  # bounded, and never raises: mail never hurts a run
        if not os.environ.get("GITEXP_KEEP_WORKDIR"):
            shutil.rmtree(self.workdir, ignore_errors=True)

    # -- streaming ---------------------------------------------------------------------------
    def spool(self, name: str) -> Path:
        return self.workdir / name

    def say(self, line: str) -> None:
        with self.spool("log").open("ab") as f:
            f.write(secrets.redact(line, self._secrets).encode() + b"\n")
        self.stream()

    def _copy(self, pipe: IO[bytes]) -> None:
        # Masked before the spool: a secret the job prints never reaches a disk or the store.
        redactor = secrets.Redactor(self._secrets)
        with self.spool("log").open("ab") as out:
            while chunk := pipe.read1(65536):  # type: ignore[attr-defined]
                out.write(redactor.feed(chunk))
                out.flush()
            out.write(redactor.flush())

    def stream(self) -> bool:
        """Send what the spool files gained since the last call; False when the store failed.
        A store outage must not end the run: what was not sent stays in the spool, and the
        next call sends it, in order."""
        try:
            self._send()
        except GitexpError as exc:
            print(f"gitexp: the store failed, sending later: {exc.message}", file=sys.stderr)
            return False
        return True

    def _send(self) -> None:
        for name in ("log", "metrics.jsonl"):
            path = self.spool(name)
            offset = self._offsets.get(name, 0)
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
                        self._latest.update(metrics.final_of(metrics.parse_series(chunk)))
                        self._latest_due = True
                    self.store.append(self.key(name), chunk)
                    faults.point("agent.append")
                    offset += read
                    f.seek(offset)  # a metrics line cut short above is read again whole
                    self._offsets[name] = offset  # per chunk: a failure resends only the rest
            self._offsets[name] = offset
        self._send_latest()

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
                print(f"gitexp: the store failed, retrying: {exc.message}", file=sys.stderr)
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

    def _cancel_requested(self) -> bool:
        try:
            return self.state.cancel_requested()
        except Exception:
            return False


def _terminate(proc: subprocess.Popen[bytes]) -> None:
    """End the job and every process it started (its own session / process group)."""
    for sig, wait in ((signal.SIGTERM, KILL_GRACE), (signal.SIGKILL, None)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # stragglers in the group
            return
        except subprocess.TimeoutExpired:
            continue


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="gitexp agent")
    p.add_argument("--store", required=True)
    p.add_argument("--run", required=True)
    p.add_argument("--snapshot", required=True)
    p.add_argument("--code", required=True)
    p.add_argument("--workdir", type=Path)
    p.add_argument("--repo", type=Path)
    p.add_argument("--heartbeat", type=float, default=2.0)
    p.add_argument("--flush", type=float, default=0.5)
    a = p.parse_args(argv)
    # Absolute: the job runs elsewhere and is told where to write its metrics.
    workdir = (a.workdir or Path.home() / ".cache" / "gitexp" / "work" / a.run).absolute()
    agent = Agent(store=open_store(a.store), run_id=a.run, snapshot=a.snapshot, code=a.code,
                  workdir=workdir, repo=a.repo, heartbeat=a.heartbeat, flush=a.flush)
    return agent.main()


if __name__ == "__main__":
    sys.exit(main())
