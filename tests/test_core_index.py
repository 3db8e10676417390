"""The index of runs in-process, on real repositories with run commits written by plain git:
what it answers from its file and from git alone (the same), what it calls unreadable, and how
a stale, corrupt, locked, outdated or another user's file is handled.

Fast on purpose (see tests/test_core_inprocess.py): mutation testing relies on these."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from gitexp.cli._common import print_json
from gitexp.cli._render import as_json, print_json_list
from gitexp.git import Repo
from gitexp.git.config import Config
from gitexp.model import ids
from gitexp.model.record import Result, encode_message
from gitexp.model.row import json_text
from gitexp.service import index, runs, trust
from gitexp.service.runs import Run
from tests.test_core_inprocess import break_index_dir, commit_run, ok, record

LAUNCHED_LATER = 1_800_000_000.0


@pytest.fixture
def grepo(repo: Path) -> Repo:
    return Repo.discover(repo)


def head_tree(repo: Repo) -> str:
    return repo.git("rev-parse", "HEAD^{tree}").strip()


def written_back(repo: Repo, run_id: str, result: Result, **kw: Any) -> Run:
    """A sealed run written back the way write-back does it: the results commit's tree is
    not the snapshot's (it adds the results directory), its first parent the snapshot."""
    tree = head_tree(repo)
    rec = record(run_id, repo, **kw)
    rec = replace(rec, seal=trust.seal(repo, rec, tree))
    snap = repo.commit_tree(tree, [repo.head() or ""], encode_message(rec, None))
    rec = rec.with_snapshot(snap)
    results_tree = repo.mktree([
        f"100644 blob {repo.hash_object(b'{}')}\tresult.json"])
    commit = repo.commit_tree(results_tree, [snap], encode_message(rec, result))
    repo.git("update-ref", ids.ref_for(run_id), commit)
    return Run(record=rec, result=result, commit=commit, written_back=True, own=True)


def unsealed(repo: Repo, run_id: str, result: Result | None = None) -> Run:
    """A run launched elsewhere (fetched): no seal of this user's."""
    rec = record(run_id, repo)
    snap = repo.commit_tree(head_tree(repo), [repo.head() or ""], encode_message(rec, None))
    rec = rec.with_snapshot(snap)
    commit = snap if result is None else repo.commit_tree(head_tree(repo), [snap],
                                                          encode_message(rec, result))
    repo.git("update-ref", ids.ref_for(run_id), commit)
    return Run(record=rec, result=result, commit=commit, written_back=result is not None)


def forged_seal(repo: Repo, run_id: str) -> Run:
    """A seal made over another tree than the snapshot's: it proves nothing."""
    other = repo.mktree([f"100644 blob {repo.hash_object(b'x')}\tx"])
    rec = record(run_id, repo)
    rec = replace(rec, seal=trust.seal(repo, rec, other))
    snap = repo.commit_tree(head_tree(repo), [repo.head() or ""], encode_message(rec, None))
    repo.git("update-ref", ids.ref_for(run_id), snap)
    return Run(record=rec.with_snapshot(snap), result=None, commit=snap, written_back=False)


def bad_refs(repo: Repo) -> dict[str, str]:
    """Refs under refs/experiments/ that hold no readable run, by why."""
    tree = head_tree(repo)
    garbled = repo.commit_tree(tree, [], "gitexp run bad-1\n\nnot json\n")
    repo.git("update-ref", ids.ref_for("bad-1"), garbled)
    # a record that names another run than its ref: forged
    other = repo.commit_tree(tree, [], encode_message(record("else-1", repo), None))
    repo.git("update-ref", ids.ref_for("liar-1"), other)
    repo.git("update-ref", ids.ref_for("tree-1"), tree)  # not a commit at all
    huge = repo.commit_tree(tree, [], "x\n\n" + "y" * (index.MAX_COMMIT + 10))
    repo.git("update-ref", ids.ref_for("huge-1"), huge)
    repo.git("update-ref", "refs/experiments/Not_An_Id", garbled)  # no run id
    # a blob that holds a run commit's very bytes: still no commit
    real = commit_run(repo, record("blob-1", repo), ok())
    blob = repo.hash_object(repo.git("cat-file", "commit", real.commit).encode())
    repo.git("update-ref", ids.ref_for("blob-1"), blob)
    return {"blob": ids.ref_for("blob-1"), "garbled": ids.ref_for("bad-1"),
            "liar": ids.ref_for("liar-1"), "tree": ids.ref_for("tree-1"),
            "huge": ids.ref_for("huge-1"), "name": "refs/experiments/Not_An_Id"}


