"""Runs as `ls`, `show` and `watch` see them, in-process: a run's state files in a real
file:// store (status, heartbeat, handle, result, cancel), when a silent run is lost, and how
`find`, `list_runs` and `observe` read runs from real git repositories and bring their
endings home.

Fast on purpose, like tests/test_core_inprocess.py (whose helpers these share): mutation
testing relies on in-process tests of `tests/test_core_*.py` to notice a changed line. Each
test names the behaviour it checks."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from gitexp.backends import slurm
from gitexp.errors import GitexpError, UnknownRunError
from gitexp.git import Repo
from gitexp.git.config import Config
from gitexp.git.writeback import RESULTS_DIR, write_back
from gitexp.model import ids
from gitexp.model.liveness import DEFAULT_INTERVAL, default_lost_after
from gitexp.model.record import Result, encode_message
from gitexp.model.runstate import (
    CANCEL,
    HANDLE,
    HEARTBEAT,
    LAUNCH_TIMEOUT,
    RESULT,
    STATUS,
    ForeignResultError,
    Heartbeat,
    Launcher,
    RunState,
    Status,
)
from gitexp.service import index, runs
from gitexp.service.runs import Run
from gitexp.stores import open_store, run_key
from gitexp.stores.file import FileStore
from tests.helpers import git
from tests.test_core_inprocess import LAUNCHED, commit_run, ok, record

SNAP = "a" * 40


@pytest.fixture
def grepo(repo: Path) -> Repo:
    return Repo.discover(repo)


@pytest.fixture
def state(tmp_path: Path) -> RunState:
    return RunState(FileStore(tmp_path / "store"), "r-1")


def put(state: RunState, name: str, body: object) -> None:
    """A state file as anyone with access to the store may have left it."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    state.store.write(run_key(state.run_id, name), raw)


def stored(state: RunState, name: str) -> object:
    raw = state.store.read(run_key(state.run_id, name))
    assert raw is not None
    return json.loads(raw)


# -- liveness -------------------------------------------------------------------------------
def test_a_heartbeat_may_miss_five_beats_and_some_slack_but_never_less_than_ten_seconds(
        ) -> None:
    assert default_lost_after(2.0) == 15.0
    assert default_lost_after(10.0) == 55.0
    assert default_lost_after(1.0) == 10.0  # 5 * 1 + 5: the floor is reached exactly
    assert default_lost_after(0.3) == 10.0
    assert DEFAULT_INTERVAL == 2.0


def test_a_heartbeat_is_stale_only_when_silent_for_longer_than_the_limit() -> None:
    beat = Heartbeat(time=1000.0, interval=2.0)  # default limit: 15 s
    assert not beat.stale(1015.0) and beat.stale(1015.5)
    assert not beat.stale(1003.0, 3.0) and beat.stale(1003.5, 3.0)  # exp.lostAfter wins
    assert beat.stale(1000.5, 0.0)  # a limit of 0 is a limit, not "the default"
    assert not Heartbeat(time=1000.0, interval=20.0).stale(1100.0)  # 105 s for slow beats


# -- status -----------------------------------------------------------------------------------
def test_a_queued_status_names_the_launching_process(state: RunState) -> None:
    assert state.status() is None  # the launch has not reached the store
    state.set_queued()
    assert stored(state, STATUS) == {"status": "queued", "launcher": {
        "host": socket.gethostname(), "pid": os.getpid()}}
    assert state.status() == Status(status="queued", launcher=Launcher(
        host=socket.gethostname(), pid=os.getpid()))


def test_a_running_status_says_when_where_and_which_process(state: RunState) -> None:
    state.set_running(started=LAUNCHED, pid=4321)
    assert stored(state, STATUS) == {"status": "running", "started": LAUNCHED, "pid": 4321,
                                     "host": socket.gethostname(), "agent_pid": os.getpid()}
    assert state.status() == Status(status="running", started=LAUNCHED,
                                    host=socket.gethostname(), pid=4321)


@pytest.mark.parametrize(("body", "expected"), [
    ({"status": "succeeded", "started": 5, "host": "h", "pid": 7},
     Status(status="queued", started=5.0, host="h", pid=7)),  # only live statuses are read
    ({"status": "running", "started": True, "host": 3, "pid": True},
     Status(status="running")),  # a bool is no time or pid, a number no host
    ({"status": "running", "started": float("inf"), "pid": 2.5}, Status(status="running")),
    ({"launcher": {"host": "h", "pid": "1"}}, Status(status="queued")),
    ({"launcher": {"host": 1, "pid": 1}}, Status(status="queued")),
    ({"launcher": {"pid": 1}}, Status(status="queued")),
    ({"launcher": ["h", 1]}, Status(status="queued")),
    ({"launcher": {"host": "h", "pid": 12}},
     Status(status="queued", launcher=Launcher(host="h", pid=12))),
    ({}, Status(status="queued")),
])
def test_a_status_keeps_only_what_it_may_hold(state: RunState, body: object,
                                              expected: Status) -> None:
    put(state, STATUS, body)
    assert state.status() == expected


