"""A run's params: `params.yaml`/`params.json` at its snapshot (DVC's convention) and the
`--key value` / `--key=value` flags of its argv.

Later sources win: params file < argv flags < params the record names itself (e.g. a sweep).
Nested file params are flattened with dots (`train.lr`). Files are looked for in the run's
subdirectory, then at the repository root, and read for many runs in one `git cat-file`
call; what was read is remembered in the index by (snapshot, subdirectory).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from gitexp.git import Repo
from gitexp.model.params import FILES, from_argv, from_file
from gitexp.model.record import RunRecord
from gitexp.service import index


def of_run(repo: Repo, record: RunRecord) -> dict[str, Any]:
    files = at_snapshots(repo, [(record.snapshot, record.cwd)])
    return {**files.get((record.snapshot, record.cwd), {}), **from_argv(record.argv),
            **record.params}


def at_snapshots(repo: Repo, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], Any]:
    """File params of many (snapshot, subdirectory) pairs, from the index or one git call."""
    wanted = {k for k in keys if k[0]}
    found = index.cached_params(repo, wanted)
    missing = sorted(wanted - found.keys())
    if missing:
        fresh = _read(repo, missing)
        index.store_params(repo, fresh)
        found.update(fresh)
    return found


def at_commit(repo: Repo, commit: str, cwd: str) -> dict[str, Any]:
    """File params at any commit (e.g. a run's base), not cached."""
    found: dict[str, Any] = _read(repo, [(commit, cwd)]).get((commit, cwd), {})
    return found


def _read(repo: Repo, keys: list[tuple[str, str]]) -> dict[tuple[str, str], Any]:
    # Each key asks for up to four paths; the first that exists wins.
    asks: list[tuple[tuple[str, str], str]] = []
    for snap, cwd in keys:
        dirs = [cwd, ""] if cwd else [""]
        for d in dirs:
            for name in FILES:
                asks.append(((snap, cwd), f"{d}/{name}" if d else name))
    objects = repo.read_objects(f"{snap}:{path}" for (snap, _), path in asks)
    found: dict[tuple[str, str], Any] = {k: {} for k in keys}
    done: set[tuple[str, str]] = set()
    by_blob: dict[str, dict[str, Any]] = {}  # most snapshots share their params file
    for (key, path), obj in zip(asks, objects, strict=True):
        if obj.type != "blob" or obj.data is None or key in done:
            continue
        done.add(key)
        oid = obj.oid + path  # the same bytes parse the same (per file kind)
        if oid not in by_blob:
            by_blob[oid] = from_file(path, obj.data.decode("utf-8", errors="replace"))
        found[key] = by_blob[oid]
    return found