def everything(repo: Repo) -> dict[str, Any]:
    """All the index answers, as a caller sees them."""
    entries = sorted(index.sync(repo), key=lambda e: e.ref)
    return {
        "sync": [(e.ref, e.commit, e.record, e.result, e.own, e.written_back) for e in entries],
        "rows": sorted(index.rows(repo), key=lambda r: r["id"]),
        "summary": sorted(index.rows(repo, summary=True), key=lambda r: r["id"]),
        "unreadable": index.unreadable(repo),
        "like": [(e.ref, e.record.snapshot, e.result)
                 for e in index.succeeded_like(repo, ["python", "train.py"], "")],
        "ids": sorted(index.run_ids(repo)),
        "listed": sorted((item.text, item.launched_at, item.entry)
                         for item in index.listed(repo)),
    }


def mixed_runs(repo: Repo) -> dict[str, Run]:
    return {
        "done": written_back(repo, "done-1", ok(loss=0.5)),
        "failed": written_back(repo, "failed-1", Result(status="failed", exit_code=1)),
        "live": commit_run(repo, record("live-1", repo), None),
        "theirs": unsealed(repo, "theirs-1", ok(loss=0.1)),
        "theirs_live": unsealed(repo, "theirslive-1"),
        "forged": forged_seal(repo, "forged-1"),
    }


def test_what_the_index_answers_from_its_file_is_what_git_alone_answers(grepo: Repo) -> None:
    made = mixed_runs(grepo)
    bad = bad_refs(grepo)
    first = everything(grepo)   # the file is made
    again = everything(grepo)   # ... and read back
    assert again == first
    break_index_dir(grepo)
    assert everything(grepo) == first  # no file can be made: straight from git
    # and the answers are right
    by_ref = {ref: (commit, rec, res, own, wb) for ref, commit, rec, res, own, wb
              in first["sync"]}
    assert sorted(by_ref) == sorted(ids.ref_for(r.record.id) for r in made.values())
    for name, run in made.items():
        commit, rec, res, own, wb = by_ref[ids.ref_for(run.record.id)]
        assert (commit, rec, res, wb) == (run.commit, run.record, run.result,
                                          run.written_back), name
        assert own is (name in ("done", "failed", "live")), name
    assert first["unreadable"] == sorted(bad.values())
    assert {r["id"]: r["own"] for r in first["rows"]} == \
        {r["id"]: r["own"] for r in first["summary"]} == \
        {"done-1": True, "failed-1": True, "live-1": True, "theirs-1": False,
         "theirslive-1": False, "forged-1": False}
    assert {r["id"]: r["snapshot"] for r in first["rows"]} == \
        {r.record.id: r.record.snapshot for r in made.values()}
    assert [r["status"] for r in first["summary"]] == \
        ["succeeded", "failed", "queued", "queued", "succeeded", "queued"]
    assert first["like"] == [(ids.ref_for("done-1"), made["done"].record.snapshot,
                              made["done"].result),
                             (ids.ref_for("theirs-1"), made["theirs"].record.snapshot,
                              made["theirs"].result)]
    assert first["ids"] == sorted(["done-1", "failed-1", "live-1", "theirs-1",
                                   "theirslive-1", "forged-1", "bad-1", "liar-1", "tree-1",
                                   "huge-1", "blob-1"])


