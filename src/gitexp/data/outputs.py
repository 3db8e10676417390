"""Bring a run's outputs into the work tree: `git exp outputs RUN`, `checkout --outputs`.

What a run declares is untrusted (a forged result or `.dir` listing may name `../x` or
`.git/hooks/post-checkout`), and DVC's own checkout joins such paths unchecked and follows
symlinks. So every path and hash is checked before anything is fetched or written, DVC only
fills its cache, and the files are written here, through directory descriptors opened with
O_NOFOLLOW: no symlink in the work tree is ever followed, none is ever created.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import posixpath
import secrets
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gitexp.data import dvcrepo, verify, version
from gitexp.data.dvcrepo import Progress
from gitexp.data.version import DataItem
from gitexp.errors import GitexpError
from gitexp.git import Repo
from gitexp.git.writeback import RESULTS_DIR
from gitexp.model.runstate import MAX_PIPELINE

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
FORGED_HINT = ("a run's outputs are written only inside the work tree; this run's record is "
               "damaged or forged (`git exp rm RUN` removes it)")


def declared(run_id: str, recorded: dict[str, Any]) -> dict[str, tuple[DataItem, str | None]]:
    """The outputs a run recorded, path -> (item, DVC remote), each path and hash checked:
    one bad entry refuses them all."""
    items: dict[str, tuple[DataItem, str | None]] = {}
    for path, entry in recorded.items():
        if not (isinstance(entry, dict) and entry.get("hash")):
            continue  # not produced, or not saved: nothing to restore
        problem = version.path_problem(path)
        if problem:
            raise GitexpError(f"run {run_id} declares an output {problem}: {path!r}",
                              hint=FORGED_HINT)
        item = DataItem.from_dict(path, entry)
        remote = entry.get("remote")
        if item.algo != "md5" or not version.well_formed_hash(item) or not (
                remote is None or (isinstance(remote, str) and remote.isprintable())):
            raise GitexpError(f"run {run_id} declares a malformed output entry for {path!r}",
                              hint=FORGED_HINT)
        items[path] = (item, remote)
    nested = next((p for p in items for q in items if p.startswith(q + "/")), None)
    if nested is not None:  # one would be written into (or over) the other
        raise GitexpError(f"run {run_id} declares an output inside another: {nested!r}",
                          hint=FORGED_HINT)
    return items


def check_restorable(repo: Repo, run_id: str, recorded: dict[str, Any], *,
                     snapshot: str | None = None) -> None:
    """Refuse, before the code moves, outputs that could not be restored safely: a bad path,
    a symlink (or a file) on the way, in the work tree or in `snapshot` (about to be checked
    out: a symlink it tracks would be in the work tree by then), or a forged `.dir` listing
    (fetched into the DVC cache here, with what else the cache lacks, to be checked)."""
    items = declared(run_id, recorded)
    if not items:
        raise _none_recorded(run_id)
    with _Root(repo.root, run_id) as root:
        for item, _ in items.values():
            root.refuse_in_the_way(item.path)
    if snapshot is not None:
        parents = {p.rsplit("/", i)[0] for p in items for i in range(1, p.count("/") + 1)}
        modes = version.tree_modes(repo, snapshot, parents)
        for path in sorted(p for p, mode in modes.items() if mode != "040000"):
            what = "a symlink" if modes[path] == "120000" else "not a directory"
            raise GitexpError(f"run {run_id} declares an output through {path!r}, which is "
                              f"{what} in its snapshot", hint=FORGED_HINT)
    cache = _fetch(repo, list(items.values()), None)
    with _Root(repo.root, run_id) as root:  # a different file in the way: refused up front
        for item, _ in items.values():
            root.already_there(item, cache)


def restore_outputs(repo: Repo, run_id: str, recorded: dict[str, Any], *,
                    paths: Iterable[str] = (), force: bool = False,
                    progress: Progress | None = None, lock: Lock | None = None) -> list[str]:
    """Check out the outputs a run recorded (its result's `outputs`) into the work tree,
    fetching from the DVC remote what the cache lacks; every byte is hashed as it is written.
    An output already there byte for byte is left as it is. With `lock` (the run's
    `dvc.lock`, see `run_lock`), the lock entries of the stages restored whole go into the
    work tree's `dvc.lock`, so that `dvc status` calls them up to date. Returns the paths
    restored."""
    items = declared(run_id, recorded)
    if not items:
        raise _none_recorded(run_id)
    wanted = [p.rstrip("/") for p in paths]
    unknown = [p for p in wanted if p not in items]
    if unknown:
        raise GitexpError(f"run {run_id} has no output {unknown[0]}",
                          hint="its outputs: " + ", ".join(sorted(items)))
    chosen = [items[p] for p in (wanted or sorted(items))]
    with _Root(repo.root, run_id) as root:
        new_lock = lock.merged_into(root, {i.path for i, _ in chosen}) if lock else None
        for item, _ in chosen:
            root.refuse_in_the_way(item.path)
        # a directory already there is compared with its listing, which the cache must hold
        present = [(i, r) for i, r in chosen if not force and i.is_dir
                   and root.lstat(i.path) is not None]
        cache = _fetch(repo, present, progress) if present else None
        todo = {item.path for item, _ in chosen if force or not root.already_there(item, cache)}
        if todo:
            cache = _fetch(repo, [(i, r) for i, r in chosen if i.path in todo], progress)
            for item, _ in chosen:
                if item.path in todo:
                    root.write(item, cache)
        if lock is not None and new_lock is not None:
            root.put_file(lock.path, new_lock)
    return [item.path for item, _ in chosen]


@dataclass(frozen=True)
class Lock:
    """A run's `dvc.lock` as its results commit keeps it, and where it goes (`<cwd>/dvc.lock`)."""
    path: str
    text: bytes

    def merged_into(self, root: _Root, restored: set[str]) -> bytes | None:
        """The work tree's lock with this one's entries for each stage whose outputs are all
        in `restored`: all of this lock when every stage is; None when no stage is."""
        try:
            items = version.parse(self.path, self.text)
            theirs = version.load_yaml(self.path, self.text)
        except GitexpError as exc:
            raise GitexpError(f"the run's {self.path} is damaged: {exc.message}",
                              hint=FORGED_HINT) from None
        outs: dict[str, set[str]] = {}
        for item in items:
            if item.is_out:
                outs.setdefault(item.source.partition(":")[2], set()).add(item.path)
        whole = sorted(stage for stage, paths in outs.items() if paths <= restored)
        if not whole:
            return None
        if len(whole) == len(outs):
            return self.text
        current = root.read_file(self.path)
        mine = version.load_yaml(self.path, current) if current else {}
        stages: dict[str, Any] = mine["stages"] if isinstance(mine.get("stages"), dict) else {}
        mine = {"schema": theirs.get("schema", "2.0"), **mine,
                "stages": {**stages, **{s: theirs["stages"][s] for s in whole}}}
        import yaml  # only when a part of a pipeline is restored

        return yaml.safe_dump(mine, sort_keys=False, default_flow_style=False).encode()


def run_lock(repo: Repo, commit: str, cwd: str) -> Lock | None:
    """The `dvc.lock` a run left (`.gitexp-results/dvc/dvc.lock` of its results commit)."""
    (obj,) = repo.read_objects([f"{commit}:{RESULTS_DIR}/dvc/dvc.lock"], max_size=MAX_PIPELINE)
    if obj.type != "blob" or obj.data is None:
        return None
    path = posixpath.join(cwd, "dvc.lock") if cwd else "dvc.lock"
    if version.path_problem(path):  # the decoder's rule for `cwd`, checked again here
        return None
    return Lock(path=path, text=obj.data)


def _fetch(repo: Repo, items: list[tuple[DataItem, str | None]],
           progress: Progress | None) -> Path:
    """Bring into the DVC cache what `items` need and it lacks, each `.dir` listing checked
    before DVC acts on it; the cache directory."""
    with dvcrepo.opened(repo.root) as dvc:
        cache = dvcrepo.cache_dir(dvc)
        dvcrepo.check_listings(dvc, [i for i, _ in items])  # the ones already in the cache
        for remote in sorted({r for _, r in items}, key=str):
            absent = verify.missing(cache, [i for i, r in items if r == remote])
            dvcrepo.fetch(dvc, absent, remote, progress)  # checks the listings it fetches
    return cache


class _Root:
    """The work tree as a directory descriptor: every path below it is walked one component
    at a time with O_NOFOLLOW, so a symlink (planted by a snapshot, an earlier output, or
    anyone) is refused, never followed."""

    def __init__(self, path: Path, run_id: str) -> None:
        self.path, self.run_id = path, run_id
        self.fd = -1

    def __enter__(self) -> _Root:
        self.fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: object) -> None:
        os.close(self.fd)
        if isinstance(exc, OSError):  # e.g. a directory we may not read: still one line
            why = " ".join(str(exc).split()) or type(exc).__name__
            raise GitexpError(f"cannot restore the outputs of run {self.run_id}: {why}",
                              hint="check the permissions in the work tree") from None

    def refuse_in_the_way(self, path: str) -> None:
        """Every existing parent of `path` must be a real directory."""
        parts = path.split("/")
        for i in range(1, len(parts)):
            mode = self.lstat("/".join(parts[:i]))
            if mode is None:
                return
            if not stat.S_ISDIR(mode):
                what = "a symlink" if stat.S_ISLNK(mode) else "not a directory"
                raise GitexpError(f"run {self.run_id} declares an output through "
                                  f"{'/'.join(parts[:i])!r}, which is {what}",
                                  hint="move it away, then retry")

    def lstat(self, path: str) -> int | None:
        *parents, name = path.split("/")
        try:
            fd = self.open_dirs(parents, create=False)
        except FileNotFoundError:
            return None
        try:
            return os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode
        except FileNotFoundError:
            return None
        finally:
            os.close(fd)

    def open_dirs(self, parts: list[str], *, create: bool, start: int | None = None) -> int:
        """A descriptor of the directory `parts` below `start` (the root), made if `create`;
        a symlink or a file on the way is an OSError (ELOOP, ENOTDIR)."""
        fd = os.dup(self.fd if start is None else start)
        try:
            for name in parts:
                try:
                    child = os.open(name, DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise
                    os.mkdir(name, 0o777, dir_fd=fd)
                    child = os.open(name, DIR_FLAGS, dir_fd=fd)
                os.close(fd)
                fd = child
        except BaseException:
            os.close(fd)
            raise
        return fd

    def already_there(self, item: DataItem, cache: Path | None) -> bool:
        """False if nothing is at `item.path`, True if the very file (or directory: the same
        files, byte for byte, and no other) is; raise otherwise."""
        *parents, name = item.path.split("/")
        try:
            fd = self.open_dirs(parents, create=False)
        except FileNotFoundError:
            return False
        try:
            mode = os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode
            if not item.is_dir and stat.S_ISREG(mode) and _md5_at(fd, name) == item.hash:
                return True
            if item.is_dir and stat.S_ISDIR(mode) and cache is not None:
                with contextlib.suppress(ValueError):  # a bad listing: not "the same"
                    listing = verify.manifest(cache, item)
                    if listing is not None and _md5s_below(fd, name) == listing:
                        return True
        except FileNotFoundError:
            return False
        finally:
            os.close(fd)
        raise GitexpError(f"{item.path} exists and differs from the run's output",
                          hint="move it away, or pass --force to overwrite it")

    def read_file(self, path: str) -> bytes | None:
        """A regular file's bytes (at most MAX_PIPELINE), None when absent or not one."""
        *parents, name = path.split("/")
        try:
            fd = self.open_dirs(parents, create=False)
        except FileNotFoundError:
            return None
        try:
            file = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                           dir_fd=fd)
        except FileNotFoundError:
            return None
        finally:
            os.close(fd)
        with os.fdopen(file, "rb") as f:
            return f.read(MAX_PIPELINE) if stat.S_ISREG(os.fstat(file).st_mode) else None

    def put_file(self, path: str, data: bytes) -> None:
        """Write `data` at `path` (under a temporary name, then renamed over it); nothing is
        written when the file already holds exactly that."""
        if self.read_file(path) == data:
            return
        *parents, name = path.split("/")
        fd = self.open_dirs(parents, create=True)
        temp = f".gitexp-restoring-{secrets.token_hex(8)}"
        try:
            with os.fdopen(os.open(temp, NEW_FILE, 0o666, dir_fd=fd), "wb") as f:
                f.write(data)
            _swap(fd, temp, name)
        except BaseException:
            _remove_at(fd, temp)
            raise
        finally:
            os.close(fd)

    def write(self, item: DataItem, cache: Path) -> None:
        """Put `item` at its path: built under a fresh temporary name next to it, hashed as
        it is copied from the cache, then renamed over whatever was there (never into it)."""
        *parents, name = item.path.split("/")
        try:
            listing = verify.manifest(cache, item) if item.is_dir else None
            if item.is_dir and listing is None:
                raise FileNotFoundError(f"directory listing {item.hash} not in the DVC cache")
            fd = self.open_dirs(parents, create=True)
        except (OSError, ValueError) as exc:
            raise _cannot(item, exc) from None
        temp = f".gitexp-restoring-{secrets.token_hex(8)}"  # any name, whatever its length
        try:
            if listing is None:
                _copy(cache, item.hash, fd, temp)
            else:
                os.mkdir(temp, 0o777, dir_fd=fd)
                top = os.open(temp, DIR_FLAGS, dir_fd=fd)
                try:
                    for rel, md5 in sorted(listing.items()):
                        *subdirs, leaf = rel.split("/")
                        sub = self.open_dirs(subdirs, create=True, start=top)
                        try:
                            _copy(cache, md5, sub, leaf)
                        finally:
                            os.close(sub)
                finally:
                    os.close(top)
            _swap(fd, temp, name)
        except BaseException as exc:  # Ctrl-C too: no half-written temporary left behind
            _remove_at(fd, temp)
            if isinstance(exc, (OSError, ValueError)):
                raise _cannot(item, exc) from None
            raise
        finally:
            os.close(fd)


