"""Stores: where code travels to workers and results travel back.

Every store speaks the same small protocol over posix-style keys (`runs/<id>/log`). A store
is opened from its URL: `file:///path`, `gs://bucket/prefix`, `ssh://[user@]host[:port]/path`.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from pathlib import Path
from typing import Protocol, runtime_checkable
from urllib.parse import urlsplit

from gitexp.errors import StoreError


@runtime_checkable
class Store(Protocol):
    url: str

    def read(self, key: str, *, offset: int = 0) -> bytes | None:
        """The bytes of `key` from `offset` on, or None when there is no such key."""

    def write(self, key: str, data: bytes) -> None:
        """Replace `key` atomically: a reader sees the old bytes or the new, never half."""

    def append(self, key: str, data: bytes) -> None:
        """Add `data` at the end of `key` (created when missing). One writer per key."""

    def list(self, prefix: str) -> list[str]:
        """Every key under `prefix` (a 'directory', without trailing slash), sorted."""

    def delete(self, prefix: str) -> None:
        """Remove `prefix` and every key under it; missing keys are fine."""


# scheme -> "module:Class", imported only when a store of that kind is opened
REGISTRY: dict[str, str] = {
    "file": "gitexp.stores.file:FileStore",
    "gs": "gitexp.stores.gcs:GCSStore",
    "ssh": "gitexp.stores.sftp:SFTPStore",
}


def open_store(url: str) -> Store:
    scheme = urlsplit(url).scheme or "file"
    if scheme not in REGISTRY:
        raise StoreError(f"unknown store {url!r}",
                         hint="stores are file:///path, gs://bucket/prefix or ssh://host/path")
    module, _, cls = REGISTRY[scheme].partition(":")
    store: Store = getattr(import_module(module), cls).from_url(url)
    return store


def run_key(run_id: str, name: str) -> str:
    return f"runs/{run_id}/{name}"


Progress = Callable[[int, int], None]  # (bytes done, bytes in all)


def put_file(store: Store, key: str, path: Path, progress: Progress | None = None) -> int:
    """Upload a (large) file to `key`, atomically, calling `progress` as it goes. Stores may
    stream it (`store.put_file`); the others get it in one `write`. Returns its size."""
    if hasattr(store, "put_file"):
        return int(store.put_file(key, path, progress=progress))
    data = path.read_bytes()
    store.write(key, data)
    if progress:
        progress(len(data), len(data))
    return len(data)


def size_of(store: Store, key: str) -> int | None:
    """The size of `key` where the store can tell without reading it (`store.size`); None
    when it cannot (or there is no such key)."""
    if hasattr(store, "size"):
        size = store.size(key)
        return None if size is None else int(size)
    return None


def read_range(store: Store, key: str, offset: int, length: int) -> bytes | None:
    """At most `length` bytes of `key` from `offset`: only that span where the store can
    (`store.read_range`); the others read to the end and cut."""
    if hasattr(store, "read_range"):
        data = store.read_range(key, offset, length)
        return None if data is None else bytes(data)
    data = store.read(key, offset=offset)
    return None if data is None else data[:length]


def get_file(store: Store, key: str, path: Path) -> bool:
    """Download `key` into `path` (streamed where the store can); False when missing."""
    if hasattr(store, "get_file"):
        return bool(store.get_file(key, path))
    data = store.read(key)
    if data is None:
        return False
    path.write_bytes(data)
    return True
