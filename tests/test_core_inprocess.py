"""The core read path in-process, on real repositories whose run commits are written with
plain git (the same messages `git exp run` writes): the index and its fallback to git,
"already succeeded", `rerun --check`/`--script`/checkout, `diff`, and a launch that never
started being called lost.

These are fast on purpose: mutation testing runs only the fastest few tests of a function
(scripts/mutmut/mutmut_hits.py), and the `git exp` tests that reach these functions take
seconds each. Each test names the behaviour it checks."""

from __future__ import annotations

import sqlite3
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from gitexp.data import version
from gitexp.data.version import DataItem
from gitexp.git import Repo
from gitexp.model import ids
from gitexp.model.record import Environment, Result, RunRecord, encode_message
from gitexp.model.row import SUMMARY
from gitexp.service import diff, index, rerun, runs, trust
from gitexp.service.runs import Run
from tests.helpers import git

LAUNCHED = 1_700_000_000.0


def record(run_id: str, repo: Repo, *, argv: list[str] | None = None, cwd: str = "",
           data: dict[str, Any] | None = None, **kw: Any) -> RunRecord:
    fields: dict[str, Any] = {
        "id": run_id, "argv": argv or ["python", "train.py"], "cwd": cwd,
        "base": repo.head(), "branch": "main", "user": "u", "launched_at": LAUNCHED,
        "target": "local", "backend": "local", "store": "file:///nowhere",
        "env": Environment(python="3.11", platform="linux"), "data": data, **kw}
    return RunRecord(**fields)


def commit_run(repo: Repo, rec: RunRecord, result: Result | None, *,
               tree: str | None = None) -> Run:
    """The run's snapshot commit (and results commit, with `result`), its ref pointing at
    the last: what launch and write-back leave in git, sealed as launch seals (this user's)."""
    tree = tree or repo.git("rev-parse", "HEAD^{tree}").strip()
    rec = replace(rec, seal=trust.seal(repo, rec, tree))
    snap = repo.commit_tree(tree, [repo.head() or ""], encode_message(rec, None))
    rec = rec.with_snapshot(snap)
    commit = snap if result is None else repo.commit_tree(tree, [snap],
                                                          encode_message(rec, result))
    repo.git("update-ref", ids.ref_for(rec.id), commit)
    return Run(record=rec, result=result, commit=commit, written_back=result is not None,
               own=True)


def ok(**metrics: Any) -> Result:
    return Result(status="succeeded", exit_code=0, started_at=LAUNCHED + 1,
                  ended_at=LAUNCHED + 2, host="h", metrics=metrics)


@pytest.fixture
def grepo(repo: Path) -> Repo:
    return Repo.discover(repo)


def break_index_dir(repo: Repo) -> None:
    """`.git/gitexp` made unusable (a file where the directory goes): no index file can be
    opened or made, so the index must answer from git alone."""
    gitexp_dir = repo.git_dir / "gitexp"
    if gitexp_dir.is_dir():
        import shutil

        shutil.rmtree(gitexp_dir)
    gitexp_dir.write_text("not a directory\n")


# -- the index ------------------------------------------------------------------------------
def test_sync_returns_every_readable_run_with_its_record_and_result(grepo: Repo) -> None:
    done = commit_run(grepo, record("a-1", grepo), ok(loss=0.5))
    live = commit_run(grepo, record("b-2", grepo), None)
    grepo.git("update-ref", "refs/experiments/Not_An_Id", done.commit)  # not a run id
    bad = grepo.commit_tree(grepo.git("rev-parse", "HEAD^{tree}").strip(), [],
                            "gitexp run c-3\n\nnot json\n")
    grepo.git("update-ref", ids.ref_for("c-3"), bad)
    for _ in range(2):  # built from git, then read back from the file
        got = {e.ref: e for e in index.sync(grepo)}
        assert sorted(got) == [ids.ref_for("a-1"), ids.ref_for("b-2")]
        a, b = got[ids.ref_for("a-1")], got[ids.ref_for("b-2")]
        assert (a.commit, a.record.snapshot, a.result) == (done.commit, done.record.snapshot,
                                                           done.result)
        assert a.written_back and a.record == done.record
        assert (b.commit, b.record.snapshot, b.result, b.written_back) == \
            (live.commit, live.commit, None, False)
    assert index.unreadable(grepo) == ["refs/experiments/Not_An_Id", ids.ref_for("c-3")]
    # what `ls` shows: a run not written back is its own snapshot
    shown = {r["id"]: r for r in index.rows(grepo)}
    assert shown["b-2"]["snapshot"] == shown["b-2"]["commit"] == live.commit
    assert shown["a-1"]["snapshot"] == done.record.snapshot != shown["a-1"]["commit"]
    assert sorted(index.run_ids(grepo)) == ["a-1", "b-2", "c-3"]


