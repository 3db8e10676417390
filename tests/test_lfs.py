"""git-lfs with real git-lfs: a job gets the contents of LFS-tracked files (committed and
uncommitted ones), from the launching repository's LFS store; a launch whose contents are not
there, or that goes to a remote target, is refused in one line before anything is recorded;
and a worker whose source lacks an object refuses rather than hand the job a pointer."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from gitexp.errors import GitexpError
from gitexp.git import Repo, lfs
from gitexp.worker import workspace
from tests.conftest import make_repo
from tests.helpers import assert_user_error, exp, git
from tests.services._util import require_binaries

# What the job sees: the first bytes of each file, and whether git calls its checkout clean.
JOB = """\
import subprocess
for name in ("weights.bin", "data/big.bin"):
    print(name, open(name, "rb").read()[:24])
print("status", repr(subprocess.run(["git", "status", "--porcelain"], capture_output=True,
                                    text=True).stdout))
"""


@pytest.fixture
def lfs_repo(tmp_path: Path) -> Path:
    """A repository with git-lfs set up for itself only (`install --local`; HOME is the
    test's own), two LFS-tracked files committed and one of them changed, uncommitted."""
    require_binaries("git-lfs", "git-lfs")
    repo = make_repo(tmp_path / "repo", {"job.py": JOB})
    git("lfs", "install", "--local", cwd=repo)
    git("lfs", "track", "*.bin", cwd=repo)
    (repo / "data").mkdir()
    (repo / "weights.bin").write_bytes(b"committed weights " + bytes(range(256)) * 8)
    (repo / "data" / "big.bin").write_bytes(b"committed data " + bytes(4096))
    git("add", "-A", cwd=repo)
    git("commit", "-qm", "lfs files", cwd=repo)
    assert git("show", "HEAD:weights.bin", cwd=repo).startswith("version https://git-lfs")
    (repo / "weights.bin").write_bytes(b"uncommitted weights " + bytes(3000))
    return repo


def test_a_job_gets_the_contents_of_lfs_files_never_pointers(lfs_repo: Path) -> None:
    proc = exp("run", "--", sys.executable, "job.py", cwd=lfs_repo)  # followed to its end
    log = proc.stdout
    assert "weights.bin b'uncommitted weights \\x00\\x00\\x00\\x00'" in log  # the work tree's
    assert "data/big.bin b'committed data \\x00" in log
    assert "git-lfs" not in log and "status ''" in log  # smudged, and clean to git
    (ref,) = git("for-each-ref", "--format=%(refname)", "refs/experiments/",
                 cwd=lfs_repo).split()
    assert git("show", f"{ref}^1:weights.bin", cwd=lfs_repo).startswith(
        "version https://git-lfs")  # the snapshot holds the pointer, the job the content


def test_contents_missing_from_the_lfs_store_refuse_the_launch(lfs_repo: Path) -> None:
    git("add", "-A", cwd=lfs_repo)
    git("commit", "-qm", "all committed", cwd=lfs_repo)
    # As after a clone that skipped them (GIT_LFS_SKIP_SMUDGE): pointers in the work tree,
    # no objects. Real contents there would be cleaned back into the store by the snapshot's
    # `git add` whenever git finds the index racy.
    shutil.rmtree(lfs_repo / ".git" / "lfs" / "objects")
    for name in ("weights.bin", "data/big.bin"):
        (lfs_repo / name).write_text(git("show", f"HEAD:{name}", cwd=lfs_repo) + "\n")
    proc = exp("run", "--", sys.executable, "job.py", cwd=lfs_repo, check=False)
    assert_user_error(proc, "file(s) are not here (e.g. data/big.bin)", "git lfs pull")
    assert git("for-each-ref", "refs/experiments/", cwd=lfs_repo) == ""


def test_a_remote_target_is_refused_before_anything_is_recorded(lfs_repo: Path,
                                                                 tmp_path: Path) -> None:
    git("config", "exp.target.hpc.backend", "slurm", cwd=lfs_repo)
    git("config", "exp.target.hpc.store", (tmp_path / "hpc").as_uri(), cwd=lfs_repo)
    proc = exp("run", "-t", "hpc", "--", sys.executable, "job.py", cwd=lfs_repo, check=False)
    assert_user_error(proc, "2 git-lfs file(s) (e.g. data/big.bin)", "not slurm workers",
                      "-t local")
    assert git("for-each-ref", "refs/experiments/", cwd=lfs_repo) == ""
    assert not (tmp_path / "hpc").exists()


def test_a_worker_whose_source_lacks_an_object_refuses_the_checkout(lfs_repo: Path,
                                                                    tmp_path: Path) -> None:
    repo = Repo.discover(lfs_repo)
    head = repo.head() or ""
    assert sorted(lfs.pointers(repo, head)) == ["data/big.bin", "weights.bin"]
    plain = make_repo(tmp_path / "plain")
    assert lfs.pointers(Repo.discover(plain), "HEAD") == {}  # no lfs attributes: no reads
    out = workspace.checkout(repo.common_dir, head, tmp_path / "co")
    assert (out / "data" / "big.bin").read_bytes().startswith(b"committed data ")
    shutil.rmtree(lfs_repo / ".git" / "lfs" / "objects")
    with pytest.raises(GitexpError, match=r"git-lfs content of data/big\.bin is not in"):
        workspace.checkout(repo.common_dir, head, tmp_path / "co2")
