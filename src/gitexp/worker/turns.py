"""Taking turns: the agents of a sweep under `--max-parallel N` start one after another
through the store, with no lock and no coordinator. The launch writes the sweep's plan
(`write_plan`: the order, N, and when a silent sibling counts as lost); each agent waits for
its turn (`wait_turn`) reading only its siblings' run state."""

from __future__ import annotations

import json
import math
import threading
import time
from dataclasses import dataclass

from gitexp.model.record import RunRecord
from gitexp.model.runstate import RunState
from gitexp.stores import Store

POLL = 0.5  # how often a waiting agent looks at its siblings (one small read each)


@dataclass(frozen=True)
class Plan:
    sweep: str
    runs: list[str]  # the order in which the sweep's runs take their turns
    max_parallel: int
    lost_after: float | None = None  # `exp.lostAfter` of the launching repository


def plan_key(sweep_id: str) -> str:
    return f"sweeps/{sweep_id}.json"


def write_plan(store: Store, plan: Plan) -> None:
    store.write(plan_key(plan.sweep), json.dumps(
        {"runs": plan.runs, "max_parallel": plan.max_parallel,
         "lost_after": plan.lost_after}).encode())


def read_plan(store: Store, sweep_id: str) -> Plan | None:
    """The sweep's plan, or None when there is none or it is not one (a store is untrusted:
    a damaged plan lets the run start rather than wait forever)."""
    try:
        raw = json.loads(store.read(plan_key(sweep_id)) or b"null")
    except (ValueError, RecursionError):
        return None
    if not isinstance(raw, dict):
        return None
    order, limit, lost_after = raw.get("runs"), raw.get("max_parallel"), raw.get("lost_after")
    if not (isinstance(order, list) and all(isinstance(r, str) for r in order)
            and isinstance(limit, int) and not isinstance(limit, bool) and limit > 0):
        return None
    if not (isinstance(lost_after, (int, float)) and not isinstance(lost_after, bool)
            and math.isfinite(lost_after) and lost_after > 0):
        lost_after = None
    return Plan(sweep=sweep_id, runs=order, max_parallel=limit, lost_after=lost_after)


def wait_turn(store: Store, record: RunRecord, stop: threading.Event, *,
              started: float) -> float | None:
    """Block until this run may start under its sweep's --max-parallel N.

    Run i of the sweep's order starts once at least i-N+1 of the runs before it finished.
    That bound holds for every run at once, so at most N ever run together, with no lock and
    no coordinator: only reads of the siblings' result (or a stale heartbeat).
    Returns when the run may start (`started` if it never waited), None if cancelled."""
    plan = read_plan(store, record.sweep or "")
    if plan is None or record.id not in plan.runs:
        return started
    index = plan.runs.index(record.id)
    need = index - plan.max_parallel + 1  # finished runs before this one
    if need <= 0:
        return started
    pending = list(plan.runs[:index])
    waited = False
    while True:
        pending = [other for other in pending if not _finished(store, other, plan.lost_after)]
        if index - len(pending) >= need:
            return time.time() if waited else started
        waited = True
        if stop.wait(POLL) or RunState(store, record.id).cancel_requested():
            return None


def _finished(store: Store, run_id: str, lost_after: float | None) -> bool:
    """Ended, or lost by the same rule `git exp ls` applies: a dead agent frees its slot."""
    state = RunState(store, run_id)
    if state.has_result():
        return True
    beat = state.heartbeat()
    return beat is not None and beat.stale(time.time(), lost_after)
