"""Team scale (issue 19), its mechanisms at a small N: a fetch with nothing new fetches
nothing; `ls` pages from the index and syncs only what changed; `gc`/`rm` remove in one
ref transaction. The big figures are benchmarks/bench_scale.py's."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from benchmarks import bench_ls

from gitexp.git import Repo
from gitexp.git.config import Config
from gitexp.service import archives, gc, index, runs, sharing, where
from gitexp.service.cores import MAX_WORKERS
from gitexp.service.where import Query
from tests.conftest import use_home
from tests.helpers import exp, exp_json, git

N = 300  # runs on the team's remote


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A bare remote holding N generated runs (bench_ls's objects, refs packed as a
    server's gc leaves them) and the producer repository they came from."""
    root = tmp_path_factory.mktemp("team")
    with pytest.MonkeyPatch.context() as mp:
        use_home(mp, root)
        prod = root / "prod"
        base = bench_ls.make_repo(prod, dvc=False)
        bench_ls.gen_gitexp(prod, base, N)
        remote = root / "remote.git"
        git("init", "-q", "--bare", "-b", "main", str(remote), cwd=root)
        git("push", "-q", str(remote), "HEAD:refs/heads/main",
            "refs/experiments/*:refs/experiments/*", cwd=prod)
        git("pack-refs", "--all", cwd=remote)
        return prod, remote


def git_calls(trace: Path, verb: str) -> int:
    """How many `git VERB` processes a command started (from its GIT_TRACE file)."""
    return sum(1 for line in trace.read_text().splitlines()
               if f"built-in: git {verb} " in line or line.endswith(f"built-in: git {verb}"))


def test_a_fetch_with_nothing_new_fetches_nothing(team: tuple[Path, Path], tmp_path: Path):
    _, remote = team
    clone = tmp_path / "clone"
    git("clone", "-q", str(remote), str(clone), cwd=tmp_path)
    assert f"{N} new run(s)" in exp("fetch", cwd=clone).stdout
    trace = tmp_path / "trace"

    again = exp("fetch", cwd=clone, env={"GIT_TRACE": str(trace)})

    assert "0 new run(s)" in again.stdout
    assert git_calls(trace, "ls-remote") == 1
    assert git_calls(trace, "fetch") == 0 and git_calls(trace, "update-ref") == 0
    assert git("for-each-ref", "refs/gitexp-incoming/", cwd=clone) == ""


def test_a_fetch_takes_only_what_changed(team: tuple[Path, Path], tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch):
    """A first fetch judges runs a batch at a time; of N runs the clone then lacks two: one
    `git fetch` brings just those, by object id."""
    _, remote = team
    clone = tmp_path / "clone"
    git("clone", "-q", "--no-local", str(remote), str(clone), cwd=tmp_path)
    with monkeypatch.context() as mp:
        mp.setattr(sharing, "JUDGED_AT_ONCE", 64)
        assert len(sharing.fetch(Repo.discover(clone)).new) == N
    gone = [bench_ls.run_id(i) for i in (3, 4)]
    git("update-ref", "--stdin", cwd=clone,
        input="".join(f"delete refs/experiments/{i}\n" for i in gone).encode())
    trace = tmp_path / "trace"

    again = exp("fetch", cwd=clone, env={"GIT_TRACE": str(trace)})

    assert "2 new run(s)" in again.stdout
    assert git_calls(trace, "fetch") == 1
    assert set(gone) <= set(git("for-each-ref", "--format=%(refname:lstrip=2)",
                                "refs/experiments/", cwd=clone).split())
    assert len(git("for-each-ref", "refs/experiments/", cwd=clone).splitlines()) == N
    shutil.rmtree(clone)


FETCH_REPORT = """if True:
    import json, os, sys
    from gitexp.git import Repo
    from gitexp.service import sharing
    clone, how, pids = sys.argv[1:]
    sharing.JUDGED_AT_ONCE = 40
    sharing.PARALLEL = 10**9 if how == "serial" else 80
    judged = sharing.transitions
    def spied(repo, moves):
        with open(pids, "a") as f:
            f.write(f"{os.getpid()}\\n")
        return judged(repo, moves)
    sharing.transitions = spied
    said = []
    report = sharing.fetch(Repo.discover(clone), progress=lambda *a: said.append(a))
    print(json.dumps({"new": sorted(report.new), "refused": sorted(report.refused),
                      "kept": sorted(report.kept), "progress": said, "pid": str(os.getpid())}))
"""


