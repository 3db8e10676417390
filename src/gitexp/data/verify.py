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
    return cache / "files" / "md5" / value[:2] / value[2:]


def manifest(cache: Path, item: DataItem) -> dict[str, str] | None:
    """relpath -> md5 of a directory's files, from its `.dir` object, itself checked."""
    obj = cache_object(cache, item.hash)
    try:
        raw = obj.read_bytes()
    except OSError:
        return None
    if hashlib.md5(raw, usedforsecurity=False).hexdigest() != item.hash.removesuffix(".dir"):
        raise ValueError(f"the directory listing {obj.name} in the DVC cache is corrupted")
    return {str(e["relpath"]): str(e["md5"]) for e in json.loads(raw)}


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
