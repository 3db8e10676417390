"""A store on a local disk or an NFS mount shared by the dev machine and its workers.

Code lives in the bare repository `<root>/code.git`: packs go in with index-pack, and a
worker that sees the store as a directory uses that repository as it is."""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
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
        self._real: tuple[tuple[int, int], str] | None = None  # `_real_root`'s memory

    @classmethod
    def from_url(cls, url: str) -> FileStore:
        parts = urlsplit(url)
        if parts.scheme not in ("", "file") or parts.netloc not in ("", "localhost"):
            raise StoreError(f"not a local store URL: {url!r}", hint="use file:///absolute/path")
        return cls(Path(unquote(parts.path)))

    def _path(self, key: str) -> Path:
        # Keys are ours, but a corrupted or hostile record must still not escape the root.
        plain = self._plain(key)
        if plain is not None:
            return plain
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise StoreError(f"store key escapes the store: {key!r}")
        return path

    def _plain(self, key: str) -> Path | None:
        """What `_path` resolves `key` to when it is plain names with no symlink on the way
        (None: let `resolve` say), for a few syscalls: an agent calls `_path` several times
        a second while its job runs, and `resolve` takes one `lstat` per component of the
        whole path, in Python (it was most of the agent's CPU)."""
        root = self._real_root()
        names = key.split("/")
        if root is None or any(n in ("", ".", "..") for n in names):
            return None
        path, exists = root, True
        for name in names:
            path = os.path.join(path, name)  # noqa: PTH118 - strings: no Path per name
            if exists:  # below a name that is not there, nothing is: no link either
                try:
                    if stat.S_ISLNK(os.lstat(path).st_mode):
                        return None
                except FileNotFoundError:
                    exists = False
                except (OSError, ValueError):  # not a directory, a NUL byte...
                    return None
        return Path(path)

    def _real_root(self) -> str | None:
        """The root with its symlinks resolved, remembered while both the root and what it
        resolved to are still that same directory (a link repointed or a directory moved
        is resolved again)."""
        try:
            here = os.stat(self.root)  # noqa: PTH116 - as cheap as it gets, see above
            known = self._real
            if known is not None and known[0] == (here.st_dev, here.st_ino):
                there = os.stat(known[1])  # noqa: PTH116
                if (there.st_dev, there.st_ino) == known[0]:
                    return known[1]
            real = os.path.realpath(self.root)
            there = os.stat(real)  # noqa: PTH116
        except (OSError, ValueError):
            return None
        if (there.st_dev, there.st_ino) != (here.st_dev, here.st_ino):
            return None  # changing as we look
        self._real = ((here.st_dev, here.st_ino), real)  # one assignment: threads share it
        return real

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
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
            try:  # the directory is there but for the first append: no mkdir each time
                fd = os.open(path, flags, 0o644)
            except FileNotFoundError:
                path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(path, flags, 0o644)
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

