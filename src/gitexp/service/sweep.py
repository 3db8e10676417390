"""Sweeps: one run per combination of parameter values, all from one snapshot.

    git exp run --sweep lr=1e-3,1e-4 --sweep bs=32,64 --max-parallel 2 -- \\
        python train.py --lr {lr} --bs {bs}

Each combination becomes its own run (own ref, own record with `params` and `sweep`), all
recorded from one snapshot of the work tree. `{name}` is replaced inside argv items, and
only for the sweep's own names: no shell, no format specs, nothing else is touched.

`--max-parallel N`: a backend that can submit many runs as one job does the throttling
itself (Slurm: a job array `--array=0-3%2`). Every other target starts N agents, the
sweep's slots (`worker.slots`), each running the sweep's runs one after another: a waiting
run costs no process, and there is no dev-side daemon. Every run's handle names its slot.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass, replace

from gitexp.backends import Launch, SubmitsArrays
from gitexp.errors import GitexpError
from gitexp.git import Repo
from gitexp.git.config import Config
from gitexp.model import ids, sweepstate
from gitexp.model.record import Result
from gitexp.model.runstate import RunState
from gitexp.service import launch as launching
from gitexp.service import runs

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Sweep:
    id: str
    runs: list[runs.Run]


# -- expanding ------------------------------------------------------------------------------
def parse_axes(specs: list[str]) -> dict[str, list[str]]:
    """`["lr=1e-3,1e-4", "bs=32"]` -> `{"lr": ["1e-3", "1e-4"], "bs": ["32"]}`."""
    axes: dict[str, list[str]] = {}
    for spec in specs:
        name, eq, values = spec.partition("=")
        name = name.strip()
        if not eq or not _NAME.match(name):
            raise GitexpError(f"bad sweep {spec!r}", hint="write --sweep NAME=V1,V2,... "
                              "(NAME: letters, digits, _), e.g. --sweep lr=1e-3,1e-4")
        if name in axes:
            raise GitexpError(f"sweep parameter {name!r} given twice",
                              hint=f"list all its values once: --sweep {name}=A,B,C")
        items = [v.strip() for v in values.split(",")]
        if not all(items):
            raise GitexpError(f"sweep {name!r} has an empty value",
                              hint=f"e.g. --sweep {name}=1,2,3")
        axes[name] = items
    return axes


def points(axes: dict[str, list[str]]) -> list[dict[str, str]]:
    """Every combination, the first parameter varying slowest."""
    return [dict(zip(axes, combo, strict=True)) for combo in itertools.product(*axes.values())]


def substitute(argv: list[str], point: dict[str, str]) -> list[str]:
    """Replace `{name}` inside argv items, for the names of `point` only."""
    if not point:
        return list(argv)
    pattern = re.compile("|".join(re.escape("{" + name + "}") for name in point))
    return [pattern.sub(lambda m: point[m.group(0)[1:-1]], item) for item in argv]


def check_used(argv: list[str], axes: dict[str, list[str]]) -> None:
    for name in axes:
        if not any("{" + name + "}" in item for item in argv):
            raise GitexpError(f"sweep parameter {name!r} is not used by the command",
                              hint=f"put {{{name}}} where its value goes, "
                                   f"e.g. -- python train.py --{name} {{{name}}}")


# -- launching ------------------------------------------------------------------------------
def launch(repo: Repo, config: Config, req: launching.LaunchRequest, axes: dict[str, list[str]],
           *, max_parallel: int = 0) -> Sweep:
    """Record one run per point from one snapshot, then start them on the target."""
    if max_parallel < 0:
        raise GitexpError("--max-parallel must be 1 or more")
    check_used(req.argv, axes)
    base = req.name or ids.default_name(req.argv)
    sweep_id = ids.new_id(f"sweep-{base}"[:40].strip("-"))
    reqs = [replace(req, argv=substitute(req.argv, point), sweep=sweep_id,
                    params={**(req.params or {}), **point}) for point in points(axes)]
    recorded = launching.record_runs(repo, config, reqs)
    records, store = recorded.records, recorded.store
    throttle = max_parallel if 0 < max_parallel < len(records) else 0
    if isinstance(recorded.backend, SubmitsArrays):
        return Sweep(id=sweep_id, runs=_submit_array(
            repo, config, recorded, backend=recorded.backend, throttle=throttle,
            prepare=req.prepare))
    if throttle:
        return Sweep(id=sweep_id, runs=_submit_slots(
            repo, config, recorded, sweep=sweep_id, slots=throttle, prepare=req.prepare,
            progress=req.progress))
    started = []
    for i, record in enumerate(records):
        try:
            started.append(launching.submit(repo, config, record, target=recorded.target,
                                            backend=recorded.backend, store=store,
                                            prepare=req.prepare, progress=req.progress))
        except GitexpError as exc:  # this run is written back `failed`; so are the rest
            launching.fail(repo, store, records[i + 1:], f"not started: {exc.message}")
            raise
    return Sweep(id=sweep_id, runs=started)


def _submit_array(repo: Repo, config: Config, recorded: launching.Recorded, *,
                  backend: SubmitsArrays, throttle: int,
                  prepare: launching.Prepare | None) -> list[runs.Run]:
    """Every run of the sweep as one submission (a Slurm job array), throttled by the
    engine itself; otherwise what launch.submit does for one run."""
    records, store, target = recorded.records, recorded.store, recorded.target
    try:
        for record in records:  # siblings share the tree: the code travels once
            launching.ready(repo, config, record, target=target, store=store, prepare=prepare)
        handles = backend.submit_array(
            launches=[Launch(repo=repo, record=r, store=store,
                             heartbeat=config.heartbeat()) for r in records],
            max_parallel=throttle)
    except GitexpError as exc:
        launching.fail(repo, store, records, f"not started: {exc.message}")
        raise
    for record, handle in zip(records, handles, strict=True):
        RunState(store, record.id).set_handle(target.name, handle)
    return [runs.Run(record=r, result=Result(status="queued"), commit=r.snapshot,
                     written_back=False, own=r.seal is not None) for r in records]


def _submit_slots(repo: Repo, config: Config, recorded: launching.Recorded, *, sweep: str,
                  slots: int, prepare: launching.Prepare | None,
                  progress: Callable[[str, int, int], None] | None) -> list[runs.Run]:
    """`slots` agents for the whole sweep, each taking the runs one after another in the
    plan's order (worker.slots). Each run's handle is a slot's (`slot`: which, `slots`: N):
    the dev side asks for the slot that claimed the run, or, before any did, for them all."""
    records, store, target, backend = (recorded.records, recorded.store, recorded.target,
                                       recorded.backend)
    try:
        for record in records:  # siblings share the tree: the code travels once
            launching.ready(repo, config, record, target=target, store=store, prepare=prepare,
                            progress=progress)
        sweepstate.write_plan(store, sweepstate.Plan(sweep=sweep, slots=slots, members=[
            sweepstate.Member(run=r.id, snapshot=r.snapshot) for r in records]))
    except GitexpError as exc:
        launching.fail(repo, store, records, f"not started: {exc.message}")
        raise
    handles: list[dict[str, object]] = []
    try:
        for k in range(slots):
            handle = backend.submit(launch=Launch(repo=repo, record=records[0], store=store,
                                                  heartbeat=config.heartbeat(), slot=k))
            sweepstate.set_slot_handle(store, sweep, k, target.name, handle)
            handles.append(handle)
    except GitexpError as exc:
        # The slots that started finish the runs they took; no other run starts.
        left = [r for r in records if RunState(store, r.id).claim(None)]
        launching.fail(repo, store, left, f"not started: {exc.message}")
        raise
    finally:
        for i, record in enumerate(records):
            if handles:
                k = i % len(handles)
                RunState(store, record.id).set_handle(
                    target.name, {**handles[k], "slot": k, "slots": len(handles)})
    return [runs.Run(record=r, result=Result(status="queued"), commit=r.snapshot,
                     written_back=False, own=r.seal is not None) for r in records]
