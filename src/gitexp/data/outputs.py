"""Bring a run's outputs into the work tree via DVC: `git exp outputs RUN`."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from gitexp.data import dvcrepo, verify
from gitexp.data.dvcrepo import Progress
from gitexp.data.version import DataItem, checkout_path
from gitexp.errors import GitexpError
from gitexp.git import Repo


def restore_outputs(repo: Repo, run_id: str, recorded: dict[str, Any], *,
                    paths: Iterable[str] = (), force: bool = False,
                    progress: Progress | None = None) -> list[str]:
    """Check out the outputs a run recorded (its result's `outputs`) into the work tree,
    fetching from the DVC remote what the cache lacks, and verify their bytes. Returns the
    paths restored."""
    items = {p: (DataItem.from_dict(p, d), d.get("remote")) for p, d in recorded.items()
             if isinstance(d, dict) and d.get("hash")}
    if not items:
        raise GitexpError(f"run {run_id} recorded no outputs",
                          hint="`git exp run --out PATH -- CMD` records one")
    wanted = [p.rstrip("/") for p in paths]
    unknown = [p for p in wanted if p not in items]
    if unknown:
        raise GitexpError(f"run {run_id} has no output {unknown[0]}",
                          hint="its outputs: " + ", ".join(sorted(items)))
    chosen = [items[p] for p in (wanted or sorted(items))]
    todo = [item for item, _ in chosen if force or not _already_there(repo, item)]
    if todo:
        with dvcrepo.opened(repo.root) as dvc:
            cache = dvcrepo.cache_dir(dvc)
            for remote in sorted({r for _, r in chosen}, key=str):
                absent = verify.missing(cache, [i for i, r in chosen if r == remote and i in todo])
                dvcrepo.fetch(dvc, absent, remote, progress)
            dvcrepo.checkout(dvc, repo.root, todo)
        problems = verify.check(repo.root, cache, todo)
        if problems:
            raise GitexpError(f"restored output is not as recorded: {problems[0]}",
                              hint="the DVC cache or remote holds a corrupted object")
    return [item.path for item, _ in chosen]


def _already_there(repo: Repo, item: DataItem) -> bool:
    path = checkout_path(repo.root, item)
    if not path.exists() and not path.is_symlink():
        return False
    if not item.is_dir and path.is_file() and verify.md5_of(path) == item.hash:
        return True
    raise GitexpError(f"{item.path} exists and differs from the run's output",
                      hint="move it away, or pass --force to overwrite it")
