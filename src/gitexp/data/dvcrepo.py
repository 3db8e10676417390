"""Everything that talks to DVC itself: status, commit, push, fetch, checkout, save.

DVC is imported here only, inside the functions, so nothing pays for it unless data really
has to move or be hashed.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gitexp.data import verify, version
from gitexp.data.version import DataItem
from gitexp.errors import GitexpError
from gitexp.extras import MissingExtraError

Progress = Callable[[str, int, int], None]  # (what, done, total) in objects
LINK_TYPES = "reflink,hardlink,symlink,copy"  # never a second copy when the cache allows it


@dataclass(frozen=True)
class Unrecorded:
    path: str
    dvcfile: str  # the `.dvc` file or `dvc.yaml:stage` to commit
    state: str  # DVC's word: modified, new, not in cache


@contextmanager
def opened(root: Path) -> Iterator[Any]:
    """A `dvc.repo.Repo` at `root`, quiet (our messages are the user-facing ones)."""
    try:
        from dvc.exceptions import DvcException
        from dvc.repo import Repo
    except ImportError:
        raise MissingExtraError("this repository's DVC-tracked data", "dvc") from None
    for name in ("dvc", "dvc_data", "dvc_objects"):
        logging.getLogger(name).addHandler(logging.NullHandler())
    try:
        repo = Repo(str(root))
    except DvcException as exc:
        raise GitexpError(f"DVC cannot open {root}: {exc}") from None
    try:
        yield repo
    except (DvcException, OSError) as exc:  # e.g. a cache object vanished under us
        raise GitexpError(f"DVC failed: {exc}") from None
    finally:
        repo.close()


def unrecorded(root: Path, suspects: dict[str, DataItem]) -> list[Unrecorded]:
    """Which of `suspects` differ from their `.dvc`/`dvc.lock` entry (DVC hashes them)."""
    found: list[Unrecorded] = []
    with opened(root) as repo:
        for stage in repo.index.stages:
            for out in stage.outs:
                rel = Path(os.path.relpath(out.fs_path, root)).as_posix()
                item = suspects.get(rel)
                if item is None:
                    continue
                state = next(iter(out.status().values()), None)
                if state == "not in cache" and not Path(out.fs_path).exists():
                    continue  # not here and not cached: the worker pulls it from a remote
                if state in ("modified", "new", "not in cache"):
                    found.append(Unrecorded(path=rel, dvcfile=item.dvcfile, state=state))
    return sorted(found, key=lambda u: u.path)


def commit(root: Path, targets: list[str]) -> None:
    """`dvc commit --force TARGET…`: record the work tree's data in the DVC files."""
    with opened(root) as repo:
        for target in targets:  # DVC resolves targets against the process's cwd
            repo.commit(str(root / target), force=True)


def hash_info(item: DataItem) -> Any:
    from dvc_data.hashfile.hash_info import HashInfo

    if not version.well_formed_hash(item):  # DVC makes a cache path of it, unchecked
        raise GitexpError(f"malformed DVC hash for {item.path!r}: {item.hash[:40]!r}",
                          hint="the run's record is damaged or forged; nothing was fetched")

    return HashInfo(item.algo, item.hash)


class _Callback:
    """Adapts DVC's (fsspec) progress callbacks to a plain `Progress` function."""

    @staticmethod
    def make(what: str, progress: Progress | None) -> Any:
        from fsspec.callbacks import Callback  # type: ignore[import-untyped]

        class Adapter(Callback):  # type: ignore[misc]
            def call(self, *args: Any, **kwargs: Any) -> None:
                if progress is not None:
                    progress(what, int(self.value), int(self.size or 0))

        return Adapter()


def push(repo: Any, items: Iterable[DataItem], remote: str | None,
         progress: Progress | None = None) -> int:
    """Send the objects of `items` that the DVC remote lacks; the number sent."""
    return _transfer(repo, list(items), remote, progress, upload=True)


def fetch(repo: Any, items: Iterable[DataItem], remote: str | None,
          progress: Progress | None = None) -> int:
    """Bring the objects of `items` missing from the local cache from the DVC remote."""
    items = list(items)
    # The directory listings first: what else to fetch is only known once they are here.
    listings = [i for i in items if i.is_dir]
    sent = _transfer(repo, listings, remote, None, upload=False, shallow=True)
    check_listings(repo, listings)
    return sent + _transfer(repo, items, remote, progress, upload=False)