def test_an_unreadable_ref_is_kept_as_such_in_the_file_and_read_again_once_it_moves(
        grepo: Repo) -> None:
    bad = bad_refs(grepo)
    index.sync(grepo)
    db = sqlite3.connect(index.path_of(grepo))
    got = db.execute("SELECT * FROM runs WHERE ref = ?", (bad["garbled"],)).fetchall()
    garbled = grepo.rev_parse(bad["garbled"])
    assert got == [(bad["garbled"], garbled, "bad-1", *([None] * 9), 0, None)]
    assert db.execute("SELECT count(*) FROM runs").fetchone()[0] == 5  # not Not_An_Id
    # a readable run moved onto the ref: no longer unreadable, read anew
    fixed = commit_run(grepo, record("bad-1", grepo), ok(loss=1.0))
    assert bad["garbled"] not in index.unreadable(grepo)
    assert [e.commit for e in index.sync(grepo) if e.ref == bad["garbled"]] == [fixed.commit]
    assert db.execute("SELECT run_id, status, own FROM runs WHERE ref = ?",
                      (bad["garbled"],)).fetchall() == [("bad-1", "succeeded", 1)]
    db.close()


def test_unreadable_runs_are_found_by_an_index_made_in_place_in_an_older_file(
        grepo: Repo) -> None:
    """`ls` asks for the unreadable runs each time: an index answers, not a read of every
    row. A file made before that index gets it in place, its rows kept (no rebuild)."""
    bad = bad_refs(grepo)
    index.sync(grepo)
    db = sqlite3.connect(index.path_of(grepo))
    db.execute("DROP INDEX runs_unreadable")
    db.execute("UPDATE runs SET cwd = 'kept' WHERE ref = ?", (bad["garbled"],))
    db.commit()
    assert bad["garbled"] in index.unreadable(grepo)
    with contextlib.closing(sqlite3.connect(index.path_of(grepo))) as fresh:  # its schema now
        plan = fresh.execute("EXPLAIN QUERY PLAN SELECT ref FROM runs WHERE snapshot IS NULL")
        assert "USING INDEX runs_unreadable" in str(plan.fetchall())
    assert db.execute("SELECT cwd FROM runs WHERE ref = ?", (bad["garbled"],)).fetchall() == \
        [("kept",)]
    db.close()


def test_a_refresh_finding_vals_unindexed_by_another_ones_bulk_fill_indexes_them_first(
        grepo: Repo) -> None:
    """A refresh of many runs fills `vals` without its indexes; another process that opened
    the file before they were dropped indexes them again before it deletes a moved run's
    values (else each deletion reads the whole table), and its answers are right."""
    commit_run(grepo, record("a-1", grepo), ok(loss=1.0))
    with index._connect(grepo) as db:  # opened: its indexes checked, then dropped by another
        with contextlib.closing(sqlite3.connect(index.path_of(grepo))) as other:
            other.execute("DROP INDEX vals_ref")
            other.execute("DROP INDEX vals_leaf")
        commit_run(grepo, record("b-2", grepo), ok(acc=0.5))
        said: list[str] = []
        db.set_trace_callback(said.append)
        index._refresh(grepo, db)
        made = next(i for i, s in enumerate(said) if "EXISTS vals_ref" in s)
        assert made < next(i for i, s in enumerate(said) if s.startswith("DELETE FROM vals"))
        names = {n for (n,) in db.execute("SELECT name FROM sqlite_master WHERE type='index'")}
        plan = str(db.execute("EXPLAIN QUERY PLAN DELETE FROM vals WHERE ref = 'x'").fetchall())
    assert {"vals_ref", "vals_leaf"} <= names and "USING INDEX vals_ref" in plan
    assert sorted(e.record.id for e in index.sync(grepo)) == ["a-1", "b-2"]
    assert index.known(grepo, "acc", 0) and index.known(grepo, "loss", 0)


def _aged(repo: Repo) -> None:
    """The run refs' storage dated back (a stamp of this very second says nothing): the
    loose refs' folder a minute before now, packed-refs to one fixed time (as its own,
    unless it is written again)."""
    folder, packed = repo.common_dir / "refs" / "experiments", repo.common_dir / "packed-refs"
    os.utime(folder, (time.time() - 60,) * 2)
    if packed.exists():
        os.utime(packed, (1_700_000_000,) * 2)


