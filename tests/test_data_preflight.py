"""The snapshot's budget: large untracked files stop a launch (every launch path) before
anything is recorded, instead of silently going into git, the store and every remote."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from gitexp.errors import ConfigError
from gitexp.git.config import Config
from gitexp.service import preflight
from tests.helpers import assert_user_error, exp, git, wait_done


def big_file(path: Path, size: int) -> None:
    with path.open("wb") as f:  # sparse: instant, and takes no disk
        f.truncate(size)


def test_a_large_untracked_file_refuses_the_launch_and_names_it(repo: Path) -> None:
    big_file(repo / "weights.bin", 60 * 1000**2)
    (repo / "small.txt").write_text("fine\n")
    proc = exp("run", "-d", "--", "true", cwd=repo, check=False)
    # Over both limits: both are named, so raising one is not met by the other's refusal.
    assert_user_error(proc, "weights.bin (60 MB)", "dvc add weights.bin", ".gitignore",
                      "--allow-large", "`git config exp.maxUntrackedSize 70M` and "
                      "`git config exp.maxFileSize 70M` raise the limits")
    assert "small.txt" not in proc.stderr
    assert git("for-each-ref", "refs/experiments", cwd=repo) == ""


def test_ignored_files_and_a_raised_limit_let_it_through(repo: Path) -> None:
    big_file(repo / "weights.bin", 60 * 1000**2)
    git("config", "exp.maxFileSize", "100M", cwd=repo)
    git("config", "exp.maxUntrackedSize", "100m", cwd=repo)
    run = exp("run", "-d", "--", "true", cwd=repo).stdout.strip()
    assert wait_done(run, repo)["status"] == "succeeded"
    git("config", "exp.maxFileSize", "10M", cwd=repo)
    (repo / ".gitignore").write_text("weights.bin\n")
    run = exp("run", "-d", "--", "true", cwd=repo).stdout.strip()
    assert wait_done(run, repo)["status"] == "succeeded"


def test_a_malformed_limit_is_a_config_error_even_with_allow_large(repo: Path) -> None:
    git("config", "exp.maxUntrackedSize", "huge", cwd=repo)
    proc = exp("run", "-d", "--allow-large", "--", "true", cwd=repo, check=False)
    assert_user_error(proc, "exp.maxUntrackedSize = 'huge' is not a size",
                      "git config exp.maxUntrackedSize 200M")
    assert git("for-each-ref", "refs/experiments", cwd=repo) == ""


@pytest.mark.parametrize("key", ["exp.maxFileSize", "exp.maxUntrackedSize"])
def test_sizes_in_git_config_syntax(key: str) -> None:
    size = preflight.max_file_size if key == "exp.maxFileSize" else preflight.max_untracked_size
    assert size(Config({})) == 50 * 1000**2
    for raw, expected in (("50m", 50 * 1000**2), ("1G", 1000**3), ("200MB", 200 * 1000**2),
                          ("1GiB", 1 << 30), ("512k", 512_000), ("0", 0), (" 2 g ", 2 * 1000**3),
                          ("1.5m", 1_500_000), ("123", 123)):
        assert size(Config({key.lower(): raw})) == expected, raw
    for raw in ("huge", "-5m", "1x", "nan", "inf", "", "m", "1e999"):
        with pytest.raises(ConfigError) as err:
            size(Config({key.lower(): raw}))
        assert err.value.message == f"{key} = {raw!r} is not a size"
        assert f"git config {key} 200M" in (err.value.hint or "")


def store_entries(repo: Path) -> list[Path]:
    store = repo / ".git" / "gitexp" / "store"
    return sorted(store.rglob("*")) if store.exists() else []


def objects(repo: Path) -> str:
    return git("count-objects", cwd=repo)


def test_untracked_checkpoints_over_the_budget_stop_run_and_sweep_before_anything(
        repo: Path) -> None:
    """The issue's case: 8 x 20 MB checkpoints, each under the one-file limit."""
    (repo / "checkpoints").mkdir()
    for i in range(8):
        big_file(repo / "checkpoints" / f"epoch{i}.pt", (20 + i) * 1000**2)
    before = objects(repo)
    for args in (["run", "-d", "--", "true"],
                 ["run", "--sweep", "lr=1,2", "--", "true", "{lr}"]):
        proc = exp(*args, cwd=repo, check=False)
        assert_user_error(
            proc, "188 MB of untracked files would go into the snapshot, over "
                  "exp.maxUntrackedSize (50 MB)",
            "checkpoints/epoch7.pt (27 MB), checkpoints/epoch6.pt (26 MB)", "and 3 more",
            "`checkpoints/` in .gitignore", "dvc add checkpoints", "--allow-large",
            "git config exp.maxUntrackedSize 190M")
        assert "epoch2.pt" not in proc.stderr  # the five largest only
        assert "exp.maxFileSize" not in proc.stderr  # no one file is over it
        # Nothing recorded: no ref, no store entry, not even an object hashed.
        assert git("for-each-ref", "refs/experiments", cwd=repo) == ""
        assert store_entries(repo) == []
        assert objects(repo) == before


