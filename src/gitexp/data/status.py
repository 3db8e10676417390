"""Is the work tree's DVC-tracked data what its `.dvc`/`dvc.lock` files say?

Asking DVC costs its import (~0.3 s) plus a walk of the data. Like git's index, we keep a
stat fingerprint (size, mtime, inode of every file) of each output last seen clean, so an
unchanged work tree is confirmed with a few `stat` calls and no DVC at all; only outputs
whose fingerprint moved are handed to DVC, which hashes them with its own state cache.
"""

from __future__ import annotations

import configparser
import contextlib
import hashlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

from gitexp.data import dvcrepo, verify
from gitexp.data.dvcrepo import Unrecorded
from gitexp.data.version import DataItem, checkout_path, of_worktree
from gitexp.errors import GitexpError
from gitexp.git import Repo, run_git

STAT_CACHE = "data-stat.json"
RACY_SECONDS = 2.0  # a file this fresh may change again within the same mtime tick
HASH_BUDGET = 64 * 1000**2  # bytes we re-hash ourselves before paying for DVC's import


def check(repo: Repo, *, commit: bool = False,
          say: Callable[[str], None] | None = None) -> list[Unrecorded]:
    """Refuse (GitexpError) when DVC-tracked data changed without `dvc add`/`dvc commit`.

    With `commit`, record those changes through DVC instead and return what was recorded.
    """
    items = {p: i for p, i in of_worktree(repo).items() if i.is_out}
    if not items:
        return []
    items = _not_in_git(repo, items)
    cache = _load(repo)
    suspects = {p: i for p, i in items.items() if cache.get(p) != [i.hash, _fingerprint(
        checkout_path(repo.root, i))]}
    clean = _clean_by_hashing(repo, suspects)
    suspects = {p: i for p, i in suspects.items() if p not in clean}
    if not suspects:
        _save(repo, cache, clean)
        return []
    changed = dvcrepo.unrecorded(repo.root, suspects)
    if changed and not commit:
        paths = ", ".join(_what_changed(repo, items[c.path], c) for c in changed)
        fixes = "; ".join(_fix(c) for c in changed)
        raise GitexpError(f"DVC-tracked data changed but not recorded: {paths}",
                          hint=f"{fixes}; or pass --commit-data to do it now")
    if changed:
        dvcrepo.commit(repo.root, sorted({c.dvcfile for c in changed}))
        if say:
            say("gitexp: recorded data changes through DVC: "
                + ", ".join(f"{c.path} ({c.dvcfile})" for c in changed))
        items = {p: i for p, i in of_worktree(repo).items() if p in items}
    _save(repo, cache, items)
    return changed


def _clean_by_hashing(repo: Repo, suspects: dict[str, DataItem]) -> dict[str, DataItem]:
    """Suspects that hashlib proves unchanged against the cache's listing (small data only:
    for big data DVC's state database beats re-reading every byte)."""
    cache_dir = local_cache_dir(repo)
    clean, budget = {}, HASH_BUDGET
    for path, item in suspects.items():
        budget -= item.size or 0
        if budget < 0 or item.algo != "md5":
            continue
        root_path = checkout_path(repo.root, item)
        try:
            ok = root_path.exists() and not verify.missing(cache_dir, [item]) \
                and not verify.check(repo.root, cache_dir, [item])
        except (OSError, ValueError):
            ok = False
        if ok:
            clean[path] = item
    return clean


def _what_changed(repo: Repo, item: DataItem, c: Unrecorded) -> str:
    """`data/a.csv` rather than `data` when the directory's listing is in the cache."""
    if not item.is_dir or c.state != "modified":
        return c.path
    try:
        problems = verify.check(repo.root, local_cache_dir(repo), [item])
    except (OSError, ValueError):
        return c.path
    files = [p.split(": ", 1)[0] for p in problems if p.startswith(c.path + "/")]
    if not files:
        return c.path
    return ", ".join(files[:5]) + (f" (+{len(files) - 5} more)" if len(files) > 5 else "")


def local_cache_dir(repo: Repo) -> Path:
    """This repository's DVC cache, from `.dvc/config.local` or `.dvc/config` (`cache.dir`,
    relative to `.dvc/`), read without importing DVC."""
    dvc_dir = repo.root / ".dvc"
    for name in ("config.local", "config"):
        parser = configparser.ConfigParser(interpolation=None, strict=False)
        try:
            parser.read(dvc_dir / name)
        except configparser.Error:
            continue
        value = parser.get("cache", "dir", fallback=None)
        if value:
            return (dvc_dir / value.strip().strip("'\"")).resolve()
    return (dvc_dir / "cache").resolve()


def _fix(c: Unrecorded) -> str:
    if c.dvcfile.endswith(".dvc"):
        return f"`dvc add {c.path}`"
    return f"`dvc commit {c.dvcfile}`"


def _not_in_git(repo: Repo, items: dict[str, DataItem]) -> dict[str, DataItem]:
    # An output git tracks itself (e.g. a `cache: false` metrics file) rides with the snapshot.
    out = run_git(["--literal-pathspecs", "--git-dir", str(repo.git_dir), "ls-files", "-z",
                   "--", *items], cwd=repo.root).stdout.decode(errors="surrogateescape")
    tracked = {p for p in out.split("\0") if p}
    return {p: i for p, i in items.items()
            if p not in tracked and not any(t.startswith(p + "/") for t in tracked)}


def _fingerprint(path: Path) -> str | None:
    """A digest of (path, size, mtime, inode) of every file under `path`; None when any file
    is too fresh to trust (it may still be written within the same mtime tick)."""
    h = hashlib.sha1(usedforsecurity=False)
    racy = time.time_ns() - int(RACY_SECONDS * 1e9)
    if not path.exists():
        return "absent"  # not pulled here: nothing to check, the worker pulls it
    try:
        entries = [(path, "")] if not path.is_dir() else sorted(
            (Path(d) / f, os.path.relpath(Path(d) / f, path))
            for d, _, files in os.walk(path) for f in files)
        for file, rel in entries:
            st = file.stat()
            if st.st_mtime_ns > racy:
                return None
            h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ino}\n".encode())
    except OSError:
        return None
    return h.hexdigest()


def _load(repo: Repo) -> dict[str, list[str | None]]:
    try:
        data = json.loads((repo.gitexp_dir / STAT_CACHE).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _save(repo: Repo, cache: dict[str, list[str | None]], items: dict[str, DataItem]) -> None:
    for path, item in items.items():
        fp = _fingerprint(checkout_path(repo.root, item))
        if fp is not None:
            cache[path] = [item.hash, fp]
    target = repo.gitexp_dir / STAT_CACHE
    with contextlib.suppress(OSError):  # only a cache: losing it costs one DVC check
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cache, sort_keys=True))
        tmp.replace(target)
