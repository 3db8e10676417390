"""Sweeps: expanding `--sweep` into runs, `{name}` substitution, one snapshot for all, the
sweep id on every record, `ls --sweep`, and `--max-parallel` on the local target (N slots,
each an agent running the sweep's runs one after another: worker.slots)."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import pytest

from gitexp.errors import GitexpError
from gitexp.model import sweepstate
from gitexp.model.runstate import Claim, RunState
from gitexp.service import sweep
from gitexp.stores.file import FileStore
from gitexp.worker import slots
from tests.helpers import (
    AgentCount,
    agents_of,
    assert_user_error,
    exp,
    exp_json,
    git,
    wait_done,
    wait_for,
)

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


# -- slots: --max-parallel N keeps N agents, each running the sweep's runs in turn -------------
NAP = "import sys, time; time.sleep(float(sys.argv[1]))"


def launch_slots(repo: Path, n: int, parallel: int, nap: float) -> tuple[str, list[str]]:
    """A detached sweep of `n` naps under --max-parallel: (sweep id, run ids in plan order)."""
    proc = exp("run", "-d", "-n", "nap", "--sweep", "i=" + ",".join(map(str, range(n))),
               "--max-parallel", str(parallel), "--", "python3", "-c", NAP, str(nap), "{i}",
               cwd=repo)
    run_ids = proc.stdout.split()
    (sweep_id,) = {r["record"]["sweep"] for r in exp_json("ls", cwd=repo)}
    return sweep_id, run_ids


def slot_pid(repo: Path, sweep_id: str, k: int) -> int:
    store = FileStore(repo / ".git" / "gitexp" / "store")
    handle = sweepstate.slot_handle(store, sweep_id, k)
    assert handle is not None
    return int(handle["pid"])


def statuses(repo: Path, sweep_id: str) -> dict[str, str]:
    return {r["id"]: r["status"] for r in exp_json("ls", "--sweep", sweep_id, cwd=repo)}


def running(repo: Path, run_id: str) -> bool:
    """What the agent says in the store (one file read: no `git exp` process to wait for)."""
    status = RunState(FileStore(repo / ".git" / "gitexp" / "store"), run_id).status()
    return status is not None and status.status == "running"


def all_ended(repo: Path, sweep_id: str, timeout: float) -> dict[str, str]:
    return wait_for(lambda: (s := statuses(repo, sweep_id)) and all(
        v not in ("queued", "running") for v in s.values()) and s, timeout=timeout, every=0.5,
        what="every run of the sweep to end")


def test_a_sweep_of_12_under_max_parallel_2_never_has_more_than_2_agents(repo: Path) -> None:
    """12 runs, --max-parallel 2: at no time more than 2 agent processes (the old way kept
    all 12 alive and waiting); every run succeeds, written back, taken in the plan's order."""
    count = AgentCount(str(repo / ".git"))
    sweep_id, run_ids = launch_slots(repo, 12, 2, 0.1)
    all_ended(repo, sweep_id, timeout=90)
    by_id = {r["id"]: r for r in exp_json("ls", "--sweep", sweep_id, cwd=repo)}
    runs = [by_id[i] for i in run_ids]
    assert wait_for(lambda: not agents_of(str(repo / ".git")), timeout=20, what="the slots to exit")
    peak = count.stop()
    assert count.samples > 20 and peak == 2, (peak, count.samples)
    assert [r["status"] for r in runs] == ["succeeded"] * 12
    for r in runs:  # written back: the ref holds a results commit on the snapshot
        assert git("rev-parse", f"refs/experiments/{r['id']}^", cwd=repo).strip() == \
            r["snapshot"]
        assert git("cat-file", "-t", f"refs/experiments/{r['id']}:.gitexp-results",
                   cwd=repo).strip() == "tree"
    starts = [r["result"]["started_at"] for r in runs]
    assert all(starts[i] <= starts[i + 2] for i in range(10)), starts  # plan order, 2 lanes
    spans = [(r["result"]["started_at"], r["result"]["ended_at"]) for r in runs]
    for start, _ in spans:
        assert sum(1 for s, e in spans if s <= start < e) <= 2, spans
    store = FileStore(repo / ".git" / "gitexp" / "store")
    claims = [RunState(store, i).claimed() for i in run_ids]
    assert {c.slot for c in claims if c is not None} == {0, 1} and None not in claims
    assert not (repo / ".git" / "gitexp" / "work").exists() or not any(
        p.name in run_ids for p in (repo / ".git" / "gitexp" / "work").iterdir())