def test_the_index_file_holds_one_row_per_ref_and_is_trusted_while_the_ref_stays(
        grepo: Repo) -> None:
    done = commit_run(grepo, record("a-1", grepo, cwd="sub"), ok(loss=0.5))
    index.sync(grepo)
    db = sqlite3.connect(index.path_of(grepo))
    assert db.execute("PRAGMA user_version").fetchone()[0] == index.VERSION
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    (row,) = db.execute("SELECT ref, commit_id, run_id, snapshot, launched_at, status, target, "
                        "argv, cwd, body FROM runs").fetchall()
    assert row[:9] == (ids.ref_for("a-1"), done.commit, "a-1", done.record.snapshot, LAUNCHED,
                       "succeeded", "local", '["python","train.py"]', "sub")
    assert row[9] == encode_message(done.record, done.result)
    summary = index.rows(grepo, summary=True)
    assert [sorted(r) for r in summary] == [sorted(SUMMARY)]
    full = index.rows(grepo)
    assert full[0]["id"] == "a-1" and set(SUMMARY) < set(full[0])
    assert (full[0]["cwd"], full[0]["commit"]) == ("sub", done.commit)  # not in the summary
    # the row is keyed by commit: while the ref stays, the file is what is read
    db.execute("UPDATE runs SET row = ?, summary = ?", ('{"id":"cached"}', '{"id":"cached"}'))
    db.commit()
    assert index.rows(grepo) == [{"id": "cached"}] == index.rows(grepo, summary=True)
    # ... and a moved ref is read again from git
    moved = commit_run(grepo, record("a-1", grepo, cwd="sub"), ok(loss=0.25))
    assert index.rows(grepo)[0]["id"] == "a-1"
    assert [e.commit for e in index.sync(grepo)] == [moved.commit]
    # a ref deleted behind its back loses its row
    grepo.git("update-ref", "-d", ids.ref_for("a-1"))
    assert index.sync(grepo) == [] and index.rows(grepo) == []
    assert db.execute("SELECT count(*) FROM runs").fetchone()[0] == 0
    db.close()


def test_forget_drops_rows_and_is_harmless_without_an_index(grepo: Repo) -> None:
    commit_run(grepo, record("a-1", grepo), ok())
    commit_run(grepo, record("b-2", grepo), ok())
    index.sync(grepo)
    index.forget(grepo, [ids.ref_for("a-1")])
    db = sqlite3.connect(index.path_of(grepo))
    assert [r for (r,) in db.execute("SELECT ref FROM runs")] == [ids.ref_for("b-2")]
    db.close()
    break_index_dir(grepo)
    index.forget(grepo, [ids.ref_for("b-2")])  # no index to drop from: nothing to do
    index.store_params(grepo, {("s", ""): {"lr": 1}})
    assert index.cached_params(grepo, [("s", "")]) == {}