@pytest.mark.parametrize("raw", [b"not json", b"[1, 2]", b"\"running\"", b"[" * 100_000, b""])
def test_a_garbled_state_file_reads_as_none(state: RunState, raw: bytes) -> None:
    for name in (STATUS, HEARTBEAT, HANDLE):
        put(state, name, raw)
    assert state.status() is None and state.heartbeat() is None and state.handle() is None


# -- heartbeat --------------------------------------------------------------------------------
def test_a_beat_records_the_time_and_interval(state: RunState) -> None:
    assert state.heartbeat() is None and not state.has_heartbeat()
    before = time.time()
    state.beat(0.5)
    beat = state.heartbeat()
    assert beat is not None and beat.interval == 0.5
    assert before <= beat.time <= time.time()
    assert state.has_heartbeat()
    body = stored(state, HEARTBEAT)
    assert isinstance(body, dict)
    assert (body["host"], body["pid"]) == (socket.gethostname(), os.getpid())


@pytest.mark.parametrize(("body", "expected"), [
    ({"time": 5, "interval": 3}, Heartbeat(time=5.0, interval=3.0)),
    ({"time": 5}, Heartbeat(time=5.0, interval=DEFAULT_INTERVAL)),
    ({"time": 5, "interval": 0}, Heartbeat(time=5.0, interval=DEFAULT_INTERVAL)),
    ({"time": 5, "interval": -1}, Heartbeat(time=5.0, interval=DEFAULT_INTERVAL)),
    ({"time": 5, "interval": "3"}, Heartbeat(time=5.0, interval=DEFAULT_INTERVAL)),
    ({"time": "5", "interval": 3}, None),  # a garbled beat is no sign of life
    ({"time": float("nan"), "interval": 3}, None),
    ({"time": False}, None),
    ({"interval": 3}, None),
])
def test_a_heartbeat_keeps_a_finite_time_and_a_positive_interval(
        state: RunState, body: object, expected: Heartbeat | None) -> None:
    put(state, HEARTBEAT, body)
    assert state.heartbeat() == expected
    assert state.has_heartbeat()  # a file is there, whatever it says


def test_a_heartbeat_of_time_zero_is_still_a_beat(state: RunState) -> None:
    put(state, HEARTBEAT, {"time": 0, "interval": 1})
    assert state.heartbeat() == Heartbeat(time=0.0, interval=1.0)


# -- handle -----------------------------------------------------------------------------------
def test_a_handle_names_the_target_it_was_set_for(state: RunState) -> None:
    assert state.handle() is None
    state.set_handle("gpu", {"pid": 12, "host": "node-1", "target": "elsewhere"})
    assert state.handle() == {"pid": 12, "host": "node-1", "target": "gpu"}
    assert stored(state, HANDLE) == {"pid": 12, "host": "node-1", "target": "gpu"}


@pytest.mark.parametrize(("handle", "usable"), [
    ({"pid": 12, "job": "123_4", "vm": "zone/a-b@c:d+e=f.g"}, True),
    ({"job": ""}, True),
    ({"job": "x" * 256}, True),
    ({"job": "x" * 257}, False),
    ({"job": "-rf"}, False),  # an option to the program it is passed to
    ({"job": "a b"}, False),
    ({"job": "a;b"}, False),
    ({"job": "a\nb"}, False),
    ({"pid": True}, False),
    ({"pid": 1.5}, False),
    ({"pid": None}, False),
    ({"pid": [1]}, False),
    ({"target": "my gpu box"}, True),  # a config name: shown, never passed on
    ({"target": "box\x1b[31m"}, False),
    ({"name": "my gpu box"}, False),
])
def test_a_handle_is_used_only_if_every_value_is_a_number_or_one_plain_word(
        state: RunState, handle: dict[str, object], usable: bool) -> None:
    put(state, HANDLE, handle)
    assert state.handle() == (handle if usable else None)


# -- result -----------------------------------------------------------------------------------
def test_a_result_is_stamped_with_the_run_and_snapshot_and_read_back(
        state: RunState, grepo: Repo) -> None:
    rec = record("r-1", grepo, snapshot=SNAP)
    assert state.result(rec) is None and not state.has_result()
    state.write_result(ok(loss=0.5), snapshot=SNAP)
    assert state.has_result()
    body = stored(state, RESULT)
    assert isinstance(body, dict) and (body["run"], body["snapshot"]) == ("r-1", SNAP)
    assert state.result(rec) == ok(loss=0.5)


