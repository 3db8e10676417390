"""Stores: where code travels to workers and results travel back.

Every store speaks the same small protocol over posix-style keys (`runs/<id>/log`). A store
is opened from its URL: `file:///path`, `gs://bucket/prefix`, `ssh://[user@]host[:port]/path`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from importlib import import_module
from pathlib import Path
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlsplit

from gitexp import extras
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

    def create(self, key: str, data: bytes) -> bool:
        """Write `key` only if it does not exist, atomically: of writers racing for one key,
        exactly one gets True (a sweep's slots claim its runs this way). A retry that finds
        its own earlier attempt landed (same bytes) also gets True: make `data` unique."""


# scheme -> "module:Class", imported only when a store of that kind is opened
REGISTRY: dict[str, str] = {
    "file": "gitexp.stores.file:FileStore",
    "gs": "gitexp.stores.gcs:GCSStore",
    "ssh": "gitexp.stores.sftp:SFTPStore",
}


def open_store(url: str) -> Store:
    """The store at `url`; MissingExtraError (before any connection) when its kind needs an
    optional module that is not installed."""
    kind = _kind(url)
    extras.require(f"the store {url}", *kind.needs)
    store: Store = kind.from_url(url)
    return store


def needs(url: str) -> tuple[str, ...]:
    """The optional modules a store at `url` needs (`extras`): every store class says, as
    `needs`."""
    return tuple(_kind(url).needs)


def _kind(url: str) -> Any:
    scheme = urlsplit(url).scheme or "file"
    if scheme not in REGISTRY:
        raise StoreError(f"unknown store {url!r}",
                         hint="stores are file:///path, gs://bucket/prefix or ssh://host/path")
    module, _, cls = REGISTRY[scheme].partition(":")
    return getattr(import_module(module), cls)


def run_key(run_id: str, name: str) -> str:
    return f"runs/{run_id}/{name}"


def slot_key(sweep: str, index: int, suffix: str = "json") -> str:
    """Slot `index` of `sweep`'s place in the store (its handle; `log`: its agent's log)."""
    return f"sweeps/{sweep}/slot-{index}.{suffix}"


Progress = Callable[[int, int], None]  # (bytes done, bytes in all)


# -- optional capabilities: asked for with isinstance, each met by some stores ---------------
@runtime_checkable
class StreamsFiles(Protocol):
    """Large files go up and down in chunks, never whole in memory (gs://, ssh://)."""

    def put_file(self, key: str, path: Path, progress: Progress | None = None) -> int:
        """Upload `path` to `key` atomically, calling `progress`; return its size."""

    def get_file(self, key: str, path: Path) -> bool:
        """Download `key` into `path`; False (and no `path`) when there is no such key."""


@runtime_checkable
class TellsSizes(Protocol):
    """The size of a key without reading it."""

    def size(self, key: str) -> int | None:
        """The size of `key`, or None when there is no such key."""


@runtime_checkable
class ReadsRanges(Protocol):
    """A span of a key without reading to its end (a long log, the tail of a result)."""

    def read_range(self, key: str, offset: int, length: int) -> bytes | None:
        """At most `length` bytes of `key` from `offset` (b"" past the end), None if missing."""


# -- code transport: every store has one (transport.py holds what they share) ----------------
@runtime_checkable
class CodeStore(Protocol):
    """Holds snapshots' code for the workers: each commit with all it needs, received as a
    thin pack against commits the store already holds, and handed to a worker as a git
    directory. The on-store layout is fixed (older workers read it): see transport.py."""

    def held_commits(self) -> set[str]:
        """The commits this store holds whole (only well-formed commit ids)."""

    def receive_pack(self, pack: Path, commit: str, against: Sequence[str],
                     progress: Progress | None = None) -> int:
        """Take a thin pack of `commit` made against the held commits `against`, then name
        `commit` held; return the bytes sent."""

    def fetch_code(self, commit: str, cache_dir: Path) -> Path:
        """A git directory holding `commit` (a cache under `cache_dir` where the store is not
        a directory here); `commit` is a validated commit id."""


def put_file(store: Store, key: str, path: Path, progress: Progress | None = None) -> int:
    """Upload a (large) file to `key`, atomically, calling `progress` as it goes: streamed
    where the store can, else in one `write`. Returns its size."""
    if isinstance(store, StreamsFiles):
        return store.put_file(key, path, progress=progress)
    data = path.read_bytes()
    store.write(key, data)
    if progress:
        progress(len(data), len(data))
    return len(data)


def size_of(store: Store, key: str) -> int | None:
    """The size of `key` where the store can tell without reading it; None when it cannot
    (or there is no such key)."""
    return store.size(key) if isinstance(store, TellsSizes) else None


def read_range(store: Store, key: str, offset: int, length: int) -> bytes | None:
    """At most `length` bytes of `key` from `offset`: only that span where the store can;
    the others read to the end and cut."""
    if isinstance(store, ReadsRanges):
        return store.read_range(key, offset, length)
    data = store.read(key, offset=offset)
    return None if data is None else data[:length]


def get_file(store: Store, key: str, path: Path) -> bool:
    """Download `key` into `path` (streamed where the store can); False when missing."""
    if isinstance(store, StreamsFiles):
        return store.get_file(key, path)
    data = store.read(key)
    if data is None:
        return False
    path.write_bytes(data)
    return True
