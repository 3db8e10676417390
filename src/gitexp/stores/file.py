"""A store on a local disk or an NFS mount shared by the dev machine and its workers.

Code lives in the bare repository `<root>/code.git`: packs go in with index-pack, and a
worker that sees the store as a directory uses that repository as it is."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from urllib.parse import unquote, urlsplit

from gitexp import disk
from gitexp.errors import StoreError
from gitexp.stores import Progress
from gitexp.stores.transport import REFS, code_repo, commit_ids, receive_argv, require, send_pack


class FileStore:
    needs: tuple[str, ...] = ()  # no optional module (gitexp.extras)

    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = root.as_uri()

    @classmethod
    def from_url(cls, url: str) -> FileStore:
        parts = urlsplit(url)
        if parts.scheme not in ("", "file") or parts.netloc not in ("", "localhost"):
            raise StoreError(f"not a local store URL: {url!r}", hint="use file:///absolute/path")
        return cls(Path(unquote(parts.path)))

    def _path(self, key: str) -> Path:
        # Keys are ours, but a corrupted or hostile record must still not escape the root.
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise StoreError(f"store key escapes the store: {key!r}")
        return path

    def read(self, key: str, *, offset: int = 0) -> bytes | None:
        try:
            with self._path(key).open("rb") as f:
                if offset:
                    f.seek(offset)
                return f.read()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None

    def size(self, key: str) -> int | None:
        try:
            return self._path(key).stat().st_size
        except (FileNotFoundError, NotADirectoryError):
            return None

    def read_range(self, key: str, offset: int, length: int) -> bytes | None:
        try:
            with self._path(key).open("rb") as f:
                f.seek(offset)
                return f.read(length)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None

    def write(self, key: str, data: bytes) -> None:
        path = self._path(key)
        with disk.writing(path), self._staged(path, data) as tmp:
            tmp.replace(path)  # rename is atomic on one file system, NFS included

    def create(self, key: str, data: bytes) -> bool:
        path = self._path(key)
        with disk.writing(path), self._staged(path, data) as tmp:
            try:
                os.link(tmp, path)  # link(2) never replaces: create-only and whole at once
            except FileExistsError:  # the same answer as the stores that retry: ours already?
                return self.read(key) == data
            return True

    @staticmethod
    @contextlib.contextmanager
    def _staged(path: Path, data: bytes) -> Iterator[Path]:
        """`data` in a synced temporary file beside `path`, removed on the way out."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            yield Path(tmp)
        finally:
            Path(tmp).unlink(missing_ok=True)

    def append(self, key: str, data: bytes) -> None:
        path = self._path(key)
        with disk.writing(path):
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                start = os.lseek(fd, 0, os.SEEK_END)
                try:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view):]
                except OSError:
                    # None of a chunk stays: the caller sends it again whole, in order.
                    os.ftruncate(fd, start)
                    raise
            finally:
                os.close(fd)

    def list(self, prefix: str) -> list[str]:
        base = self._path(prefix) if prefix else self.root
        if not base.is_dir():
            return []
        root = self.root.resolve()
        return sorted(
            p.resolve().relative_to(root).as_posix()
            for p in base.rglob("*")
            if p.is_file() and not p.name.startswith(".")
        )

    def delete(self, prefix: str) -> None:
        path = self._path(prefix)
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)

    # -- code (CodeStore) ---------------------------------------------------------------------
    def held_commits(self) -> set[str]:
        # loose refs only: nothing but update-ref writes them and nothing packs them
        return commit_ids(key for refs in REFS for key in self.list(refs))

    def receive_pack(self, pack: Path, commit: str, against: Sequence[str],
                     progress: Progress | None = None) -> int:
        return send_pack(receive_argv(str(self.root / code_repo(commit)), commit), pack, progress)

    def fetch_code(self, commit: str, cache_dir: Path) -> Path:
        # No cache: the worker reads the store's repository in place (or the root itself,
        # when the URL names a git directory).
        git_dir = self.root / code_repo(commit)
        if not git_dir.is_dir():
            git_dir = self.root
        require(git_dir, commit, self.url)
        return git_dir

