"""Snapshots: the working tree as it is, committed without touching the user's work.

The tree is built in a private copy of the index (`GIT_INDEX_FILE`), so the user's index,
work tree, HEAD and branches are never written. It equals what `git add -A && git
write-tree` would give on a copy of the index: tracked changes, deletions and untracked
files that git does not ignore - except untracked files that usually hold credentials
(`.env`, `*.pem`, `id_rsa`, ...: `secrets.SECRET_FILES`), which stay behind. A tracked one
ships (git already has it) and is named in `Snapshot.secret_files`, for a warning.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from gitexp import faults
from gitexp.git import Repo
from gitexp.secrets import SECRET_FILES

STALE_TEMP_SECONDS = 3600


@dataclass(frozen=True)
class Snapshot:
    tree: str
    base: str | None  # HEAD at the time; None in a repo with no commits yet
    secret_files: tuple[str, ...] = ()  # tracked credential-like files it ships (warn!)


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


def take(repo: Repo) -> Snapshot:
    """Write the work tree's tree object. Objects only: no ref, index or file changes."""
    base = repo.head()
    with private_index(repo) as env:
        repo.git("add", "-A", "--", ".", env=env)
        added = _secret_like(repo, env)
        tracked = _secret_like(repo, {}) & added if added else set()
        if added - tracked:  # untracked until now: they stay behind
            repo.git("update-index", "--force-remove", "-z", "--stdin", env=env,
                     input=b"".join(p.encode(errors="surrogateescape") + b"\0"
                                    for p in sorted(added - tracked)))
        faults.point("snapshot.add")
        tree = repo.git("write-tree", env=env).strip()
    return Snapshot(tree=tree, base=base, secret_files=tuple(sorted(tracked)))


# git matches the names itself (an index read, no work-tree walk); `*` never crosses a `/`.
_SECRET_PATHSPECS = tuple(f":(glob,icase)**/{pattern}" for pattern in SECRET_FILES)


def _secret_like(repo: Repo, env: dict[str, str]) -> set[str]:
    """Credential-like paths in the index `env` points at (the user's own when empty)."""
    out = repo.git("ls-files", "-z", "--", *_SECRET_PATHSPECS, env=env)
    return {p for p in out.split("\0") if p}


def _sweep_stale(tmp_dir: Path) -> None:
    # A `git exp run` killed mid-snapshot leaves its temp index behind; nothing else does.
    cutoff = time.time() - STALE_TEMP_SECONDS
    for p in tmp_dir.iterdir():
        with contextlib.suppress(OSError):
            if p.stat().st_mtime < cutoff:
                p.unlink()