def test_a_first_fetch_judges_on_every_core_what_one_process_judges(
        mine: Path, team: tuple[Path, Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch):
    """A first fetch of many runs, some single refs (one forged), most in archives, is
    judged by a process per core, counted on a progress bar, and takes and refuses exactly
    what one process judging them all does."""
    remote = Path(shutil.copytree(team[1], tmp_path / "remote.git", symlinks=True))
    with monkeypatch.context() as mp:
        mp.setattr(archives, "MAX_RUNS", 50)
        git("config", "exp.foldAt", "60", cwd=mine)
        folded = sharing.push(Repo.discover(mine), str(remote))
    assert folded.folded == N - 10 and len(folded.archived) == 6
    forged = git("commit-tree", "-m", "gitexp run: no record here", "HEAD^{tree}",
                 cwd=mine).strip()
    git("push", "-q", "--no-verify", str(remote),
        f"{forged}:refs/experiments/{bench_ls.run_id(N + 5)}", cwd=mine)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    said, workers = {}, {}
    for how in ("serial", "parallel"):
        clone, pids = tmp_path / how, tmp_path / f"{how}.pids"
        git("clone", "-q", "--no-local", str(remote), str(clone), cwd=tmp_path)
        out = subprocess.run([sys.executable, "-c", FETCH_REPORT, str(clone), how, str(pids)],
                             capture_output=True, text=True, timeout=300, env=env)
        assert out.returncode == 0, out.stderr
        said[how] = json.loads(out.stdout)
        workers[how] = set(pids.read_text().split()) - {said[how].pop("pid")}
        said[how]["refs"] = git("for-each-ref", "refs/experiments/", "refs/exp-archive/",
                                cwd=clone)
    progress = said["parallel"].pop("progress")
    assert said["serial"].pop("progress") == []  # few runs for one process: no bar
    assert said["parallel"] == said["serial"]
    assert len(said["serial"]["new"]) == N
    assert [r for r, _ in said["serial"]["refused"]] == [f"refs/experiments/"
                                                          f"{bench_ls.run_id(N + 5)}"]
    assert workers["serial"] == set()
    assert len(workers["parallel"]) == min(os.cpu_count() or 1, MAX_WORKERS) > 1
    assert progress[0] == [0, N + 1] and progress[-1] == [N + 1, N + 1]
    assert [d for d, _ in progress] == sorted(d for d, _ in progress)


# -- ls: a page from the index, synced by what changed ------------------------------------------
@pytest.fixture(scope="module")
def runs_repo(team: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clone that fetched the team's N runs."""
    _, remote = team
    root = tmp_path_factory.mktemp("clone")
    with pytest.MonkeyPatch.context() as mp:
        use_home(mp, root)
        clone = root / "clone"
        git("clone", "-q", str(remote), str(clone), cwd=root)
        exp("fetch", cwd=clone)
        git("pack-refs", "--all", cwd=clone)
        return clone


@pytest.fixture
def mine(runs_repo: Path, tmp_path: Path) -> Path:
    """This test's copy of that clone."""
    return Path(shutil.copytree(runs_repo, tmp_path / "clone", symlinks=True))


def first_column(table: str) -> list[str]:
    return [line.split()[0] for line in table.splitlines()[1:] if line.strip()]


def newest(count: int) -> list[str]:
    return [bench_ls.run_id(i) for i in range(N - 1, N - 1 - count, -1)]


def test_ls_shows_a_page_of_the_newest_runs(mine: Path):
    page = exp("ls", cwd=mine)
    assert first_column(page.stdout) == newest(50)
    assert "--all" in page.stderr
    assert len(first_column(exp("ls", "--all", cwd=mine).stdout)) == N
    some = exp("ls", "--limit", "3", cwd=mine)
    assert first_column(some.stdout) == newest(3) and some.stderr == ""
    assert len(exp_json("ls", cwd=mine)) == N  # scripts get every run
    assert len(exp("ls", "--csv", cwd=mine).stdout.splitlines()) == N + 1


def age_refs(repo: Path) -> None:
    """Make the refs' storage look written long ago, as it is between two `ls` of a user's
    (a stamp younger than git.RACY_SECONDS is not trusted)."""
    for path in (repo / ".git/refs/experiments", repo / ".git/packed-refs"):
        if path.exists():
            st = path.stat()
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns - 10**10))