def _like_fixture(grepo: Repo) -> dict[str, Run]:
    argv, other = ["python", "train.py"], ["python", "train.py", "--lr", "3"]
    return {
        "ok": commit_run(grepo, record("ok-1", grepo, argv=argv), ok(loss=0.5)),
        "failed": commit_run(grepo, record("failed-1", grepo, argv=argv),
                             Result(status="failed", exit_code=1)),
        "sub": commit_run(grepo, record("sub-1", grepo, argv=argv, cwd="sub"), ok()),
        "other": commit_run(grepo, record("other-1", grepo, argv=other), ok()),
        "live": commit_run(grepo, record("live-1", grepo, argv=argv), None),
    }


@pytest.mark.parametrize("usable_index", [True, False])
def test_succeeded_like_is_only_succeeded_runs_of_that_argv_and_directory(
        grepo: Repo, usable_index: bool) -> None:
    made = _like_fixture(grepo)
    if not usable_index:
        break_index_dir(grepo)
    for _ in range(2):
        (hit,) = index.succeeded_like(grepo, ["python", "train.py"], "")
        assert (hit.ref, hit.commit) == (ids.ref_for("ok-1"), made["ok"].commit)
        assert hit.record.snapshot == made["ok"].record.snapshot
        assert hit.result == made["ok"].result
        (sub,) = index.succeeded_like(grepo, ["python", "train.py"], "sub")
        assert sub.record.id == "sub-1"
        assert index.succeeded_like(grepo, ["python", "train.py", "--lr"], "") == []
    assert not index.path_of(grepo).exists() or usable_index


# -- "already succeeded" --------------------------------------------------------------------
def test_refuse_if_succeeded_names_the_run_with_the_same_tree_and_data(grepo: Repo) -> None:
    tree = grepo.git("rev-parse", "HEAD^{tree}").strip()
    argv = ["python", "train.py"]
    rerun.refuse_if_succeeded(grepo, tree, argv, "")  # nothing ran yet
    made = commit_run(grepo, record("ok-1", grepo, argv=argv),
                      ok(**{k: i / 3 for i, k in enumerate("abcdefg")}))
    with pytest.raises(rerun.AlreadySucceededError) as err:
        rerun.refuse_if_succeeded(grepo, tree, argv, "")
    assert err.value.run.id == "ok-1" and err.value.run.commit == made.commit
    assert err.value.run.written_back
    text = err.value.message
    # at most six metrics, by name, numbers to four significant digits
    assert "a=0, b=0.3333, c=0.6667, d=1, e=1.333, f=1.667" in text and "g=" not in text
    # another tree, directory or command: nothing to refuse
    other_tree = grepo.mktree([f"100644 blob {grepo.hash_object(b'x')}\tx"])
    rerun.refuse_if_succeeded(grepo, other_tree, argv, "")
    rerun.refuse_if_succeeded(grepo, tree, argv, "sub")
    rerun.refuse_if_succeeded(grepo, tree, [*argv, "-v"], "")


def test_already_succeeded_says_when_and_shows_no_metrics_it_does_not_have(grepo: Repo) -> None:
    tree = grepo.git("rev-parse", "HEAD^{tree}").strip()
    commit_run(grepo, record("bare-1", grepo), ok())
    with pytest.raises(rerun.AlreadySucceededError) as err:
        rerun.refuse_if_succeeded(grepo, tree, ["python", "train.py"], "")
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(LAUNCHED))
    assert err.value.message.endswith(f"and succeeded at {when}")


def test_refuse_if_succeeded_compares_the_data_version_in_a_dvc_project(grepo: Repo) -> None:
    (grepo.root / ".dvc").mkdir()
    tree = grepo.git("rev-parse", "HEAD^{tree}").strip()
    argv = ["python", "train.py"]
    pinned = {"data": {"hash": "abc.dir", "algo": "md5", "size": 3, "nfiles": 1,
                       "source": "data.dvc", "is_out": True}}
    commit_run(grepo, record("old-1", grepo, argv=argv, data=pinned), ok())
    rerun.refuse_if_succeeded(grepo, tree, argv, "")  # the tree pins no data now: differs
    commit_run(grepo, record("new-1", grepo, argv=argv, data=None), ok())
    with pytest.raises(rerun.AlreadySucceededError) as err:
        rerun.refuse_if_succeeded(grepo, tree, argv, "")
    assert err.value.run.id == "new-1"