def test_a_refresh_after_loose_refs_changed_reads_them_not_a_listing_of_every_ref(
        grepo: Repo, monkeypatch: pytest.MonkeyPatch) -> None:
    """While packed-refs is as it was, a refresh reads the loose run refs' files (a new run,
    a moved one, a deleted one, a name that is no run id) and lists nothing; the rows are
    those a listing makes. packed-refs rewritten: listed again."""
    packed = [commit_run(grepo, record(f"p-{n}", grepo), ok(loss=n)) for n in range(3)]
    grepo.git("pack-refs", "--all")
    _aged(grepo)
    index.refresh(grepo)  # listed: the loose refs of then are kept
    listings: list[object] = []
    real = index._ref_heads
    monkeypatch.setattr(index, "_ref_heads", lambda r: listings.append(r) or real(r))

    def rows() -> list[tuple[str, str, str | None]]:
        with contextlib.closing(sqlite3.connect(index.path_of(grepo))) as db:
            return db.execute("SELECT ref, commit_id, status FROM runs ORDER BY ref").fetchall()

    def listed() -> tuple[list[tuple[str, str, str | None]], list[str]]:
        """The rows and unreadable refs a refresh that lists every ref makes."""
        with monkeypatch.context() as mp:
            mp.setattr(index, "loose_refs", lambda *a: None)
            index.path_of(grepo).unlink()
            index.refresh(grepo)
            made = rows(), index.unreadable(grepo)
        index.path_of(grepo).unlink()
        index.refresh(grepo)  # made again as ever: the loose refs of now kept
        listings.clear()
        return made

    new = commit_run(grepo, record("n-1", grepo), None)  # loose: a new run, live
    moved = commit_run(grepo, record("p-1", grepo), ok(loss=9.0))  # loose over its packed ref
    grepo.git("update-ref", f"{ids.PREFIX}Bad_Name", new.commit)
    _aged(grepo)
    index.refresh(grepo)
    assert listings == []
    incremental = rows(), index.unreadable(grepo)
    assert (ids.ref_for("p-1"), moved.commit, "succeeded") in incremental[0]
    assert (ids.ref_for("n-1"), new.commit, None) in incremental[0]
    assert incremental[1] == [f"{ids.PREFIX}Bad_Name"]
    assert incremental == listed()
    # deleted: a loose-only ref; a loose file removed by hand (its packed value is back)
    grepo.git("update-ref", "-d", ids.ref_for("n-1"))
    grepo.git("update-ref", "-d", f"{ids.PREFIX}Bad_Name")
    _aged(grepo)
    index.refresh(grepo)
    assert listings == []
    (grepo.common_dir / "refs" / "experiments" / "p-1").unlink()
    _aged(grepo)
    index.refresh(grepo)
    assert listings == []
    incremental = rows(), index.unreadable(grepo)
    assert (ids.ref_for("p-1"), packed[1].commit, "succeeded") in incremental[0]
    assert ids.ref_for("n-1") not in {r for r, _, _ in incremental[0]} and incremental[1] == []
    assert incremental == listed()
    grepo.git("pack-refs", "--all")  # packed-refs rewritten: listed
    _aged(grepo)
    index.refresh(grepo)
    assert len(listings) == 1


def test_unreadable_names_only_bad_refs_even_with_no_run_at_all(grepo: Repo) -> None:
    assert index.unreadable(grepo) == []
    tree = head_tree(grepo)
    grepo.git("update-ref", "refs/experiments/Zed", tree)
    grepo.git("update-ref", "refs/experiments/Alpha", tree)
    assert index.unreadable(grepo) == ["refs/experiments/Alpha", "refs/experiments/Zed"]
    assert index.sync(grepo) == [] and index.rows(grepo) == [] and index.run_ids(grepo) == []
    commit_run(grepo, record("a-1", grepo), ok())
    break_index_dir(grepo)
    assert index.unreadable(grepo) == ["refs/experiments/Alpha", "refs/experiments/Zed"]


def test_the_file_keeps_every_column_of_a_run(grepo: Repo) -> None:
    done = written_back(grepo, "done-1", ok(loss=0.5), cwd="sub",
                        argv=["python", "train.py", "--lr", "0.1"])
    theirs = unsealed(grepo, "theirs-1")
    index.sync(grepo)
    db = sqlite3.connect(index.path_of(grepo))
    got = {r[0]: r for r in db.execute(
        "SELECT ref, commit_id, run_id, snapshot, launched_at, status, target, argv, cwd, "
        "body, own FROM runs")}
    db.close()
    assert got[ids.ref_for("done-1")] == (
        ids.ref_for("done-1"), done.commit, "done-1", done.record.snapshot,
        done.record.launched_at, "succeeded", "local", '["python","train.py","--lr","0.1"]',
        "sub", encode_message(done.record, done.result), 1)
    assert got[ids.ref_for("theirs-1")] == (
        ids.ref_for("theirs-1"), theirs.commit, "theirs-1", theirs.commit,
        theirs.record.launched_at, None, "local", '["python","train.py"]', "",
        encode_message(theirs.record, None), 0)


