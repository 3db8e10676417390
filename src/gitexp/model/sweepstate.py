"""A sweep's state in its store, for `--max-parallel N` outside Slurm: the plan its N slots
follow, and how the backend finds each slot's agent again.

    sweeps/<sweep>.json            the plan: the runs in order, their snapshots, N
    sweeps/<sweep>/slot-<k>.json   slot k's handle (as `handle.json` is a run's)
    sweeps/<sweep>/slot-<k>.log    slot k's own output, where the backend keeps it here

Which slot runs which run is each run's claim (`RunState.claim`). Like everything in a
store, these files are untrusted: readers validate and return a typed value or None.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from gitexp.model import ids
from gitexp.model.runstate import Handle, fit_handle
from gitexp.stores import Store, read_range, slot_key

MAX_PLAN = 16 << 20  # bytes: 100,000 runs take about 11 MB
MAX_HANDLE = 64 << 10
_OID = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


@dataclass(frozen=True)
class Member:
    run: str
    snapshot: str


@dataclass(frozen=True)
class Plan:
    sweep: str
    members: list[Member]  # the order in which the slots take the runs
    slots: int  # N: this many agents, each running the members one after another


def plan_key(sweep: str) -> str:
    return f"sweeps/{sweep}.json"


def write_plan(store: Store, plan: Plan) -> None:
    store.write(plan_key(plan.sweep), json.dumps({
        "runs": [m.run for m in plan.members],
        "snapshots": [m.snapshot for m in plan.members], "slots": plan.slots}).encode())


def read_plan(store: Store, sweep: str) -> Plan | None:
    """The plan of `sweep`, or None when there is none fit to follow: every run an id of
    that sweep's kind, every snapshot a commit id, N a positive number."""
    raw = _json(store, plan_key(sweep), MAX_PLAN)
    if raw is None:
        return None
    runs, snapshots, slots = raw.get("runs"), raw.get("snapshots"), raw.get("slots")
    if not (isinstance(runs, list) and isinstance(snapshots, list)
            and len(runs) == len(snapshots) and len(set(map(str, runs))) == len(runs)
            and all(isinstance(r, str) and ids.is_valid_id(r) for r in runs)
            and all(isinstance(s, str) and _OID.fullmatch(s) for s in snapshots)
            and isinstance(slots, int) and not isinstance(slots, bool) and slots > 0):
        return None
    return Plan(sweep=sweep, slots=slots,
                members=[Member(run=r, snapshot=s) for r, s in zip(runs, snapshots, strict=True)])


def set_slot_handle(store: Store, sweep: str, index: int, target: str, handle: Handle) -> None:
    store.write(slot_key(sweep, index), json.dumps({**handle, "target": target}).encode())


def slot_handle(store: Store, sweep: str, index: int) -> Handle | None:
    """How the backend finds slot `index`, or None (none yet, or not fit to use)."""
    return fit_handle(_json(store, slot_key(sweep, index), MAX_HANDLE))


def _json(store: Store, key: str, limit: int) -> dict[str, Any] | None:
    raw = read_range(store, key, 0, limit)
    try:
        data = json.loads(raw) if raw else None
    except (ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None