def test_ls_reads_only_the_refs_that_changed(mine: Path, tmp_path: Path):
    exp("ls", cwd=mine)  # this test's seal key: the index is made afresh
    age_refs(mine)
    exp("ls", cwd=mine)  # the stamp of the refs' storage, remembered
    trace = tmp_path / "trace"

    exp("ls", cwd=mine, env={"GIT_TRACE": str(trace)})
    assert git_calls(trace, "for-each-ref") == 0 and git_calls(trace, "cat-file") == 0

    # A row of a run whose ref did not move is never read again: mark one, move another.
    [marked, gone] = newest(2)
    with sqlite3.connect(mine / ".git/gitexp/index.sqlite") as db:
        db.execute("UPDATE runs SET summary = json_set(summary, '$.command', 'marked') "
                   "WHERE ref = ?", (f"refs/experiments/{marked}",))
    git("update-ref", "-d", f"refs/experiments/{gone}", cwd=mine)
    age_refs(mine)
    trace.unlink()
    page = exp("ls", cwd=mine, env={"GIT_TRACE": str(trace)}).stdout
    assert git_calls(trace, "for-each-ref") == 1
    assert gone not in page and "marked" in page.splitlines()[1]

    # Another user's keys empty the index, and its remembered stamp goes with the rows:
    # unchanged refs must not read as an index that is up to date.
    other = tmp_path / "other"
    (other / "gitexp").mkdir(parents=True)
    (other / "gitexp" / "seal.key").write_text("ab" * 32 + "\n")
    listed = exp("ls", "--all", cwd=mine,
                 env={"HOME": str(other), "XDG_CONFIG_HOME": str(other)}).stdout
    assert len(first_column(listed)) == N - 1


WHERES = ["loss == 0.0002", "loss < 0.001", "loss <= 0.0004 or acc > 0.9998",
          "not loss < 0.19", "status == failed and loss < 0.005", "metrics.acc >= 0.9999",
          "loss != 0.0002", "loss == '0.0002'", "acc > 0.99 and (loss < 0.001 or status == failed)",
          "loss == null", "target == local and loss > 0.19", "loss > 0.19 and user == nobody"]


def test_where_from_the_index_is_the_rule_over_every_run(mine: Path):
    """The index narrows a --where by SQL to a superset of the runs it matches; what `ls`
    then selects is exactly what the rule picks among every run."""
    repo = Repo.discover(mine)
    config = Config.load(repo)
    every = index.rows(repo)
    narrowed = 0
    for expr in WHERES:
        query = Query(where=expr)
        picked = {row["id"] for row in where.listing(repo, config, query)}
        assert picked == {row["id"] for row in where.select(every, query)}, expr
        found = where._candidates(repo, query, summary=False)  # None: every row needed
        narrowed += found is not None and len(found) < N
    assert narrowed >= 7
    assert where._candidates(repo, Query(where="seed == 7"), summary=False) is None  # a param


def test_a_first_sync_says_how_far_it_is(mine: Path, monkeypatch: pytest.MonkeyPatch):
    for extra in ("", "-wal", "-shm"):
        (mine / f".git/gitexp/index.sqlite{extra}").unlink(missing_ok=True)
    monkeypatch.setattr(index, "BATCH", 100)
    said: list[tuple[int, int]] = []
    index.refresh(Repo.discover(mine), lambda done, total: said.append((done, total)))
    assert said == [(0, N), (100, N), (200, N), (300, N)]
    assert len(index.rows(Repo.discover(mine), summary=True)) == N


# -- gc and rm: what goes is read, and goes in one transaction --------------------------------
POLICIES: list[dict[str, Any]] = [
    {"failed": True}, {"older_than": N * 30.0}, {"failed": True, "older_than": N * 50.0},
    {"keep_best": ("loss", 10)}, {"keep_best": ("-acc", 3), "failed": True},
    {"keep_best": ("nothing", 3)}]


def test_gc_reads_only_the_runs_near_its_policy(mine: Path):
    """gc's plan from the index picks exactly what its rule picks among every run."""
    repo = Repo.discover(mine)
    config = Config.load(repo)
    every = runs.list_runs(repo, config)
    now = time.time()
    for kwargs in POLICIES:
        policy = gc.Policy(**kwargs)
        doomed, _ = gc.plan(repo, config, policy, now)
        assert [r.id for r in doomed] == [r.id for r in gc.select(every, policy, now)], kwargs
    assert len(index.ended(repo, before=now - N * 30.0)) < N  # narrowed, not every run


def test_rm_and_gc_delete_refs_in_one_transaction(mine: Path, tmp_path: Path):
    exp("ls", cwd=mine)  # this test's seal key: the index made afresh
    trace = tmp_path / "trace"
    named = newest(5)

    out = exp("rm", *named, cwd=mine, env={"GIT_TRACE": str(trace)}).stdout

    assert out.split() == [w for i in named for w in ("removed", i)]
    assert git_calls(trace, "update-ref") == 1 and git_calls(trace, "cat-file") == 0
    trace.unlink()
    failed = {bench_ls.run_id(i) for i in range(N) if i % 10 == 9} - set(named)
    out = exp("gc", "--failed", cwd=mine, env={"GIT_TRACE": str(trace)}).stdout
    assert {line.split()[1] for line in out.splitlines()} == failed
    assert git_calls(trace, "update-ref") == 1 and git_calls(trace, "cat-file") == 0
    left = set(first_column(exp("ls", "--all", cwd=mine).stdout))
    assert len(left) == N - 5 - len(failed) and not left & (failed | set(named))
