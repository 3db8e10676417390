"""Data versions through DVC on the local target: record, refuse, --commit-data, link.

Real DVC throughout (its Python API sets the projects up; `git exp` runs as a user runs it).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import make_repo
from tests.helpers import assert_user_error, exp, git, wait_done

# DVC's own code warns about its dependencies' deprecations; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

DVC_GITIGNORE = "/config.local\n/tmp\n/cache\n"

SHOW_DATA = """\
import hashlib, os, pathlib, sys
for p in sorted(pathlib.Path(sys.argv[1]).rglob("*")):
    if p.is_file():
        st = os.stat(p)
        print("FILE", p.as_posix(), hashlib.sha256(p.read_bytes()).hexdigest(), st.st_ino,
              st.st_nlink, flush=True)
"""


@pytest.fixture(autouse=True)
def _quiet_dvc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")


def make_dvc_repo(path: Path, files: dict[str, str], tracked: list[str],
                  config: str = "") -> Path:
    """A git repo that is a DVC project: `files` written, `tracked` added with DVC."""
    make_repo(path, {"show_data.py": SHOW_DATA, **files}, commit=False)
    (path / ".dvc").mkdir()
    (path / ".dvc" / ".gitignore").write_text(DVC_GITIGNORE)
    (path / ".dvc" / "config").write_text(config)
    (path / ".dvcignore").write_text("")
    dvc_add(path, *tracked)
    git("add", "-A", cwd=path)
    git("commit", "-qm", "data", cwd=path)
    return path


def dvc_add(path: Path, *targets: str) -> None:
    from dvc.repo import Repo

    with Repo(str(path)) as repo:
        for target in targets:
            repo.add(str(path / target))


def dvc_push(path: Path, remote: str | None = None) -> None:
    from dvc.repo import Repo

    with Repo(str(path)) as repo:
        repo.push(remote=remote)


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()  # DVC's own content hash


def run_id(proc: subprocess.CompletedProcess[str]) -> str:
    return proc.stdout.strip().splitlines()[-1]


def seen_files(log: str) -> dict[str, tuple[str, int, int]]:
    """What the job's `show_data.py` printed: path -> (sha256, inode, nlink)."""
    out = {}
    for line in log.splitlines():
        if line.startswith("FILE "):
            _, path, digest, ino, nlink = line.split()
            out[path] = (digest, int(ino), int(nlink))
    return out


def log_of(run: str, cwd: Path) -> str:
    return exp("logs", run, cwd=cwd).stdout


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_dvc_repo(tmp_path / "proj", {"data/train.csv": "x,y\n1,2\n",
                                            "data/test.csv": "x,y\n3,4\n",
                                            "labels.csv": "a\nb\n"}, ["data", "labels.csv"])


def test_record_holds_the_data_version_and_the_local_target_links_from_the_cache(
        project: Path) -> None:
    run = run_id(exp("run", "-d", "--", "python", "show_data.py", ".", cwd=project))
    shown = wait_done(run, project)
    assert shown["status"] == "succeeded", log_of(run, project)
    data = shown["record"]["data"]
    dvcfile = json.dumps(data)
    assert data["labels.csv"] == {"hash": md5(b"a\nb\n"), "algo": "md5", "size": 4,
                                  "source": "labels.csv.dvc"}
    assert data["data"]["hash"].endswith(".dir") and data["data"]["nfiles"] == 2
    assert data["data"]["size"] == 16 and data["data"]["source"] == "data.dvc", dvcfile
    seen = seen_files(log_of(run, project))
    cache = project / ".dvc" / "cache" / "files" / "md5"
    for rel, content in (("labels.csv", b"a\nb\n"), ("data/train.csv", b"x,y\n1,2\n")):
        digest, ino, _ = seen[rel]
        assert digest == hashlib.sha256(content).hexdigest()
        h = md5(content)
        # No second copy: the job's file is the cache object itself (hardlink here).
        assert ino == (cache / h[:2] / h[2:]).stat().st_ino
    text = exp("show", run, cwd=project).stdout
    assert "labels.csv  " + md5(b"a\nb\n") in text and "2 files" in text


def test_changed_data_without_dvc_add_refuses_and_commit_data_records_it(
        project: Path) -> None:
    (project / "labels.csv").chmod(0o644)
    (project / "labels.csv").write_text("a\nb\nc\n")
    proc = exp("run", "-d", "--", "python", "show_data.py", ".", cwd=project, check=False)
    assert_user_error(proc, "labels.csv", "dvc add labels.csv", "--commit-data")
    assert git("for-each-ref", "refs/experiments", cwd=project) == ""  # nothing snapshotted
    assert not (project / ".git" / "gitexp" / "store" / "runs").exists()  # nothing started

    proc = exp("run", "-d", "--commit-data", "--", "python", "show_data.py", ".", cwd=project)
    assert "recorded data changes through DVC: labels.csv" in proc.stderr
    run = run_id(proc)
    shown = wait_done(run, project)
    assert shown["status"] == "succeeded"
    assert shown["record"]["data"]["labels.csv"]["hash"] == md5(b"a\nb\nc\n")
    seen = seen_files(log_of(run, project))
    assert seen["labels.csv"][0] == hashlib.sha256(b"a\nb\nc\n").hexdigest()