def test_the_fixes_each_let_the_launch_through(repo: Path) -> None:
    git("config", "exp.maxUntrackedSize", "1M", cwd=repo)
    (repo / "data").mkdir()
    (repo / "data" / "a.bin").write_bytes(b"a" * 600_000)
    (repo / "data" / "b.bin").write_bytes(b"b" * 600_000)
    (repo / ".env").write_bytes(b"x" * 2_000_000)  # stays behind (a secret): not counted
    proc = exp("run", "-d", "--", "true", cwd=repo, check=False)
    assert_user_error(proc, "1.2 MB of untracked files would go", "(1 MB)",
                      "data/a.bin (600 kB), data/b.bin (600 kB)")
    assert ".env" not in proc.stderr

    # Each fix lets it through (the runs need not end: their refs show the launch).
    run = exp("run", "-d", "--allow-large", "--", "true", cwd=repo).stdout.strip()
    assert git("ls-tree", "-r", "--name-only", f"refs/experiments/{run}", "data",
               cwd=repo).split() == ["data/a.bin", "data/b.bin"]

    (repo / ".gitignore").write_text("data/b.bin\n")
    exp("run", "-d", "--", "true", "1", cwd=repo)

    git("config", "exp.maxUntrackedSize", "0", cwd=repo)  # 0: no budget
    (repo / "c.bin").write_bytes(b"c" * 2_000_000)
    exp("run", "-d", "--", "true", "2", cwd=repo)
    assert len(git("for-each-ref", "refs/experiments", cwd=repo).splitlines()) == 3


def test_a_changed_tracked_file_counts_for_the_one_file_limit_only(repo: Path) -> None:
    (repo / "model.bin").write_bytes(b"v1")
    git("add", "model.bin", cwd=repo)
    git("commit", "-qm", "model", cwd=repo)
    git("config", "exp.maxFileSize", "1m", cwd=repo)
    (repo / "model.bin").write_bytes(b"v2" * 1_000_000)
    proc = exp("run", "-d", "--", "true", cwd=repo, check=False)
    assert_user_error(proc, "files over exp.maxFileSize (1 MB) would go into the snapshot: "
                      "model.bin (2 MB)", "--allow-large", "git config exp.maxFileSize 10M")
    assert "exp.maxUntrackedSize" not in proc.stderr


def test_a_rerun_takes_no_new_content_and_needs_no_budget(repo: Path) -> None:
    run = exp("run", "-d", "--", sys.executable, "-c", "print(1)", cwd=repo).stdout.strip()
    assert wait_done(run, repo)["status"] == "succeeded"
    big_file(repo / "later.bin", 80 * 1000**2)  # not part of the run's snapshot
    out = exp("rerun", "-d", run, cwd=repo).stdout.strip()
    assert wait_done(out, repo)["status"] == "succeeded"
    assert re.fullmatch(r"\S+", out)
    assert "later.bin" not in git("ls-tree", "-r", "--name-only", f"refs/experiments/{out}",
                                  cwd=repo)
