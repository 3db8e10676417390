"""Code transport: only what the store lacks travels; workers fetch only what they lack; the
checked-out commit is verified; gitexp reaches workers as its own wheel. What every store
must do with code (ssh:// included) is in tests/test_store_contract.py."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from gitexp.errors import GitexpError, StoreError
from gitexp.git import Repo
from gitexp.stores import Store, transport
from gitexp.stores.file import FileStore
from gitexp.stores.gcs import GCSStore
from gitexp.worker import bootstrap, workspace
from tests.conftest import make_repo
from tests.helpers import MemoryStore, git
from tests.services._util import unavailable


def commit_files(repo: Path, files: dict[str, str | bytes], message: str = "c") -> str:
    for name, content in files.items():
        path = repo / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    git("add", "-A", cwd=repo)
    git("commit", "-qm", message, cwd=repo)
    return git("rev-parse", "HEAD", cwd=repo).strip()


def sibling(repo: Path, parent: str, files: dict[str, bytes]) -> str:
    """A snapshot-like commit: parent's tree plus `files`, not on any branch."""
    env = {"GIT_INDEX_FILE": str(repo / ".git" / "tmp-index")}
    git("read-tree", parent, cwd=repo, env=env)
    for name, data in files.items():
        blob = git("hash-object", "-w", "--stdin", cwd=repo, input=data).strip()
        git("update-index", "--add", "--cacheinfo", f"100644,{blob},{name}", cwd=repo, env=env)
    tree = git("write-tree", cwd=repo, env=env).strip()
    return git("commit-tree", tree, "-p", parent, "-m", "snapshot", cwd=repo).strip()


@pytest.fixture
def src(tmp_path: Path) -> Path:
    files = {f"pkg/mod{i}.py": f"x = {i}\n" * 20 for i in range(200)}
    return make_repo(tmp_path / "src", files)


@pytest.fixture
def gcs_store(gcs_env: object, request: pytest.FixtureRequest) -> GCSStore:
    gcs_env.bucket("transport")  # type: ignore[attr-defined]
    store = GCSStore.from_url(f"gs://transport/{request.node.name}")
    store.delete("")
    return store


def head(repo: Path) -> str:
    return git("rev-parse", "HEAD", cwd=repo).strip()


def test_file_store_sends_only_missing_objects(src: Path, tmp_path: Path) -> None:
    repo, store = Repo.discover(src), FileStore(tmp_path / "store")
    first = transport.push_code(repo, store, head(src))
    assert first > 5_000  # the whole tree, once
    assert transport.push_code(repo, store, head(src)) == 0  # held already: nothing travels
    changed = commit_files(src, {"pkg/mod7.py": "x = 'seven'\n"})
    second = transport.push_code(repo, store, changed)
    assert 0 < second < 1_000, second
    git_dir = transport.fetch_code(store.url, changed, tmp_path / "cache")
    assert git_dir == tmp_path / "store" / "code.git"  # a directory store is used in place
    out = workspace.checkout(git_dir, changed, tmp_path / "co")
    assert (out / "pkg" / "mod7.py").read_text() == "x = 'seven'\n"


def test_sibling_snapshots_do_not_resend_shared_uncommitted_files(src: Path,
                                                                  tmp_path: Path) -> None:
    """Two snapshots of the same base share a large uncommitted file: it travels once."""
    repo, store = Repo.discover(src), FileStore(tmp_path / "store")
    big = os.urandom(300_000)
    s1 = sibling(src, head(src), {"data.bin": big})
    transport.push_code(repo, store, s1)
    s2 = sibling(src, head(src), {"data.bin": big, "pkg/mod1.py": b"x = 'one'\n"})
    assert transport.push_code(repo, store, s2) < 2_000


