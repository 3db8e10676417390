"""The dev side of a sweep's slots (`worker.slots`, `--max-parallel` outside Slurm): is the
agent of a run that a slot runs, or is yet to run, still there; and cancelling such a run
without stopping the slot, which runs the sweep's other runs too.

A slotted run's handle is its slot's handle plus `slot` (k) and `slots` (N). Once a slot has
claimed the run, that slot's agent is the run's; before, the run lives while any slot does
(the others take a dead slot's runs), and is lost once all are gone.
"""

from __future__ import annotations

import time

from gitexp.backends import Backend
from gitexp.model import sweepstate
from gitexp.model.record import Result, RunRecord
from gitexp.model.runstate import Handle, RunState

MAX_SLOTS = 1 << 16
ALIVE_TTL = 2.0  # s: a sweep's queued runs all ask about the same few slots
_seen: dict[tuple[str, str, int], tuple[float, bool | None]] = {}


def in_slot(record: RunRecord, handle: Handle) -> bool:
    return "slot" in handle and bool(record.sweep)


def alive(backend: Backend, state: RunState, record: RunRecord, handle: Handle) -> bool | None:
    """The run's slot's answer once a slot claimed it; before, True if any slot is alive,
    False if none is, None if some cannot tell."""
    count = handle.get("slots")
    if not (isinstance(count, int) and not isinstance(count, bool) and 0 < count <= MAX_SLOTS):
        return False  # not a handle a launch wrote: names no agent
    claim = state.claimed()
    if claim is not None and claim.slot is not None:
        return _slot_alive(backend, state, record, claim.slot) if claim.slot < count else False
    answers = [_slot_alive(backend, state, record, k) for k in range(count)]
    return True if True in answers else (False if all(a is False for a in answers) else None)


def cancel(state: RunState, record: RunRecord) -> None:
    """The cancel marker is written: a slot running the run stops it. A run no slot took is
    taken here, so that none ever starts it, and ends `cancelled` at once."""
    if state.claim(None):
        state.write_result(Result(status="cancelled", ended_at=time.time(),
                                  error="cancelled before it started"), snapshot=record.snapshot)


def _slot_alive(backend: Backend, state: RunState, record: RunRecord, k: int) -> bool | None:
    sweep = record.sweep or ""
    key = (state.store.url, sweep, k)
    seen = _seen.get(key)
    if seen and time.monotonic() - seen[0] < ALIVE_TTL:
        return seen[1]
    handle = sweepstate.slot_handle(state.store, sweep, k)
    answer = False if handle is None else backend.alive(record=record,
                                                        handle={**handle, "slot": k})
    _seen[key] = (time.monotonic(), answer)
    return answer