@pytest.mark.parametrize(("stamp", "named"), [
    ({"run": "r-2", "snapshot": SNAP}, "run 'r-2'"),
    ({"run": "r-1", "snapshot": "b" * 40}, "snapshot 'bbbb"),
    ({"snapshot": "b" * 40}, "snapshot"),
    ({"run": 7}, "run '7'"),
])
def test_a_result_stamped_for_another_run_or_snapshot_is_refused(
        state: RunState, grepo: Repo, stamp: dict[str, object], named: str) -> None:
    put(state, RESULT, {**ok().to_dict(), **stamp})
    with pytest.raises(ForeignResultError) as err:
        state.result(record("r-1", grepo, snapshot=SNAP))
    assert f"result for {named}" in err.value.message
    assert err.value.hint is not None and "file:///nowhere" in err.value.hint


def test_an_unstamped_result_of_an_older_gitexp_is_taken(state: RunState, grepo: Repo) -> None:
    put(state, RESULT, ok(loss=1).to_dict())
    assert state.result(record("r-1", grepo, snapshot=SNAP)) == ok(loss=1)


def test_a_damaged_result_of_our_own_run_ends_it_lost(state: RunState, grepo: Repo) -> None:
    put(state, RESULT, {"status": "exploded", "run": "r-1", "snapshot": SNAP})
    before = time.time()
    got = state.result(record("r-1", grepo, snapshot=SNAP))
    assert got is not None and got.status == "lost"
    assert got.ended_at is not None and before <= got.ended_at <= time.time()
    assert got.error is not None and got.error.startswith("result.json: ")


def test_an_empty_or_garbled_result_is_no_result(state: RunState, grepo: Repo) -> None:
    rec = record("r-1", grepo, snapshot=SNAP)
    for raw in (b"{}", b"null", b"[]", b"nonsense"):
        put(state, RESULT, raw)
        assert state.result(rec) is None
        assert state.has_result()  # a file, though no result: an agent has been there


def test_a_result_is_written_once_and_never_over_an_agents_own(state: RunState,
                                                               grepo: Repo) -> None:
    rec = record("r-1", grepo, snapshot=SNAP)
    cancelled = Result(status="cancelled", error="cancelled before start")
    assert state.write_result_once(cancelled, snapshot=SNAP)
    assert state.result(rec) == cancelled
    body = stored(state, RESULT)  # stamped like any result
    assert isinstance(body, dict) and (body["run"], body["snapshot"]) == ("r-1", SNAP)
    assert not state.write_result_once(ok(), snapshot=SNAP)  # one result there already
    assert state.result(rec) == cancelled
    other = RunState(state.store, "r-2")
    other.beat(1.0)  # an agent is there: it writes its own
    assert not other.write_result_once(cancelled, snapshot=SNAP)
    assert not other.has_result()


def test_a_cancel_request_is_seen_by_whoever_reads_the_store(state: RunState) -> None:
    assert not state.cancel_requested()
    before = time.time()
    state.request_cancel()
    assert state.cancel_requested()
    assert RunState(FileStore(Path(state.store.url[len("file://"):])), "r-1").cancel_requested()
    assert not RunState(state.store, "r-2").cancel_requested()
    raw = state.store.read(run_key("r-1", CANCEL))
    assert raw is not None and before <= float(raw) <= time.time()


# -- runs in git and their stores -------------------------------------------------------------
def local_store(repo: Repo) -> str:
    return (repo.gitexp_dir / "store").as_uri()


def launched(repo: Repo, run_id: str, *, ago: float = 0.0, **kw: Any) -> tuple[Run, RunState]:
    """A run as launch leaves it before any agent reports: its snapshot and ref, sealed as
    this user's, and its (empty) state in its store (this repository's own by default)."""
    kw.setdefault("store", local_store(repo))
    made = commit_run(repo, record(run_id, repo, launched_at=time.time() - ago, **kw), None)
    return made, RunState(open_store(made.record.store), run_id)


def foreign(repo: Repo, run_id: str, *, ago: float = 0.0) -> Run:
    """A run fetched from a teammate: the same kind of commit, without this user's seal."""
    rec = record(run_id, repo, launched_at=time.time() - ago, store=local_store(repo))
    snap = repo.commit_tree(repo.git("rev-parse", "HEAD^{tree}").strip(), [repo.head() or ""],
                            encode_message(rec, None))
    repo.git("update-ref", ids.ref_for(run_id), snap)
    return Run(record=rec.with_snapshot(snap), result=None, commit=snap, written_back=False)


def results_files(repo: Repo, run: Run) -> list[str]:
    return repo.git("ls-tree", "--name-only", f"{run.commit}:{RESULTS_DIR}").split()


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


