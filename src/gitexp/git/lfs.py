"""git-lfs: which files of a snapshot are LFS pointers, and where their contents are.

A snapshot holds what `git add` stores: for a file tracked by git-lfs, a small pointer
(`version https://git-lfs.github.com/spec/v1`, `oid sha256:...`, `size N`) while the content
lies in the repository's LFS store, `<common git dir>/lfs/objects/ab/cd/<oid>` (git-lfs's
default place; an `lfs.storage` elsewhere is not followed). A job must get the contents, never
the pointers in silence: the worker's checkout links the objects in from that store (the local
target), and a launch whose objects are not there, or that goes to a remote target (whose
workers cannot reach this store), is refused before anything is recorded.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path, PurePosixPath

from gitexp.errors import GitexpError
from gitexp.git import Repo

SPEC = b"version https://git-lfs.github.com/spec/v1\n"
MAX_POINTER = 1024  # git-lfs reads nothing bigger as a pointer
_OID = re.compile(rb"^oid sha256:([0-9a-f]{64})$", re.MULTILINE)


def pointers(repo: Repo, treeish: str) -> dict[str, str]:
    """path -> LFS object id of each LFS pointer in `treeish`; {} after one `ls-tree` (no
    object sizes: cheap on a big tree) when no `.gitattributes` there names the lfs filter."""
    listing = repo.git("ls-tree", "-r", "-z", "--full-tree", treeish)
    if ".gitattributes\0" not in listing:  # most trees: no parsing of 20,000 entries
        return {}
    attributes = [head.split()[2] for head, _, path in _entries(listing)
                  if PurePosixPath(path).name == ".gitattributes"]
    said = repo.read_objects(attributes, max_size=1 << 20)
    if not any(b"filter=lfs" in (obj.data or b"") for obj in said):
        return {}
    sized = repo.git("ls-tree", "-l", "-r", "-z", "--full-tree", treeish)
    small = [(path, parts[2]) for head, _, path in _entries(sized)
             if (parts := head.split())[3].isdigit() and int(parts[3]) <= MAX_POINTER]
    found = {}
    for (path, _), obj in zip(small, repo.read_objects([o for _, o in small],
                                                       max_size=MAX_POINTER), strict=True):
        if obj.data and obj.data.startswith(SPEC) and (m := _OID.search(obj.data)):
            found[path] = m.group(1).decode()
    return found


def _entries(listing: str) -> list[tuple[str, str, str]]:
    """(mode type oid [size], tab, path) of every blob in `ls-tree -r -z`'s output."""
    return [e.partition("\t") for e in listing.split("\0") if " blob " in e.partition("\t")[0]]


def object_path(lfs_dir: Path, oid: str) -> Path:
    """Where git-lfs keeps object `oid` under `lfs_dir` (`<git dir>/lfs`)."""
    return lfs_dir / "objects" / oid[:2] / oid[2:4] / oid


def check_launch(repo: Repo, tree: str, backend: str) -> None:
    """Refuse a launch whose job would get LFS pointers instead of contents."""
    found = pointers(repo, tree)
    if not found:
        return
    first = sorted(found)[0]
    if backend != "local":
        raise GitexpError(
            f"the snapshot has {len(found)} git-lfs file(s) (e.g. {first}): their contents "
            f"reach only the local target's jobs, not {backend} workers",
            hint="run on the local target (`-t local`), or keep the files out of git-lfs")
    lfs_dir = repo.common_dir / "lfs"
    missing = sorted(p for p, oid in found.items() if not object_path(lfs_dir, oid).is_file())
    if missing:
        raise GitexpError(
            f"the git-lfs contents of {len(missing)} file(s) are not here (e.g. {missing[0]}): "
            "the job would get pointer files",
            hint="`git lfs pull` fetches them (or `git lfs install` then `git add` the files)")


def link_objects(repo: Repo, treeish: str, source: Path, dest: Path) -> int:
    """Make the LFS objects of `treeish` present in `dest` (a repository's `lfs` directory),
    from `source` (another one's): hard links, copies across file systems. The count linked;
    an object missing from `source` is an error, never a pointer handed to the job."""
    found = pointers(repo, treeish)
    for path, oid in sorted(found.items()):
        src, dst = object_path(source, oid), object_path(dest, oid)
        if not src.is_file():
            raise GitexpError(f"the git-lfs content of {path} is not in {source}",
                              hint="`git lfs pull` in the launching repository, then rerun")
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, dst)
        except FileExistsError:
            pass
        except OSError:  # another file system, or links not allowed: a copy
            shutil.copyfile(src, dst)
    return len(found)
