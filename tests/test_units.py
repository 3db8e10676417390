"""The core's small pure functions, answer by answer: run ids and names, durations, the
diff's change lists, gc's policy and ranking. Each case is one a plausible slip (an
off-by-one, a lost sign, a boolean taken for a number) would get wrong."""

from __future__ import annotations

import re

import pytest

from gitexp.data import compare
from gitexp.errors import GitexpError
from gitexp.model import ids
from gitexp.model.record import Environment, Result, RunRecord, format_duration
from gitexp.service import diff, gc, rerun, where
from gitexp.service.runs import Run


def test_default_names_from_commands() -> None:
    cases = {
        ("python", "train.py", "--lr", "3"): "train",
        ("python3.11", "-m", "pkg.sub.train"): "train",
        ("python", "-m"): "python",  # `-m` and nothing: the interpreter's own name
        ("python", "-u", "x.py"): "python",  # an option first: no script to name it by
        ("./scripts/Run Me!.sh",): "run-me",
        ("/usr/bin/bash", "job.sh"): "job",
        ("uv", "run.py"): "run",
        ("pythonic",): "pythonic",  # not an interpreter, just a name that starts so
        (".hidden",): "hidden",
        ("x" * 30 + ".py",): "x" * 24,
        ("a" * 23 + "-b.py",): "a" * 23,  # cut at 24, the dash left dangling is dropped
        ("---",): "run",
        (): "run",
    }
    for argv, want in cases.items():
        assert ids.default_name(list(argv)) == want, argv


def test_new_ids_are_name_date_time_and_four_unambiguous_letters() -> None:
    when = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC; the id uses local time
    import time

    stamp = time.strftime("%m%d-%H%M", time.localtime(when))
    made = {ids.new_id("train", when) for _ in range(50)}
    for run_id in made:
        assert re.fullmatch(rf"train-{stamp}-[a-z2-9]{{4}}", run_id), run_id
        assert not set(run_id[-4:]) & set("lo01i") and ids.is_valid_id(run_id)
    assert len(made) > 40  # random, not a counter


def test_ids_and_refs() -> None:
    assert ids.ref_for("a-1") == "refs/experiments/a-1"
    assert ids.id_from_ref("refs/experiments/a-1") == "a-1"
    assert ids.id_from_ref("refs/heads/a-1") is None
    assert ids.id_from_ref("refs/experiments/Bad_Id") is None
    assert ids.is_valid_id("a" * 63) and not ids.is_valid_id("a" * 64)
    assert ids.check_name("n" * 40) == "n" * 40
    for bad in ("n" * 41, "-x", "x-", "a--b", ""):
        with pytest.raises(GitexpError):
            ids.check_name(bad)
    with pytest.raises(GitexpError):
        ids.ref_for("a/b")


def test_durations_at_their_boundaries() -> None:
    cases = [(None, "-"), (float("nan"), "-"), (float("inf"), "-"), (0.0, "0.0s"),
             (4.25, "4.2s"), (59.9, "59.9s"), (60.0, "1m00s"), (187.0, "3m07s"),
             (3599.0, "59m59s"), (3600.0, "1h00m"), (7500.0, "2h05m"), (90061.0, "25h01m")]
    for seconds, want in cases:
        assert format_duration(seconds) == want, seconds


def test_changed_keeps_only_what_differs_and_tells_missing_from_none() -> None:
    a = {"same": 1, "diff": 1, "none": None, "gone": 2}
    b = {"same": 1, "diff": 2, "new": 3}
    assert diff.changed(a, b) == {"diff": {"a": 1, "b": 2}, "gone": {"a": 2, "b": None},
                                  "new": {"a": None, "b": 3}, "none": {"a": None, "b": None}}
    assert diff.changed({}, {}) == {}
    # a boolean is no number: true and 1 differ (1 and 1.0 are the same JSON number)
    assert diff.changed({"fast": True, "n": 1}, {"fast": 1, "n": 1.0}) == {
        "fast": {"a": True, "b": 1}}


