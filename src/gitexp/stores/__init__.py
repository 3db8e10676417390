"""Stores: where code travels to workers and results travel back.

Every store speaks the same small protocol over posix-style keys (`runs/<id>/log`). A store
is opened from its URL: `file:///path`, `gs://bucket/prefix`, `ssh://[user@]host[:port]/path`.
"""

from __future__ import annotations

from importlib import import_module
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
