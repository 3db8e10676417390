"""SHA-256 repositories end to end: `git exp` on a repository made with
`git init --object-format=sha256` runs, lists, shows, diffs, reruns, tags and notes runs, tags
a commit from its hook, and shares runs with another SHA-256 clone; runs never cross into a
repository of the other format (git refuses; gitexp says so in one line). The code transport
to a store (bare repositories, bundles) carries SHA-256 snapshots to a worker's checkout.

The in-process core suite runs on both formats as well (tests/conftest.py: object_format)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gitexp.git import Repo
from gitexp.stores import transport
from gitexp.stores.file import FileStore
from gitexp.worker import workspace
from tests.conftest import make_repo
from tests.helpers import MemoryStore, assert_user_error, exp, exp_json, git

TRAIN = "import gitexp, sys; gitexp.log(loss=float(sys.argv[1])); print('ran', sys.argv[1])\n"


@pytest.fixture
def sha256(tmp_path: Path) -> Path:
    repo = make_repo(tmp_path / "s256", {"train.py": TRAIN}, object_format="sha256")
    assert git("rev-parse", "--show-object-format", cwd=repo).strip() == "sha256"
    return repo


def run(repo: Path, *argv: str) -> dict[str, Any]:
    """A run followed to its end (no polling: few processes), then as `show --json` has it."""
    said = exp("run", "--", sys.executable, *argv, cwd=repo).stderr
    run_id = re.search(r"gitexp: run (\S+) on local", said)
    assert run_id, said
    return dict(exp_json("show", run_id.group(1), cwd=repo))


def test_a_run_in_a_sha256_repository_goes_through_every_verb(sha256: Path) -> None:
    before = git("count-objects", "-v", cwd=sha256)
    first = run(sha256, "train.py", "0.5")
    assert first["status"] == "succeeded", first
    assert len(first["snapshot"]) == 64 and len(first["record"]["base"]) == 64
    ref = f"refs/experiments/{first['id']}"
    assert git("rev-parse", f"{ref}^1", cwd=sha256).strip() == first["snapshot"]
    assert "ran 0.5" in exp("logs", first["id"], cwd=sha256).stdout
    shown = exp("show", first["id"], cwd=sha256).stdout
    assert first["snapshot"] in shown and "loss" in shown
    assert [r["id"] for r in exp_json("ls", cwd=sha256)] == [first["id"]]
    assert before != git("count-objects", "-v", cwd=sha256)

    (sha256 / "train.py").write_text(TRAIN + "# v2\n")
    second = run(sha256, "train.py", "0.25")
    assert second["status"] == "succeeded"
    diff = exp_json("diff", first["id"], second["id"], cwd=sha256)
    assert [f["path"] for f in diff["code"]["files"]] == ["train.py"]
    assert diff["metrics"]["loss"]["a"] == 0.5 and diff["metrics"]["loss"]["b"] == 0.25
    against = exp_json("diff", second["id"], cwd=sha256)  # against its base: the empty change
    assert [f["path"] for f in against["code"]["files"]] == ["train.py"]

    check = exp("rerun", "--check", first["id"], cwd=sha256)
    assert "reproduced" in check.stdout and "NOT" not in check.stdout

    exp("tag", first["id"], "baseline", cwd=sha256)
    exp("note", first["id"], "on sha256", cwd=sha256)
    tagged = exp_json("show", first["id"], cwd=sha256)
    assert tagged["tags"] == ["baseline"] and "on sha256" in str(tagged["notes"])
    assert git("fsck", "--no-dangling", cwd=sha256).strip() == ""


def test_the_commit_hook_tags_a_commit_of_a_run_in_a_sha256_repository(sha256: Path) -> None:
    exp("hooks", "install", cwd=sha256)
    (sha256 / "train.py").write_text(TRAIN + "# tuned\n")
    done = run(sha256, "train.py", "0.1")
    git("add", "-A", cwd=sha256)
    said = subprocess.run(["git", "commit", "-qm", "tuned"], cwd=sha256, capture_output=True,
                          text=True, check=True).stderr
    commit = git("rev-parse", "HEAD", cwd=sha256).strip()
    assert f"tagged {commit[:10]} exp/{done['id']}" in said
    assert git("rev-parse", f"refs/tags/exp/{done['id']}", cwd=sha256).strip() == commit
    git("commit", "-q", "--amend", "-m", "tuned, amended", cwd=sha256)  # post-rewrite
    assert git("rev-parse", f"refs/tags/exp/{done['id']}", cwd=sha256).strip() == \
        git("rev-parse", "HEAD", cwd=sha256).strip()


def test_runs_travel_between_sha256_clones_and_never_into_a_sha1_one(
        sha256: Path, tmp_path: Path) -> None:
    remote = tmp_path / "remote.git"
    git("init", "-q", "--bare", "--object-format=sha256", str(remote), cwd=tmp_path)
    git("remote", "add", "origin", str(remote.as_uri()), cwd=sha256)
    git("push", "-q", "origin", "main", cwd=sha256)
    done = run(sha256, "train.py", "0.5")
    exp("tag", done["id"], "shared", cwd=sha256)
    assert "2 ref(s) pushed to origin" in exp("push", cwd=sha256).stdout  # the run, its tag

    bob = tmp_path / "bob"
    git("clone", "-q", remote.as_uri(), str(bob), cwd=tmp_path)
    exp("fetch", cwd=bob)
    shown = exp_json("show", done["id"], cwd=bob)
    assert shown["status"] == "succeeded" and shown["snapshot"] == done["snapshot"]
    assert shown["tags"] == ["shared"]
    assert exp_json("diff", done["id"], cwd=bob)["code"]["files"] == []

    # A sha1 clone and a sha1 remote: git refuses to mix formats, in any direction.
    sha1 = make_repo(tmp_path / "s1", {"train.py": TRAIN}, object_format="sha1")
    other = run(sha1, "train.py", "1")
    assert len(other["snapshot"]) == 40
    git("remote", "add", "s256", str(remote), cwd=sha1)
    git("remote", "add", "s1", str(sha1), cwd=sha256)
    empty = tmp_path / "empty-sha1.git"
    git("init", "-q", "--bare", str(empty), cwd=tmp_path)
    git("remote", "add", "empty", str(empty), cwd=sha256)
    for repo, verb, name, fmt in ((sha1, "fetch", "s256", "sha1"), (sha1, "push", "s256", "sha1"),
                                  (sha256, "fetch", "s1", "sha256"),
                                  (sha256, "push", "s1", "sha256"),
                                  (sha256, "push", "empty", "sha256")):
        assert_user_error(exp(verb, name, cwd=repo, check=False),
                          f"{name} is not a {fmt} repository like this one",
                          "between object formats")
    assert git("for-each-ref", "refs/experiments/", cwd=empty) == ""
    assert exp_json("ls", cwd=sha1)[0]["id"] == other["id"]


def test_a_sha256_snapshot_travels_through_a_store_to_a_worker_checkout(
        sha256: Path, tmp_path: Path) -> None:
    """The transport of remote targets: a store's bare repository (file://, ssh://) and
    bundles (gs://, any other store), then the worker's checkout of exactly that commit."""
    repo = Repo.discover(sha256)
    assert (repo.object_format, repo.oid_hex) == ("sha256", 64)
    first = repo.head() or ""
    (sha256 / "more.py").write_text("x = 1\n")
    git("add", "-A", cwd=sha256)
    git("commit", "-qm", "more", cwd=sha256)
    second = repo.head() or ""

    store = FileStore(tmp_path / "store")
    for commit in (first, second):
        assert transport.push_code(repo, store, commit) > 0
    assert transport.held_commits(store) == {first, second}
    code = transport.fetch_code(store.url, second, tmp_path / "cache")
    assert code.name == "code-sha256.git"
    out = workspace.checkout(code, second, tmp_path / "co")
    assert (out / "more.py").read_text() == "x = 1\n"
    assert git("rev-parse", "--show-object-format", cwd=out).strip() == "sha256"

    plain = MemoryStore(url="mem://plain")
    transport.push_code(repo, plain, first)
    assert 0 < transport.push_code(repo, plain, second) < 2_000  # thin: against the first
    bundle = plain.objects[f"code/bundles/{second}.bundle"]
    assert bundle.startswith(b"# v3 git bundle\n@object-format=sha256\n")
    cache = transport.Bundles(plain).fetch_code(second, tmp_path / "worker")
    out = workspace.checkout(cache, second, tmp_path / "co2")
    assert git("rev-parse", "HEAD", cwd=out).strip() == second