def test_metric_deltas_only_between_numbers() -> None:
    out = diff.metrics({"n": 4, "flag": True, "s": "x", "z": 0.0, "one": 1.0},
                       {"n": 5, "flag": False, "s": "y", "z": 1.0})
    assert out["n"] == {"a": 4, "b": 5, "delta": 1, "pct": 25.0}
    assert out["flag"]["delta"] is None and out["s"]["delta"] is None  # booleans: no numbers
    assert out["z"] == {"a": 0.0, "b": 1.0, "delta": 1.0, "pct": None}  # from zero: no %
    assert out["one"] == {"a": 1.0, "b": None, "delta": None, "pct": None}


def _run(run_id: str, status: str, launched_at: float, **metrics: object) -> Run:
    record = RunRecord(id=run_id, argv=["true"], cwd="", base=None, branch=None, user="u",
                       launched_at=launched_at, target="local", backend="local", store="file:///s",
                       env=Environment(python="3", platform="p"))
    return Run(record=record, result=Result(status=status, metrics=dict(metrics)), commit="c",
               written_back=status not in ("queued", "running"))


def test_gc_selects_by_age_status_and_rank_never_live_runs() -> None:
    day = 86400.0
    runs = [_run("new-good", "succeeded", 10 * day, loss=0.1),
            _run("old-good", "succeeded", 0.0, loss=0.2),
            _run("old-failed", "failed", 0.0),
            _run("old-lost", "lost", 0.0, loss=0.05),
            _run("old-cancelled", "cancelled", 0.0),
            _run("old-live", "running", 0.0, loss=9.0),
            _run("flag", "succeeded", 0.0, loss=True),  # a boolean has no rank
            _run("exactly-a-day", "succeeded", 9 * day, loss=0.3)]
    now = 10 * day

    def ids(**policy: object) -> set[str]:
        return {r.id for r in gc.select(runs, gc.Policy(**policy), now=now)}  # type: ignore

    assert ids(older_than=day) == {"old-good", "old-failed", "old-lost", "old-cancelled",
                                   "flag"}  # exactly a day old is not older than a day
    assert ids(failed=True) == {"old-failed", "old-lost", "old-cancelled"}
    assert ids(keep_best=("loss", 2)) == {"old-good", "exactly-a-day"}  # keeps 0.05, 0.1
    assert ids(keep_best=("-loss", 1)) == {"new-good", "old-good", "old-lost"}
    assert ids(keep_best=("loss", 0)) == {"new-good", "old-good", "old-lost", "exactly-a-day"}
    assert ids(failed=True, keep_best=("loss", 0)) == {"old-lost"}


def test_gc_policy_needs_a_criterion_and_takes_a_zero_count() -> None:
    assert gc.Policy.parse(older_than="30d", failed=False, keep_best=None).older_than == 30 * 86400
    assert gc.Policy.parse(older_than=None, failed=False, keep_best=("loss", 0)).keep_best \
        == ("loss", 0)
    assert gc.Policy.parse(older_than=None, failed=True, keep_best=None).failed
    for kwargs in ({"older_than": None, "failed": False, "keep_best": None},
                   {"older_than": "soon", "failed": False, "keep_best": None},
                   {"older_than": None, "failed": False, "keep_best": ("loss", -1)},
                   {"older_than": None, "failed": False, "keep_best": ("lo ss", 1)}):
        with pytest.raises(GitexpError):
            gc.Policy.parse(**kwargs)  # type: ignore[arg-type]


def test_rerun_closeness_and_output_hashes() -> None:
    close = compare.close  # the one rule for metrics and numbers in outputs
    assert close(1.0, 1.0, 0.0, 0.0) and not close(1.0, 1.0000001, 0.0, 0.0)
    assert close(100.0, 101.0, 0.01, 0.0) and not close(100.0, 101.5, 0.01, 0.0)
    assert close(-100.0, -101.0, 0.01, 0.0)  # relative to the size of a negative value
    assert close(1.0, 1.5, 0.0, 0.5) and not close(1.0, 1.6, 0.0, 0.5)
    assert close(float("nan"), float("nan"), 0, 0) and not close(float("nan"), 1.0, 1, 1)
    assert not close(True, 1, 0.0, 1.0) and not close(1, True, 0.0, 0.0)  # no numbers
    assert close(True, True, 0, 0) and not close(False, True, 0, 0)
    assert close("a", "a", 0, 0) and not close("a", "b", 0, 0) and close(None, None, 0, 0)
    assert [rerun._hash(e) for e in ({"hash": "h1"}, "h2", {}, {"hash": 3})] == \
        ["h1", "h2", "None", "3"]


