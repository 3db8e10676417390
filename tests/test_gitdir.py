"""`git --git-dir=X --work-tree=Y exp ...` and GIT_DIR/GIT_WORK_TREE set by the user: git
passes them to `git-exp` in the environment, and every verb acts on that repository, not on
the one the current directory is in (here: another repository, or no repository at all)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import make_repo
from tests.helpers import assert_user_error, exp, git

# The job asks git where it is: its own checkout, never the launcher's GIT_DIR.
JOB = ("import subprocess, gitexp; gitexp.log(loss=0.5); "
       "print('head', subprocess.run(['git', 'rev-parse', 'HEAD'], capture_output=True, "
       "text=True).stdout.strip())")


@pytest.fixture
def split(tmp_path: Path) -> tuple[Path, Path]:
    """A work tree whose git directory lives elsewhere (`sep.git`), and a directory outside
    both that is a repository of its own (where a run must not land)."""
    tree = make_repo(tmp_path / "tree", {"job.py": JOB})
    (tree / ".git").rename(tmp_path / "sep.git")
    make_repo(tmp_path / "elsewhere")
    return tree, tmp_path / "sep.git"


def gexp(git_dir: Path, tree: Path, *args: str, cwd: Path,
         check: bool = True) -> subprocess.CompletedProcess[str]:
    """`git --git-dir=X --work-tree=Y exp ARGS`, as a user types it (relative paths too)."""
    opts = [f"--git-dir={os.path.relpath(git_dir, cwd)}",
            f"--work-tree={os.path.relpath(tree, cwd)}"]
    proc = subprocess.run(["git", *opts, "exp", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120, check=False)
    if check:
        assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
    return proc


def test_every_verb_acts_on_the_repository_git_names(split: tuple[Path, Path],
                                                     tmp_path: Path) -> None:
    tree, git_dir = split
    outside = tmp_path / "elsewhere"
    said = gexp(git_dir, tree, "run", "--", sys.executable, "job.py", cwd=outside)
    run_id = started(said.stderr)
    env = {"GIT_DIR": str(git_dir), "GIT_WORK_TREE": str(tree)}
    done = json.loads(gexp(git_dir, tree, "show", run_id, "--json", cwd=outside).stdout)
    assert f"head {done['snapshot']}" in said.stdout  # the job's git saw its checkout
    assert done["status"] == "succeeded" and done["record"]["cwd"] == ""  # the root
    assert git("for-each-ref", "refs/experiments/", cwd=outside) == ""  # not recorded here
    assert git("--git-dir", str(git_dir), "rev-parse", f"refs/experiments/{run_id}^1",
               cwd=tmp_path).strip() == done["snapshot"]
    assert "head" in gexp(git_dir, tree, "logs", run_id, cwd=outside).stdout
    assert run_id in gexp(git_dir, tree, "ls", cwd=outside).stdout
    assert "succeeded" in gexp(git_dir, tree, "show", run_id, cwd=outside).stdout
    gexp(git_dir, tree, "tag", run_id, "split", cwd=outside)
    gexp(git_dir, tree, "note", run_id, "from outside", cwd=outside)
    assert "from outside" in gexp(git_dir, tree, "note", run_id, cwd=outside).stdout
    assert "code" in gexp(git_dir, tree, "diff", run_id, cwd=outside).stdout
    assert "local" in gexp(git_dir, tree, "targets", cwd=outside).stdout
    gexp(git_dir, tree, "hooks", "install", cwd=outside)
    assert (git_dir / "hooks" / "post-commit").is_file()
    assert not (outside / ".git" / "hooks" / "post-commit").exists()

    # GIT_DIR/GIT_WORK_TREE set by the user, from a directory in no repository at all.
    nowhere = tmp_path / "nowhere"
    nowhere.mkdir()
    shown = exp("show", run_id, "--json", cwd=nowhere, env=env)
    assert '"split"' in shown.stdout
    gexp(git_dir, tree, "rm", run_id, cwd=outside)
    assert git("--git-dir", str(git_dir), "for-each-ref", "refs/experiments/",
               cwd=tmp_path) == ""


def started(stderr: str) -> str:
    """The id of the run `git exp run` (followed, not detached) said it started."""
    found = re.search(r"gitexp: run (\S+) on local", stderr)
    assert found, stderr
    return found.group(1)


def test_git_dir_alone_takes_the_current_directory_as_the_work_tree(
        split: tuple[Path, Path]) -> None:
    """git's own rule: GIT_DIR without a work tree makes the current directory its top."""
    tree, git_dir = split
    (tree / "sub").mkdir()
    (tree / "sub" / "job.py").write_text(JOB)
    run_id = started(exp("run", "--", sys.executable, "job.py", cwd=tree / "sub",
                         env={"GIT_DIR": str(git_dir)}).stderr)
    done = json.loads(exp("show", run_id, "--json", cwd=tree / "sub",
                          env={"GIT_DIR": str(git_dir)}).stdout)
    assert done["status"] == "succeeded" and done["record"]["cwd"] == ""
    files = git("--git-dir", str(git_dir), "ls-tree", "--name-only", done["snapshot"], cwd=tree)
    assert files.split() == ["job.py"]  # sub/ was the work tree, as for `git status`
    listed = json.loads(exp("ls", "--json", cwd=tree, env={"GIT_DIR": str(git_dir)}).stdout)
    assert [r["id"] for r in listed] == [run_id]


def test_a_git_dir_that_is_no_repository_is_one_line(tmp_path: Path) -> None:
    assert_user_error(exp("ls", cwd=tmp_path, check=False, env={"GIT_DIR": str(tmp_path / "x")}),
                      "no git repository at", "check --git-dir")