def _copy(cache: Path, md5: str, dir_fd: int, name: str) -> None:
    """Copy the cache object `md5` to a new file `name` in `dir_fd`, hashing as it goes."""
    digest = hashlib.md5(usedforsecurity=False)
    with verify.cache_object(cache, md5).open("rb") as src, \
            os.fdopen(os.open(name, NEW_FILE, 0o666, dir_fd=dir_fd), "wb") as dest:
        while chunk := src.read(verify.CHUNK):
            digest.update(chunk)
            dest.write(chunk)
    if digest.hexdigest() != md5:
        raise ValueError(f"the DVC cache object {md5} is corrupted")


def _swap(dir_fd: int, temp: str, name: str) -> None:
    """Rename `temp` to `name`, moving aside and then removing what was at `name`."""
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        os.rename(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        return
    old = f"{temp}-old"
    os.rename(name, old, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    os.rename(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    _remove_at(dir_fd, old)


def _remove_at(dir_fd: int, name: str) -> None:
    """`rm -rf name` below `dir_fd`, never following a symlink (it is unlinked itself)."""
    try:
        mode = os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode
        if not stat.S_ISDIR(mode):
            os.unlink(name, dir_fd=dir_fd)
            return
        fd = os.open(name, DIR_FLAGS, dir_fd=dir_fd)
        try:
            for entry in os.listdir(fd):  # noqa: PTH208 - pathlib cannot list a descriptor
                _remove_at(fd, entry)
        finally:
            os.close(fd)
        os.rmdir(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass


def _md5s_below(dir_fd: int, name: str, prefix: str = "") -> dict[str, str] | None:
    """relpath -> md5 of every file below the directory `name`, as a `.dir` listing says
    it; None when anything there is neither a file nor a directory (a symlink: never the
    run's output, and never followed)."""
    fd = os.open(name, DIR_FLAGS, dir_fd=dir_fd)
    found: dict[str, str] = {}
    try:
        for entry in os.listdir(fd):  # noqa: PTH208 - pathlib cannot list a descriptor
            mode = os.stat(entry, dir_fd=fd, follow_symlinks=False).st_mode
            if stat.S_ISDIR(mode):
                below = _md5s_below(fd, entry, f"{prefix}{entry}/")
                if below is None:
                    return None
                found.update(below)
            elif stat.S_ISREG(mode):
                found[prefix + entry] = _md5_at(fd, entry)
            else:
                return None
    finally:
        os.close(fd)
    return found


def _md5_at(dir_fd: int, name: str) -> str:
    # O_NONBLOCK: a FIFO in the way must not hang us; fstat then refuses it.
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                 dir_fd=dir_fd)
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return ""
        digest = hashlib.md5(usedforsecurity=False)
        while chunk := f.read(verify.CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _none_recorded(run_id: str) -> GitexpError:
    return GitexpError(f"run {run_id} recorded no outputs",
                       hint="`git exp run --out PATH -- CMD` records one")


def _cannot(item: DataItem, exc: BaseException) -> GitexpError:
    why = " ".join(str(exc).split()) or type(exc).__name__
    return GitexpError(f"cannot restore {item.path} ({item.hash[:12]}): {why}",
                       hint="the DVC cache lacks it or holds a corrupted object: `dvc pull`")