def test_where_values_and_names() -> None:
    row = {"status": "succeeded", "metrics": {"loss": 0.5, "lr": 9.0},
           "params": {"lr": 0.1, "train.bs": 32, "a.x": 1, "b.x": 2}}
    assert where.value_of(row, "status") == "succeeded"
    assert where.value_of(row, "lr") == 9.0  # a metric before a param
    assert where.value_of(row, "params.lr") == 0.1 and where.value_of(row, "metrics.lr") == 9.0
    assert where.value_of(row, "bs") == 32  # the one key that ends so
    assert where.value_of(row, "x") is None  # two end so: ambiguous, so missing
    assert where.value_of(row, "metrics") is None and where.value_of(row, "params.") is None
    rows = [row]
    assert not where.needs_params(["status", "loss", "run", "metrics.loss"], rows)
    assert where.needs_params(["params.lr"], rows) and where.needs_params(["depth"], rows)
    assert not where.needs_params([], rows)
    assert where.sort_keys(" -loss, acc ,+lr,") == [("loss", True), ("acc", False),
                                                    ("lr", False)]


def test_row_of_is_every_field_by_name() -> None:
    rec = RunRecord(id="r-1", argv=["python", "t.py", "--lr", "0.1"], cwd="sub", base="b" * 40,
                    branch="main", user="u <u@x>", launched_at=100.0, target="gpu",
                    backend="ssh", store="file:///s", env=Environment(python="3", platform="p"),
                    params={"depth": 4, "lr": 0.2}, name="r", rerun_of="r-0", sweep="sw",
                    snapshot="s" * 40)
    res = Result(status="failed", exit_code=2, started_at=101.0, ended_at=104.5, host="h",
                 metrics={"loss": 0.5}, error="boom", check={"reproduced": True})
    assert where.row_of(rec, res, "c" * 40) == {
        "id": "r-1", "status": "failed", "target": "gpu", "backend": "ssh", "user": "u <u@x>",
        "branch": "main", "cwd": "sub", "name": "r", "sweep": "sw", "rerun_of": "r-0",
        "base": "b" * 40, "snapshot": "s" * 40, "commit": "c" * 40, "launched_at": 100.0,
        "started": 101.0, "ended": 104.5, "duration": 3.5, "exit_code": 2, "host": "h",
        "command": "python t.py --lr 0.1", "error": "boom", "verdict": "reproduced",
        "metrics": {"loss": 0.5}, "params": {"lr": 0.2, "depth": 4}, "written_back": True,
        "own": False, "launched_from": None, "attempt": 1}
    live = where.row_of(rec, None)
    assert live["status"] == "queued" and live["written_back"] is False
    assert live["verdict"] is None and live["commit"] == "" and live["duration"] is None
    failed_check = where.row_of(rec, Result(status="succeeded", check={"reproduced": False}))
    assert failed_check["verdict"] == "not reproduced"
    extra = {"commit", "metrics", "params", "written_back", "attempt"}
    assert set(where.FIELDS) | extra == set(live)
    assert set(where.SUMMARY) <= set(live)


def test_query_refuses_unknown_statuses_columns_and_sorts() -> None:
    assert where.Query(status=("lost",), columns=("loss", "params.lr")).filters()
    assert not where.Query(columns=("loss",), sort="-loss", limit=3).filters()
    assert where.Query(sweep="s").filters() and where.Query(target=("t",)).filters()
    assert where.Query(where="loss < 1").filters()
    for bad in ({"status": ("done",)}, {"columns": ("a b",)}, {"sort": "lo ss"}):
        with pytest.raises(GitexpError):
            where.Query(**bad)  # type: ignore[arg-type]
    assert where.Query(sort="-acc", columns=("lr",), where="x < 1 or y == 2").names() == \
        ["acc", "lr", "x", "y"]
    rows = [{"id": str(i), "status": "succeeded", "target": "t", "sweep": None,
             "launched_at": float(i), "metrics": {}, "params": {}} for i in range(5)]
    assert [r["id"] for r in where.select(rows, where.Query(limit=2))] == ["4", "3"]
    assert where.select(rows, where.Query(limit=0)) == []
    with pytest.raises(GitexpError):
        where.select(rows, where.Query(limit=-1))


