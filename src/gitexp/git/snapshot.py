"""Snapshots: the working tree as it is, committed without touching the user's work.

The tree is built in a private copy of the index (`GIT_INDEX_FILE`), so the user's index,
work tree, HEAD and branches are never written. It equals what `git add -A && git
write-tree` would give on a copy of the index: tracked changes, deletions and untracked
files that git does not ignore - except untracked files that usually hold credentials
(`.env`, `*.pem`, `id_rsa`, ...: `secrets.SECRET_FILES`), which stay behind. A tracked one
ships (git already has it) and is named in `Snapshot.secret_files`, for a warning.

The work tree is walked once (`changes`: one `ls-files`, which the launch's preflight also
reads for the snapshot's budget); only the paths it lists are hashed into the private index
(`update-index`), the rest keeps the index's entries, as `add -A` would.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from gitexp import faults
from gitexp.git import Repo
from gitexp.secrets import SECRET_FILES, secret_like_file

STALE_TEMP_SECONDS = 3600


@dataclass(frozen=True)
class Snapshot:
    tree: str
    base: str | None  # HEAD at the time; None in a repo with no commits yet
    secret_files: tuple[str, ...] = ()  # tracked credential-like files it ships (warn!)
    lfs: bool = False  # a .gitattributes in it names the lfs filter (`lfs.check_launch`)


@dataclass(frozen=True)
class Changes:
    """What `git add -A` would stage, from one walk of the work tree: untracked files git
    does not ignore, and tracked files changed or deleted; each (path, untracked). A path
    ending in `/` is a git repository inside the work tree (ls-files' way to show one)."""

    entries: tuple[tuple[str, bool], ...]

    @property
    def nested(self) -> list[str]:
        return [name for name, _ in self.entries if name.endswith("/")]


_WALK = ("ls-files", "--others", "--modified", "--exclude-standard", "-t", "-z")
_ahead: dict[tuple[Path, Path], Callable[[], bytes | None]] = {}


def walk_ahead(repo: Repo) -> None:
    """Start the launch's walk (`changes`) now, in the background: `git exp run` does so
    before it imports what launches a run, so that the walk (~0.1 s at 20,000 files) costs
    the user no time of its own. The next `changes` of `repo` takes it."""
    _ahead[repo.git_dir, repo.root] = repo.started(*_WALK)


def forget_ahead() -> None:
    """Drop a walk started ahead and never taken (its launch stopped first): a later launch
    in this process must walk the tree as it is then."""
    _ahead.clear()


def changes(repo: Repo) -> Changes:
    """The one walk of the work tree a launch makes (`?` untracked, `C` changed)."""
    ahead = _ahead.pop((repo.git_dir, repo.root), None)
    walked = ahead() if ahead else None
    # None started, or it failed: now, and git's error is the launch's.
    out = repo.git(*_WALK) if walked is None else walked.decode(errors="surrogateescape")
    return Changes(tuple((raw[2:], raw[:1] == "?") for raw in out.split("\0") if raw))


@contextlib.contextmanager
def private_index(repo: Repo) -> Iterator[dict[str, str]]:
    """A throw-away copy of the index; the environment that points git at it."""
    tmp_dir = repo.gitexp_dir / "tmp"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    _sweep_stale(tmp_dir)
    fd, name = tempfile.mkstemp(dir=tmp_dir, prefix="index-")
    os.close(fd)
    tmp = Path(name)
    try:
        index = repo.git_dir / "index"
        if index.exists():
            # copy2 keeps the index's mtime: git trusts an entry's stat data only if it is
            # older than the index file, so a fresh mtime would hide same-size edits made in
            # the same tick as the last `git add` ("racy git").
            shutil.copy2(index, tmp)
        else:
            tmp.unlink()  # git creates it; an empty file would be a corrupt index
        yield {"GIT_INDEX_FILE": str(tmp)}
    finally:
        tmp.unlink(missing_ok=True)
        Path(str(tmp) + ".lock").unlink(missing_ok=True)


def take(repo: Repo, listed: Changes | None = None) -> Snapshot:
    """Write the work tree's tree object. Objects only: no ref, index or file changes.
    `listed`: the work tree's `changes`, when the caller has just listed them."""
    base = repo.head()
    listed = changes(repo) if listed is None else listed
    # Untracked credential-like files stay behind; a tracked one is updated like any file.
    # Tracked paths first: a file that became a directory leaves before its files come in.
    paths = list(dict.fromkeys(
        name.rstrip("/") for name, untracked in sorted(listed.entries, key=lambda e: e[1])
        if not (untracked and secret_like_file(name))))
    index = repo.git_dir / "index"
    key = _identity(index)
    with private_index(repo) as env:
        # The copy is the index `key` names only if the index did not change meanwhile.
        stable = key is not None and _identity(index) == key
        known = _cached_names(repo, key) if key is not None and stable else None
        if known is None:
            known = _named(repo, env, _WATCHED)
            if key is not None and stable:
                _keep_names(repo, key, known)
        if paths:  # --replace: a file that became a directory (or back) swaps its entries
            repo.git("update-index", "--add", "--remove", "--replace", "-z", "--stdin", env=env,
                     input=b"".join(p.encode(errors="surrogateescape") + b"\0" for p in paths))
        faults.point("snapshot.add")
        # Only the paths just hashed can have come, gone or changed since the index's list.
        changed = set(paths)
        touched = [p for p in paths if _watched(p)]
        if len(touched) > MAX_LITERAL:
            named = _named(repo, env, _WATCHED)
        else:
            named = {p: oid for p, oid in known.items() if p not in changed}
            if touched:
                named.update(_named(repo, env, touched, literal=True))
        tree = repo.git("write-tree", env=env).strip()
    attributes = [oid for p, oid in named.items() if _is_attributes(p)]
    said = repo.read_objects(attributes, max_size=1 << 20) if attributes else []
    return Snapshot(tree=tree, base=base,
                    secret_files=tuple(sorted(p for p in named if secret_like_file(p))),
                    lfs=any(b"filter=lfs" in (obj.data or b"") for obj in said))


# git matches the names itself (an index read, no work-tree walk); `*` never crosses a `/`.
_SECRET_PATHSPECS = tuple(f":(glob,icase)**/{pattern}" for pattern in SECRET_FILES)
_WATCHED = (*_SECRET_PATHSPECS, ":(glob)**/.gitattributes")
MAX_LITERAL = 500  # changed watched paths named one by one; more: the whole index again
NAMES_CACHE = "index-names.json"
MAX_NAMES_CACHE = 8 << 20


def _is_attributes(path: str) -> bool:
    return path.rpartition("/")[2] == ".gitattributes"


def _watched(path: str) -> bool:
    """A path `_WATCHED` matches: credential-like, or a .gitattributes."""
    return secret_like_file(path) or _is_attributes(path)


def _named(repo: Repo, env: dict[str, str], specs: Iterable[str], *,
           literal: bool = False) -> dict[str, str]:
    """path -> object id of the entries `specs` match in the index `env` points at."""
    out = repo.git(*(["--literal-pathspecs"] if literal else []), "ls-files", "-s", "-z", "--",
                   *specs, env=env)
    found = {}
    for entry in filter(None, out.split("\0")):
        head, _, path = entry.partition("\t")  # mode oid stage, tab, path
        found[path] = head.split()[1]
    return found


def _identity(index: Path) -> list[int] | None:
    """What changes whenever the index is written (git replaces it by a rename)."""
    try:
        st = index.stat()
    except OSError:
        return None
    return [st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def _cached_names(repo: Repo, key: list[int]) -> dict[str, str] | None:
    """`_named(_WATCHED)` of the index `key` names, as an earlier launch found it: a scan
    of every entry against the credential patterns costs tens of ms on a big index."""
    path = repo.gitexp_dir / "cache" / NAMES_CACHE
    try:
        with path.open("rb") as f:
            data = json.loads(f.read(MAX_NAMES_CACHE + 1))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("key") != key or \
            data.get("specs") != list(_WATCHED) or not isinstance(data.get("names"), dict):
        return None
    names: dict[str, str] = data["names"]
    if not all(isinstance(k, str) and isinstance(v, str) and repo.is_oid(v)
               for k, v in names.items()):
        return None
    return names


def _keep_names(repo: Repo, key: list[int], names: dict[str, str]) -> None:
    path = repo.gitexp_dir / "cache" / NAMES_CACHE
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"key": key, "specs": list(_WATCHED), "names": names}))
        tmp.replace(path)


def _sweep_stale(tmp_dir: Path) -> None:
    # A `git exp run` killed mid-snapshot leaves its temp index behind; nothing else does.
    cutoff = time.time() - STALE_TEMP_SECONDS
    for p in tmp_dir.iterdir():
        with contextlib.suppress(OSError):
            if p.stat().st_mtime < cutoff:
                p.unlink()