@pytest.fixture
def hpc(grepo: Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A Slurm target of this repository whose store is a directory here; `squeue` is a
    script of the test's (`squeue_says`) on PATH. Returns the store's URL."""
    url = (tmp_path / "hpc-store").as_uri()
    git("config", "exp.target.hpc.backend", "slurm", cwd=grepo.root)
    git("config", "exp.target.hpc.store", url, cwd=grepo.root)
    monkeypatch.setattr(slurm, "_queue_cache", {})  # one `squeue` answers for 2 s
    (tmp_path / "bin").mkdir()
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    return url


def squeue_says(tmp_path: Path, script: str) -> None:
    path = tmp_path / "bin" / "squeue"
    path.write_text("#!/bin/sh\n" + script + "\nexit 0\n")
    path.chmod(0o755)


def on_hpc(grepo: Repo, run_id: str, url: str, *, job: str, ago: float = 0.0,
           beat: bool = True) -> tuple[Run, RunState]:
    """A run the agent reports on from a Slurm job: running, beating, with its handle."""
    made, state = launched(grepo, run_id, ago=ago, target="hpc", backend="slurm", store=url)
    state.set_running(started=made.record.launched_at + 1, pid=77)
    if beat:
        state.beat(60.0)
    state.set_handle("hpc", {"job": job})
    return made, state


# -- list_runs --------------------------------------------------------------------------------
def test_runs_are_listed_newest_first_with_their_commits_and_results(grepo: Repo) -> None:
    now = time.time()
    middle = commit_run(grepo, record("mid-1", grepo, launched_at=now - 20), ok(loss=0.5))
    newest = commit_run(grepo, record("new-1", grepo, launched_at=now - 10), None)
    oldest = commit_run(grepo, record("old-1", grepo, launched_at=now - 30), ok(loss=0.7))
    got = runs.list_runs(grepo, refresh=False)
    assert [r.id for r in got] == ["new-1", "mid-1", "old-1"]
    assert got == [newest, middle, oldest]  # record, result, commit, written back, own
    assert [r.status for r in got] == ["queued", "succeeded", "succeeded"]


def test_listing_leaves_a_run_that_was_written_back_as_it_ended(grepo: Repo) -> None:
    # its store has no result (cleaned up): looking there again would call it lost
    done = commit_run(grepo, record("done-1", grepo, store=local_store(grepo),
                                    launched_at=time.time() - 86400), ok(loss=0.5))
    (got,) = runs.list_runs(grepo)
    assert got == done and grepo.rev_parse(ids.ref_for("done-1")) == done.commit


def test_several_live_remote_runs_are_observed_side_by_side(
        grepo: Repo, hpc: str, tmp_path: Path) -> None:
    # `squeue` answers only while another `squeue` runs: one after another, each waits
    # alone, says nothing, and its job reads as gone
    meet = tmp_path / "meet"
    meet.mkdir()
    squeue_says(tmp_path, f"""touch '{meet}'/$$
i=0
while [ "$(ls '{meet}' | wc -l)" -lt 2 ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done
[ "$(ls '{meet}' | wc -l)" -ge 2 ] && printf '101 RUNNING\\n102 RUNNING\\n'""")
    now = time.time()
    done = commit_run(grepo, record("local-1", grepo, launched_at=now - 50), ok())
    first, _ = on_hpc(grepo, "a-1", hpc, job="101", ago=40)
    second, _ = on_hpc(grepo, "b-2", hpc, job="102", ago=30)
    ended, state = launched(grepo, "c-3", ago=20)  # live too, but its store is here
    state.write_result(ok(loss=0.25), snapshot=ended.record.snapshot)
    got = {r.id: r for r in runs.list_runs(grepo)}
    assert [r.id for r in runs.list_runs(grepo, refresh=False)] == ["c-3", "b-2", "a-1",
                                                                   "local-1"]
    assert got["local-1"] == done
    for made in (first, second):
        run = got[made.id]
        assert (run.status, run.written_back, run.commit) == ("running", False, made.commit)
        assert run.result is not None and run.result.started_at == made.record.launched_at + 1
    assert got["c-3"].written_back and got["c-3"].result == ok(loss=0.25)
    assert grepo.rev_parse(ids.ref_for("c-3")) == got["c-3"].commit != ended.commit


# -- find -------------------------------------------------------------------------------------
def test_find_takes_an_exact_id_before_the_ids_it_begins(grepo: Repo) -> None:
    short = commit_run(grepo, record("a-1", grepo), ok(loss=0.5))
    longer = commit_run(grepo, record("a-12", grepo), ok())
    assert runs.find(grepo, "a-1", refresh=False) == short
    assert runs.find(grepo, "a-12", refresh=False) == longer
    with pytest.raises(GitexpError) as err:  # a part of both: which one is not ours to say
        runs.find(grepo, "a-", refresh=False)
    assert not isinstance(err.value, UnknownRunError)
    assert err.value.message == "'a-' matches 2 runs: a-1, a-12"
    assert err.value.hint == "give more of the id"


def test_find_by_a_unique_prefix_or_suffix_of_the_id(grepo: Repo) -> None:
    made = commit_run(grepo, record("train-7x3k", grepo), ok())
    commit_run(grepo, record("eval-1", grepo), ok())
    assert runs.find(grepo, "train", refresh=False) == made
    assert runs.find(grepo, "7x3k", refresh=False) == made
    assert runs.find(grepo, "x3k", refresh=False) == made
    for spec in ("zzz", "", "rain", "Not_An_Id"):
        with pytest.raises(UnknownRunError):
            runs.find(grepo, spec, refresh=False)


def test_find_reads_no_ref_whose_name_is_not_a_run_id(grepo: Repo) -> None:
    made = commit_run(grepo, record("a-1", grepo), ok())
    grepo.git("update-ref", "refs/experiments/Not_An_Id", made.commit)
    with pytest.raises(UnknownRunError):
        runs.find(grepo, "Not_An_Id", refresh=False)


def test_find_by_exact_id_reads_a_written_back_run_whole(grepo: Repo) -> None:
    made = commit_run(grepo, record("a-1", grepo), ok(loss=0.5))
    got = runs.find(grepo, "a-1", refresh=False)
    assert got == made
    assert (got.commit, got.record.snapshot) == (made.commit, made.record.snapshot)
    assert got.commit != got.record.snapshot and got.written_back and got.own
    assert got.result == ok(loss=0.5)
    live = commit_run(grepo, record("b-2", grepo), None)
    assert runs.find(grepo, "b-2", refresh=False) == live
    assert not runs.find(grepo, "b-2", refresh=False).written_back


def test_find_knows_a_written_back_run_is_this_users_by_its_snapshot(grepo: Repo) -> None:
    live = commit_run(grepo, record("a-1", grepo), None)
    written = write_back(grepo, live.record, ok(), None)  # adds the results directory
    assert grepo.rev_parse(f"{written}^{{tree}}") != grepo.rev_parse(f"{live.commit}^{{tree}}")
    got = runs.find(grepo, "a-1", refresh=False)
    assert (got.commit, got.written_back, got.own) == (written, True, True)


def test_find_knows_a_fetched_run_is_not_this_users(grepo: Repo) -> None:
    fetched = foreign(grepo, "f-1")
    got = runs.find(grepo, "f-1", refresh=False)
    assert not got.own and got.record.snapshot == fetched.commit


def test_an_unreadable_run_is_named_in_full_with_why(grepo: Repo) -> None:
    tree = grepo.git("rev-parse", "HEAD^{tree}").strip()
    bad = grepo.commit_tree(tree, [], "gitexp run c-33\n\nnot json\n")
    grepo.git("update-ref", ids.ref_for("c-33"), bad)
    for spec in ("c-33", "c-3"):
        with pytest.raises(GitexpError) as err:
            runs.find(grepo, spec, refresh=False)
        assert err.value.message.startswith("run c-33 has an unreadable record (")
        assert err.value.hint == "`git exp rm c-33` removes it"


@pytest.mark.parametrize(("make", "why"), [
    (lambda repo: repo.hash_object(b"just a blob"), "not a commit"),
    (lambda repo: repo.commit_tree(repo.git("rev-parse", "HEAD^{tree}").strip(), [],
                                   "gitexp run g-1\n\n" + "x" * (index.MAX_COMMIT + 10)),
     "over the size a record may have"),
])
def test_a_ref_to_a_blob_or_a_giant_commit_is_an_unreadable_record(
        grepo: Repo, make: Any, why: str) -> None:
    grepo.git("update-ref", ids.ref_for("g-1"), make(grepo))
    with pytest.raises(GitexpError) as err:
        runs.find(grepo, "g-1", refresh=False)
    assert err.value.message == f"run g-1 has an unreadable record ({why})"


def test_find_observes_an_unfinished_run_with_this_repositorys_settings(grepo: Repo) -> None:
    made, state = launched(grepo, "a-1", ago=60)  # exp.lostAfter is 3 s here
    state.set_running(started=made.record.launched_at, pid=5)
    put(state, HEARTBEAT, {"time": time.time() - 30, "interval": 60})
    assert runs.find(grepo, "a-1", refresh=False) == made
    got = runs.find(grepo, "a-1")
    assert got.written_back and got.result is not None and got.result.status == "lost"
    assert got.commit == grepo.rev_parse(ids.ref_for("a-1")) != made.commit


# -- store_of ---------------------------------------------------------------------------------
def test_a_local_runs_store_follows_the_repository(grepo: Repo) -> None:
    made, _ = launched(grepo, "a-1", store="file:///where/the/repository/was")
    store = runs.store_of(grepo, made)
    assert store.url == local_store(grepo)


def test_a_fetched_runs_store_is_never_opened(grepo: Repo) -> None:
    with pytest.raises(GitexpError) as err:
        runs.store_of(grepo, foreign(grepo, "f-1"))
    assert "launched elsewhere" in err.value.message


def test_a_remote_runs_store_is_opened_only_while_its_target_still_names_it(
        grepo: Repo, hpc: str, tmp_path: Path) -> None:
    made, _ = launched(grepo, "a-1", target="hpc", backend="slurm", store=hpc)
    assert runs.store_of(grepo, made).url == hpc
    assert runs.store_of(grepo, made, Config.load(grepo)).url == hpc
    for config in (
            {"exp.target.hpc.backend": "slurm", "exp.target.hpc.store": (tmp_path / "x").as_uri()},
            {"exp.target.hpc.backend": "docker", "exp.target.hpc.store": hpc},
            {}):
        with pytest.raises(GitexpError) as err:
            runs.store_of(grepo, made, Config(config))
        assert "is no longer 'hpc'" in err.value.message


# -- observe ----------------------------------------------------------------------------------
def test_a_fetched_unfinished_run_is_left_to_its_own_clone(grepo: Repo) -> None:
    run = foreign(grepo, "f-1", ago=86400)
    RunState(open_store(local_store(grepo)), "f-1").write_result(ok(), snapshot=run.commit)
    assert runs.observe(grepo, Config.load(grepo), run) == run
    (listed,) = runs.list_runs(grepo)
    assert listed.status == "queued" and not listed.written_back
    assert grepo.rev_parse(ids.ref_for("f-1")) == run.commit


def test_a_local_run_of_another_repositorys_store_is_not_judged_here(grepo: Repo) -> None:
    made, _ = launched(grepo, "a-1", ago=86400, store="file:///another/clone/.git/gitexp/store")
    assert runs.observe(grepo, Config.load(grepo), made) == made
    # ... unless this repository's store has the run: the repository moved
    (grepo.gitexp_dir / "store" / "runs" / "a-1").mkdir(parents=True)
    got = runs.observe(grepo, Config.load(grepo), made)
    assert got.written_back and got.result is not None and got.result.status == "lost"


def test_a_finished_run_is_written_back_with_its_log_and_metrics(grepo: Repo) -> None:
    made, state = launched(grepo, "a-1")
    state.store.write(run_key("a-1", "log"), b"epoch 1\n")
    state.store.write(run_key("a-1", "metrics.jsonl"), b'{"loss": 0.5}\n')
    state.write_result(ok(loss=0.5), snapshot=made.record.snapshot)
    got = runs.observe(grepo, Config.load(grepo), made)
    assert got == Run(record=made.record, result=ok(loss=0.5), commit=got.commit,
                      written_back=True, own=True)
    assert grepo.rev_parse(ids.ref_for("a-1")) == got.commit != made.commit
    assert results_files(grepo, got) == ["log.txt", "metrics.jsonl", "record.json",
                                         "result.json"]


def test_a_result_stamped_for_another_run_ends_it_taking_nothing_from_the_store(
        grepo: Repo) -> None:
    made, state = launched(grepo, "a-1")
    state.store.write(run_key("a-1", "log"), b"someone else's log\n")
    put(state, RESULT, {**ok().to_dict(), "run": "a-1", "snapshot": "f" * 40})
    before = time.time()
    got = runs.observe(grepo, Config.load(grepo), made)
    assert got.written_back and got.own and got.result is not None
    assert (got.result.status, got.result.metrics) == ("lost", {})
    assert got.result.ended_at is not None and before <= got.result.ended_at <= time.time()
    assert got.result.error is not None and "not taken" in got.result.error
    assert "log.txt" not in results_files(grepo, got)


def test_an_unreachable_store_leaves_the_run_as_git_has_it(grepo: Repo, hpc: str,
                                                           tmp_path: Path) -> None:
    made, _ = on_hpc(grepo, "a-1", hpc, job="101", ago=86400)
    git("config", "exp.target.hpc.store", (tmp_path / "moved").as_uri(), cwd=grepo.root)
    assert runs.observe(grepo, Config.load(grepo), made) == made
    assert runs.find(grepo, "a-1") == made


# -- how a live run is doing --------------------------------------------------------------------
def test_a_running_run_says_since_when_and_where(grepo: Repo) -> None:
    made, state = launched(grepo, "a-1", ago=3600)  # long past any launch timeout
    state.set_running(started=made.record.launched_at + 2, pid=5)
    state.beat(60.0)
    got = runs.observe(grepo, Config.load(grepo), made)
    assert got == replace(made, result=Result(status="running",
                                              started_at=made.record.launched_at + 2,
                                              host=socket.gethostname()))
    assert grepo.rev_parse(ids.ref_for("a-1")) == made.commit


def test_a_silent_run_is_lost_at_its_last_beat_with_its_last_metrics(grepo: Repo) -> None:
    made, state = launched(grepo, "a-1", ago=3600)
    state.set_running(started=made.record.launched_at + 2, pid=5)
    last = time.time() - 1000
    put(state, HEARTBEAT, {"time": last, "interval": 0.3})
    state.store.write(run_key("a-1", "metrics.jsonl"),
                      b'{"step": 1, "loss": 0.9}\n{"step": 2, "loss": 0.4, "acc": 0.8}\n{"lo')
    got = runs.observe(grepo, Config.load(grepo), made)
    assert got.written_back and got.result is not None
    assert got.result.status == "lost" and got.result.ended_at == last
    assert got.result.error is not None
    assert re.fullmatch(r"no heartbeat for 10\d\ds", got.result.error)
    assert (got.result.started_at, got.result.host) == (made.record.launched_at + 2,
                                                        socket.gethostname())
    assert got.result.metrics == {"loss": 0.4, "acc": 0.8}


@pytest.mark.parametrize(("lost_after", "interval", "silent", "status"), [
    (None, 100.0, 200.0, "running"),  # five beats and some: 505 s
    (None, 1.0, 200.0, "lost"),  # 10 s
    ("3", 100.0, 10.0, "lost"),  # exp.lostAfter wins over the beat's own interval
    ("600", 1.0, 200.0, "running"),
])
def test_a_heartbeat_is_judged_by_exp_lost_after_or_its_own_interval(
        grepo: Repo, lost_after: str | None, interval: float, silent: float,
        status: str) -> None:
    if lost_after is None:
        git("config", "--unset", "exp.lostAfter", cwd=grepo.root)
    else:
        git("config", "exp.lostAfter", lost_after, cwd=grepo.root)
    _, state = launched(grepo, "a-1", ago=3600)
    state.set_running(started=time.time() - 3000, pid=5)
    put(state, HEARTBEAT, {"time": time.time() - silent, "interval": interval})
    (got,) = runs.list_runs(grepo)
    assert got.status == status and got.written_back == (status == "lost")


def test_a_run_whose_agent_is_gone_is_lost(grepo: Repo) -> None:
    made, state = launched(grepo, "a-1", ago=60)
    state.set_running(started=made.record.launched_at, pid=5)
    state.beat(60.0)
    state.set_handle("local", {"host": socket.gethostname(), "pid": dead_pid()})
    got = runs.observe(grepo, Config.load(grepo), made)
    assert got.result is not None and got.written_back
    assert (got.result.status, got.result.error) == ("lost", "the agent is gone")
    beat = state.heartbeat()
    assert beat is not None and got.result.ended_at == beat.time


def test_a_run_without_a_beat_whose_agent_is_gone_ends_now(grepo: Repo) -> None:
    made, state = launched(grepo, "a-1", ago=5)
    state.set_handle("local", {"host": socket.gethostname(), "pid": dead_pid()})
    before = time.time()
    got = runs.observe(grepo, Config.load(grepo), made)
    assert got.result is not None and got.result.error == "the agent is gone"
    assert got.result.ended_at is not None and before <= got.result.ended_at <= time.time()
    assert (got.result.started_at, got.result.host) == (None, None)


def test_an_agent_another_host_runs_is_not_judged_here(grepo: Repo) -> None:
    # no beat, long launched: only the handle says an agent started, and it is elsewhere
    made, state = launched(grepo, "a-1", ago=86400)
    state.set_handle("local", {"host": "not-" + socket.gethostname(), "pid": dead_pid()})
    got = runs.observe(grepo, Config.load(grepo), made)
    assert got == replace(made, result=Result(status="queued"))


def test_slurm_says_how_a_job_without_a_result_ended(grepo: Repo, hpc: str,
                                                     tmp_path: Path) -> None:
    squeue_says(tmp_path, "echo '101 FAILED'")
    made, _ = on_hpc(grepo, "a-1", hpc, job="101", ago=60)
    got = runs.observe(grepo, Config.load(grepo), made)
    assert got.result is not None and got.written_back
    assert (got.result.status, got.result.error) == (
        "failed", "Slurm job 101 ended FAILED without the agent's result")
    squeue_says(tmp_path, "echo '102 RUNNING'")
    other, _ = on_hpc(grepo, "b-2", hpc, job="102", ago=60)
    slurm._queue_cache.clear()
    assert runs.observe(grepo, Config.load(grepo), other).status == "running"


def test_a_result_that_arrives_while_the_run_is_judged_lost_is_taken(
        grepo: Repo, hpc: str, tmp_path: Path) -> None:
    made, state = on_hpc(grepo, "a-1", hpc, job="101", ago=60)
    ready = tmp_path / "result.json"
    ready.write_text(json.dumps({**ok(loss=0.5).to_dict(), "run": "a-1",
                                 "snapshot": made.record.snapshot}))
    # the job ends and its agent's result lands just as Slurm forgets it
    squeue_says(tmp_path, f"cp '{ready}' '{Path(state.store.url[7:]) / 'runs/a-1/result.json'}'")
    got = runs.observe(grepo, Config.load(grepo), made)
    assert got.written_back and got.result == ok(loss=0.5)


# -- a launch that never reached its agent -------------------------------------------------------
def test_a_launch_is_given_exp_lost_after_to_reach_the_store(grepo: Repo) -> None:
    made, _ = launched(grepo, "a-1", ago=0.5)
    assert runs.observe(grepo, Config.load(grepo), made) == replace(
        made, result=Result(status="queued"))
    made, _ = launched(grepo, "b-2", ago=60)  # lostAfter (3 s) < 60 s < LAUNCH_TIMEOUT
    got = runs.observe(grepo, Config.load(grepo), made)
    assert got.written_back and got.result is not None and got.result.status == "lost"
    assert got.result.error == "the launch was interrupted before it reached the store"


def test_a_long_exp_lost_after_also_delays_the_launch_timeout(grepo: Repo) -> None:
    git("config", "exp.lostAfter", "500", cwd=grepo.root)
    made, _ = launched(grepo, "a-1", ago=LAUNCH_TIMEOUT + 100)
    assert runs.observe(grepo, Config.load(grepo), made).status == "queued"
    made, _ = launched(grepo, "b-2", ago=600)
    got = runs.observe(grepo, Config.load(grepo), made)
    assert got.result is not None
    assert got.result.error == "the launch was interrupted before the agent started"


def test_the_launch_limits_are_exp_lost_after_and_launch_timeout_exactly(grepo: Repo) -> None:
    made, state = launched(grepo, "a-1")
    config, start = Config.load(grepo), made.record.launched_at  # exp.lostAfter = 3
    assert runs._launch_lost(config, state, made.record, None, start + 2.9) is None
    assert runs._launch_lost(config, state, made.record, None, start + 3) == \
        "the launch was interrupted before it reached the store"
    assert runs._launch_lost(config, state, made.record, None, start + LAUNCH_TIMEOUT) == \
        "the launch was interrupted before it reached the store"
    assert runs._launch_lost(config, state, made.record, None, start + LAUNCH_TIMEOUT + 1) \
        == "the launch was interrupted before the agent started"


def test_a_queued_run_whose_launcher_died_here_is_lost(grepo: Repo) -> None:
    made, state = launched(grepo, "a-1", ago=60)
    put(state, STATUS, {"status": "queued",
                        "launcher": {"host": socket.gethostname(), "pid": dead_pid()}})
    got = runs.observe(grepo, Config.load(grepo), made)
    assert got.written_back and got.result is not None
    assert got.result.error == "the launch was interrupted before the agent started"


@pytest.mark.parametrize("launcher", [
    None,  # an older launcher that did not name itself
    {"host": "not-this-host", "pid": 1},  # elsewhere: this host cannot tell
    {"host": "here", "pid": 1 << 70},  # no pid there could be
])
def test_a_queued_run_whose_launcher_cannot_be_seen_waits(
        grepo: Repo, launcher: dict[str, Any] | None) -> None:
    made, state = launched(grepo, "a-1", ago=60)
    if launcher and launcher["host"] == "here":
        launcher = {**launcher, "host": socket.gethostname()}
    put(state, STATUS, {"status": "queued", **({"launcher": launcher} if launcher else {})})
    assert runs.observe(grepo, Config.load(grepo), made) == replace(
        made, result=Result(status="queued"))


def test_a_queued_run_whose_launcher_still_runs_waits_and_the_launcher_is_left_alone(
        grepo: Repo) -> None:
    launcher = subprocess.Popen(["sleep", "30"])
    try:
        made, state = launched(grepo, "a-1", ago=60)
        put(state, STATUS, {"status": "queued",
                            "launcher": {"host": socket.gethostname(), "pid": launcher.pid}})
        assert runs.observe(grepo, Config.load(grepo), made).status == "queued"
        with pytest.raises(subprocess.TimeoutExpired):  # looked at, not signalled
            launcher.wait(timeout=0.3)
    finally:
        launcher.kill()
        launcher.wait()


def test_a_container_runs_store_is_this_repositorys_unless_its_target_names_one(
        grepo: Repo) -> None:
    git("config", "exp.target.box.backend", "docker", cwd=grepo.root)
    made, _ = launched(grepo, "a-1", target="box", backend="docker")
    assert runs.store_of(grepo, made).url == local_store(grepo)


def test_observe_reads_the_configuration_it_is_given(grepo: Repo, hpc: str,
                                                     tmp_path: Path) -> None:
    made, state = on_hpc(grepo, "a-1", hpc, job="101")
    state.write_result(ok(), snapshot=made.record.snapshot)
    given = Config.load(grepo)
    git("config", "--remove-section", "exp.target.hpc", cwd=grepo.root)  # changed meanwhile
    got = runs.observe(grepo, given, made)
    assert got.written_back and got.result == ok()