# -- rerun --check, --script, checkout -------------------------------------------------------
def test_check_compares_outputs_by_hash_on_both_sides() -> None:
    def run(run_id: str, outputs: dict[str, Any], status: str = "succeeded") -> Run:
        rec = RunRecord(id=run_id, argv=["x"], cwd="", base=None, branch=None, user="u",
                        launched_at=0.0, target="local", backend="local", store="file:///s",
                        env=Environment(python="3", platform="p"))
        return Run(record=rec, result=Result(status=status, outputs=outputs), commit="c",
                   written_back=True)

    same = rerun.check(run("a-1", {"m.pt": {"hash": "h1"}}), run("b-1", {"m.pt": {"hash": "h1"}}))
    assert same["reproduced"] is True
    assert same["outputs"] == {"m.pt": {"a": "h1", "b": "h1", "same": True}}
    moved = rerun.check(run("a-1", {"m.pt": {"hash": "h1"}}), run("b-1", {"m.pt": {"hash": "h2"}}))
    assert moved["reproduced"] is False
    assert moved["outputs"] == {"m.pt": {"a": "h1", "b": "h2", "same": False}}
    gone = rerun.check(run("a-1", {"m.pt": {"hash": "h1"}}), run("b-1", {}))
    assert gone["outputs"] == {"m.pt": {"a": "h1", "b": None, "same": False}}
    assert gone["reproduced"] is False
    assert rerun.check(run("a-1", {}), run("b-1", {}, "failed"))["status"] == \
        {"a": "succeeded", "b": "failed", "same": False}


def test_a_recorded_verdict_changes_only_the_check_in_the_results(grepo: Repo) -> None:
    from gitexp.git.writeback import RESULTS_DIR, write_back
    from gitexp.model.record import decode_run

    live = commit_run(grepo, record("b-1", grepo), None)
    written = write_back(grepo, live.record, ok(loss=0.5), None)
    run = Run(record=live.record, result=ok(loss=0.5), commit=written, written_back=True)
    verdict = {"of": "a-1", "reproduced": True}
    checked = rerun.record_verdict(grepo, run, verdict)
    assert grepo.rev_parse(ids.ref_for("b-1")) == checked.commit != written
    parsed = decode_run(grepo.git("log", "-1", "--format=%B", checked.commit),
                        ref=ids.ref_for("b-1"), commit=checked.commit,
                        parents=[live.record.snapshot])
    assert parsed.result is not None and parsed.result.check == verdict
    assert grepo.git("rev-parse", f"{checked.commit}^").strip() == live.record.snapshot
    changed = grepo.git("diff", "--name-only", written, checked.commit).split()
    assert changed == [f"{RESULTS_DIR}/check.json"]  # added: a shared run's files never change
    patch = grepo.git("diff", "-U0", written, checked.commit).splitlines()
    assert [ln for ln in patch if ln.startswith("-") and not ln.startswith("---")] == []


def test_script_pulls_the_cached_data_and_enters_the_run_directory(grepo: Repo) -> None:
    items = {p: DataItem(path=p, hash="abc", algo="md5", size=1, nfiles=None,
                         source=f"{p}.dvc", is_out=out)
             for p, out in (("data/b", True), ("data/a", True), ("params.csv", False))}
    rec = record("s-1", grepo, cwd="sub dir", data=version.to_record(items),
                 snapshot="f" * 40)
    text = rerun.script(grepo, Run(record=rec, result=ok(), commit="c", written_back=True))
    assert "dvc pull -- data/a data/b\n" in text  # outputs only, sorted
    assert "SUBDIR='sub dir'" in text
    root = rerun.script(grepo, Run(record=replace(rec, cwd="", data=None), result=ok(),
                                   commit="c", written_back=True))
    assert "SUBDIR=.\n" in root and "dvc pull" not in root
    assert ": # the run used no DVC-tracked data" in root


