"""A run's data plan: how its worker gets the data version (the DVC remote, a shared cache,
whether to verify). The launch writes it to the run's place in the store (`data.dev`), the
worker reads it (`data.worker`)."""

from __future__ import annotations

import json
from typing import Any

from gitexp.stores import Store, run_key

PLAN_KEY = "data.json"


def write_plan(store: Store, run_id: str, plan: dict[str, Any]) -> None:
    store.write(run_key(run_id, PLAN_KEY), json.dumps(plan, sort_keys=True).encode())


def read_plan(store: Store | None, run_id: str) -> dict[str, Any]:
    raw = store.read(run_key(run_id, PLAN_KEY)) if store is not None else None
    try:
        plan = json.loads(raw) if raw else {}
    except ValueError:
        plan = {}
    return plan if isinstance(plan, dict) else {}
