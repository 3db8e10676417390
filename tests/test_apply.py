"""`git exp apply RUN`: the run's files into the work tree, as `dvc exp apply` does, with
HEAD, the branch and the index where they were."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import exp, git


def launch_dirty_run(repo: Path) -> str:
    """A run launched from edits: a changed file, a new untracked one, a deleted one."""
    (repo / "train.py").write_text("print('v1')\n")
    (repo / "old.txt").write_text("old\n")
    git("add", "-A", cwd=repo)
    git("commit", "-qm", "base", cwd=repo)
    (repo / "train.py").write_text("print('v2')\n")
    (repo / "conf").mkdir()
    (repo / "conf" / "new.yaml").write_text("lr: 3\n")
    (repo / "old.txt").unlink()
    run_id = exp("run", "-d", "--", "python", "train.py", cwd=repo).stdout.strip()
    git("checkout", "-q", "--", ".", cwd=repo)  # back to HEAD, clean
    (repo / "conf" / "new.yaml").unlink()
    return run_id


def test_apply_puts_the_runs_files_in_the_work_tree_and_moves_nothing_else(repo: Path) -> None:
    run_id = launch_dirty_run(repo)
    head, branch = git("rev-parse", "HEAD", cwd=repo), git("branch", "--show-current", cwd=repo)
    index = git("ls-files", "-s", cwd=repo)

    proc = exp("apply", run_id[:12], cwd=repo)

    assert (repo / "train.py").read_text() == "print('v2')\n"
    assert (repo / "conf" / "new.yaml").read_text() == "lr: 3\n"
    assert not (repo / "old.txt").exists()
    assert git("rev-parse", "HEAD", cwd=repo) == head
    assert git("branch", "--show-current", cwd=repo) == branch
    assert git("ls-files", "-s", cwd=repo) == index  # nothing staged
    assert sorted(git("status", "--porcelain", cwd=repo).splitlines()) == [
        " D old.txt", " M train.py", "?? conf/"]
    assert "3 change(s)" in proc.stderr and "HEAD" in proc.stderr


def test_apply_refuses_over_uncommitted_changes_and_touches_nothing(repo: Path) -> None:
    run_id = launch_dirty_run(repo)
    (repo / "train.py").write_text("print('mine')\n")

    proc = exp("apply", run_id, cwd=repo, check=False)

    assert proc.returncode == 1
    assert proc.stderr.startswith("error: the work tree has 1 uncommitted change(s); applying")
    assert "hint: commit or stash them first" in proc.stderr
    assert (repo / "train.py").read_text() == "print('mine')\n"
    assert (repo / "old.txt").exists()