def test_gcs_thin_bundles_and_worker_cache(src: Path, tmp_path: Path, gcs_store: GCSStore,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    repo = Repo.discover(src)
    s1 = head(src)
    assert transport.push_code(repo, gcs_store, s1) > 5_000
    s2 = commit_files(src, {"pkg/mod3.py": "x = 'three'\n"})
    sent = transport.push_code(repo, gcs_store, s2)
    assert 0 < sent < 1_000, sent
    assert gcs_store.list("code/heads") == [f"code/heads/{c}" for c in sorted([s1, s2])]

    fetched: list[str] = []
    real = GCSStore.get_file

    def counting(self: GCSStore, key: str, path: Path) -> bool:
        fetched.append(key.rsplit("/", 1)[-1].split(".", maxsplit=1)[0])
        return real(self, key, path)
    monkeypatch.setattr(GCSStore, "get_file", counting)

    cache = tmp_path / "worker-cache"
    git_dir = transport.fetch_code(gcs_store.url, s2, cache)
    assert fetched == [s2, s1]  # s2's bundle names s1 as a prerequisite: applied first
    out = workspace.checkout(git_dir, s2, tmp_path / "co")
    assert (out / "pkg" / "mod3.py").read_text() == "x = 'three'\n"

    s3 = commit_files(src, {"pkg/mod4.py": "x = 'four'\n"})
    transport.push_code(repo, gcs_store, s3)
    fetched.clear()
    transport.fetch_code(gcs_store.url, s3, cache)
    assert fetched == [s3]  # the second run on this worker fetches only the new objects
    fetched.clear()
    transport.fetch_code(gcs_store.url, s3, cache)
    assert fetched == []


def test_fetch_refuses_a_commit_the_store_lacks(src: Path, tmp_path: Path,
                                                gcs_store: GCSStore) -> None:
    missing = "1" * 40
    with pytest.raises(StoreError, match="holds no code"):
        transport.fetch_code(gcs_store.url, missing, tmp_path / "cache")
    with pytest.raises(StoreError, match="not in"):
        transport.fetch_code((tmp_path / "nothing").as_uri(), missing, tmp_path / "cache")


def test_checkout_verifies_the_commit_hash(src: Path, tmp_path: Path) -> None:
    repo, store = Repo.discover(src), FileStore(tmp_path / "store")
    transport.push_code(repo, store, head(src))
    code = transport.fetch_code(store.url, head(src), tmp_path / "cache")
    other = commit_files(src, {"x.txt": "x"})
    with pytest.raises(Exception, match="cannot check out"):
        workspace.checkout(code, other, tmp_path / "co")  # not in the store: refused


def test_checkout_refuses_an_id_that_only_resolves_to_another_commit(src: Path,
                                                                       tmp_path: Path) -> None:
    """git checks out what an id *resolves* to: an annotated tag's id (a forged record naming
    it as its snapshot) or an abbreviated id check out fine, but HEAD is then another id
    than the snapshot the run claims. Only the verification after checkout refuses them."""
    commit = head(src)
    git("tag", "-a", "-m", "a tag, not a commit", "v1", commit, cwd=src)
    tag = git("rev-parse", "v1", cwd=src).strip()
    assert tag != commit and git("rev-parse", f"{tag}^{{commit}}", cwd=src).strip() == commit
    for claimed in (tag, commit[:12]):
        # An abbreviated id is refused before the checkout, as no id of any object format.
        with pytest.raises(GitexpError, match=r"is not the snapshot|is no object id"):
            workspace.checkout(src / ".git", claimed, tmp_path / "co")
    out = workspace.checkout(src / ".git", commit, tmp_path / "co")  # the commit itself: fine
    assert git("rev-parse", "HEAD", cwd=out).strip() == commit


def test_a_store_without_a_transport_of_its_own_carries_bundles(src: Path,
                                                                tmp_path: Path) -> None:
    """Bundles need nothing but the store protocol: a store that is no CodeStore gets them
    (the push and the fetch of every store are in tests/test_store_contract.py)."""
    plain, repo = MemoryStore(url="mem://plain"), Repo.discover(src)
    s1 = head(src)
    assert transport.push_code(repo, plain, s1) > 5_000
    s2 = commit_files(src, {"pkg/mod5.py": "x = 'five'\n"})
    assert 0 < transport.push_code(repo, plain, s2) < 1_000
    assert sorted(plain.objects) == sorted(
        [f"{transport.BUNDLES}/{c}.bundle" for c in (s1, s2)]
        + [f"{transport.HEADS}/{c}" for c in (s1, s2)])
    code = transport.Bundles(plain).fetch_code(s2, tmp_path / "cache")
    out = workspace.checkout(code, s2, tmp_path / "co")
    assert (out / "pkg" / "mod5.py").read_text() == "x = 'five'\n"


def test_wheel_runs_the_agent_on_a_bare_python(tmp_path: Path, src: Path) -> None:
    """A Python with nothing installed imports gitexp's agent from the wheel alone."""
    wheel = bootstrap.build_wheel(tmp_path / "wheels")
    assert bootstrap.build_wheel(tmp_path / "wheels") == wheel  # cached by content
    assert wheel.name.startswith("gitexp-") and wheel.name.endswith("-py3-none-any.whl")
    bare = ["/usr/bin/python3", "-s"]
    if not Path(bare[0]).exists():
        unavailable("system python3", "/usr/bin/python3 is missing (scripts/install-services.sh)")
    env = {"PATH": os.environ["PATH"], "HOME": os.environ["HOME"]}
    alone = subprocess.run([*bare, "-c", "import gitexp"], env=env, capture_output=True)
    assert alone.returncode != 0  # gitexp is not installed there...
    env["PYTHONPATH"] = str(wheel)
    proc = subprocess.run([*bare, "-m", "gitexp.worker.agent", "--help"], env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr  # ...yet the agent runs from the wheel
    assert "--snapshot" in proc.stdout


def test_ensure_wheel_uploads_once(tmp_path: Path) -> None:
    store: Store = FileStore(tmp_path / "store")
    key = bootstrap.ensure_wheel(store)
    assert key.startswith("tools/gitexp-") and store.read(key)
    mtime = (tmp_path / "store" / key).stat().st_mtime_ns
    assert bootstrap.ensure_wheel(store) == key
    assert (tmp_path / "store" / key).stat().st_mtime_ns == mtime
