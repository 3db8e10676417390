"""The embedded default target: this machine, with the store under `.git/gitexp/store`."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gitexp.backends import Launch, job_mark, limits_for, warm_count
from gitexp.git import Repo
from gitexp.git.config import Target
from gitexp.model import ids
from gitexp.stores import run_key
from gitexp.worker import agent_argv
from gitexp.worker.guard import boot_id, started_at

if TYPE_CHECKING:  # types only: the agent is started before these load (cli/_ahead)
    from gitexp.model.record import RunRecord
    from gitexp.model.runstate import Handle

# Agents `start_early` started, by what `start_ahead` would start them with: taken once.
_EARLY: dict[tuple[str, ...], tuple[str, subprocess.Popen[bytes]]] = {}


class LocalBackend:
    def __init__(self, *, target: Target, repo: Repo) -> None:
        self.target = target
        self.repo = repo
        self._ahead: tuple[str, subprocess.Popen[bytes]] | None = None  # start_ahead's

    def store_url(self) -> str:
        return (self.repo.gitexp_dir / "store").as_uri()

    def start_ahead(self, *, name: str, heartbeat: float,
                    max_checkpoint: int) -> tuple[str, Callable[[], None]]:
        """The agent of the run to be recorded, started while the launch takes the
        snapshot: an interpreter's start and the agent's imports (~0.15 s) are then no
        longer on the way to the job's first line. It waits for one line on its stdin, the
        snapshot (`submit`); if the launch stops first, the pipe's end (our exit) ends it,
        having written nothing. Its own output goes to its log only once it runs. The one
        `start_early` started is taken when it is the same agent (its command, the run id
        aside), else started now."""
        key = self._ahead_key(name, heartbeat, max_checkpoint)
        early = _EARLY.pop(key, None)
        if early is None or early[1].poll() is not None or _dropped(early[1]):
            run_id = ids.new_id(name)
            early = (run_id, self._spawn_ahead(run_id, heartbeat, max_checkpoint))
        self._ahead = early
        proc = early[1]
        return early[0], lambda: _drop(proc)

    def start_early(self, *, name: str, heartbeat: float,
                    max_checkpoint: int) -> Callable[[], None]:
        """`start_ahead` before the launch has begun (`git exp run` as it starts, from a
        guess at its options: its own imports and parse then overlap the agent's); for the
        launch's `start_ahead` to take. The function returned drops it unless it ran."""
        run_id = ids.new_id(name)
        proc = self._spawn_ahead(run_id, heartbeat, max_checkpoint)
        key = self._ahead_key(name, heartbeat, max_checkpoint)
        _EARLY[key] = (run_id, proc)

        def drop() -> None:
            if _EARLY.get(key, ("", None))[1] is proc:
                del _EARLY[key]
            _drop(proc)

        return drop

    def _ahead_key(self, name: str, heartbeat: float, max_checkpoint: int) -> tuple[str, ...]:
        return (name, *self._ahead_argv("", heartbeat, max_checkpoint))

    def _ahead_argv(self, run_id: str, heartbeat: float, max_checkpoint: int) -> list[str]:
        log = self.repo.gitexp_dir / "store" / run_key(run_id, "agent.log")
        return self._argv(run_id=run_id, snapshot="-", heartbeat=heartbeat, log=str(log),
                          limits=limits_for(self.target, max_checkpoint))

    def _spawn_ahead(self, run_id: str, heartbeat: float,
                     max_checkpoint: int) -> subprocess.Popen[bytes]:
        return subprocess.Popen(self._ahead_argv(run_id, heartbeat, max_checkpoint),
                                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True,
                                close_fds=True, cwd=self.repo.common_dir)

    def submit(self, *, launch: Launch) -> Handle:
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            run_id, proc = ahead
            if launch.slot is None and run_id == launch.record.id and _hand(proc, launch):
                return _handle(proc.pid)
            _drop(proc)  # not this run's
        argv = self._argv(**launch.job(), heartbeat=launch.heartbeat,
                          limits=launch.limits(self.target),
                          workdir=launch.workdir(str(self.repo.gitexp_dir / "work")))
        log = self.repo.gitexp_dir / "store" / launch.log_key()
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            # A new session: the agent outlives this terminal, and Ctrl-C here never reaches it.
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                    start_new_session=True, close_fds=True,
                                    cwd=self.repo.common_dir)
        return _handle(proc.pid)

    def _argv(self, *, heartbeat: float, limits: tuple[int, int], workdir: str | None = None,
              log: str | None = None, **job: Any) -> list[str]:
        common = str(self.repo.common_dir)
        work = self.repo.gitexp_dir / "work"
        return agent_argv(sys.executable, store=self.store_url(), code=common, repo=common,
                          workdir=workdir or str(work / job["run_id"]), heartbeat=heartbeat,
                          flush=0.2, warm=(warm_count(self.target), str(self.repo.gitexp_dir /
                                                                         "warm")),
                          limits=limits, log=log, **job)

    def alive(self, *, record: RunRecord, handle: Handle) -> bool | None:
        if handle.get("host") != socket.gethostname() or "pid" not in handle:
            return None
        pid = int(handle["pid"])
        if not Path("/proc/self").exists():
            return _exists(pid)
        if "started" in handle:
            # That very process (a recycled pid started later), this boot, not yet a zombie.
            return handle.get("boot") == boot_id() and started_at(pid) == handle["started"]
        try:  # a handle of an older gitexp: its agent's command line names the run
            args = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return False
        # A recycled pid runs something else; a zombie has an empty command line.
        return job_mark(record, handle).encode() in args

    def cancel(self, *, record: RunRecord, handle: Handle) -> None:
        if self.alive(record=record, handle=handle):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(handle["pid"]), signal.SIGTERM)


def _exists(pid: int) -> bool:
    """Where there is no /proc: a process has that pid."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _handle(pid: int) -> Handle:
    """How this backend knows an agent: its pid, and where /proc is, when it started and on
    which boot: together they name that one process for good (a pid is taken again; a
    command line says what a process runs, not which one it is)."""
    handle: Handle = {"pid": pid, "host": socket.gethostname()}
    start, boot = started_at(pid), boot_id()
    if start is not None and boot is not None:
        handle.update(started=start, boot=boot)
    return handle


def _drop(proc: subprocess.Popen[bytes]) -> None:
    """An agent started ahead that is not needed: the end of its stdin ends it."""
    assert proc.stdin is not None
    with contextlib.suppress(OSError):
        proc.stdin.close()


def _dropped(proc: subprocess.Popen[bytes]) -> bool:
    return proc.stdin is None or proc.stdin.closed


def _hand(proc: subprocess.Popen[bytes], launch: Launch) -> bool:
    """Give the agent started ahead its snapshot; False if it is gone (then the run's agent
    is started the usual way, and says why it failed, if it does)."""
    assert proc.stdin is not None
    try:
        proc.stdin.write(launch.record.snapshot.encode() + b"\n")
        proc.stdin.close()
    except (OSError, ValueError):  # it died starting (its output went nowhere: the next
        return False  # one shows it), or it was dropped (its stdin closed)
    return True
