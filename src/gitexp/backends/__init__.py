"""Backends: the code for one kind of target, behind one small Protocol.

A backend starts the agent somewhere (`submit`), says whether it is still there (`alive`),
and stops it (`cancel`). Everything else - snapshot, record, store, write-back - is shared.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from typing import Any, Protocol

from gitexp.config import Target
from gitexp.git import Repo
from gitexp.record import RunRecord
from gitexp.stores import Store

Handle = dict[str, Any]  # what a backend needs to find its job again: pid, job id, VM name


@dataclass(frozen=True)
class Launch:
    repo: Repo
    record: RunRecord
    store: Store
    heartbeat: float


class Backend(Protocol):
    def store_url(self) -> str:
        """Where this target's code and results travel."""

    def submit(self, *, launch: Launch) -> Handle:
        """Start the agent for `launch.record`; return how to find it again."""

    def alive(self, *, record: RunRecord, handle: Handle) -> bool | None:
        """True: still there. False: gone (so a run without a result is lost). None: unknown."""

    def cancel(self, *, record: RunRecord, handle: Handle) -> None:
        """Stop the job now (the agent also honours the store's cancel marker)."""


REGISTRY: dict[str, str] = {
    "local": "gitexp.backends.local:LocalBackend",
    "ssh": "gitexp.backends.ssh:SSHBackend",
    "docker": "gitexp.backends.docker:DockerBackend",
    "gce": "gitexp.backends.gce:GCEBackend",
    "slurm": "gitexp.backends.slurm:SlurmBackend",
    "kubernetes": "gitexp.backends.kubernetes:KubernetesBackend",
}


def backend_for(target: Target, repo: Repo) -> Backend:
    module, _, cls = REGISTRY[target.backend].partition(":")
    backend: Backend = getattr(import_module(module), cls)(target=target, repo=repo)
    return backend