def test_sort_puts_numbers_before_strings_and_booleans_with_the_strings() -> None:
    values = {"a": 2, "b": "x", "c": 1.5, "d": True, "e": None, "f": "b"}
    rows = [{"id": k, "status": "succeeded", "target": "t", "sweep": None,
             "launched_at": float(i), "metrics": {"m": v}, "params": {}}
            for i, (k, v) in enumerate(values.items())]
    # True is no number (it sorts as the text "True"); a run without the value goes last
    assert [r["id"] for r in where.select(rows, where.Query(sort="m"))] == \
        ["c", "a", "d", "f", "b", "e"]
    assert [r["id"] for r in where.select(rows, where.Query(sort="-m"))] == \
        ["b", "f", "d", "a", "c", "e"]


def test_a_record_from_a_dict_carries_the_snapshot_it_is_given_and_checks_every_field() -> None:
    # The first test here to build records from JSON: it also pins the type checks, whose
    # compiled form is cached per class (so a later test would not run them afresh).
    rec = RunRecord(id="r-1", argv=["x"], cwd="", base=None, branch=None, user="u",
                    launched_at=1.0, target="local", backend="local", store="file:///s",
                    env=Environment(python="3", platform="p"))
    assert RunRecord.from_dict(rec.to_dict(), "s" * 40) == rec.with_snapshot("s" * 40)
    assert RunRecord.from_dict(rec.to_dict()).snapshot == ""
    res = Result(status="failed", exit_code=0, started_at=1, ended_at=2.5, host=None)
    assert Result.from_dict(res.to_dict()) == res  # an int where a float goes is a number
    refused = {
        "exit_code": (True, "exit_code is bool, not int or null"),
        "started_at": (False, "started_at is bool, not float or null"),
        "metrics": ([1], "metrics is list, not "),
        "status": ("done", "unknown status 'done'"),
    }
    for name, (value, why) in refused.items():
        with pytest.raises(GitexpError) as err:
            Result.from_dict({**res.to_dict(), name: value})
        assert err.value.message.startswith(f"corrupted result: {why}"), err.value.message
    forged = {
        "argv": ([1], "argv is list, not list[str]"),
        "base": (3, "base is int, not str or null"),
        "launched_at": (True, "launched_at is bool, not float"),
        "env": ({"python": 3, "platform": "p"}, "python is int, not str"),
        "id": ("Bad_Id", "invalid run id 'Bad_Id'"),
    }
    for name, (value, why) in forged.items():
        with pytest.raises(GitexpError) as err:
            RunRecord.from_dict({**rec.to_dict(), name: value})
        assert err.value.message == f"corrupted run record: {why}", err.value.message


def test_run_state_files_read_back_only_what_they_may_hold() -> None:
    from gitexp.model.runstate import Heartbeat, Launcher, RunState
    from tests.helpers import MemoryStore

    store = MemoryStore()
    state = RunState(store, "r-1")
    assert state.status() is None and state.heartbeat() is None and state.handle() is None
    state.set_queued()
    queued = state.status()
    assert queued is not None and queued.status == "queued" and queued.launcher is not None
    assert isinstance(queued.launcher, Launcher) and queued.launcher.pid > 0
    state.set_running(started=5.0, pid=42)
    running = state.status()
    assert running is not None and (running.status, running.started, running.pid) == \
        ("running", 5.0, 42) and running.host and running.launcher is None
    store.write(state.key("status.json"), b'{"status": "succeeded", "started": true, '
                                          b'"host": 3, "pid": true, '
                                          b'"launcher": {"host": "h", "pid": "1"}}')
    odd = state.status()
    assert odd is not None and (odd.status, odd.started, odd.host, odd.pid, odd.launcher) == \
        ("queued", None, None, None, None)
    state.beat(0.5)
    beat = state.heartbeat()
    assert isinstance(beat, Heartbeat) and beat.interval == 0.5 and state.has_heartbeat()
    assert not beat.stale(beat.time + 1.0, 2.0) and beat.stale(beat.time + 2.5, 2.0)


