"""The guard: the small process between the agent and the job, so that the job never outlives
its agent.

    python -I -S -c 'import guard ...' GITEXP/worker FD

The agent starts it early (`Guard.start`, while the checkout is made: its Python start-up
then costs the job's first line nothing) in a new session, with one end of a socket pair as
FD. The guard makes itself a child subreaper (every orphaned descendant of the job, a double
fork or a `setsid` included, is reparented to it, not to init) and asks for a parent-death
signal. It reads one request `{"argv", "cwd", "env"}`, starts the job in its own session
(the job's group: the agent's SIGTERM on cancel reaches it as before) and answers
`{"pid": N}` or `{"error": ...}`. When the socket reads EOF - the agent died, however
(SIGKILL too), or let go after a cancel's grace - or the parent-death signal arrives, the
guard SIGKILLs every descendant and exits. When the job's main process ends, what it left
behind is killed too. The guard exits with the job's exit code, 128+N for a job killed by
signal N (how the agent reports that anyway).

Linux only for the subreaper, the parent-death signal and /proc. Elsewhere (no prctl, no
/proc) the guard degrades to the socket and the job's process group: a process that left
that group (setsid) escapes it there.

Standard library only, and nothing else of gitexp: it runs on every worker. The /proc
helpers below also serve the dev side (`git exp cancel` of a lost run, `ls`/`gc` removing
dead runs' work directories): a process is the run's when its environment carries
`GITEXP_RUN_ID=<id>`, which a recycled pid never does.
"""

# ruff: noqa: PTH112, PTH120, PTH123, PTH208
# (no pathlib: the guard starts before every job, and starts lean)
from __future__ import annotations

import contextlib
import ctypes
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
RUN_ENV = "GITEXP_RUN_ID"  # set by the agent for the job: the mark of a run's processes
PROC = "/proc"


# -- the guard process ---------------------------------------------------------------------
def _prctl(option: int, value: int) -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(option, value, 0, 0, 0)) == 0
    except (OSError, AttributeError):  # not Linux: no prctl
        return False


# This module alone, as a top-level one (a directory in gitexp's wheel is a path too):
# `-I -S` skip site-packages and the gitexp package, a quarter of the start-up here.
_BOOT = "import sys; sys.path[:0] = sys.argv[1:2]; import guard; sys.exit(guard.main(sys.argv[2:]))"


class Guard:
    """The agent's side: a guard started ahead of the job, and the link that binds them."""

    def __init__(self, proc: subprocess.Popen[bytes], link: socket.socket) -> None:
        self.proc, self.link = proc, link

    @classmethod
    def start(cls, *, cwd: str, env: dict[str, str]) -> Guard:
        """Start a guard (a new session); the job's output will come on `proc.stdout`."""
        link, theirs = socket.socketpair()
        fd = theirs.fileno()
        try:
            proc = subprocess.Popen(
                [sys.executable, "-I", "-S", *(["-B"] if sys.dont_write_bytecode else []),
                 "-c", _BOOT, os.path.dirname(__file__), str(fd)],
                cwd=cwd, env=env,
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                start_new_session=True, pass_fds=(fd,))
        except BaseException:
            link.close()
            raise
        finally:
            theirs.close()
        return cls(proc, link)

    def run(self, argv: list[str], *, cwd: str, env: dict[str, str]) -> int:
        """Start the job; its pid. OSError(why) if it could not start."""
        with contextlib.suppress(OSError):  # a guard gone: its output says why, below
            self.link.sendall(json.dumps({"argv": argv, "cwd": cwd, "env": env}).encode()
                              + b"\n")
        said = _read_line(self.link, timeout=60.0)  # a bare Python start; a minute is broken
        if isinstance(said.get("pid"), int):
            return int(said["pid"])
        self.close()
        out = self.proc.communicate()[0].decode(errors="replace").strip().splitlines()
        raise OSError(said.get("error") or (out[-1] if out else "its guard did not start"))

    def close(self) -> None:
        """Let go: a guard whose job still runs kills its whole tree and exits."""
        self.link.close()


def _read_line(link: socket.socket, timeout: float | None) -> dict[str, Any]:
    data = b""
    link.settimeout(timeout)
    with contextlib.suppress(OSError):
        while not data.endswith(b"\n") and (chunk := link.recv(1 << 16)):
            data += chunk
    link.settimeout(None)
    try:
        said = json.loads(data)
    except ValueError:
        return {}
    return said if isinstance(said, dict) else {}


def main(argv: list[str]) -> int:
    link = socket.socket(fileno=int(argv[0]))
    woken = False

    def wake(*_: object) -> None:
        nonlocal woken
        woken = True

    # Signals meant for the job go to its group (a cancel: the agent's SIGTERM); Slurm's
    # scancel signals every process of the step, the guard too: it stays, to reap and kill
    # the leftovers. Handlers (not SIG_IGN) so that the job does not inherit them.
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
        signal.signal(sig, lambda *_: None)
    signal.signal(signal.SIGHUP, wake)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    # Raced by an agent dying before this line: the socket's EOF still says so.
    _prctl(PR_SET_PDEATHSIG, signal.SIGHUP)
    request = _read_line(link, timeout=None)
    if not isinstance(request.get("argv"), list) or woken:
        return 0  # the agent let go before the job (it failed, or was cancelled)
    try:
        job = subprocess.Popen(request["argv"], cwd=request["cwd"], env=request["env"],
                               close_fds=True, start_new_session=True)
    except OSError as exc:
        _tell(link, {"error": exc.strerror or str(exc)})
        return 127
    _tell(link, {"pid": job.pid})
    status = None
    while status is None:
        status = _reap(job.pid)
        if status is not None:
            break
        if woken or _closed(link, [wake_r]):
            _kill_tree(job.pid)
            return 128 + signal.SIGKILL
    _kill_tree(job.pid)  # what the job left behind dies with it
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) \
        else 128 + os.WTERMSIG(status)