def test_checkout_without_outputs_needs_no_recorded_outputs(grepo: Repo) -> None:
    made = commit_run(grepo, record("a-1", grepo), ok())
    rerun.restore_code(grepo, made)
    assert grepo.git("rev-parse", "HEAD").strip() == made.record.snapshot
    assert grepo.git("symbolic-ref", "-q", "HEAD", check=False) == ""  # detached


def test_checkout_refuses_a_bad_branch_name_having_touched_nothing(grepo: Repo) -> None:
    from gitexp.errors import GitexpError

    made = commit_run(grepo, record("a-1", grepo), ok())
    head = grepo.git("rev-parse", "HEAD").strip()
    for bad in ("a..b", "-x", "no space"):
        with pytest.raises(GitexpError) as err:
            rerun.restore_code(grepo, made, bad)
        assert err.value.message == f"invalid branch name {bad!r}"
    assert grepo.git("rev-parse", "HEAD").strip() == head
    assert grepo.git("branch", "--list").split() == ["*", "main"]
    rerun.restore_code(grepo, made, "try-1")
    assert grepo.git("symbolic-ref", "HEAD").strip() == "refs/heads/try-1"
    assert grepo.git("rev-parse", "HEAD").strip() == made.record.snapshot


# -- diff ---------------------------------------------------------------------------------------
def test_diff_lists_a_rename_as_a_deletion_and_an_addition(grepo: Repo) -> None:
    text = "".join(f"line {i}\n" for i in range(40))
    (grepo.root / "old.py").write_text(text)
    git("add", "-A", cwd=grepo.root)
    git("commit", "-qm", "old", cwd=grepo.root)
    a = grepo.git("rev-parse", "HEAD").strip()
    git("mv", "old.py", "new.py", cwd=grepo.root)
    git("commit", "-qm", "renamed", cwd=grepo.root)
    b = grepo.git("rev-parse", "HEAD").strip()
    got = diff.code(grepo, a, b, patch=False)
    assert got.files == [{"path": "new.py", "added": 40, "deleted": 0},
                         {"path": "old.py", "added": 0, "deleted": 40}]
    assert "new.py" in got.stat and "old.py" in got.stat
    assert diff.code(grepo, a, a, patch=True) == diff.Code(a=a, b=a, files=[], stat="",
                                                           patch=None)


def test_diff_of_runs_shows_directory_data_and_packages_changes(grepo: Repo) -> None:
    pkgs_a = grepo.hash_object(b"numpy==1.0\ntorch==2.0\n")
    pkgs_b = grepo.hash_object(b"numpy==1.1\ntorch==2.0\n")
    env_a = Environment(python="3.11", platform="linux", packages=pkgs_a)
    a = commit_run(grepo, record("a-1", grepo, cwd="x", env=env_a,
                                 data={"d": {"hash": "h1", "size": 1}}), ok())
    b = commit_run(grepo, record("b-1", grepo, cwd="y", env=replace(env_a, packages=pkgs_b),
                                 data={"d": {"hash": "h2", "size": 1}}), ok())
    report = diff.runs(grepo, a, b)
    assert report.cwd == {"a": "x", "b": "y"}
    assert report.data == {"d": {"a": "h1", "b": "h2"}}
    assert report.environment == {"packages.numpy": {"a": "1.0", "b": "1.1"}}
    same = diff.runs(grepo, a, a)
    assert same.cwd is None and same.data == {} and same.environment == {}


def test_diff_against_base_reads_the_base_data_version(grepo: Repo) -> None:
    (grepo.root / ".dvc").mkdir()
    made = commit_run(grepo, record("a-1", grepo, data={"d": {"hash": "h1"}}), ok())
    report = diff.against_base(grepo, made)
    assert report.a == grepo.head() and report.b == "a-1" and report.against_base
    assert report.data == {"d": {"a": None, "b": "h1"}}  # the base pins no data


