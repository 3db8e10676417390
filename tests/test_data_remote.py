"""Data through a DVC remote: a worker with an empty DVC cache pulls exactly the recorded
version (gs:// on the GCS emulator, and a local-directory remote), verifies it, and refuses
tampered or missing objects before the command starts.

The worker here is the local backend with `dvcRemote` set: its checkout has an empty DVC
cache of its own, so it stands in for a remote machine (nothing links from the dev cache).
"""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import pytest

from tests.helpers import exp, git, wait_done
from tests.services import GcsServer
from tests.test_data import log_of, make_dvc_repo, md5, run_id, seen_files

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

FILES = {"data/train.csv": "x,y\n1,2\n" * 50, "data/test.csv": "x,y\n3,4\n",
         "labels.csv": "a\nb\n"}


def gcs_config(gcs: GcsServer, bucket: str) -> str:
    return ("['remote \"gcs\"']\n"
            f"    url = gs://{bucket}/dvc\n"
            f"    endpointurl = {gcs.endpoint}\n"
            "    allow_anonymous_login = true\n")


def worker_target(project: Path, remote: str) -> None:
    git("config", "exp.target.worker.backend", "local", cwd=project)
    git("config", "exp.target.worker.dvcRemote", remote, cwd=project)


@pytest.fixture
def gcs_project(tmp_path: Path, gcs_env: GcsServer) -> tuple[Path, object]:
    name = f"dvc-{uuid.uuid4().hex[:10]}"
    bucket = gcs_env.bucket(name)
    project = make_dvc_repo(tmp_path / "proj", FILES, ["data", "labels.csv"],
                            config=gcs_config(gcs_env, name))
    worker_target(project, "gcs")
    return project, bucket


def test_worker_with_an_empty_cache_pulls_byte_identical_data_from_gcs(
        gcs_project: tuple[Path, object]) -> None:
    project, bucket = gcs_project
    run = run_id(exp("run", "-d", "-t", "worker", "--", "python", "show_data.py", ".",
                     cwd=project))
    shown = wait_done(run, project)
    log = log_of(run, project)
    assert shown["status"] == "succeeded", log
    # The launch pushed the recorded objects to the bucket ...
    names = {b.name for b in bucket.list_blobs(prefix="dvc/")}  # type: ignore[attr-defined]
    h = md5(b"a\nb\n")
    assert f"dvc/files/md5/{h[:2]}/{h[2:]}" in names
    # ... and the worker fetched them into its own cache, verified, and saw the same bytes.
    assert "fetched" in log and "from DVC remote gcs" in log and "hashes verified" in log
    seen = seen_files(log)
    for rel, text in FILES.items():
        assert seen[rel][0] == hashlib.sha256(text.encode()).hexdigest()
    dev_cache = project / ".dvc" / "cache" / "files" / "md5" / h[:2] / h[2:]
    assert seen["labels.csv"][1] != dev_cache.stat().st_ino  # not linked from the dev cache

    # A second push of the same version sends nothing: only missing objects travel.
    from gitexp.data import dev as data
    from gitexp.git import Repo
    from gitexp.service.runs import find

    repo = Repo.discover(project)
    assert data.push_for_target(repo, find(repo, run).record, "gcs") == 0


def test_a_tampered_object_on_the_remote_fails_the_run_before_the_command(
        gcs_project: tuple[Path, object], tmp_path: Path) -> None:
    project, bucket = gcs_project
    first = run_id(exp("run", "-d", "-t", "worker", "--", "true", cwd=project))
    assert wait_done(first, project)["status"] == "succeeded"
    h = md5(b"a\nb\n")
    blob = bucket.blob(f"dvc/files/md5/{h[:2]}/{h[2:]}")  # type: ignore[attr-defined]
    blob.upload_from_string(b"a\nX\n")  # same size, other bytes
    marker = tmp_path / "command-ran"
    run = run_id(exp("run", "-d", "-t", "worker", "--", "python", "-c",
                     f"open({str(marker)!r}, 'w')", cwd=project))
    shown = wait_done(run, project)
    assert shown["status"] == "failed"
    assert not marker.exists()  # the command never started
    error = shown["result"]["error"]
    assert "data verification failed" in error and "labels.csv" in error
    assert "data verification failed: labels.csv" in log_of(run, project)


def test_an_object_missing_from_the_remote_fails_the_run_before_the_command(
        tmp_path: Path) -> None:
    """The dev side pushes to a remote URL set only in its .dvc/config.local; the worker
    knows the committed URL, where nothing was ever pushed."""
    committed, private = tmp_path / "committed-remote", tmp_path / "private-remote"
    committed.mkdir()
    project = make_dvc_repo(tmp_path / "proj", FILES, ["data", "labels.csv"],
                            config=f"['remote \"store\"']\n    url = {committed}\n")
    (project / ".dvc" / "config.local").write_text(f"['remote \"store\"']\n    url = {private}\n")
    worker_target(project, "store")
    marker = tmp_path / "command-ran"
    run = run_id(exp("run", "-d", "-t", "worker", "--", "python", "-c",
                     f"open({str(marker)!r}, 'w')", cwd=project))
    shown = wait_done(run, project)
    assert shown["status"] == "failed"
    assert not marker.exists()
    assert any(private.rglob("*")) and not any(committed.rglob("*"))
    error = shown["result"]["error"]
    assert "missing from the DVC remote" in error and str(committed) in error
    assert "missing from the DVC remote" in log_of(run, project)


def test_a_target_without_a_usable_dvc_remote_refuses_to_launch(tmp_path: Path) -> None:
    from tests.helpers import assert_user_error

    project = make_dvc_repo(tmp_path / "proj", FILES, ["labels.csv"])
    worker_target(project, "nowhere")
    proc = exp("run", "-d", "-t", "worker", "--", "true", cwd=project, check=False)
    assert_user_error(proc, "no usable DVC remote 'nowhere'", "dvcRemote")
    assert git("for-each-ref", "refs/experiments", cwd=project) == ""


def test_a_second_clone_with_an_empty_cache_materialises_the_recorded_version(
        gcs_project: tuple[Path, object], tmp_path: Path) -> None:
    """The worker half on its own: a fresh clone (no DVC cache, no data) stands in for a
    remote machine and pulls exactly the run's version from the gs:// remote."""
    from gitexp.data import plan, worker
    from gitexp.git import Repo
    from gitexp.service.runs import find
    from gitexp.stores.file import FileStore

    project, _ = gcs_project
    run = run_id(exp("run", "-d", "-t", "worker", "--", "true", cwd=project))
    assert wait_done(run, project)["status"] == "succeeded"  # the launch pushed the data
    (project / "labels.csv").chmod(0o644)
    (project / "labels.csv").write_text("moved on\n")  # the dev tree moves on; the run not
    clone = tmp_path / "clone"
    git("clone", "-q", str(project), str(clone), cwd=tmp_path)
    assert not (clone / "labels.csv").exists() and not (clone / ".dvc" / "cache").exists()
    record = find(Repo.discover(project), run).record
    store = FileStore(tmp_path / "store")
    plan.write_plan(store, record.id, {"remote": "gcs", "cache": None, "verify": True})
    lines: list[str] = []
    worker.materialise(record, clone, store=store, log=lines.append)
    for rel, text in FILES.items():
        assert (clone / rel).read_text() == text
    assert any("hashes verified" in line for line in lines)
