"""The `ssh` target: any host the user's own ssh reaches (its ~/.ssh/config honoured).

    git config exp.target.box.backend ssh
    git config exp.target.box.host gpu-box          # an ssh alias, or user@host
    git config exp.target.box.workdir /scratch/me   # default: ~/.cache/gitexp on the host
    git config exp.target.box.store gs://b/p        # default: ssh://HOST/WORKDIR/store
    git config exp.target.box.python python3.11     # default: python3
    git config exp.target.box.sshConfig PATH        # default: $GITEXP_SSH_CONFIG or ~/.ssh/config

The host needs Python and git only: gitexp's wheel goes to WORKDIR/tools once, and the agent
runs from it, detached in its own session. Secrets go over the ssh session's stdin.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

from gitexp import secrets
from gitexp.backends import Launch, job_mark, warm_count
from gitexp.errors import BackendError
from gitexp.git import Repo
from gitexp.git.config import Config, Target
from gitexp.model.record import RunRecord
from gitexp.model.runstate import Handle
from gitexp.stores.sftp import SFTPStore, ssh_argv
from gitexp.stores.transport import code_repo
from gitexp.worker import bootstrap

NEED_WHEEL = 3  # the launcher's exit code when the host lacks this gitexp's wheel
ALIVE_TTL = 3.0  # `logs -f` asks every 0.2 s: one ssh round trip per few seconds is enough
_alive_cache: dict[tuple[str, int], tuple[float, bool | None]] = {}

# Runs on the host: start the agent from the wheel, or say that the wheel is missing.
_LAUNCH = ('[ -f "$1" ] || exit 3; PYTHONPATH="$1" exec "$2" -m gitexp.worker.bootstrap')
_RECEIVE_WHEEL = 'mkdir -p "${1%/*}" && cat > "$1.tmp" && mv "$1.tmp" "$1"'


class SSHBackend:
    def __init__(self, *, target: Target, repo: Repo) -> None:
        self.target = target
        self.repo = repo
        self.host = target.require("host")
        raw = target.get("workdir") or "~/.cache/gitexp"
        # Relative paths are relative to the login directory, where ssh starts commands.
        self.workdir = raw[2:] if raw.startswith("~/") else raw
        self.python = target.get("python") or "python3"
        self.config = target.get("sshConfig")
        self.port = target.count("port")

    def store_url(self) -> str:
        shared = self.target.get("store")
        if shared:
            return shared
        return SFTPStore(self.host.rpartition("@")[2], f"{self.workdir}/store",
                         user=self.host.rpartition("@")[0] or None, port=self.port,
                         config=self.config).url

    # -- the protocol -------------------------------------------------------------------------
    def submit(self, *, launch: Launch) -> Handle:
        rec = launch.record
        store, code = self._worker_store(launch.store.url, rec.snapshot)
        wheel = bootstrap.build_wheel()
        remote_wheel = f"{self.workdir}/tools/{wheel.name}"
        secret, plain = secrets.forwarded(Config.load(self.repo), self.target, os.environ)
        job = ({"run": rec.id, "snapshot": rec.snapshot} if launch.slot is None
               else {"sweep": rec.sweep, "slot": launch.slot})
        spec = {"wheel": remote_wheel, "store": store, "code": code, **job,
                "name": launch.name, "workdir": self.workdir,
                "heartbeat": launch.heartbeat, "warm": warm_count(self.target),
                "limits": launch.limits(self.target),
                "env": {**plain, **secret}}
        command = shlex.join(["sh", "-c", _LAUNCH, "sh", remote_wheel, self.python])
        for _ in range(2):
            proc = self._ssh(command, input=json.dumps(spec).encode())
            if proc.returncode != NEED_WHEEL:
                break
            self._send_wheel(wheel, remote_wheel)
        if proc.returncode != 0:
            err = secrets.redact(proc.stderr.decode(errors="replace"), secret.values())
            raise BackendError(f"cannot start the agent on {self.host}: "
                               f"{_last_line(err) or f'exit {proc.returncode}'}",
                               hint=f"check `ssh {self.host} {self.python} -V` and git there")
        try:
            started = json.loads(proc.stdout.decode().strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise BackendError(f"the agent on {self.host} did not say it started",
                               hint="see the run's agent log on the host") from None
        return {"host": self.host, "pid": started["pid"], "hostname": started["host"],
                "log": started["log"]}

    def alive(self, *, record: RunRecord, handle: Handle) -> bool | None:
        if "pid" not in handle:
            return None
        key = (str(handle.get("host")), int(handle["pid"]))
        seen = _alive_cache.get(key)
        if seen and time.monotonic() - seen[0] < ALIVE_TTL:
            return seen[1]
        # The agent's command line names the run: a recycled pid is not mistaken for it.
        check = shlex.join(["grep", "-qaF", "--", job_mark(record, handle),
                            f"/proc/{handle['pid']}/cmdline"])
        proc = self._ssh(check, timeout=30)
        answer = {0: True, 1: False, 2: False}.get(proc.returncode)
        _alive_cache[key] = (time.monotonic(), answer)
        return answer

    def cancel(self, *, record: RunRecord, handle: Handle) -> None:
        if self.alive(record=record, handle=handle):
            # The agent leads its own process group; on SIGTERM it stops the job's group,
            # writes the result `cancelled` and exits.
            self._ssh(shlex.join(["kill", "-TERM", "--", f"-{int(handle['pid'])}"]), timeout=30)

    # -- helpers ------------------------------------------------------------------------------
    def _worker_store(self, url: str, snapshot: str) -> tuple[str, str]:
        """The store and code source as the worker sees them: a store on the target host
        itself is a plain directory there."""
        if urlsplit(url).scheme == "ssh":
            store = SFTPStore.from_url(url)
            if store.destination in (self.host, self.host.rpartition("@")[2]):
                return store.path, f"{store.path}/{code_repo(snapshot)}"
        if urlsplit(url).scheme == "file":
            path = urlsplit(url).path
            return url, f"{path}/{code_repo(snapshot)}"
        return url, url

    def _ssh(self, command: str, *, input: bytes | None = None,
             timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
        argv = [*ssh_argv(self.host, port=self.port, config=self.config), command]
        try:
            return subprocess.run(argv, input=input if input is not None else b"",
                                  capture_output=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise BackendError(f"ssh {self.host} timed out",
                               hint=f"does `ssh {self.host} true` answer?") from None
        except FileNotFoundError:
            raise BackendError("ssh is not installed", hint="install openssh-client") from None

    def _send_wheel(self, wheel: Path, remote: str) -> None:
        proc = self._ssh(shlex.join(["sh", "-c", _RECEIVE_WHEEL, "sh", remote]),
                         input=wheel.read_bytes())
        if proc.returncode != 0:
            raise BackendError(f"cannot copy gitexp to {self.host}: "
                               f"{_last_line(proc.stderr.decode(errors='replace'))}",
                               hint=f"is {self.workdir} writable on {self.host}?")


def _last_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else ""