def _tell(link: socket.socket, message: dict[str, object]) -> None:
    with contextlib.suppress(OSError):  # an agent already gone is seen at the next read
        link.sendall(json.dumps(message).encode() + b"\n")


def _closed(link: socket.socket, others: list[int]) -> bool:
    """Waits a while for the agent's end to close (or a signal); True once it has."""
    ready, _, _ = select.select([link.fileno(), *others], [], [], 1.0)
    for fd in ready:
        if fd in others:  # a signal woke us: drain its byte
            with contextlib.suppress(OSError):
                os.read(fd, 512)
    if link.fileno() not in ready:
        return False
    try:
        return link.recv(512) == b""  # the agent never writes: anything but EOF is noise
    except OSError:
        return True


def _reap(job: int) -> int | None:
    """Reap every ended child (the job, and orphans adopted as subreaper); the job's wait
    status once it ended."""
    found = None
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return found
        if pid == 0:
            return found
        if pid == job:
            found = status


def _kill_tree(group: int) -> None:
    """SIGKILL every descendant until none is left (a fork racing the kill is caught on the
    next pass: its parent's death reparents it here)."""
    with contextlib.suppress(OSError):
        os.killpg(group, signal.SIGKILL)  # all there is to reach without /proc
    if not os.path.isdir(PROC):
        return
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline:
        alive = [p for p in descendants(os.getpid()) if not _zombie(p)]
        for pid in alive:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        _reap(-1)
        if not alive:
            return
        time.sleep(0.01)


# -- /proc: what runs on this host ----------------------------------------------------------
def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (field 3 on), or None."""
    try:
        raw = _read(f"{PROC}/{pid}/stat")
    except OSError:
        return None
    return raw[raw.rfind(b")") + 2:].decode().split()


def started_at(pid: int) -> int | None:
    """When the process started (clock ticks after boot, /proc/PID/stat's field 22), while
    it lives: None for one gone or a zombie. With the boot, it names one process for good."""
    fields = _stat(pid)
    return None if fields is None or fields[0] in ("Z", "X") else int(fields[19])


def _zombie(pid: int) -> bool:
    fields = _stat(pid)
    return fields is None or fields[0] in ("Z", "X")


def _pids() -> list[int]:
    try:
        return [int(name) for name in os.listdir(PROC) if name.isdigit()]
    except OSError:
        return []


def descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid in _pids():
        fields = _stat(pid)
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(pid)
    found, todo = [], list(children.get(root, []))
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


def start_ticks(pid: int) -> int | None:
    """When the process started (clock ticks after boot): with the boot id, its identity."""
    fields = _stat(pid)
    return int(fields[19]) if fields is not None else None


def boot_id() -> str | None:
    try:
        return _read(f"{PROC}/sys/kernel/random/boot_id").decode().strip() or None
    except OSError:
        return None


def marked(pid: int, run_id: str) -> bool:
    """The process carries the run's mark in its environment (a live one, not a zombie)."""
    try:
        env = _read(f"{PROC}/{pid}/environ")
    except OSError:  # gone, or not ours to read: not ours to stop either
        return False
    return f"{RUN_ENV}={run_id}".encode() in env.split(b"\0") and not _zombie(pid)


def run_processes(run_id: str) -> list[int]:
    """Every live process on this host that carries the run's mark."""
    return [pid for pid in _pids() if pid != os.getpid() and marked(pid, run_id)]


def agent_running(run_id: str, sweep: str | None = None) -> bool:
    """An agent of the run lives on this host: its command line names the run, or the
    run's sweep (a slot, which may hold it)."""
    marks = [f"\0--run\0{run_id}\0".encode()]
    if sweep:
        marks.append(f"\0--sweep\0{sweep}\0".encode())
    for pid in _pids():
        try:
            cmdline = _read(f"{PROC}/{pid}/cmdline")
        except OSError:
            continue
        if b"gitexp.worker.agent" in cmdline and any(m in b"\0" + cmdline for m in marks):
            return True
    return False


def stop_job(run_id: str, *, pid: int, group: int, start: int, boot: str,
             grace: float = 5.0) -> list[int]:
    """Stop what is left of a run's job on this host: every process with the run's mark,
    and the job's process group while its main process `pid` is there and really is that
    one (same boot, same start time, the mark, the group) - which also reaches what cleared
    its environment but stayed in the group. SIGTERM, then SIGKILL after `grace`. Returns
    the processes found (none: nothing was left)."""
    if boot_id() != boot or not os.path.isdir(PROC):
        return []

    def leader() -> bool:  # asked before each signal: a pid is only trusted while it is there
        fields = _stat(pid)
        return fields is not None and int(fields[19]) == start and int(fields[2]) == group \
            and marked(pid, run_id)

    found = sorted(set(run_processes(run_id)) | ({pid} if leader() else set()))
    targets = set(found)
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        if leader():
            with contextlib.suppress(OSError):
                os.killpg(group, sig)
        for victim in targets:
            with contextlib.suppress(OSError):
                os.kill(victim, sig)
        deadline = time.monotonic() + wait
        while targets and time.monotonic() < deadline:
            time.sleep(0.05)
            targets = set(run_processes(run_id))
        if not targets:
            break
    return found


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
