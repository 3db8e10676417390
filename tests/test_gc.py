"""`git exp rm` and `git exp gc`: what goes (refs, local store data, index rows), what stays,
and `--dry-run`."""

from __future__ import annotations

import sqlite3
import time
from dataclasses import replace
from pathlib import Path

from gitexp.model.record import decode_run, encode_message
from tests.helpers import announced, assert_user_error, exp, exp_json, git, wait_for

TRAIN = ("import json, sys\nloss = float(sys.argv[1])\nif loss < 0:\n    sys.exit(1)\n"
         "json.dump({'loss': loss}, open('metrics.json', 'w'))\n")
DAY = 86400.0


def run(repo: Path, loss: str) -> str:
    return announced(exp("run", "--force", "--", "python", "train.py", loss, cwd=repo,
                         check=False))


def backdate(repo: Path, run_id: str, days: float, new_id: str) -> str:
    """A copy of a finished run launched `days` ago, made with the same plumbing gitexp uses
    (snapshot commit + results commit, record JSON in both messages)."""
    commit = git("rev-parse", f"refs/experiments/{run_id}", cwd=repo).strip()
    snap = git("rev-parse", f"{commit}^", cwd=repo).strip()
    run = decode_run(git("log", "-1", "--format=%B", commit, cwd=repo),
                     ref=f"refs/experiments/{run_id}", commit=commit, parents=[snap])
    record, result = run.record, run.result
    assert result is not None
    record = replace(record, id=new_id, launched_at=record.launched_at - days * DAY)
    base = git("rev-parse", f"{snap}^", cwd=repo).strip()
    s2 = git("commit-tree", f"{snap}^{{tree}}", "-p", base, cwd=repo,
             input=encode_message(record, None).encode()).strip()
    r2 = git("commit-tree", f"{commit}^{{tree}}", "-p", s2, cwd=repo,
             input=encode_message(record, result).encode()).strip()
    git("update-ref", f"refs/experiments/{new_id}", r2, cwd=repo)
    return new_id


def ids(repo: Path) -> set[str]:
    return {r["id"] for r in exp_json("ls", cwd=repo)}


def store_dir(repo: Path, run_id: str) -> Path:
    return repo / ".git" / "gitexp" / "store" / "runs" / run_id


def test_rm_removes_ref_store_and_index_row_and_dry_run_removes_nothing(repo: Path) -> None:
    (repo / "train.py").write_text(TRAIN)
    a, b = run(repo, "0.5"), run(repo, "0.25")
    assert store_dir(repo, a).is_dir()
    dry = exp("rm", a[-6:], "--dry-run", cwd=repo)
    assert f"would remove {a} (succeeded)" in dry.stdout
    assert ids(repo) == {a, b} and store_dir(repo, a).is_dir()
    assert f"removed {a}" in exp("rm", a, cwd=repo).stdout
    assert ids(repo) == {b}
    assert git("for-each-ref", "refs/experiments/", cwd=repo).count("\n") == 1
    assert not store_dir(repo, a).exists() and store_dir(repo, b).is_dir()
    db = sqlite3.connect(repo / ".git" / "gitexp" / "index.sqlite")
    assert [r for (r,) in db.execute("SELECT run_id FROM runs")] == [b]
    assert_user_error(exp("rm", a, cwd=repo, check=False), "no run matches")


def test_rm_refuses_a_live_run(repo: Path) -> None:
    (repo / "train.py").write_text("import time\ntime.sleep(30)\n")
    live = exp("run", "-d", "--", "python", "train.py", cwd=repo).stdout.strip()
    try:
        assert_user_error(exp("rm", live, cwd=repo, check=False), "still", "cancel")
        assert live in ids(repo)
    finally:
        exp("cancel", live, cwd=repo)
        wait_for(lambda: exp_json("show", live, cwd=repo)["status"] == "cancelled",
                 what="cancel")
    exp("rm", live, cwd=repo)
    assert ids(repo) == set()


