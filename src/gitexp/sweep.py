"""Sweeps: one run per combination of parameter values, all from one snapshot.

    git exp run --sweep lr=1e-3,1e-4 --sweep bs=32,64 --max-parallel 2 -- \\
        python train.py --lr {lr} --bs {bs}

Each combination becomes its own run (own ref, own record with `params` and `sweep`), all
recorded from one snapshot of the work tree. `{name}` is replaced inside argv items, and
only for the sweep's own names: no shell, no format specs, nothing else is touched.

`--max-parallel N`: a backend that can submit many runs as one job does the throttling
itself (Slurm: a job array `--array=0-3%2`). Every other target starts all the agents at
once and the agents take turns through the store (`wait_turn`): no dev-side daemon.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from gitexp.errors import GitexpError
from gitexp.record import Result, RunRecord
from gitexp.stores import Store, run_key

if TYPE_CHECKING:  # the agent imports this module too: it stays light on the worker
    from gitexp import launch as launching
    from gitexp import runs
    from gitexp.config import Config
    from gitexp.git import Repo

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
POLL = 0.5  # how often a waiting agent looks at its siblings (one small read each)


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
    from gitexp import launch as launching
    from gitexp import refs

    if max_parallel < 0:
        raise GitexpError("--max-parallel must be 1 or more")
    check_used(req.argv, axes)
    base = req.name or refs.default_name(req.argv)
    sweep_id = refs.new_id(f"sweep-{base}"[:40].strip("-"))
    reqs = [replace(req, argv=substitute(req.argv, point), sweep=sweep_id,
                    params={**(req.params or {}), **point}) for point in points(axes)]
    recorded = launching.record_runs(repo, config, reqs)
    records, store = recorded.records, recorded.store
    throttle = max_parallel if 0 < max_parallel < len(records) else 0
    if getattr(recorded.backend, "submit_array", None) is not None:
        return Sweep(id=sweep_id, runs=_submit_array(repo, config, recorded, throttle))
    if throttle:  # the agents take turns (wait_turn) in this order
        store.write(plan_key(sweep_id), json.dumps(
            {"runs": [r.id for r in records], "max_parallel": throttle}).encode())
    started = []
    for i, record in enumerate(records):
        try:
            started.append(launching.submit(repo, config, record, target=recorded.target,
                                       backend=recorded.backend, store=store,
                                       progress=req.progress))
        except GitexpError as exc:  # this run is written back `failed`; so are the rest
            _fail(repo, store, records[i:], exc.message)
            raise
    return Sweep(id=sweep_id, runs=started)


def _submit_array(repo: Repo, config: Config, recorded: launching.Recorded,
                  throttle: int) -> list[runs.Run]:
    """Every run of the sweep as one submission (a Slurm job array), throttled by the
    engine itself; otherwise what launch.submit does for one run."""
    from gitexp import launch as launching
    from gitexp import runs, secrets, transport
    from gitexp.backends import Launch
    from gitexp.notify import dev as notify

    records, store, target = recorded.records, recorded.store, recorded.target
    heartbeat = config.get_float("exp.heartbeat", 2.0)
    try:
        for record in records:
            store.write(run_key(record.id, "status.json"), launching.queued_status())
            notify.at_launch(repo, config, record, target, store)
            secrets.publish_names(store, record.id, config, target)  # names: agent masks values
            transport.push_code(repo, store, record.snapshot)  # siblings share the tree
        handles = recorded.backend.submit_array(  # type: ignore[attr-defined]
            launches=[Launch(repo=repo, record=r, store=store, heartbeat=heartbeat)
                      for r in records], max_parallel=throttle)
    except GitexpError as exc:
        _fail(repo, store, records, exc.message)
        raise
    for record, handle in zip(records, handles, strict=True):
        store.write(run_key(record.id, "handle.json"),
                    json.dumps({"target": target.name, **handle}).encode())
    return [runs.Run(record=r, result=Result(status="queued"), commit=r.snapshot,
                     written_back=False) for r in records]


def _fail(repo: Repo, store: Store, records: list[RunRecord], why: str) -> None:
    from gitexp.results import write_back

    failed = Result(status="failed", error=f"not started: {why}", ended_at=time.time())
    for record in records:
        # In the store too: waiting siblings count it as finished.
        store.write(run_key(record.id, "result.json"), json.dumps(failed.to_dict()).encode())
        if store.read(run_key(record.id, "log")) is None:
            store.append(run_key(record.id, "log"), f"gitexp: {why}\n".encode())
        write_back(repo, record, failed, store)  # a no-op for one already written back


# -- taking turns (agent side) -------------------------------------------------------------
def plan_key(sweep_id: str) -> str:
    return f"sweeps/{sweep_id}.json"


def wait_turn(store: Store, record: RunRecord, stop: threading.Event, *,
              started: float) -> float | None:
    """Block until this run may start under its sweep's --max-parallel N.

    Run i of the sweep's order starts once at least i-N+1 of the runs before it finished.
    That bound holds for every run at once, so at most N ever run together, with no lock and
    no coordinator: only reads of the siblings' `result.json` (or a stale heartbeat).
    Returns when the run may start (`started` if it never waited), None if cancelled."""
    plan = _read_json(store, plan_key(record.sweep or ""))
    order = plan.get("runs") if plan else None
    if plan is None or not isinstance(order, list) or record.id not in order:
        return started
    index = order.index(record.id)
    need = index - int(plan.get("max_parallel") or index) + 1  # finished runs before this one
    if need <= 0:
        return started
    pending = list(order[:index])
    waited = False
    while True:
        pending = [other for other in pending if not _finished(store, other)]
        if index - len(pending) >= need:
            return time.time() if waited else started
        waited = True
        if stop.wait(POLL) or store.read(run_key(record.id, "cancel")) is not None:
            return None


def _finished(store: Store, run_id: str) -> bool:
    if store.read(run_key(run_id, "result.json")) is not None:
        return True
    beat = _read_json(store, run_key(run_id, "heartbeat"))
    if not beat:
        return False
    interval = float(beat.get("interval", 2.0))
    # The same staleness rule as runs.observe's default: a dead agent frees its slot.
    return time.time() - float(beat.get("time", 0)) > max(5 * interval + 5, 10.0)


def _read_json(store: Store, key: str) -> dict[str, Any] | None:
    raw = store.read(key)
    try:
        data = json.loads(raw) if raw else None
    except ValueError:
        return None
    return data if isinstance(data, dict) else None