def test_a_changed_file_inside_a_tracked_directory_is_named(project: Path) -> None:
    (project / "data" / "test.csv").chmod(0o644)
    (project / "data" / "test.csv").write_text("changed\n")
    proc = exp("run", "-d", "--", "true", cwd=project, check=False)
    assert_user_error(proc, "data/test.csv", "dvc add data")


def test_an_unchanged_work_tree_is_confirmed_without_importing_dvc(project: Path) -> None:
    """Small data is re-hashed against the cache's listing, then remembered by stat
    fingerprint: neither the first nor a later check pays for importing DVC."""
    code = ("import sys; from gitexp.data import dev as data; from gitexp.git import Repo; "
            "r = Repo.discover('.'); data.check_worktree(r); "
            "print(any(m == 'dvc' or m.startswith('dvc.') for m in sys.modules))")
    for p in [project / "labels.csv", *(project / "data").iterdir()]:
        os.utime(p, (1e9, 1e9))  # settled files, older than the racy-mtime window
    for _ in range(2):
        proc = subprocess.run([sys.executable, "-c", code], cwd=project, capture_output=True,
                              text=True, check=True)
        assert proc.stdout.strip() == "False"
    stat = json.loads((project / ".git" / "gitexp" / "data-stat.json").read_text())
    assert set(stat) == {"data", "labels.csv"}


def test_ls_in_a_dvc_repository_does_not_import_dvc(project: Path) -> None:
    exp("run", "--", "true", cwd=project)
    code = ("import sys, atexit\n"
            "atexit.register(lambda: print('DVC' if 'dvc.repo' in sys.modules else 'NO-DVC',"
            " file=sys.stderr))\n"
            "sys.argv = ['git-exp', 'ls']\n"
            "from gitexp.cli import main\n"
            "main()\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=project, capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip().endswith("NO-DVC")


def test_data_deleted_from_the_work_tree_still_launches_from_the_cache(project: Path) -> None:
    import shutil

    shutil.rmtree(project / "data")
    run = run_id(exp("run", "-d", "--", "python", "show_data.py", "data", cwd=project))
    assert wait_done(run, project)["status"] == "succeeded"
    assert set(seen_files(log_of(run, project))) == {"data/test.csv", "data/train.csv"}


def test_a_repository_without_dvc_records_no_data(repo: Path) -> None:
    run = run_id(exp("run", "-d", "--", "true", cwd=repo))
    shown = wait_done(run, repo)
    assert shown["status"] == "succeeded"
    assert shown["record"]["data"] is None


def test_out_needs_a_dvc_project(repo: Path) -> None:
    proc = exp("run", "-d", "--out", "model.bin", "--", "true", cwd=repo, check=False)
    assert_user_error(proc, "not a DVC project", "dvc init")
    assert git("for-each-ref", "refs/experiments", cwd=repo) == ""


# -- the data version read from git objects ---------------------------------------------------
LOCK = """\
schema: '2.0'
stages:
  train:
    cmd: python train.py
    deps:
    - path: ../data
      hash: md5
      md5: 0123456789abcdef0123456789abcdef.dir
      size: 10
      nfiles: 2
    - path: train.py
      hash: md5
      md5: 11111111111111111111111111111111
      size: 5
    outs:
    - path: model.pkl
      hash: md5
      md5: 22222222222222222222222222222222
      size: 7
    - path: metrics.json
      hash: md5
      md5: 33333333333333333333333333333333
      size: 2
"""


def test_version_of_a_tree_reads_dvc_files_and_dvc_lock_from_git(tmp_path: Path) -> None:
    from gitexp.data import version
    from gitexp.git import Repo

    root = make_repo(tmp_path / "r", {
        "data.dvc": "outs:\n- md5: 0123456789abcdef0123456789abcdef.dir\n  size: 10\n"
                    "  nfiles: 2\n  hash: md5\n  path: data\n",
        "old.bin.dvc": "outs:\n- md5: 44444444444444444444444444444444\n  path: old.bin\n",
        "pipe/dvc.lock": LOCK, "pipe/train.py": "pass\n", "pipe/metrics.json": "{}",
        ".dvc/config": "", "README.md": "x\n",
    })
    repo = Repo.discover(root)
    (root / "data.dvc").write_text("garbage: [")  # the work tree is not what is read
    items = version.of_tree(repo, repo.rev_parse("HEAD^{tree}") or "")
    assert sorted(items) == ["data", "old.bin", "pipe/metrics.json", "pipe/model.pkl",
                             "pipe/train.py"]
    assert items["data"].source == "data.dvc" and items["data"].is_out  # out beats dep
    assert items["old.bin"].algo == "md5-dos2unix"  # a DVC 2 file without `hash:`
    assert items["pipe/model.pkl"].source == "pipe/dvc.lock:train"
    assert items["pipe/model.pkl"].dvcfile == "pipe/dvc.yaml:train"
    assert items["pipe/model.pkl"].cached
    assert not items["pipe/train.py"].is_out  # a dependency
    assert items["pipe/metrics.json"].in_git and not items["pipe/metrics.json"].cached
    record = version.to_record(items)
    assert record is not None
    assert version.from_record(record) == items  # round trip through the run record