def _transfer(repo: Any, items: list[DataItem], remote: str | None,
              progress: Progress | None, *, upload: bool, shallow: bool = False) -> int:
    from dvc.config import NoRemoteError, RemoteConfigError
    from dvc_data.hashfile.db import get_index

    if not items:
        return 0
    try:
        odb = repo.cloud.get_remote_odb(remote, "push" if upload else "pull")
    except (NoRemoteError, RemoteConfigError) as exc:
        raise GitexpError(f"no usable DVC remote{f' {remote!r}' if remote else ''}: "
                          f"{str(exc).splitlines()[0]}",
                          hint="define it in the committed .dvc/config (`dvc remote add NAME "
                               "URL`) and name it with exp.target.<t>.dvcRemote") from None
    cache = repo.cache.local
    src, dest = (cache, odb) if upload else (odb, cache)
    where = odb.fs.unstrip_protocol(odb.path)
    missing: list[str] = []

    def validate(status: Any) -> None:
        missing.extend(sorted(h.value for h in status.missing))

    result = repo.cloud.transfer(
        src, dest, [hash_info(i) for i in items], cache_odb=cache,
        dest_index=get_index(odb) if upload else None,
        src_index=None if upload else get_index(odb),
        validate_status=validate, shallow=shallow,  # not shallow: every file of a directory
        callback=_Callback.make("pushing data" if upload else "pulling data", progress),
    )
    if missing or result.failed:
        names = missing or sorted(h.value for h in result.failed)
        held = "the DVC cache" if upload else f"the DVC remote {where}"
        raise GitexpError(f"data version incomplete: {len(names)} object(s) missing from "
                          f"{held}: {', '.join(n[:12] for n in names[:5])}",
                          hint="`dvc pull` (or `dvc push` from where the data was added), "
                               "then launch again")
    return len(result.transferred)


def absent_from_remote(repo: Any, items: Iterable[DataItem], remote: str | None) -> list[DataItem]:
    """Which of `items` the DVC remote `remote` (None: DVC's default; no remote at all: all
    of them) cannot give: an existence check of their objects, nothing downloaded. A
    directory's files are checked too when its listing is in the local cache."""
    from dvc.config import NoRemoteError, RemoteConfigError

    items = list(items)
    if not items:
        return []
    try:
        odb = repo.cloud.get_remote_odb(remote, "pull")
    except (NoRemoteError, RemoteConfigError):
        return items
    cache = cache_dir(repo)
    wanted: dict[str, list[str]] = {}
    for item in items:
        oids = [hash_info(item).value]
        if item.is_dir and item.algo == "md5":
            try:
                listing = verify.manifest(cache, item)
            except ValueError:
                listing = None
            oids += sorted(set((listing or {}).values()))
        wanted[item.path] = oids
    present = set(odb.oids_exist(sorted({o for oids in wanted.values() for o in oids})))
    return [i for i in items if not set(wanted[i.path]) <= present]


def check_listings(repo: Any, items: Iterable[DataItem]) -> None:
    """Refuse a `.dir` listing naming a path outside its directory or a hash that is no md5:
    DVC joins both into paths unchecked, so this runs before DVC acts on a listing."""
    cache = cache_dir(repo)
    for item in items:
        if item.is_dir and item.algo == "md5":
            try:
                verify.manifest(cache, item)
            except ValueError as exc:
                raise GitexpError(f"refusing the DVC data of {item.path!r}: {exc}",
                                  hint="the DVC cache or remote holds a forged or damaged "
                                       "object; nothing was written from it") from None


def checkout(repo: Any, root: Path, items: Iterable[DataItem]) -> None:
    """Materialise exactly these objects at their paths under `root`, linked from the cache."""
    from dvc_data.hashfile import load
    from dvc_data.hashfile.checkout import CheckoutError, LinkError
    from dvc_data.hashfile.checkout import checkout as hf_checkout

    cache = repo.cache.local
    items = list(items)
    check_listings(repo, items)
    for item in items:
        target = str(root.joinpath(*item.path.split("/")))
        try:
            obj = load(cache, hash_info(item))
            hf_checkout(target, repo.fs, obj, cache, force=True, relink=True)
        except (CheckoutError, LinkError, FileNotFoundError) as exc:
            raise GitexpError(f"cannot materialise {item.path} ({item.hash[:12]}): {exc}",
                              hint="the DVC cache lacks it: `dvc pull`") from None


def save(repo: Any, root: Path, path: str) -> DataItem:
    """Hash `path` and store it in the DVC cache (what `dvc add` does, minus the .dvc file)."""
    from dvc_data.hashfile.build import build
    from dvc_data.hashfile.transfer import transfer

    cache = repo.cache.local
    fs_path = str(root.joinpath(*path.split("/")))
    staging, meta, obj = build(cache, fs_path, repo.fs, "md5", ignore=repo.dvcignore)
    hardlink = next(iter(cache.cache_types), None) == "hardlink"
    transfer(staging, cache, {obj.hash_info}, shallow=False, hardlink=hardlink)
    return DataItem(path=path, hash=str(obj.hash_info.value), algo="md5", size=meta.size,
                    nfiles=meta.nfiles if obj.hash_info.isdir else None, source="gitexp",
                    is_out=True)


def default_remote(repo: Any) -> str | None:
    name = repo.config["core"].get("remote")
    return str(name) if name else None


def cache_dir(repo: Any) -> Path:
    return Path(repo.cache.local.path).parent.parent  # <cache>/files/md5 -> <cache>
