"""The slurm target: the agent runs as a Slurm batch job, submitted with `sbatch`.

    exp.target.hpc.backend     = slurm
    exp.target.hpc.store       = file:///shared/me/gitexp   where code and results travel
    exp.target.hpc.workerstore = file:///shared/me/gitexp   the same store as compute nodes
                                 see it (default: `store`; e.g. store = ssh://login/scratch/x,
                                 workerstore = file:///scratch/x)
    exp.target.hpc.host        = login.cluster.edu   submit through ssh on a login node
                                 (default: sbatch on this machine)
    exp.target.hpc.partition / time / cpus / mem / gpus / gres / account / qos
    exp.target.hpc.sbatch      = --constraint=a100; --exclusive   more #SBATCH options
    exp.target.hpc.setup       = module load python/3.11   shell run before the agent
    exp.target.hpc.python      = python3             the compute nodes' Python
    exp.target.hpc.workdir     = /local/scratch      where checkouts go (default $TMPDIR)

The job script is `templates/sbatch.sh`; it is fed to `sbatch --parsable` on stdin, so
nothing is left behind on the login node. A sweep is one job array (`--array=0-N%P`), one
run per array task. gitexp's own wheel travels in the store, so compute nodes need only
Python and git. Status comes from the agent's heartbeat and result in the store; Slurm is
asked (`squeue`) only whether the job is still there, and `scancel` stops it.
"""

from __future__ import annotations

import shlex
import socket
import subprocess
import time
from pathlib import PurePosixPath
from urllib.parse import unquote, urlsplit

from gitexp.backends import Launch, templates, warm_count
from gitexp.backends.templates import ShellWord
from gitexp.errors import BackendError, ConfigError
from gitexp.git import Repo
from gitexp.git.config import Target
from gitexp.model.record import Result, RunRecord
from gitexp.model.runstate import Handle, RunState
from gitexp.stores import Store, open_store
from gitexp.stores.sftp import ssh_argv as user_ssh
from gitexp.stores.transport import code_repo
from gitexp.worker import agent_argv, bootstrap

CLI_TIMEOUT = 60.0
# Slurm job states in which the job (and so the agent) may still be there.
ACTIVE = frozenset({"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED",
                    "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESIZING", "SIGNALING",
                    "STAGE_OUT", "STOPPED"})
# A job that ended without the agent's result (it never started, or was killed hard).
ENDED_AS = {"CANCELLED": "cancelled", "FAILED": "failed", "TIMEOUT": "timeout",
            "OUT_OF_MEMORY": "failed", "DEADLINE": "failed", "BOOT_FAIL": "lost",
            "NODE_FAIL": "lost", "PREEMPTED": "lost", "COMPLETED": "lost"}
TIME_WARNING = 60  # s before the time limit that the agent is told (SIGUSR1)
# Target key -> sbatch option; a key that is unset adds no line.
OPTIONS = {"partition": "partition", "time": "time", "cpus": "cpus-per-task", "mem": "mem",
           "gpus": "gpus", "gres": "gres", "account": "account", "qos": "qos"}
OUTPUT_README = "slurm/README"
_QUEUE_TTL = 2.0  # one `squeue` answers for every run of an `ls` (ssh round trips add up)
_queue_cache: dict[str, tuple[float, dict[str, str]]] = {}