def test_a_killed_slot_loses_its_run_and_the_others_take_the_rest(repo: Path) -> None:
    """kill -9 of one slot: the run it was running is lost, the runs no slot took yet stay
    queued and are run by the other slot; once every slot is dead, what is left is lost."""
    sweep_id, run_ids = launch_slots(repo, 5, 2, 3)
    wait_for(lambda: running(repo, run_ids[0]) and running(repo, run_ids[1]), timeout=30,
             every=0.05, what="both slots to run")
    store = FileStore(repo / ".git" / "gitexp" / "store")
    claim = RunState(store, run_ids[0]).claimed()
    assert claim is not None and claim.slot in (0, 1)
    first, other = claim.slot, 1 - claim.slot
    os.kill(slot_pid(repo, sweep_id, first), signal.SIGKILL)
    seen = wait_for(lambda: (s := statuses(repo, sweep_id))[run_ids[0]] != "running" and s,
                    timeout=40, what="the killed slot's run to end")
    assert seen[run_ids[0]] == "lost", seen
    assert all(seen[i] in ("queued", "running", "succeeded") for i in run_ids[1:]), seen
    why = exp_json("show", run_ids[0], cwd=repo)["result"]["error"]
    assert "the agent is gone" in why or "no heartbeat" in why, why  # whichever is seen first
    # The other slot takes runs 2, 3: the dead slot's stripe too.
    wait_for(lambda: running(repo, run_ids[3]), timeout=40, what="the other slot at run 3")
    os.kill(slot_pid(repo, sweep_id, other), signal.SIGKILL)
    final = all_ended(repo, sweep_id, timeout=40)
    # (on a machine so loaded that run 3 ended before the kill landed, run 4 was taken)
    assert [final[i] for i in run_ids] in (["lost", "succeeded", "succeeded", "lost", "lost"],
                                           ["lost", "succeeded", "succeeded", "succeeded",
                                            "lost"]), final
    claims = [RunState(store, i).claimed() for i in run_ids]
    assert claims[:4] == [Claim(first), Claim(other), Claim(other), Claim(other)]
    if claims[4] is None:  # no slot was left to take it: lost by the lost rule
        assert "the agent is gone" in exp_json("show", run_ids[4], cwd=repo)["result"]["error"]


def test_cancel_of_a_queued_run_and_of_the_whole_sweep(repo: Path) -> None:
    """A run no slot took yet is cancelled at once and never starts; `cancel --sweep` stops
    the running ones too (through the marker: the slot is never killed for one run), and
    then no agent is left."""
    sweep_id, run_ids = launch_slots(repo, 5, 1, 30)
    exp("cancel", run_ids[3], cwd=repo)
    shown = exp_json("show", run_ids[3], cwd=repo)  # at once: no slot holds it
    assert shown["status"] == "cancelled" and "before it started" in shown["result"]["error"]
    wait_for(lambda: running(repo, run_ids[0]), timeout=30, what="the first run to start")
    assert len(agents_of(str(repo / ".git"))) == 1
    exp("cancel", "--sweep", sweep_id, cwd=repo)
    final = all_ended(repo, sweep_id, timeout=30)
    assert list(final.values()) == ["cancelled"] * 5, final
    assert wait_for(lambda: not agents_of(str(repo / ".git")), timeout=20, what="the slot to exit")
    ended = {r["id"]: r["result"] for r in exp_json("ls", "--sweep", sweep_id, cwd=repo)}
    assert ended[run_ids[0]].get("exit_code") is not None  # it ran, and was stopped
    for run_id in run_ids[1:]:  # never started
        assert "before it started" in ended[run_id]["error"], ended[run_id]


def test_a_slot_takes_only_unclaimed_runs_and_claims_are_one_winner(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    sha = "a" * 40
    sweepstate.write_plan(store, sweepstate.Plan(sweep="sweep-s", slots=2, members=[
        sweepstate.Member(run=f"r{i}", snapshot=sha) for i in range(4)]))
    assert RunState(store, "r1").claim(None)  # cancelled before any slot took it
    assert not RunState(store, "r1").claim(0)
    ran: list[str] = []
    stop = threading.Event()
    assert slots.run_slot(store, "sweep-s", 0, lambda r, s: ran.append(r), stop) == 0
    assert ran == ["r0", "r2", "r3"]
    assert slots.run_slot(store, "sweep-s", 1, lambda r, s: ran.append(r), stop) == 0
    assert ran == ["r0", "r2", "r3"]  # nothing left for slot 1
    assert RunState(store, "r2").claimed() == Claim(slot=0)
    assert RunState(store, "r1").claimed() == Claim(slot=None)


@pytest.mark.parametrize("body", [
    b'{"runs": ["r0"], "snapshots": ["x"], "slots": 1}',  # not a commit id
    b'{"runs": ["R0;rm"], "snapshots": ["' + b"a" * 40 + b'"], "slots": 1}',  # not an id
    b'{"runs": ["r0", "r0"], "snapshots": ["' + b"a" * 40 + b'", "' + b"a" * 40 + b'"],'
    b' "slots": 1}',  # twice
    b'{"runs": ["r0"], "snapshots": ["' + b"a" * 40 + b'"], "slots": true}',
    b'{"runs": ["r0"], "snapshots": [], "slots": 1}', b"[]", b"{", b"",
])
def test_a_forged_plan_runs_nothing(tmp_path: Path, body: bytes) -> None:
    store = FileStore(tmp_path)
    store.write(sweepstate.plan_key("sweep-s"), body)
    assert sweepstate.read_plan(store, "sweep-s") is None
    ran: list[str] = []
    assert slots.run_slot(store, "sweep-s", 0, lambda r, s: ran.append(r),
                          threading.Event()) == 1
    assert ran == []


def test_max_parallel_without_sweep_is_a_user_error(repo: Path) -> None:
    proc = exp("run", "--max-parallel", "2", "--", "python3", "-c", "pass", cwd=repo,
               check=False)
    assert_user_error(proc, "--max-parallel needs a --sweep")
