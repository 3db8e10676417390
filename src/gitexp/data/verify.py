"""Independent verification of materialised data: hashlib against the recorded hashes.

DVC's own status trusts its state database, which a checkout fills in as it links files;
re-hashing the bytes here is what proves the job sees exactly the recorded data (a tampered
remote or cache object fails before the command starts).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path

from gitexp.data import version
from gitexp.data.version import DataItem

CHUNK = 1 << 20


def md5_of(path: Path) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def cache_object(cache: Path, value: str) -> Path:
    """Where DVC 3 keeps an md5 object: <cache>/files/md5/ab/cdef…"""
    if version.MD5.fullmatch(value.removesuffix(".dir")) is None:  # never `../` in the path
        raise ValueError(f"{value[:40]!r} is no md5 hash")
    return cache / "files" / "md5" / value[:2] / value[2:]


def manifest(cache: Path, item: DataItem) -> dict[str, str] | None:
    """relpath -> md5 of a directory's files, from its `.dir` object, itself checked: the
    listing comes from a cache or remote (untrusted), so each relpath must stay inside the
    directory and each md5 must be one (ValueError otherwise)."""
    obj = cache_object(cache, item.hash)
    try:
        raw = obj.read_bytes()
    except OSError:
        return None
    if hashlib.md5(raw, usedforsecurity=False).hexdigest() != item.hash.removesuffix(".dir"):
        raise ValueError(f"the directory listing {obj.name} in the DVC cache is corrupted")
    try:
        entries = json.loads(raw)
    except RecursionError:
        raise ValueError(f"the directory listing {obj.name} is nested too deep") from None
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ValueError(f"the directory listing {obj.name} is not a list of entries")
    files: dict[str, str] = {}
    for entry in entries:
        rel, md5 = entry.get("relpath"), entry.get("md5")
        problem = version.path_problem(rel)
        if problem:
            raise ValueError(f"the directory listing {obj.name} names a file {problem}: {rel!r}")
        if not isinstance(md5, str) or version.MD5.fullmatch(md5) is None or rel in files:
            raise ValueError(f"the directory listing {obj.name} has a bad entry for {rel!r}")
        files[str(rel)] = md5
    # `a` a file and `a/b` another: a forged listing, and one would clobber the other
    dirs = {p[:i] for p in files for i, c in enumerate(p) if c == "/"}
    clash = min(dirs & files.keys(), default=None)
    if clash is not None:
        raise ValueError(f"the directory listing {obj.name} names {clash!r} both as a file "
                         "and as a directory")
    return files


def missing(cache: Path, items: Iterable[DataItem]) -> list[DataItem]:
    """Items whose objects are not all in `cache` (a cheap existence check, no hashing)."""
    out = []
    for item in items:
        if item.algo != "md5":
            out.append(item)  # let DVC decide
            continue
        try:
            files = manifest(cache, item) if item.is_dir else {"": item.hash}
        except ValueError:
            files = None
        if files is None or not all(cache_object(cache, h).exists() for h in files.values()):
            out.append(item)
    return out


def check(root: Path, cache: Path, items: Iterable[DataItem]) -> list[str]:
    """Problems with the data under `root` (empty when every byte is as recorded)."""
    problems: list[str] = []
    for item in items:
        path = root.joinpath(*item.path.split("/"))
        if item.algo != "md5":
            continue  # legacy/cloud hashes: DVC's checkout is the only check
        try:
            problems += _check_item(path, cache, item)
        except (OSError, ValueError) as exc:
            problems.append(f"{item.path}: {exc}")
    return problems


def _check_item(path: Path, cache: Path, item: DataItem) -> list[str]:
    if not item.is_dir:
        got = md5_of(path)
        return [] if got == item.hash else [f"{item.path}: md5 {got} != recorded {item.hash}"]
    expected = manifest(cache, item)
    if expected is None:
        return [f"{item.path}: directory listing {item.hash} is not in the DVC cache"]
    found = {os.path.relpath(Path(d) / f, path).replace(os.sep, "/"): Path(d) / f
             for d, _, files in os.walk(path) for f in files}
    problems = [f"{item.path}/{rel}: missing" for rel in sorted(set(expected) - set(found))]
    problems += [f"{item.path}/{rel}: not in the recorded version"
                 for rel in sorted(set(found) - set(expected))]
    for rel in sorted(set(expected) & set(found)):
        got = md5_of(found[rel])
        if got != expected[rel]:
            problems.append(f"{item.path}/{rel}: md5 {got} != recorded {expected[rel]}")
    return problems