class SlurmBackend:
    def __init__(self, *, target: Target, repo: Repo) -> None:
        self.target = target
        self.repo = repo
        self.host = target.get("host") or None

    def store_url(self) -> str:
        return self.target.require("store")

    def worker_store_url(self) -> str:
        return self.target.get("workerstore") or self.store_url()

    # -- backend protocol --------------------------------------------------------------------
    def submit(self, *, launch: Launch) -> Handle:
        return self.submit_array(launches=[launch], max_parallel=0)[0]

    def submit_array(self, *, launches: list[Launch], max_parallel: int) -> list[Handle]:
        """Submit several runs as one job (a job array when there is more than one)."""
        store = launches[0].store  # the code is there already (launch.submit, sweep.launch)
        if local_path(self.worker_store_url()) and store.read(OUTPUT_README) is None:
            # Slurm writes #SBATCH --output there but never creates the directory.
            store.write(OUTPUT_README, b"Slurm's own output of gitexp's jobs.\n")
        script = self.script(launches, max_parallel=max_parallel, wheel=self.ship_wheel(store))
        job = self.slurm(["sbatch", "--parsable"], stdin=script).stdout.strip().split(";")[0]
        if not job.isdigit():
            raise BackendError(f"sbatch gave no job id: {job!r}")
        _queue_cache.pop(self.host or "", None)
        where = self.host or socket.gethostname()
        if len(launches) == 1:
            return [{"job": job, "host": where}]
        return [{"job": f"{job}_{i}", "array": job, "host": where} for i in range(len(launches))]

    def alive(self, *, record: RunRecord, handle: Handle) -> bool | None:
        state = self.job_state(str(handle["job"]))
        return None if state is None else state in ACTIVE

    def ended_as(self, *, record: RunRecord, handle: Handle) -> tuple[str, str] | None:
        """How the job ended in Slurm's words, for a run whose agent left no result."""
        job = str(handle["job"])
        state = self.job_state(job)
        if state is None or state in ACTIVE or state == "GONE":
            return None
        status = ENDED_AS.get(state, "lost")
        return status, f"Slurm job {job} ended {state} without the agent's result"

    def cancel(self, *, record: RunRecord, handle: Handle) -> None:
        job = str(handle["job"])
        state = self.job_state(job)
        self.slurm(["scancel", job])
        if state == "PENDING":  # the agent never started: nobody else will say it ended
            mark_cancelled(record, "cancelled while queued in Slurm")

    # -- Slurm -------------------------------------------------------------------------------
    def job_state(self, job: str) -> str | None:
        """The job's Slurm state; "GONE" once Slurm forgot it; None when Slurm cannot answer."""
        try:
            queue = self.queue()
        except BackendError:
            return None
        return queue.get(job, "GONE")

    def queue(self) -> dict[str, str]:
        """job id (`123`, or `123_4` for an array task) -> state, for this user's jobs."""
        key = self.host or ""
        cached = _queue_cache.get(key)
        if cached and time.monotonic() - cached[0] < _QUEUE_TTL:
            return cached[1]
        out = self.slurm(["squeue", "--me", "--noheader", "--array", "--states=all",
                          "--format=%i %T"]).stdout
        states = dict(line.split(None, 1) for line in out.splitlines() if " " in line)
        _queue_cache[key] = (time.monotonic(), states)
        return states

    def slurm(self, argv: list[str], *, stdin: str | None = None,
              ) -> subprocess.CompletedProcess[str]:
        """Run a Slurm command here, or on the login node through the user's own ssh."""
        full = argv if not self.host else [*ssh_argv(self.target, self.host), shlex.join(argv)]
        try:
            proc = subprocess.run(full, input=stdin, capture_output=True, text=True,
                                  timeout=CLI_TIMEOUT, check=False)
        except FileNotFoundError:
            raise BackendError(f"{full[0]} is not installed here",
                               hint=f"run on a Slurm login node, or set "
                                    f"exp.target.{self.target.name}.host to one") from None
        except subprocess.TimeoutExpired:
            raise BackendError(f"{argv[0]} did not answer in {CLI_TIMEOUT:.0f}s",
                               hint="is slurmctld up? `sinfo` checks") from None
        if proc.returncode != 0:
            err = [ln for ln in proc.stderr.splitlines() if ln.strip()]
            raise BackendError(f"{argv[0]} failed: {err[-1] if err else proc.returncode}",
                               hint="`sinfo` shows the partitions; check the target's "
                                    f"settings with `git config --get-regexp "
                                    f"exp.target.{self.target.name}`")
        return proc

    # -- the job script ----------------------------------------------------------------------
    def script(self, launches: list[Launch], *, max_parallel: int, wheel: str) -> str:
        records = [launch.record for launch in launches]
        worker_store = self.worker_store_url()
        root = local_path(worker_store)
        header = {"job-name": records[0].sweep or records[0].id if len(records) > 1
                  else records[0].id}
        if len(records) > 1:
            header["array"] = f"0-{len(records) - 1}" + (f"%{max_parallel}"
                                                        if max_parallel else "")
        pattern = "%A_%a" if len(records) > 1 else "%j"
        header["output"] = (f"{root}/slurm/slurm-{pattern}.out" if root
                            else f"gitexp-slurm-{pattern}.out")
        header.update({opt: v for key, opt in OPTIONS.items() if (v := self.target.get(key))})
        # The agent is the batch shell (exec'd): USR1 ahead of the time limit ends the run
        # `timeout`; a requeued job runs the agent again, as the run's next attempt.
        header["signal"] = f"B:USR1@{TIME_WARNING}"
        lines = [f"#SBATCH --{opt}={shlex.quote(value)}" for opt, value in header.items()]
        lines.append("#SBATCH --requeue" if launches[0].limits(self.target)[0] > 1
                     else "#SBATCH --no-requeue")
        lines += [f"#SBATCH {shlex.join(self._words(extra))}"
                  for extra in (self.target.get("sbatch") or "").split(";") if extra.strip()]
        if any("\n" in line for line in lines):
            raise ConfigError(f"target {self.target.name!r}: a Slurm option has a line break")
        setup = self.target.get("setup") or ""
        if wheel:  # gitexp's own wheel first on sys.path: the agent is this very version
            setup = f"export PYTHONPATH={shlex.quote(wheel)}${{PYTHONPATH:+:$PYTHONPATH}}\n" \
                    + setup
        values = {
            "sbatch_options": "\n".join(lines),
            "runs": shlex.join(r.id for r in records),
            "snapshots": shlex.join(r.snapshot for r in records),
            "setup": setup,  # the user's own shell, from their own configuration
            "log_dir": shlex.quote(f"{root}/runs" if root else ""),
            "workdir": shlex.quote(self.target.get("workdir") or ""),
            "agent": templates.shell_command(agent_argv(
                self.target.get("python") or "python3", store=worker_store,
                code=f"{root}/{code_repo(records[0].snapshot)}" if root else worker_store,
                run_id=ShellWord('"$run"'), snapshot=ShellWord('"$snapshot"'),
                workdir=ShellWord('"${workdir:-${TMPDIR:-/tmp}}/gitexp-$run"'),
                heartbeat=launches[0].heartbeat, limits=launches[0].limits(self.target),
                # On the node's own disk, across jobs (a job's $TMPDIR may die with it).
                warm=(warm_count(self.target),
                      ShellWord('"${workdir:-/tmp}/gitexp-warm-$(id -u)"')))),
        }
        # Each value above is already quoted for its place (shell words, #SBATCH lines).
        return templates.render("sbatch.sh", values, quote=str)

    def _words(self, option: str) -> list[str]:
        try:
            return shlex.split(option)
        except ValueError as exc:  # an unbalanced quote: a user error, not a traceback
            raise ConfigError(f"target {self.target.name!r}: sbatch option {option.strip()!r}: "
                              f"{exc}", hint="quote it as in a shell: --comment='a b'") from None

    # -- what travels through the store ------------------------------------------------------
    def ship_wheel(self, store: Store) -> str:
        """Put gitexp's wheel in the store (once per version); its path as workers see it."""
        root = local_path(self.worker_store_url())
        if not root:
            return ""  # the compute nodes need gitexp installed (`python` names that Python)

        return str(PurePosixPath(root) / bootstrap.ensure_wheel(store))


def mark_cancelled(record: RunRecord, why: str) -> None:
    """Write `cancelled` for a run whose agent never started (it has no heartbeat)."""
    # An agent that is (or was) there writes its own result.
    RunState(open_store(record.store), record.id).write_result_once(
        Result(status="cancelled", ended_at=time.time(), error=why), snapshot=record.snapshot)


def ssh_argv(target: Target, host: str) -> list[str]:
    """The user's own ssh (their keys, agent, ProxyJump); `sshconfig` names a config file."""
    return [*user_ssh(host, config=target.get("sshconfig") or target.get("ssh_config")), "--"]


def local_path(url: str) -> str:
    """The directory of a `file://` store URL, or "" for a remote (gs://, ssh://) store."""
    parts = urlsplit(url)
    return unquote(parts.path).rstrip("/") if parts.scheme in ("", "file") else ""