def test_forget_drops_only_the_rows_named(grepo: Repo) -> None:
    for run_id in ("a-1", "b-1", "c-1"):
        commit_run(grepo, record(run_id, grepo), ok())
    index.sync(grepo)
    index.forget(grepo, iter([ids.ref_for("a-1"), ids.ref_for("c-1")]))
    db = sqlite3.connect(index.path_of(grepo))
    assert db.execute("SELECT ref FROM runs").fetchall() == [(ids.ref_for("b-1"),)]
    index.forget(grepo, [])
    index.forget(grepo, ["refs/experiments/nothing-1"])
    assert db.execute("SELECT ref FROM runs").fetchall() == [(ids.ref_for("b-1"),)]
    db.close()
    # the refs are still there: the next sync reads them again
    assert sorted(e.record.id for e in index.sync(grepo)) == ["a-1", "b-1", "c-1"]


def test_an_index_of_another_version_or_another_users_keys_is_rebuilt(
        grepo: Repo, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    commit_run(grepo, record("a-1", grepo), ok())
    index.store_params(grepo, {("s", ""): {"lr": 1}})
    assert [(e.record.id, e.own) for e in index.sync(grepo)] == [("a-1", True)]
    path = index.path_of(grepo)

    def tamper(sql: str) -> None:
        db = sqlite3.connect(path)
        db.execute("UPDATE runs SET row = '{\"id\":\"stale\"}'")
        db.execute(sql)
        db.commit()
        db.close()

    tamper(f"PRAGMA user_version = {index.VERSION + 1}")  # a newer gitexp's file
    assert [r["id"] for r in index.rows(grepo)] == ["a-1"]
    assert index.cached_params(grepo, [("s", "")]) == {}  # the params went with it
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == index.VERSION
    assert db.execute("PRAGMA application_id").fetchone()[0] == trust.fingerprint(grepo)
    db.close()
    # the same version, but `own` was computed with other keys
    index.store_params(grepo, {("s", ""): {"lr": 1}})
    tamper(f"PRAGMA application_id = {trust.fingerprint(grepo) ^ 1}")
    assert [r["id"] for r in index.rows(grepo)] == ["a-1"]
    assert index.cached_params(grepo, [("s", "")]) == {}
    # another user (other keys, here a fresh one) sees no run of theirs
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "other-user"))
    trust.seal(grepo, record("x-1", grepo), head_tree(grepo))  # makes their key
    assert [(e.record.id, e.own) for e in index.sync(grepo)] == [("a-1", False)]
    assert [r["own"] for r in index.rows(grepo)] == [False]


def test_a_corrupt_file_is_removed_with_its_journal_and_rebuilt(grepo: Repo) -> None:
    made = commit_run(grepo, record("a-1", grepo), ok())
    path = index.path_of(grepo)
    index.sync(grepo)
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    path.write_bytes(b"this is not a database" * 100)
    Path(f"{path}-wal").write_bytes(b"junk")
    assert [e.commit for e in index.sync(grepo)] == [made.commit]  # from git meanwhile
    assert not Path(f"{path}-wal").exists() or Path(f"{path}-wal").read_bytes() != b"junk"
    assert [e.commit for e in index.sync(grepo)] == [made.commit]
    db = sqlite3.connect(path)
    assert db.execute("SELECT ref, commit_id FROM runs").fetchall() == \
        [(ids.ref_for("a-1"), made.commit)]
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()


