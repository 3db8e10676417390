"""Backends: the code for one kind of target, behind one small Protocol.

A backend starts the agent somewhere (`submit`), says whether it is still there (`alive`),
and stops it (`cancel`). Everything else - snapshot, record, store, write-back - is shared.
What only some engines can do is a small runtime-checkable Protocol of its own, asked for
with `isinstance`: `Explains` (how a job without a result ended), `KeepsLogs` (the engine's
own copy of the job's output), `SubmitsArrays` (many runs as one throttled submission) and
`StartsAhead` (an agent started while the snapshot is taken).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from gitexp import extras
from gitexp.git import Repo
from gitexp.git.config import Config, Target
from gitexp.model.ids import slot_name
from gitexp.stores import Store, run_key, slot_key
from gitexp.stores import needs as store_needs
from gitexp.worker import ATTEMPTS, CHECKPOINT_BYTES

if TYPE_CHECKING:  # types only: the agent is started before these load (cli/_ahead)
    from gitexp.model.record import RunRecord
    from gitexp.model.runstate import Handle


@dataclass(frozen=True)
class Launch:
    """What to start: one run's agent, or (with `slot`) slot k of the run's sweep, an agent
    that runs the sweep's runs one after another (`worker.slots`, `--max-parallel`)."""
    repo: Repo
    record: RunRecord  # for a slot: the sweep's first run (its sweep, target and store)
    store: Store
    heartbeat: float
    slot: int | None = None
    max_checkpoint: int = CHECKPOINT_BYTES  # exp.maxCheckpointSize

    def limits(self, target: Target) -> tuple[int, int]:
        """`agent_argv`'s `limits`: how far a preempted run may come back."""
        return limits_for(target, self.max_checkpoint)

    @property
    def name(self) -> str:
        """What names the agent's job (a container, VM, Job, log file): run id or slot."""
        if self.slot is None or not self.record.sweep:
            return self.record.id
        return slot_name(self.record.sweep, self.slot)

    def job(self) -> dict[str, Any]:
        """`agent_argv`'s words for what the agent runs: the run, or the slot."""
        if self.slot is None or not self.record.sweep:
            return {"run_id": self.record.id, "snapshot": self.record.snapshot}
        return {"slot": (self.record.sweep, self.slot)}

    def log_key(self) -> str:
        """The store key for the agent's own output, where a backend keeps it in the store."""
        if self.slot is None or not self.record.sweep:
            return run_key(self.record.id, "agent.log")
        return slot_key(self.record.sweep, self.slot, "log")

    def workdir(self, root: str) -> str:
        """The agent's work directory under `root`: the run's own, or the slot's root (one
        directory per run inside, named by the run as a lone agent's would be)."""
        return root if self.slot is not None and self.record.sweep else f"{root}/{self.record.id}"


def limits_for(target: Target, max_checkpoint: int) -> tuple[int, int]:
    """`agent_argv`'s `limits`: the target's attempts (exp.target.<n>.maxAttempts), and the
    bytes of one checkpoint."""
    return (target.count("maxAttempts", ATTEMPTS) or 1, max_checkpoint)


def max_checkpoint(config: Config) -> int:
    """exp.maxCheckpointSize: the bytes one checkpoint's files may hold."""
    return config.size("exp.maxCheckpointSize", CHECKPOINT_BYTES)



WARM_DEFAULT = 4  # warm checkouts a worker keeps (exp.target.<n>.warmCheckouts)


def warm_count(target: Target) -> int:
    """How many warm checkouts the target's workers keep (worker.workspace.Pool)."""
    return target.count("warmCheckouts", WARM_DEFAULT) or 0


def job_mark(record: RunRecord, handle: Handle) -> str:
    """What the agent's command line names, to tell it from a process that got its pid:
    the run, or the sweep of the slot that runs it (`handle["slot"]`)."""
    return record.sweep if "slot" in handle and record.sweep else record.id


@runtime_checkable
class Backend(Protocol):
    def store_url(self) -> str:
        """Where this target's code and results travel."""

    def submit(self, *, launch: Launch) -> Handle:
        """Start the agent for `launch.record` (or the sweep's `launch.slot`); return how to
        find it again."""

    def alive(self, *, record: RunRecord, handle: Handle) -> bool | None:
        """True: still there. False: gone (so a run without a result is lost). None: unknown."""

    def cancel(self, *, record: RunRecord, handle: Handle) -> None:
        """Stop the job now (the agent also honours the store's cancel marker)."""


@runtime_checkable
class Explains(Protocol):
    def ended_as(self, *, record: RunRecord, handle: Handle) -> tuple[str, str] | None:
        """(status, why) in the engine's words for a job that left no result, or None."""


@runtime_checkable
class Retries(Protocol):
    def retry(self, *, launch: Launch, handle: Handle, attempt: int) -> Handle:
        """Start `attempt` of a run whose last one the platform took with its machine (a
        preempted VM: nothing there retries it), on the same snapshot; its handle. What is
        left of the last one (a stopped VM) goes."""


@runtime_checkable
class KeepsLogs(Protocol):
    def logs(self, *, record: RunRecord, handle: Handle) -> bytes | None:
        """The job's output as the engine kept it (the agent never reached the store)."""


@runtime_checkable
class StartsAhead(Protocol):
    def start_ahead(self, *, name: str, heartbeat: float,
                    max_checkpoint: int) -> tuple[str, Callable[[], None]]:
        """Start the agent of the run to be recorded now, before its snapshot exists: its
        start-up overlaps the snapshot. Returns the run id it was started for (named
        `name`) and a function that, called when the launch stops before `submit` hands
        the run's agent its snapshot, ends it having done nothing."""

    def start_early(self, *, name: str, heartbeat: float,
                    max_checkpoint: int) -> Callable[[], None]:
        """The same, before the launch has begun (`git exp run`, as it starts): the
        launch's `start_ahead` takes that agent if it is the one it would start. The
        function returned ends it if it was never handed its snapshot."""


@runtime_checkable
class SubmitsArrays(Protocol):
    def submit_array(self, *, launches: list[Launch], max_parallel: int) -> list[Handle]:
        """Submit several runs as one job, at most `max_parallel` at once (0: no limit)."""


REGISTRY: dict[str, str] = {
    "local": "gitexp.backends.local:LocalBackend",
    "ssh": "gitexp.backends.ssh:SSHBackend",
    "docker": "gitexp.backends.docker:DockerBackend",
    "gce": "gitexp.backends.gce:GCEBackend",
    "slurm": "gitexp.backends.slurm:SlurmBackend",
    "kubernetes": "gitexp.backends.kubernetes:KubernetesBackend",
}


def backend_for(target: Target, repo: Repo, *, check: bool = True) -> Backend:
    """The backend of `target`. With `check`, MissingExtraError when it or its store needs
    an optional module that is not installed: checked here, so before a launch records
    anything and before a run's state is read (`gitexp.extras`)."""
    module, _, cls = REGISTRY[target.backend].partition(":")
    kind = getattr(import_module(module), cls)
    backend: Backend = kind(target=target, repo=repo)
    if check:
        extras.require(f"target {target.name!r}", *getattr(kind, "needs", ()),
                       *store_needs(backend.store_url()))
    return backend
