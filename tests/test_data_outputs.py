"""Outputs through DVC: `--out` and `dvc repro` stage outputs are recorded and pushed after
the job, and `git exp outputs RUN` restores identical bytes (in a fresh clone too)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import assert_user_error, exp, git, wait_done
from tests.test_data import make_dvc_repo, md5, run_id

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

MODEL = bytes(range(256)) * 4096  # 1 MiB, every byte value
WRITE_MODEL = "open('model.bin', 'wb').write(bytes(range(256)) * 4096)"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    remote = tmp_path / "dvc-remote"
    config = f"[core]\n    remote = store\n['remote \"store\"']\n    url = {remote}\n"
    return make_dvc_repo(tmp_path / "proj", {"labels.csv": "a\n"}, ["labels.csv"], config)


def test_out_round_trip_restores_identical_bytes_in_a_fresh_clone(project: Path,
                                                                  tmp_path: Path) -> None:
    run = run_id(exp("run", "-d", "--out", "model.bin", "--", "python", "-c", WRITE_MODEL,
                     cwd=project))
    shown = wait_done(run, project)
    assert shown["status"] == "succeeded"
    out = shown["result"]["outputs"]["model.bin"]
    assert out == {"hash": md5(MODEL), "algo": "md5", "size": len(MODEL), "remote": "store"}
    assert not (project / "model.bin").exists()  # the job ran in its own checkout

    clone = tmp_path / "clone"
    git("clone", "-q", str(project), str(clone), cwd=tmp_path)
    git("fetch", "-q", "origin", "refs/experiments/*:refs/experiments/*", cwd=clone)
    proc = exp("outputs", run, cwd=clone)
    assert f"restored model.bin (run {run})" in proc.stdout
    assert (clone / "model.bin").read_bytes() == MODEL

    # Restoring again is a no-op; a different file in the way is refused unless --force.
    exp("outputs", run, cwd=clone)
    (clone / "model.bin").write_bytes(b"mine")
    assert_user_error(exp("outputs", run, cwd=clone, check=False), "model.bin", "--force")
    exp("outputs", run, "--force", cwd=clone)
    assert (clone / "model.bin").read_bytes() == MODEL


def test_outputs_of_dvc_repro_stages_are_recorded_and_restored(project: Path) -> None:
    (project / "make_model.py").write_text(WRITE_MODEL + "\n")
    (project / "dvc.yaml").write_text(
        "stages:\n  train:\n    cmd: python make_model.py\n    deps:\n    - make_model.py\n"
        "    - labels.csv\n    outs:\n    - model.bin\n")
    (project / ".gitignore").write_text((project / ".gitignore").read_text() + "/model.bin\n")
    git("add", "-A", cwd=project)
    git("commit", "-qm", "pipeline", cwd=project)
    run = run_id(exp("run", "-d", "--", "dvc", "repro", cwd=project))
    shown = wait_done(run, project)
    assert shown["status"] == "succeeded"
    assert shown["result"]["outputs"]["model.bin"]["hash"] == md5(MODEL)
    exp("outputs", run, "model.bin", cwd=project)
    assert (project / "model.bin").read_bytes() == MODEL


def test_a_run_without_outputs_says_so(project: Path) -> None:
    run = run_id(exp("run", "-d", "--", "true", cwd=project))
    wait_done(run, project)
    assert_user_error(exp("outputs", run, cwd=project, check=False), "recorded no outputs")


def test_a_remote_at_a_relative_path_means_the_projects_not_the_checkouts(
        tmp_path: Path) -> None:
    """`url = ../../dvc-remote` in the committed .dvc/config names a directory beside the
    project. From the run's checkout (.git/gitexp/work/<id>/code) the same words would name
    a directory inside the work directory, deleted with it: the output must land in the
    project's remote, where a clone finds it."""
    config = "[core]\n    remote = store\n['remote \"store\"']\n    url = ../../dvc-remote\n"
    project = make_dvc_repo(tmp_path / "proj", {"labels.csv": "a\n"}, ["labels.csv"], config)
    run = run_id(exp("run", "-d", "--out", "model.bin", "--", "python", "-c", WRITE_MODEL,
                     cwd=project))
    assert wait_done(run, project)["status"] == "succeeded"
    digest = md5(MODEL)
    pushed = tmp_path / "dvc-remote" / "files" / "md5" / digest[:2] / digest[2:]
    assert pushed.read_bytes() == MODEL
    assert not list((project / ".git" / "gitexp").rglob("dvc-remote"))  # nothing in the work dir