def test_a_locked_file_is_left_alone_and_git_answers_meanwhile(
        grepo: Repo, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(index, "BUSY_MS", 20)
    monkeypatch.setattr(index, "RETRIES", 2)
    old = commit_run(grepo, record("a-1", grepo), ok())
    index.sync(grepo)
    new = commit_run(grepo, record("b-1", grepo), ok(loss=1.0))
    holder = sqlite3.connect(index.path_of(grepo), isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process writing, for longer than we wait
    try:
        assert sorted(e.commit for e in index.sync(grepo)) == sorted([old.commit, new.commit])
        assert sorted(r["id"] for r in index.rows(grepo)) == ["a-1", "b-1"]
        assert index.unreadable(grepo) == []
        index.forget(grepo, [ids.ref_for("a-1")])  # harmless: nothing dropped, no error
        assert index.path_of(grepo).exists()  # busy, not corrupt: kept
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    db = sqlite3.connect(index.path_of(grepo))
    assert db.execute("SELECT ref FROM runs").fetchall() == [(ids.ref_for("a-1"),)]
    db.close()
    assert sorted(e.record.id for e in index.sync(grepo)) == ["a-1", "b-1"]


def test_retry_tries_again_only_while_the_file_is_busy(
        monkeypatch: pytest.MonkeyPatch) -> None:
    waits: list[float] = []
    monkeypatch.setattr(index.time, "sleep", waits.append)

    def failing(times: int, message: str) -> Any:
        calls = []

        def fn() -> str:
            calls.append(1)
            if len(calls) <= times:
                raise sqlite3.OperationalError(message)
            return "done"
        fn.calls = calls  # type: ignore[attr-defined]
        return fn

    fn = failing(2, "database is locked")
    assert index._retry(fn) == "done" and len(fn.calls) == 3
    assert len(waits) == 2 and 0 < waits[0] < waits[1]
    waits.clear()
    fn = failing(index.RETRIES - 1, "database is busy")
    assert index._retry(fn) == "done" and len(fn.calls) == index.RETRIES
    assert sum(waits) < 1.0  # a busy index costs under a second before git answers
    fn = failing(index.RETRIES, "database is locked")  # busy for too long: given up
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        index._retry(fn)
    assert len(fn.calls) == index.RETRIES
    fn = failing(1, "no such table: runs")  # not transient: at once
    waits.clear()
    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        index._retry(fn)
    assert len(fn.calls) == 1 and waits == []
    assert index._retry(lambda: None) is None


def test_succeeded_like_drops_rows_whose_ref_moved_and_checks_the_record(grepo: Repo) -> None:
    first = commit_run(grepo, record("ok-1", grepo), ok(loss=0.5))
    index.sync(grepo)
    index.store_params(grepo, {("s", ""): {"lr": 1}})
    # the ref moves to a failed run of the same command: the indexed success no longer counts
    commit_run(grepo, record("ok-1", grepo), Result(status="failed", exit_code=1))
    assert index.succeeded_like(grepo, ["python", "train.py"], "") == []
    again = commit_run(grepo, record("ok-1", grepo), ok(loss=0.4))
    (hit,) = index.succeeded_like(grepo, ["python", "train.py"], "")
    assert hit.commit == again.commit != first.commit and hit.result == again.result
    assert index.succeeded_like(grepo, ["python"], "") == []
    assert index.succeeded_like(grepo, ["python", "train.py"], "sub") == []
    # a run from elsewhere counts too, and is not called this user's
    grepo.git("update-ref", "-d", ids.ref_for("ok-1"))
    theirs = unsealed(grepo, "theirs-1", ok())
    (hit,) = index.succeeded_like(grepo, ["python", "train.py"], "")
    assert (hit.commit, hit.own) == (theirs.commit, False)
    assert index.unreadable(grepo) == []
    # answering from the file keeps it: the params cached there are still there
    assert index.cached_params(grepo, [("s", "")]) == {("s", ""): {"lr": 1}}


def test_a_write_that_fails_midway_is_undone_and_git_answers(grepo: Repo) -> None:
    old = commit_run(grepo, record("a-1", grepo), ok())
    index.sync(grepo)
    db = sqlite3.connect(index.path_of(grepo))
    db.execute("CREATE TRIGGER full BEFORE INSERT ON runs BEGIN "
               "SELECT RAISE(ABORT, 'disk full'); END")  # as a full disk would refuse
    db.commit()
    db.close()
    new = commit_run(grepo, record("b-1", grepo), ok())
    assert sorted(e.commit for e in index.sync(grepo)) == sorted([old.commit, new.commit])
    assert sorted(e.commit for e in index.sync(grepo)) == sorted([old.commit, new.commit])


def test_ctrl_c_as_a_write_commits_is_raised_never_lost(tmp_path: Path) -> None:
    """A SIGINT that lands during COMMIT's fsync is raised just after COMMIT returns: it
    must come out as KeyboardInterrupt, the write kept, not as the sqlite3.Error of a
    ROLLBACK with nothing to roll back (which the index's callers suppress)."""
    real = sqlite3.connect(tmp_path / "db", isolation_level=None)
    real.execute("CREATE TABLE t (x)")

    class InterruptedAtCommit:
        in_transaction = property(lambda self: real.in_transaction)

        def execute(self, sql: str) -> sqlite3.Cursor:
            done = real.execute(sql)
            if sql == "COMMIT":
                raise KeyboardInterrupt
            return done

    with pytest.raises(KeyboardInterrupt), \
            index._transaction(InterruptedAtCommit()):  # a stand-in for the connection
        real.execute("INSERT INTO t VALUES (1)")
    assert real.execute("SELECT x FROM t").fetchall() == [(1,)]
    with pytest.raises(KeyboardInterrupt), index._transaction(real):  # before COMMIT: undone
        real.execute("INSERT INTO t VALUES (2)")
        raise KeyboardInterrupt
    assert real.execute("SELECT x FROM t").fetchall() == [(1,)]


def unmade(repo: Repo) -> int:
    """Readable runs whose `ls --json` text the file does not hold yet."""
    db = sqlite3.connect(index.path_of(repo))
    try:
        return int(db.execute("SELECT count(*) FROM runs WHERE body IS NOT NULL AND json IS NULL")
                   .fetchone()[0])
    finally:
        db.close()


def ls_json_slowly(repo: Repo) -> list[str]:
    """`ls --json` as it was: every run decoded, then encoded for printing."""
    return [json_text(as_json(run)) for run in runs.list_runs(repo, Config.load(repo))]


def test_ls_json_prints_the_indexed_texts_and_they_are_what_decoding_every_run_prints(
        grepo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    made = mixed_runs(grepo)
    written_back(grepo, "later-1", ok(loss=0.25), launched_at=LAUNCHED_LATER)
    bad_refs(grepo)
    want = ls_json_slowly(grepo)
    assert len(want) == len(made) + 1 and '"id": "later-1"' in want[0]  # newest first
    index.sync(grepo)  # what the table does: no text made (the encoder is slow)
    assert unmade(grepo) == len(made) + 1
    assert runs.list_json(grepo, Config.load(grepo)) == want  # the texts are made
    assert unmade(grepo) == 0
    assert runs.list_json(grepo, Config.load(grepo)) == want  # ... and read back
    # the very bytes `print_json` writes, none and many
    for texts, data in (([], []), (want, [json.loads(t) for t in want])):
        print_json_list(texts)
        printed = capsys.readouterr().out
        print_json(data)
        assert printed == capsys.readouterr().out
    # the unfinished run of ours is looked at, not printed as indexed
    live = {item.entry.record.id for item in index.listed(grepo) if item.entry is not None}
    assert live == {"live-1", "theirslive-1", "forged-1"}
    break_index_dir(grepo)
    assert runs.list_json(grepo, Config.load(grepo)) == want  # straight from git


def test_a_text_in_the_file_that_json_text_could_not_have_written_is_made_again(
        grepo: Repo) -> None:
    """The file is a cache anyone with the repository can write: what `ls --json` prints
    from it is plain ASCII JSON text, or made again from the record."""
    for run_id in ("esc-1", "uni-1", "null-1", "when-1"):
        written_back(grepo, run_id, ok(loss=0.5))
    want = ls_json_slowly(grepo)
    index.sync(grepo)
    db = sqlite3.connect(index.path_of(grepo))
    for run_id, sql, value in (
            ("esc-1", "json = ?", '{"id": "\x1b]0;owned\x07"}'),
            ("uni-1", "json = ?", '{"id": "\u202eevil"}'),
            ("null-1", "json = ?", None),
            ("when-1", "launched_at = ?", "yesterday")):
        db.execute(f"UPDATE runs SET {sql} WHERE run_id = ?", (value, run_id))
    db.commit()
    db.close()
    assert runs.list_json(grepo, Config.load(grepo)) == want
