"""The embedded default target: this machine, with the store under `.git/gitexp/store`."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from gitexp.backends import Launch, job_mark, warm_count
from gitexp.git import Repo
from gitexp.git.config import Target
from gitexp.model.record import RunRecord
from gitexp.model.runstate import Handle
from gitexp.worker import agent_argv


class LocalBackend:
    def __init__(self, *, target: Target, repo: Repo) -> None:
        self.target = target
        self.repo = repo

    def store_url(self) -> str:
        return (self.repo.gitexp_dir / "store").as_uri()

    def submit(self, *, launch: Launch) -> Handle:
        common = str(self.repo.common_dir)
        argv = agent_argv(sys.executable, store=launch.store.url, code=common, repo=common,
                          workdir=launch.workdir(str(self.repo.gitexp_dir / "work")),
                          heartbeat=launch.heartbeat, flush=0.2, **launch.job(),
                          limits=launch.limits(self.target),
                          warm=(warm_count(self.target), str(self.repo.gitexp_dir / "warm")))
        log = self.repo.gitexp_dir / "store" / launch.log_key()
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            # A new session: the agent outlives this terminal, and Ctrl-C here never reaches it.
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                    start_new_session=True, close_fds=True,
                                    cwd=self.repo.common_dir)
        return {"pid": proc.pid, "host": socket.gethostname()}

    def alive(self, *, record: RunRecord, handle: Handle) -> bool | None:
        if handle.get("host") != socket.gethostname() or "pid" not in handle:
            return None
        cmdline = Path(f"/proc/{handle['pid']}/cmdline")
        if Path("/proc/self").exists():
            try:
                args = cmdline.read_bytes()
            except OSError:
                return False
            # A recycled pid runs something else; a zombie has an empty command line.
            return job_mark(record, handle).encode() in args
        try:
            os.kill(int(handle["pid"]), 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def cancel(self, *, record: RunRecord, handle: Handle) -> None:
        if self.alive(record=record, handle=handle):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(handle["pid"]), signal.SIGTERM)
