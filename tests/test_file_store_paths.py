"""The file store's short way to a key's path (`FileStore._plain`, a few syscalls: the agent
asks several times a second while a job runs) lands where `Path.resolve` would, and gives
way to it whenever a symlink, `..` or an odd name is on the way: no key escapes the root by
either way, whatever the store's directories became since the last call."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from gitexp.errors import StoreError
from gitexp.stores.file import FileStore

KEYS = ["runs/a-1/log", "runs/a-1/cancel", "runs/b-1/log", "runs/a-1", "runs", "code.git/x",
        "runs/link-1/log", "runs/out-1/log", "runs/a-1/../b-1/log", "runs//a-1/log",
        "./runs/a-1/log", "runs/a-1/log/", "runs/a-1/log/deeper", "../outside/log",
        "runs/a-1/nul\0"]


def resolved(store: FileStore, key: str) -> Path | str:
    """What `_path` answered before it had a short way: the resolved path, or its error."""
    try:
        path = (store.root / key).resolve()
    except ValueError as exc:
        return type(exc).__name__
    return path if path.is_relative_to(store.root.resolve()) else "escapes"


def answer(store: FileStore, key: str) -> Path | str:
    try:
        return store._path(key)
    except StoreError:
        return "escapes"
    except ValueError as exc:
        return type(exc).__name__


def layout(tmp_path: Path) -> FileStore:
    """A store reached through a symlinked root, with a link inside it pointing inside and
    one pointing out, and a file where a directory could be."""
    real = tmp_path / "real-store"
    (real / "runs" / "a-1").mkdir(parents=True)
    (real / "runs" / "a-1" / "log").write_bytes(b"x")
    (real / "runs" / "b-1").mkdir()
    (tmp_path / "outside").mkdir()
    (real / "runs" / "link-1").symlink_to(real / "runs" / "b-1")
    (real / "runs" / "out-1").symlink_to(tmp_path / "outside")
    (tmp_path / "store").symlink_to(real)
    return FileStore(tmp_path / "store")


def test_every_key_goes_where_resolve_takes_it(tmp_path: Path) -> None:
    store = layout(tmp_path)
    for _ in range(2):  # the root resolved, then remembered
        assert {k: answer(store, k) for k in KEYS} == {k: resolved(store, k) for k in KEYS}
    assert answer(store, "runs/out-1/log") == "escapes"
    assert store._path("runs/a-1/log") == tmp_path / "real-store" / "runs" / "a-1" / "log"


def test_a_root_repointed_or_moved_is_resolved_again(tmp_path: Path) -> None:
    store = layout(tmp_path)
    assert store._path("runs/a-1/log").read_bytes() == b"x"
    other = tmp_path / "other-store"
    (other / "runs" / "a-1").mkdir(parents=True)
    (other / "runs" / "a-1" / "log").write_bytes(b"other")
    (tmp_path / "store").unlink()
    (tmp_path / "store").symlink_to(other)  # the link now names another directory
    assert store._path("runs/a-1/log").read_bytes() == b"other"
    (tmp_path / "store").unlink()
    moved = tmp_path / "moved-store"
    shutil.move(other, moved)  # the same directory under another name
    (tmp_path / "store").symlink_to(moved)
    assert store._path("runs/a-1/log") == moved / "runs" / "a-1" / "log"
    assert {k: answer(store, k) for k in KEYS} == {k: resolved(store, k) for k in KEYS}


def test_a_link_planted_after_a_first_look_is_seen(tmp_path: Path) -> None:
    store = layout(tmp_path)
    store.append("runs/c-1/log", b"first")
    shutil.rmtree(tmp_path / "real-store" / "runs" / "c-1")
    (tmp_path / "real-store" / "runs" / "c-1").symlink_to(tmp_path / "outside")
    with pytest.raises(StoreError, match="escapes the store"):
        store.append("runs/c-1/log", b"second")
    assert not (tmp_path / "outside" / "log").exists()


def test_append_makes_the_directories_the_first_time_only(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "missing" / "store")
    store.append("runs/a-1/log", b"one\n")
    store.append("runs/a-1/log", b"two\n")
    assert store.read("runs/a-1/log") == b"one\ntwo\n"
