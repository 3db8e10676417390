"""Shared plumbing for the service fixtures: ports, waiting, child processes, locks."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn, TypeVar

import pytest

T = TypeVar("T")


def unavailable(name: str, why: str) -> NoReturn:
    """A service could not start: fail under CI (never silently skip there), skip elsewhere."""
    message = f"service {name} unavailable: {why}"
    if os.environ.get("CI") == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)  # reached only outside CI: under CI=true the line above fails


def require_binaries(name: str, *paths: str) -> None:
    """Calls `unavailable` unless every executable exists (by path or on PATH)."""
    missing = [p for p in paths if not (Path(p).exists() if "/" in p else shutil.which(p))]
    if missing:
        unavailable(name, f"missing {', '.join(missing)}; run scripts/install-services.sh")


def is_root() -> bool:
    return os.geteuid() == 0


def free_port() -> int:
    """A loopback port free right now. Callers retry on a bind race with another process."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def wait_until(predicate: Callable[[], T], timeout: float, every: float = 0.05) -> T | None:
    """Polls until `predicate()` is truthy (returns it) or the timeout passes (returns None)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            return None
        time.sleep(every)


def started(proc: subprocess.Popen[bytes], ready: Callable[[], bool], timeout: float) -> bool:
    """Waits until `ready()` or until `proc` died; True if it is up and still running."""
    wait_until(lambda: ready() or proc.poll() is not None, timeout)
    return proc.poll() is None and ready()


def spawn(argv: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Starts a daemon in its own process group (so stopping it also stops its children)."""
    with log.open("ab") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True,
                                env={**os.environ, **(env or {})})


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 5) -> None:
    """SIGTERM to the process group, SIGKILL if it lingers; always reaps."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); it is not alive for our purposes.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@contextlib.contextmanager
def file_lock(path: Path, shared: bool = False) -> Iterator[None]:
    """An fcntl lock across processes (xdist workers, parallel pytest runs)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