# -- a launch that never started ------------------------------------------------------------
def test_a_run_whose_launch_never_started_is_written_back_as_lost(grepo: Repo) -> None:
    store = (grepo.git_dir / "gitexp" / "store").as_uri()
    rec = record("gone-1", grepo, store=store, launched_at=time.time() - 86400)
    made = commit_run(grepo, rec, None)
    assert [r.status for r in runs.list_runs(grepo, refresh=False)] == ["queued"]
    (run,) = runs.list_runs(grepo)
    assert run.written_back and run.commit != made.commit
    assert run.result is not None and run.result.status == "lost"
    assert run.result.error == "the launch was interrupted before the agent started"
    assert run.result.host is None and run.result.started_at is None
    assert grepo.rev_parse(ids.ref_for("gone-1")) == run.commit


def test_a_corrupt_or_outdated_index_file_is_rebuilt_from_git(grepo: Repo) -> None:
    made = commit_run(grepo, record("a-1", grepo), ok())
    path = index.path_of(grepo)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"this is not a database" * 100)
    assert [e.commit for e in index.sync(grepo)] == [made.commit]  # from git meanwhile
    assert [e.commit for e in index.sync(grepo)] == [made.commit]
    db = sqlite3.connect(path)
    assert db.execute("SELECT ref FROM runs").fetchall() == [(ids.ref_for("a-1"),)]
    # a file of another version: its rows (even one that looks current) are dropped
    db.execute("UPDATE runs SET row = '{\"id\":\"old\"}'")
    db.execute(f"PRAGMA user_version = {index.VERSION - 1}")
    db.commit()
    db.close()
    assert [r["id"] for r in index.rows(grepo)] == ["a-1"]
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == index.VERSION
    db.close()


def test_the_params_cache_answers_only_the_keys_asked_for(grepo: Repo) -> None:
    index.store_params(grepo, {("s1", ""): {"lr": 0.1}, ("s1", "sub"): {"lr": 0.2}})
    index.store_params(grepo, {("s1", ""): {"lr": 0.3}})  # replaced, not added
    assert index.cached_params(grepo, [("s1", ""), ("s2", "")]) == {("s1", ""): {"lr": 0.3}}
    assert index.cached_params(grepo, [("s1", "sub")]) == {("s1", "sub"): {"lr": 0.2}}
    assert index.cached_params(grepo, []) == {}
    for suffix in ("-wal", "-shm"):
        Path(f"{index.path_of(grepo)}{suffix}").unlink(missing_ok=True)
    index.path_of(grepo).write_bytes(b"this is not a database" * 100)
    assert index.cached_params(grepo, [("s1", "")]) == {}  # a cache: lost, never an error
    index.path_of(grepo).write_bytes(b"this is not a database" * 100)
    index.store_params(grepo, {("s1", ""): {"lr": 0.1}})


def test_a_running_run_is_live_while_its_agent_is_and_lost_once_it_is_gone(
        grepo: Repo) -> None:
    import subprocess

    from gitexp.model.runstate import RunState

    store = (grepo.git_dir / "gitexp" / "store").as_uri()
    rec = record("live-1", grepo, store=store, launched_at=time.time())
    state = RunState(runs.store_of(grepo, commit_run(grepo, rec, None)), rec.id)
    state.set_running(started=rec.launched_at + 1, pid=1)
    state.beat(60.0)
    # the local backend knows its agent by the run id on its command line
    agent = subprocess.Popen(["sh", "-c", "sleep 30; :", rec.id])  # `;:` so sh stays
    try:
        import socket

        state.set_handle("local", {"host": socket.gethostname(), "pid": agent.pid})
        (run,) = runs.list_runs(grepo)
        assert run.result is not None and not run.written_back
        assert (run.result.status, run.result.started_at, run.result.host) == \
            ("running", rec.launched_at + 1, socket.gethostname())
    finally:
        agent.kill()
        agent.wait()
    (run,) = runs.list_runs(grepo)
    assert run.written_back and run.result is not None
    assert (run.result.status, run.result.error) == ("lost", "the agent is gone")
    assert run.result.host == socket.gethostname()


