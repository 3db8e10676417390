"""Large untracked files stop a launch instead of silently going into the snapshot."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import assert_user_error, exp, git, wait_done


def big_file(path: Path, size: int) -> None:
    with path.open("wb") as f:  # sparse: instant, and takes no disk
        f.truncate(size)


def test_a_large_untracked_file_refuses_the_launch_and_names_it(repo: Path) -> None:
    big_file(repo / "weights.bin", 60 * 1000**2)
    (repo / "small.txt").write_text("fine\n")
    proc = exp("run", "-d", "--", "true", cwd=repo, check=False)
    assert_user_error(proc, "weights.bin (60 MB)", "dvc add weights.bin", ".gitignore",
                      "exp.maxFileSize")
    assert git("for-each-ref", "refs/experiments", cwd=repo) == ""


def test_ignored_files_and_a_raised_limit_let_it_through(repo: Path) -> None:
    big_file(repo / "weights.bin", 60 * 1000**2)
    git("config", "exp.maxFileSize", "100M", cwd=repo)
    run = exp("run", "-d", "--", "true", cwd=repo).stdout.strip()
    assert wait_done(run, repo)["status"] == "succeeded"
    git("config", "exp.maxFileSize", "10M", cwd=repo)
    (repo / ".gitignore").write_text("weights.bin\n")
    run = exp("run", "-d", "--", "true", cwd=repo).stdout.strip()
    assert wait_done(run, repo)["status"] == "succeeded"


def test_a_malformed_limit_is_a_config_error(repo: Path) -> None:
    git("config", "exp.maxFileSize", "huge", cwd=repo)
    assert_user_error(exp("run", "-d", "--", "true", cwd=repo, check=False),
                      "exp.maxFileSize", "200M")
