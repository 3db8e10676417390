"""`slurm`: a single-node Slurm cluster (munged + slurmctld + slurmd, CPUs=2) in the fixed
directory /tmp/gitexp-slurm, shared by every pytest process on the machine.

Callers mark their tests `@pytest.mark.xdist_group("slurm")`. The fixture is still safe when
several processes ask at once: start-up runs under an fcntl lock, a healthy cluster is
reused, and each session holds a shared "users" lock while it uses the cluster; the last
session to leave shuts slurmctld/slurmd down (set GITEXP_SLURM_KEEP=1 to keep them up for
the next run). munged is a machine-wide daemon and is left running.

`stop_slurmd()` affects every session sharing the cluster (their jobs wait until the
test's `start_slurmd()`); other sessions leave a purposely stopped slurmd alone for 2 minutes.
A fresh start wipes the directory (state, spool, jobcomp file), so job ids restart at 1.
Jobs run as the submitting user: root from the tests, `gitexp-worker` over `sshd`.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.services._util import (
    file_lock,
    is_root,
    pid_alive,
    read_pid,
    require_binaries,
    tail,
    unavailable,
    wait_until,
)

SLURM_DIR = Path("/tmp/gitexp-slurm")
SLURM_CONF = SLURM_DIR / "slurm.conf"
START_LOCK = Path("/tmp/gitexp-slurm.lock")  # outside SLURM_DIR, which a fresh start wipes
USERS_LOCK = Path("/tmp/gitexp-slurm.users")
STOPPED_GRACE = 120  # s: a slurmd stopped by a test longer ago than this is restarted

CONF = """\
ClusterName=test
SlurmctldHost=localhost(127.0.0.1)
# Not the default ports: ad-hoc clusters elsewhere on the machine must not collide with ours.
SlurmctldPort=16817
SlurmdPort=16818
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation={dir}/state
SlurmdSpoolDir={dir}/spool
SlurmctldPidFile={dir}/slurmctld.pid
SlurmdPidFile={dir}/slurmd.pid
SlurmctldLogFile={dir}/log/slurmctld.log
SlurmdLogFile={dir}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc={dir}/log/jobcomp.txt
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
# Keep finished jobs visible to `scontrol show job` for 5 minutes.
MinJobAge=300
ReturnToService=2
# The main loop every 5 s (default 60): a pending job an event did not start waits that long.
SchedulerParameters=batch_sched_delay=0,sched_interval=5
# scancel: SIGTERM, then SIGKILL after 5 s (default 30 s is slow for tests).
KillWait=5
# Trust the node lines below even on a smaller machine (else the node drains).
SlurmdParameters=config_overrides
NodeName=localhost NodeAddr=127.0.0.1 CPUs=2 RealMemory={memory} State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
"""


def _memory_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return min(2000, int(line.split()[1]) // 1024)
    return 1000


class SlurmCluster:
    """Handle on the cluster in SLURM_DIR; every method is safe to call repeatedly."""

    def __init__(self, directory: Path = SLURM_DIR) -> None:
        self.dir = directory
        self.conf = directory / "slurm.conf"
        self.jobcomp = directory / "log" / "jobcomp.txt"
        self.env = {"SLURM_CONF": str(self.conf)}

    # --- queries -------------------------------------------------------------------------
    def _cmd(self, *argv: str, timeout: float = 15) -> subprocess.CompletedProcess[str]:
        return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout,
                              check=False, env={**os.environ, **self.env})

    def node_state(self) -> str:
        """`sinfo`'s state of the node ("idle", "allocated", "down*", ...), "" if unknown."""
        if not self.conf.exists():
            return ""
        try:
            proc = self._cmd("sinfo", "-h", "-o", "%T", timeout=10)
        except subprocess.TimeoutExpired:
            return ""
        return proc.stdout.strip() if proc.returncode == 0 else ""

    def controller_up(self) -> bool:
        pid = read_pid(self.dir / "slurmctld.pid")
        return pid is not None and pid_alive(pid) and bool(self.node_state())

    def slurmd_pid(self) -> int | None:
        pid = read_pid(self.dir / "slurmd.pid")
        return pid if pid is not None and pid_alive(pid) else None

    def wait_idle(self, timeout: float = 30) -> None:
        """Waits until the node is idle: no jobs, slurmd registered."""
        if not wait_until(lambda: self.node_state() == "idle", timeout, every=0.2):
            raise AssertionError(f"slurm node not idle after {timeout}s "
                                 f"(state {self.node_state()!r}):\n{self.logs()}")

    def wait_responding(self, timeout: float = 30) -> None:
        """Waits until slurmd answers (idle or running jobs; not down, no "*")."""
        def responding() -> bool:
            state = self.node_state()
            return bool(state) and "*" not in state and not state.startswith(("down", "drain"))

        if not wait_until(responding, timeout, every=0.2):
            raise AssertionError(f"slurmd not responding after {timeout}s "
                                 f"(state {self.node_state()!r}):\n{self.logs()}")

    def logs(self) -> str:
        log = self.dir / "log"
        return (f"--- slurmctld.log\n{tail(log / 'slurmctld.log')}\n"
                f"--- slurmd.log\n{tail(log / 'slurmd.log')}")

    # --- slurmd control (for "the node daemon died" tests) ---------------------------------
    def stop_slurmd(self, sig: int = signal.SIGTERM, timeout: float = 10) -> None:
        """Stops slurmd only; running job steps (slurmstepd) keep going, as on a real node."""
        pid = self.slurmd_pid()
        if pid is None:
            return
        # Tells other sessions sharing the cluster that slurmd is down on purpose.
        self._stopped_marker.touch()
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        if not wait_until(lambda: not pid_alive(pid), timeout):
            os.kill(pid, signal.SIGKILL)
            wait_until(lambda: not pid_alive(pid), timeout)

    @property
    def _stopped_marker(self) -> Path:
        return self.dir / "slurmd.stopped"

    def slurmd_stopped_on_purpose(self) -> bool:
        """slurmd was stopped by `stop_slurmd` in the last 2 minutes (a test will restart it)."""
        try:
            return time.time() - self._stopped_marker.stat().st_mtime < STOPPED_GRACE
        except FileNotFoundError:
            return False

    def start_slurmd(self, timeout: float = 30) -> None:
        """Starts slurmd (if stopped) and waits until it registered with slurmctld."""
        self._stopped_marker.unlink(missing_ok=True)
        if self.slurmd_pid() is not None:
            return
        log = self.dir / "log" / "slurmd.log"
        seen = log.stat().st_size if log.exists() else 0
        self._daemon("slurmd", "-f", str(self.conf), "-N", "localhost")

        def started() -> bool:
            with log.open("rb") as handle:
                handle.seek(seen)
                return b"slurmd started on" in handle.read()

        # slurmctld still reports the old state until the new slurmd has registered.
        if not wait_until(started, timeout, every=0.1):
            raise AssertionError(f"slurmd did not start:\n{self.logs()}")
        self.wait_responding(timeout)

    # --- whole cluster -----------------------------------------------------------------
    def _daemon(self, *argv: str) -> None:
        """Runs a Slurm daemon, which forks into the background and writes its pid file."""
        proc = self._cmd(*argv, timeout=30)
        if proc.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed: {proc.stderr}\n{self.logs()}")

    def start(self) -> None:
        """Fresh start: wipe the directory, ensure munged, start slurmctld and slurmd."""
        self.shutdown()
        ensure_munged()
        subprocess.run(["rm", "-rf", str(self.dir)], check=True)
        for sub in ("state", "spool", "log"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        # Users logging in over ssh (gitexp-worker) read the config and submit jobs.
        self.dir.chmod(0o755)
        self.conf.write_text(CONF.format(dir=self.dir, memory=_memory_mb()))
        self._daemon("slurmctld", "-c", "-f", str(self.conf))
        self._daemon("slurmd", "-f", str(self.conf), "-N", "localhost")
        self.wait_idle()

    def jobs(self) -> list[str]:
        """Ids of the jobs slurmctld still tracks as pending or running."""
        proc = self._cmd("squeue", "-h", "-o", "%i", "-t", "PD,R,CG,S", timeout=10)
        return proc.stdout.split() if proc.returncode == 0 else []

    def cancel_all(self, timeout: float = 15) -> None:
        """Cancels every job (slurmd's shutdown would leave their processes running)."""
        if self.jobs():
            self._cmd("scancel", "--partition", "debug", timeout=10)
            wait_until(lambda: not self.jobs(), timeout, every=0.2)

    def shutdown(self) -> None:
        """Stops slurmctld and slurmd (by their pid files: nothing else is touched)."""
        pids = [p for p in (read_pid(self.dir / "slurmctld.pid"), read_pid(self.dir / "slurmd.pid"))
                if p is not None and pid_alive(p)]
        if not pids:
            return
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.cancel_all()
            self._cmd("scontrol", "shutdown", timeout=10)
        if not wait_until(lambda: not any(pid_alive(p) for p in pids), 10, every=0.1):
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def ensure_munged() -> None:
    """munged must run for any Slurm RPC; start it if a credential round trip fails."""
    def works() -> bool:
        encode = subprocess.run(["munge", "-n"], capture_output=True, check=False)
        if encode.returncode != 0:
            return False
        decode = subprocess.run(["unmunge"], input=encode.stdout, capture_output=True,
                                check=False)
        return decode.returncode == 0

    if works():
        return
    subprocess.run(["install", "-d", "-o", "munge", "-g", "munge", "-m", "0755", "/run/munge"],
                   check=True)
    # --force: a munged killed earlier leaves a stale socket/pid file that blocks start-up.
    proc = subprocess.run(["runuser", "-u", "munge", "--", "/usr/sbin/munged", "--force"],
                          capture_output=True, text=True, check=False)
    if not wait_until(works, 10, every=0.1):
        raise RuntimeError(f"munged did not start: {proc.stderr}")


@contextlib.contextmanager
def cluster_user() -> Iterator[SlurmCluster]:
    """Starts (or reuses) the cluster and holds a shared 'users' lock while in use."""
    cluster = SlurmCluster()
    users = USERS_LOCK.open("a")
    try:
        with file_lock(START_LOCK):
            if not cluster.controller_up():
                cluster.start()
            elif cluster.slurmd_pid() is None and not cluster.slurmd_stopped_on_purpose():
                cluster.start_slurmd()  # it crashed, or a session died before restarting it
            fcntl.flock(users, fcntl.LOCK_SH)
        yield cluster
    finally:
        fcntl.flock(users, fcntl.LOCK_UN)
        if os.environ.get("GITEXP_SLURM_KEEP") != "1":
            with file_lock(START_LOCK):
                try:
                    fcntl.flock(users, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    pass  # another session still uses the cluster: it shuts it down
                else:
                    cluster.shutdown()
        users.close()


@pytest.fixture(scope="session")
def slurm() -> Iterator[SlurmCluster]:
    """The single-node cluster (partition `debug`, node `localhost`, CPUs=2), idle."""
    require_binaries("slurm", "slurmctld", "slurmd", "sbatch", "munge", "/usr/sbin/munged")
    if not is_root():
        unavailable("slurm", "slurmd must run as root")
    with contextlib.ExitStack() as stack:
        try:
            cluster = stack.enter_context(cluster_user())
        except (RuntimeError, OSError, AssertionError, subprocess.SubprocessError) as exc:
            unavailable("slurm", str(exc))
        yield cluster


@pytest.fixture
def slurm_env(slurm: SlurmCluster, monkeypatch: pytest.MonkeyPatch) -> SlurmCluster:
    """`slurm`, idle, with SLURM_CONF set in os.environ for this test only. A job an earlier
    test left (one that failed before its `sleep 300` ended) is cancelled first: tests that
    count on both CPUs (a requeued job must start again) would otherwise wait behind it."""
    slurm.cancel_all()
    slurm.wait_idle(timeout=60)
    for key, value in slurm.env.items():
        monkeypatch.setenv(key, value)
    return slurm
