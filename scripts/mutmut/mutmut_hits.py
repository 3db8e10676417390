"""pytest plugin for `make mutate` (loaded with `-p mutmut_hits`).

In mutmut's stats run it hands the functions that a test's `git exp` children ran
(sitecustomize.py) to mutmut, before mutmut files the test's stats at teardown.

In a mutant's run (and mutmut's clean run) it keeps only the first
$GITEXP_MUTATE_MAX_TESTS tests mutmut asks for (it asks fastest first): a core function is
covered by almost every test, and a surviving mutant would otherwise run all of them,
minutes each. A mutant that only a slower test would kill then counts as survived: the
score can only err low. The in-process core tests (tests/test_core_*.py) all run: they
hold the core's checks, and cost milliseconds."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest

_DIR = Path(tempfile.mkdtemp(prefix="gitexp-mutmut-hits-"))
os.environ["GITEXP_MUTMUT_HITS"] = str(_DIR)  # every child inherits it
atexit.register(shutil.rmtree, _DIR, ignore_errors=True)  # only the stats run writes in it


def pytest_collection_modifyitems(config: Any, items: list[Any]) -> None:
    cap = int(os.environ.get("GITEXP_MUTATE_MAX_TESTS") or 0)
    mutant = os.environ.get("MUTANT_UNDER_TEST")
    # A mutant's run, or mutmut's clean run ("") of every test of the mutants to check: the
    # stats run has just run each selected test unmutated (mutmut stops if one fails), so a
    # second whole pass only costs time. Never the stats, the forced failure ("fail") or
    # mutmut's listing of the tests ("list_all_tests": it would take the rest as deleted).
    if cap <= 0 or mutant is None or not (mutant == "" or "__mutmut_" in mutant) \
            or len(items) <= cap:
        return
    # The in-process core tests (tests/test_core_*.py) take milliseconds: all of them run,
    # whatever the machine's load made mutmut time them at, and the cap is for the rest.
    fast = [item for item in items if item.path.name.startswith("test_core_")]
    rest = [item for item in items if not item.path.name.startswith("test_core_")]
    kept = fast + rest[:cap]
    config.hook.pytest_deselected(items=rest[cap:])
    items[:] = kept


@pytest.hookimpl(tryfirst=True)  # before mutmut's collector reads and clears the stats
def pytest_runtest_teardown(item: Any, nextitem: Any) -> None:
    if os.environ.get("MUTANT_UNDER_TEST") != "stats":
        return
    from mutmut.state import state

    for path in _DIR.glob("*.hits"):
        state()._stats.update(path.read_text().split())
        path.unlink()
