"""`git exp checkout RUN [-b NAME] [--outputs]`: the run's code in the work tree, never at the
cost of the user's uncommitted work."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from tests.conftest import make_repo, use_home
from tests.helpers import assert_user_error, copy_repo, exp, exp_json, git, seal_key

# One worker builds the module's fixture, not each of them.
pytestmark = pytest.mark.xdist_group("checkout")

Ran = tuple[Path, dict[str, object]]  # a repository and its one run, as `ls` shows it
TRAIN = "import json\njson.dump({'loss': 0.5}, open('metrics.json', 'w'))\n"


def fingerprint(repo: Path) -> dict[str, tuple[str, int]]:
    """Every file under the repository, .git included (index, HEAD, refs): bytes and mode."""
    out = {}
    for path in sorted(repo.rglob("*")):
        if path.is_file() and not path.is_symlink():
            rel = path.relative_to(repo).as_posix()
            if rel.startswith(".git/gitexp/"):  # gitexp's own cache may be refreshed
                continue
            out[rel] = (hashlib.sha256(path.read_bytes()).hexdigest(), os.stat(path).st_mode)
    return out


def a_run(repo: Path) -> dict[str, object]:
    (repo / "train.py").write_text(TRAIN)
    (repo / "config.txt").write_text("run-time config\n")  # untracked: in the snapshot
    exp("run", "--", "python", "train.py", cwd=repo)
    run = exp_json("ls", "--limit", "1", cwd=repo)[0]
    for name in ("train.py", "config.txt"):
        (repo / name).unlink()
    return dict(run)


@pytest.fixture(scope="module")
def _template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, object]]:
    """`a_run` in a fresh repository, once per module; the key that sealed it."""
    root = tmp_path_factory.mktemp("checkout")
    with pytest.MonkeyPatch.context() as mp:
        use_home(mp, root)
        repo = make_repo(root / "repo")
        return repo, seal_key(repo), a_run(repo)


@pytest.fixture
def ran(_template: tuple[Path, Path, dict[str, object]], tmp_path: Path) -> Ran:
    """This test's copy of a repository right after `a_run`: the run is the user's own."""
    template, key, run = _template
    return copy_repo(template, tmp_path / "repo", key), run


def test_a_dirty_work_tree_refuses_and_every_byte_stays(ran: Ran) -> None:
    repo, run = ran
    (repo / "README.md").write_text("edited, not committed\n")  # modified
    (repo / "staged.txt").write_text("staged\n")
    git("add", "staged.txt", cwd=repo)  # staged
    (repo / "scratch.txt").write_text("untracked\n")  # untracked
    (repo / "train.py").write_text("my own different train.py\n")  # would be clobbered
    before = fingerprint(repo)
    proc = exp("checkout", str(run["id"]), cwd=repo, check=False)
    assert_user_error(proc, "uncommitted change", "commit or stash")
    assert fingerprint(repo) == before
    proc = exp("checkout", str(run["id"]), "-b", "from-run", cwd=repo, check=False)
    assert_user_error(proc, "uncommitted change")
    assert fingerprint(repo) == before
    assert git("branch", "--list", "from-run", cwd=repo).strip() == ""


def test_only_an_untracked_file_still_refuses(ran: Ran) -> None:
    repo, run = ran
    (repo / "config.txt").write_text("mine\n")  # the snapshot has another config.txt
    before = fingerprint(repo)
    assert_user_error(exp("checkout", str(run["id"]), cwd=repo, check=False), "stash")
    assert fingerprint(repo) == before


def test_checkout_detached_restores_the_snapshot(ran: Ran) -> None:
    repo, run = ran
    branch_before = git("rev-parse", "HEAD", cwd=repo).strip()
    proc = exp("checkout", str(run["id"]), cwd=repo)
    assert "detached HEAD" in proc.stderr
    assert git("rev-parse", "HEAD", cwd=repo).strip() == run["snapshot"]
    assert (repo / "train.py").read_text() == TRAIN
    assert (repo / "config.txt").read_text() == "run-time config\n"
    assert not (repo / ".gitexp-results").exists()  # the snapshot, not the results commit
    assert git("status", "--porcelain", cwd=repo) == ""
    git("switch", "-q", "-", cwd=repo)
    assert git("rev-parse", "HEAD", cwd=repo).strip() == branch_before


def test_checkout_b_creates_a_branch_at_the_snapshot(ran: Ran) -> None:
    repo, run = ran
    exp("checkout", str(run["id"])[-4:], "-b", "from-run", cwd=repo)
    assert git("symbolic-ref", "--short", "HEAD", cwd=repo).strip() == "from-run"
    assert git("rev-parse", "from-run", cwd=repo).strip() == run["snapshot"]
    assert (repo / "train.py").read_text() == TRAIN
    git("switch", "-q", "main", cwd=repo)
    # an existing branch name is an error, and nothing moves
    before = fingerprint(repo)
    assert_user_error(exp("checkout", str(run["id"]), "-b", "from-run", cwd=repo,
                          check=False), "already exists")
    assert fingerprint(repo) == before


def test_outputs_goes_through_the_data_layer(ran: Ran) -> None:
    repo, run = ran
    before = fingerprint(repo)
    proc = exp("checkout", str(run["id"]), "--outputs", cwd=repo, check=False)
    # a run without recorded outputs says so before anything moves
    assert_user_error(proc, "recorded no outputs")
    assert fingerprint(repo) == before


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_outputs_restores_the_recorded_outputs_with_real_dvc(tmp_path: Path) -> None:
    from tests.test_data import make_dvc_repo, md5

    remote = tmp_path / "dvc-remote"
    config = f"[core]\n    remote = store\n['remote \"store\"']\n    url = {remote}\n"
    proj = make_dvc_repo(tmp_path / "proj", {"labels.csv": "a\n"}, ["labels.csv"], config)
    write = "open('model.bin', 'wb').write(bytes(range(256)) * 64)"
    exp("run", "--out", "model.bin", "--", "python", "-c", write, cwd=proj)
    run = exp_json("ls", "--limit", "1", cwd=proj)[0]
    exp("checkout", run["id"], "-b", "with-model", "--outputs", cwd=proj)
    assert git("rev-parse", "HEAD", cwd=proj).strip() == run["snapshot"]
    assert md5((proj / "model.bin").read_bytes()) == md5(bytes(range(256)) * 64)