def test_find_by_part_of_the_id_observes_a_run_that_is_not_written_back(grepo: Repo) -> None:
    store = (grepo.git_dir / "gitexp" / "store").as_uri()
    commit_run(grepo, record("gone-1", grepo, store=store, launched_at=time.time() - 86400),
               None)
    assert runs.find(grepo, "gone", refresh=False).status == "queued"
    found = runs.find(grepo, "gone")  # a prefix: read by name, then looked at
    assert found.written_back and found.result is not None and found.result.status == "lost"


def test_a_heartbeat_gone_silent_ends_the_run_lost_at_its_last_beat(grepo: Repo) -> None:
    import json

    from gitexp.model.runstate import HEARTBEAT, RunState

    store = (grepo.git_dir / "gitexp" / "store").as_uri()
    rec = record("quiet-1", grepo, store=store, launched_at=time.time() - 3600)
    state = RunState(runs.store_of(grepo, commit_run(grepo, rec, None)), rec.id)
    last = time.time() - 1000
    state.store.write(state.key(HEARTBEAT),
                      json.dumps({"time": last, "interval": 0.3}).encode())
    (run,) = runs.list_runs(grepo)
    assert run.result is not None and run.result.status == "lost"
    assert run.result.ended_at == last and run.result.error is not None
    assert run.result.error.startswith("no heartbeat for ")


def test_a_result_stamped_for_another_snapshot_is_never_taken(grepo: Repo) -> None:
    store = (grepo.git_dir / "gitexp" / "store").as_uri()
    rec = record("shared-1", grepo, store=store, launched_at=time.time())
    made = commit_run(grepo, rec, None)
    from gitexp.model.runstate import RunState

    state = RunState(runs.store_of(grepo, made), rec.id)
    state.write_result(ok(loss=0.1), snapshot="f" * 40)  # another repository's run
    (run,) = runs.list_runs(grepo)
    assert run.written_back and run.result is not None
    assert (run.result.status, run.result.metrics) == ("lost", {})
    assert run.result.error is not None and "not taken" in run.result.error
    assert made.record.snapshot in grepo.git("log", "-1", "--format=%P", run.commit)


def test_code_changes_leave_out_the_results_directory(grepo: Repo) -> None:
    from gitexp.git.writeback import RESULTS_DIR

    a = grepo.git("rev-parse", "HEAD").strip()
    (grepo.root / RESULTS_DIR).mkdir()
    (grepo.root / RESULTS_DIR / "result.json").write_text("{}\n")
    (grepo.root / "train.py").write_text("print(1)\n")
    git("add", "-A", cwd=grepo.root)
    git("commit", "-qm", "both", cwd=grepo.root)
    b = grepo.git("rev-parse", "HEAD").strip()
    got = diff.code(grepo, a, b, patch=True)
    assert [f["path"] for f in got.files] == ["train.py"]
    assert RESULTS_DIR not in got.stat and "train.py" in got.stat
    assert got.patch is not None and RESULTS_DIR not in got.patch


def test_a_nan_metric_does_not_make_a_shared_run_look_changed(grepo: Repo) -> None:
    """JSON carries NaN, and NaN is never equal to itself: the sharing rule compares records
    and results as JSON text, so a run that diverged still finishes and gets its verdict."""
    from gitexp.git.writeback import write_back
    from gitexp.service import sharing

    live = commit_run(grepo, record("nan-1", grepo), None)
    diverged = Result(status="failed", exit_code=1, metrics={"loss": float("nan")})
    written = write_back(grepo, live.record, diverged, None)
    ref = ids.ref_for("nan-1")
    assert sharing.transition(grepo, ref, live.commit, written) is None
    run = Run(record=live.record, result=diverged, commit=written, written_back=True)
    checked = rerun.record_verdict(grepo, run, {"of": "a-1", "reproduced": False})
    assert sharing.transition(grepo, ref, written, checked.commit) is None
    assert sharing.transition(grepo, ref, checked.commit, written) == sharing.BEHIND
