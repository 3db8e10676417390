"""Sweeps: expanding `--sweep` into runs, `{name}` substitution, one snapshot for all, the
sweep id on every record, `ls --sweep`, and `--max-parallel` on the local target (agents
taking turns through the store)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from gitexp.errors import GitexpError
from gitexp.model.record import Environment, RunRecord
from gitexp.service import sweep
from gitexp.stores.file import FileStore
from gitexp.worker import turns
from tests.helpers import assert_user_error, exp, exp_json, git, wait_done

TRAIN = """\
import sys, time
import gitexp
time.sleep(float(sys.argv[3]))
gitexp.log(score=float(sys.argv[1]) * int(sys.argv[2]))
"""


def test_axes_expand_to_every_combination() -> None:
    axes = sweep.parse_axes(["lr=1e-3, 1e-4", "bs=32,64,128"])
    assert axes == {"lr": ["1e-3", "1e-4"], "bs": ["32", "64", "128"]}
    grid = sweep.points(axes)
    assert len(grid) == 6
    assert grid[0] == {"lr": "1e-3", "bs": "32"} and grid[-1] == {"lr": "1e-4", "bs": "128"}


def test_only_whole_placeholders_of_sweep_names_are_replaced() -> None:
    argv = ["python", "t.py", "--lr={lr}", "{bs}", "{other}", "{lr:.3f}", "{{lr}}", "$(lr)"]
    assert sweep.substitute(argv, {"lr": "0.1", "bs": "32"}) == [
        "python", "t.py", "--lr=0.1", "32", "{other}", "{lr:.3f}", "{0.1}", "$(lr)"]
    # A value is never re-expanded or split: it is one argv item, exactly.
    assert sweep.substitute(["{a}"], {"a": "{b} x;y", "b": "no"}) == ["{b} x;y"]


@pytest.mark.parametrize("specs", [["lr"], ["lr="], ["lr=1,,2"], ["1x=2"], ["a=1", "a=2"]])
def test_bad_sweep_specs_are_user_errors(specs: list[str]) -> None:
    with pytest.raises(GitexpError):
        sweep.parse_axes(specs)


def test_unused_sweep_parameter_is_refused_before_anything_runs(repo: Path) -> None:
    proc = exp("run", "--sweep", "lr=1,2", "--", "python3", "-c", "pass", cwd=repo,
               check=False)
    assert_user_error(proc, "'lr' is not used")
    assert git("for-each-ref", "refs/experiments/", cwd=repo) == ""


def test_local_sweep_max_parallel_two(repo: Path) -> None:
    """4 points, --max-parallel 2, local target: 4 runs from one snapshot, each with its own
    params, argv and metrics; sweep id on every record; never more than 2 ran at once."""
    (repo / "train.py").write_text(TRAIN)
    before = git("status", "--porcelain", cwd=repo)
    proc = exp("run", "-d", "-n", "grid", "--sweep", "lr=1,2", "--sweep", "bs=10,20",
               "--max-parallel", "2", "--", "python3", "train.py", "{lr}", "{bs}", "1",
               cwd=repo)
    ids = proc.stdout.split()
    assert len(ids) == 4 and all(i.startswith("grid-") for i in ids)
    assert git("status", "--porcelain", cwd=repo) == before  # work tree untouched
    runs = [wait_done(i, repo, timeout=60) for i in ids]
    assert [r["status"] for r in runs] == ["succeeded"] * 4
    assert [r["record"]["params"] for r in runs] == [
        {"lr": "1", "bs": "10"}, {"lr": "1", "bs": "20"}, {"lr": "2", "bs": "10"},
        {"lr": "2", "bs": "20"}]
    assert [r["result"]["metrics"]["score"] for r in runs] == [10, 20, 20, 40]
    assert runs[3]["record"]["argv"] == ["python3", "train.py", "2", "20", "1"]
    sweep_ids = {r["record"]["sweep"] for r in runs}
    assert len(sweep_ids) == 1
    (sweep_id,) = sweep_ids
    assert sweep_id in proc.stderr
    trees = {git("rev-parse", f"{r['snapshot']}^{{tree}}", cwd=repo) for r in runs}
    assert len(trees) == 1  # one snapshot of the work tree for every point
    spans = [(r["result"]["started_at"], r["result"]["ended_at"]) for r in runs]
    for start, _ in spans:
        assert sum(1 for s, e in spans if s <= start < e) <= 2, spans
    assert max(e for _, e in spans) - min(s for s, _ in spans) >= 2.0  # it did throttle

    exp("run", "--", "python3", "-c", "pass", cwd=repo)  # not part of the sweep
    listed = exp_json("ls", "--sweep", sweep_id, cwd=repo)
    assert sorted(r["id"] for r in listed) == sorted(ids)


def _record(run_id: str) -> RunRecord:
    return RunRecord(id=run_id, argv=["x"], cwd="", base=None, branch=None, user="t",
                     launched_at=0.0, target="local", backend="local", store="file:///s",
                     env=Environment(python="3", platform="linux"), sweep="sweep-s")


def test_wait_turn_waits_for_a_slot_and_honours_cancel(tmp_path: Path) -> None:
    """With N=1, the second run waits until the first has a result; the third, cancelled
    while waiting, never gets a turn."""
    store = FileStore(tmp_path)
    turns.write_plan(store, turns.Plan(sweep="sweep-s", runs=["r0", "r1", "r2"],
                                       max_parallel=1))
    stop = threading.Event()
    assert turns.wait_turn(store, _record("r0"), stop, started=1.0) == 1.0
    got: dict[str, float | None] = {}
    waiter = threading.Thread(target=lambda: got.update(
        r1=turns.wait_turn(store, _record("r1"), stop, started=1.0)))
    waiter.start()
    time.sleep(1.0)
    assert waiter.is_alive()  # r0 has no result yet
    store.write("runs/r0/result.json", b'{"status": "succeeded"}')
    waiter.join(5)
    assert got["r1"] is not None and got["r1"] > 1.0
    store.write("runs/r2/cancel", b"now")
    assert turns.wait_turn(store, _record("r2"), stop, started=1.0) is None


def test_a_silent_sibling_frees_its_slot_after_the_sweeps_lost_after(tmp_path: Path) -> None:
    """The plan carries the launching repository's `exp.lostAfter`: a sibling whose heartbeat
    is older than that counts as finished (lost), one that is fresher does not."""
    store = FileStore(tmp_path)
    beat = {"time": time.time() - 30, "interval": 2.0}  # 30 s old; the default limit is 15 s
    store.write("runs/r0/heartbeat", json.dumps(beat).encode())
    stop = threading.Event()
    stop.set()  # never wait: one look, then the answer
    turns.write_plan(store, turns.Plan(sweep="sweep-s", runs=["r0", "r1"], max_parallel=1,
                                       lost_after=60.0))
    assert turns.wait_turn(store, _record("r1"), stop, started=1.0) is None  # 30 s < 60 s
    turns.write_plan(store, turns.Plan(sweep="sweep-s", runs=["r0", "r1"], max_parallel=1,
                                       lost_after=20.0))
    assert turns.wait_turn(store, _record("r1"), stop, started=1.0) == 1.0  # 30 s > 20 s
    store.write("sweeps/sweep-s.json", b'{"runs": "r0", "max_parallel": true}')  # forged
    assert turns.wait_turn(store, _record("r1"), stop, started=1.0) == 1.0  # no plan: go


def test_max_parallel_without_sweep_is_a_user_error(repo: Path) -> None:
    proc = exp("run", "--max-parallel", "2", "--", "python3", "-c", "pass", cwd=repo,
               check=False)
    assert_user_error(proc, "--max-parallel needs a --sweep")
