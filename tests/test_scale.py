"""Team scale (issue 19), its mechanisms at a small N: a fetch with nothing new fetches
nothing; `ls` pages from the index and syncs only what changed; `gc`/`rm` remove in one
ref transaction. The big figures are benchmarks/bench_scale.py's."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from benchmarks import bench_ls

from tests.conftest import use_home
from tests.helpers import exp, git

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


def test_a_fetch_takes_only_what_changed(team: tuple[Path, Path], tmp_path: Path):
    """Of N runs the clone lacks two: one `git fetch` brings just those."""
    _, remote = team
    clone = tmp_path / "clone"
    git("clone", "-q", str(remote), str(clone), cwd=tmp_path)
    exp("fetch", cwd=clone)
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
