"""A sweep's slots: `--max-parallel N` outside Slurm starts N agents, not one per run.

Each slot is one agent process that runs the sweep's runs one after another. It walks the
plan (`model.sweepstate`) in order and claims the next run no one took yet, with a
create-only write (`RunState.claim`: of racing claimers exactly one wins, on every store),
runs it exactly as a lone agent would, and claims the next. No lock, no coordinator, and no
process waits for a turn: N slots never run more than N runs at once, and the runs of a
slot that died are simply taken by the others. A run someone cancelled before any slot took
it is claimed by the cancel itself, so no slot starts it.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable

from gitexp.errors import GitexpError
from gitexp.model.runstate import RunState
from gitexp.model.sweepstate import read_plan
from gitexp.stores import Store

PATIENCE = 300.0  # s: how long a slot waits for its store to come back, as an agent does


def run_slot(store: Store, sweep: str, index: int, run_one: Callable[[str, str], None],
             stop: threading.Event) -> int:
    """Slot `index` of `sweep`: run (`run_one(run, snapshot)`) every run it claims, in the
    plan's order, until none is left or `stop` is set. Claims are never undone, so one pass
    over the plan sees every run."""
    try:
        plan = read_plan(store, sweep)
    except GitexpError as exc:
        print(f"gitexp: slot {index} of {sweep}: {exc.message}", file=sys.stderr)
        return 1
    if plan is None:
        print(f"gitexp: slot {index} of {sweep}: no plan in the store", file=sys.stderr)
        return 1
    for member in plan.members:
        if stop.is_set():
            break
        if _claim(RunState(store, member.run), index, stop):
            run_one(member.run, member.snapshot)
    return 0


def _claim(state: RunState, index: int, stop: threading.Event) -> bool:
    """True if this slot took the run; through a store outage of up to PATIENCE seconds."""
    delay, deadline = 0.5, time.monotonic() + PATIENCE
    while True:
        try:  # a read first: a run already taken costs no write
            return state.claimed() is None and state.claim(index)
        except GitexpError as exc:
            print(f"gitexp: cannot claim {state.run_id}, retrying: {exc.message}",
                  file=sys.stderr)
        if time.monotonic() + delay > deadline or stop.wait(delay):
            return False  # left to the other slots, or lost by the lost rule
        delay = min(delay * 2, 10.0)