def test_gc_failed_older_than_and_keep_best(repo: Path) -> None:
    (repo / "train.py").write_text(TRAIN)
    good = run(repo, "0.5")
    bad = run(repo, "-1")
    better = run(repo, "0.25")
    old_good = backdate(repo, good, 40, "old-good")
    old_bad = backdate(repo, bad, 40, "old-bad")
    assert exp_json("show", old_bad, cwd=repo)["status"] == "failed"
    everything = ids(repo)

    dry = exp("gc", "--failed", "--dry-run", cwd=repo).stdout
    assert set(dry.split()) >= {bad, old_bad} and good not in dry
    assert ids(repo) == everything

    dry = exp("gc", "--older-than", "30d", "-n", cwd=repo).stdout
    assert {ln.split()[2] for ln in dry.splitlines()} == {old_good, old_bad}
    dry = exp("gc", "--older-than", "30d", "--failed", "-n", cwd=repo).stdout
    assert {ln.split()[2] for ln in dry.splitlines()} == {old_bad}
    # keep the best (lowest loss) among runs with a loss; failed runs have none: untouched
    dry = exp("gc", "--keep-best", "loss", "1", "-n", cwd=repo).stdout
    assert {ln.split()[2] for ln in dry.splitlines()} == {good, old_good}
    dry = exp("gc", "--keep-best", "-loss", "2", "-n", cwd=repo).stdout  # highest are best
    assert {ln.split()[2] for ln in dry.splitlines()} == {better}
    assert ids(repo) == everything

    out = exp("gc", "--older-than", "30d", cwd=repo).stdout
    assert f"removed {old_good}" in out and f"removed {old_bad}" in out
    assert ids(repo) == {good, bad, better}
    exp("gc", "--failed", cwd=repo)
    assert ids(repo) == {good, better}
    assert "nothing to remove" in exp("gc", "--failed", cwd=repo).stdout


def test_keep_best_ranks_among_all_runs_not_only_the_ones_the_other_criteria_picked(
        repo: Path) -> None:
    """`--older-than 30d --keep-best loss 1`: the best loss overall is a new run, so no old
    run is among the best and every old run with a loss goes; ranking only the old runs
    would wrongly keep the best of them."""
    (repo / "train.py").write_text(TRAIN)
    best = run(repo, "0.25")
    worse = run(repo, "0.5")
    old_worse = backdate(repo, worse, 40, "old-worse")
    old_worst = backdate(repo, run(repo, "0.75"), 40, "old-worst")
    dry = exp("gc", "--older-than", "30d", "--keep-best", "loss", "1", "-n", cwd=repo).stdout
    assert {ln.split()[2] for ln in dry.splitlines()} == {old_worse, old_worst}
    # the 3 best overall are 0.25 and both 0.5s: of the old runs only the 0.75 goes
    dry = exp("gc", "--older-than", "30d", "--keep-best", "loss", "3", "-n", cwd=repo).stdout
    assert {ln.split()[2] for ln in dry.splitlines()} == {old_worst}
    assert best in ids(repo)


def test_gc_never_touches_live_runs(repo: Path) -> None:
    (repo / "train.py").write_text("import time\ntime.sleep(30)\n")
    live = exp("run", "-d", "--", "python", "train.py", cwd=repo).stdout.strip()
    try:
        time.sleep(0.2)
        out = exp("gc", "--older-than", "0s", "-n", cwd=repo).stdout
        assert live not in out
    finally:
        exp("cancel", live, cwd=repo)


def test_gc_needs_a_criterion_and_valid_values(repo: Path) -> None:
    assert_user_error(exp("gc", cwd=repo, check=False), "at least one")
    assert_user_error(exp("gc", "--older-than", "soon", cwd=repo, check=False), "duration")
    assert_user_error(exp("gc", "--keep-best", "loss", "-2", cwd=repo, check=False),
                      "--keep-best")


def test_rm_removes_a_run_whose_record_cannot_be_read(repo: Path) -> None:
    head = git("rev-parse", "HEAD", cwd=repo).strip()
    git("update-ref", "refs/experiments/broken-run", head, cwd=repo)
    assert "unreadable record" in exp("rm", "broken-run", "-n", cwd=repo).stdout
    assert "removed broken-run" in exp("rm", "broken-run", cwd=repo).stdout
    assert git("for-each-ref", "refs/experiments/", cwd=repo) == ""