def test_a_result_is_written_once_and_only_for_its_own_run_and_snapshot() -> None:
    from gitexp.model.runstate import ForeignResultError, RunState
    from tests.helpers import MemoryStore

    rec = RunRecord(id="r-1", argv=["x"], cwd="", base=None, branch=None, user="u",
                    launched_at=1.0, target="local", backend="local", store="file:///s",
                    env=Environment(python="3", platform="p"), snapshot="s" * 40)
    state = RunState(MemoryStore(), "r-1")
    assert state.result(rec) is None and not state.has_result()
    first = Result(status="lost", error="first")
    assert state.write_result_once(first, snapshot=rec.snapshot) is True
    assert state.write_result_once(Result(status="lost", error="second"),
                                   snapshot=rec.snapshot) is False
    assert state.result(rec) == first
    with pytest.raises(ForeignResultError):
        state.result(RunRecord.from_dict(rec.to_dict(), "t" * 40))  # another snapshot
    with pytest.raises(ForeignResultError):  # the same snapshot, but another run's result
        state.result(RunRecord.from_dict({**rec.to_dict(), "id": "r-2"}, rec.snapshot))
    beating = RunState(MemoryStore(), "r-1")
    beating.beat(1.0)  # an agent is there: it writes its own result
    assert beating.write_result_once(first, snapshot=rec.snapshot) is False
    assert not beating.has_result()
    damaged = RunState(MemoryStore(), "r-1")
    damaged.store.write(damaged.key("result.json"), b'{"status": 3}')
    got = damaged.result(rec)
    assert got is not None and got.status == "lost" and got.error.startswith("result.json")


def test_run_state_files_are_read_bounded_and_a_giant_one_reads_as_garbled() -> None:
    from gitexp.model.runstate import MAX_STATE, RunState
    from tests.helpers import MemoryStore

    state = RunState(MemoryStore(), "r-1")
    state.beat(2.0)
    assert state.heartbeat() is not None and state.has_heartbeat()
    # a valid beat padded past the limit: cut, it no longer parses, so no sign of life
    padded = b'{"time": 1e9, "interval": 2, "pad": "' + b"x" * MAX_STATE + b'"}'
    state.store.write(state.key("heartbeat"), padded)
    assert state.heartbeat() is None and state.has_heartbeat()  # there, but garbled
    state.store.write(state.key("status.json"), b'{"status": "running", "pad": "' +
                      b"x" * MAX_STATE + b'"}')
    assert state.status() is None


def test_a_long_where_expression_is_clipped_in_its_error() -> None:
    text = "loss < " + "1" * 200 + " and"
    with pytest.raises(GitexpError) as err:
        where.compile_where(text)
    assert f"{text[:77]}...'" in err.value.message and text not in err.value.message


def test_rerun_check_tells_a_number_from_text_and_a_missing_result() -> None:
    assert not compare.close(1.0, "1.0", 0.0, 1.0) and not compare.close("1", 1, 0.0, 1.0)
    done = _run("a-1", "succeeded", 0.0, loss=0.5)
    unfinished = Run(record=done.record, result=None, commit="c", written_back=False)
    verdict = rerun.check(done, unfinished)
    assert verdict["reproduced"] is False
    assert verdict["metrics"] == {"loss": {"a": 0.5, "b": None, "same": False}}


def test_select_by_sweep_keeps_only_that_sweep() -> None:
    rows = [{"id": str(i), "status": "succeeded", "target": "t", "sweep": s,
             "launched_at": float(i), "metrics": {}, "params": {}}
            for i, s in enumerate(["s1", None, "s2", "s1"])]
    assert [r["id"] for r in where.select(rows, where.Query(sweep="s1"))] == ["3", "0"]
