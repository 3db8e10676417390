"""Every user error: one clear line plus a hint, a non-zero exit, and no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import make_repo
from tests.helpers import assert_user_error, exp, git


def test_not_a_repo(tmp_path: Path):
    assert_user_error(exp("ls", cwd=tmp_path, check=False), "not a git repository")


def test_bare_repo(tmp_path: Path):
    git("init", "-q", "--bare", str(tmp_path / "b.git"), cwd=tmp_path)
    assert_user_error(exp("run", "--", "true", cwd=tmp_path / "b.git", check=False), "bare")


@pytest.mark.parametrize(("args", "needle"), [
    (["run"], "no command given"),
    (["run", "--"], "no command given"),
    (["run", "--", "surely-not-a-command-xyz"], "command not found"),
    (["run", "--", "./missing.sh"], "command not found"),
    (["run", "-n", "Bad Name!", "--", "true"], "invalid run name"),
    (["run", "-t", "nowhere", "--", "true"], "unknown target"),
    (["show", "no-such-run"], "no run matches"),
    (["logs", "no-such-run"], "no run matches"),
    (["cancel", "no-such-run"], "no run matches"),
])
def test_bad_input_is_one_line_with_a_hint(repo: Path, args: list[str], needle: str):
    proc = exp(*args, cwd=repo, check=False)
    assert_user_error(proc, needle)
    assert "hint: " in proc.stderr
    assert git("for-each-ref", "refs/experiments/", cwd=repo) == ""  # nothing was launched


def test_not_executable_script(repo: Path):
    (repo / "x.sh").write_text("echo hi\n")
    assert_user_error(exp("run", "--", "./x.sh", cwd=repo, check=False), "not executable")


def test_target_without_backend_and_malformed_shared_config(tmp_path: Path):
    repo = make_repo(tmp_path / "r")
    git("config", "exp.target.gpu.zone", "x", cwd=repo)
    assert_user_error(exp("run", "-t", "gpu", "--", "true", cwd=repo, check=False), "backend")
    (repo / ".gitexp").mkdir()
    (repo / ".gitexp" / "config").write_text("[exp\n  broken = \n")
    assert_user_error(exp("ls", cwd=repo, check=False), ".gitexp/config")


def test_ambiguous_run_prefix(repo: Path):
    exp("run", "-d", "-n", "same", "--", "true", cwd=repo)
    exp("run", "-d", "-n", "same", "--force", "--", "true", cwd=repo)
    assert_user_error(exp("show", "same", cwd=repo, check=False), "matches 2 runs")


def test_cancel_of_a_finished_run(repo: Path):
    exp("run", "-n", "done", "--", "true", cwd=repo)
    assert_user_error(exp("cancel", "done", cwd=repo, check=False), "already ended")


def test_unknown_option_is_a_usage_error_without_traceback(repo: Path):
    proc = exp("ls", "--no-such-flag", cwd=repo, check=False)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "No such option" in proc.stderr
