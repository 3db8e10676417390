"""Bringing commits from a remote by object id at the cost of what they weigh, however many
refs the repository holds.

A plain `git fetch` in a clone of 100,000 run refs spends seconds on them whatever it brings:
its negotiation marks every local ref's commit, and its connectivity check (`rev-list
--objects --not --all`) walks from every one (2.5 s for 100 new runs, 0.06 s of it the
fetch proper: docs/architecture.md, "Team scale"). So the fetch runs in a *view*: a bare
repository made for it under `.git/gitexp/`, borrowing every object of the repository
(`objects/info/alternates`) but seeing only its branches, tags and remote-tracking branches
(`core.alternateRefsPrefixes`, which both the negotiation and the check go by) and the
commits the caller says it has (`haves`: the local runs the incoming ones extend). git
checks the new objects' connectivity there as ever, against every object here; the pack it
received is then moved into this repository (the index last: git finds a pack by it), and
git's automatic housekeeping runs there as after a plain fetch.

The view reads this repository's config (an include), so remotes, URL rewrites and
credentials are as for a plain fetch; a fetch that fails in the view (a setting that did
not carry over) is tried again plainly, as is every fetch of a shallow clone.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from gitexp.git import Repo, run_git

SEEN = "refs/heads/ refs/tags/ refs/remotes/"  # what the view sees of this repository's refs
VIEW_PREFIX = "fetch-"  # .git/gitexp/fetch-XXXX: one view a fetch
STALE_VIEW = 24 * 3600.0  # seconds: a view this old was left by a fetch that was killed
_OVERRIDES = """
[core]
\tbare = true
\talternateRefsPrefixes = {seen}
[fetch]
\tunpackLimit = 1
\twriteCommitGraph = false
[transfer]
\tunpackLimit = 1
[maintenance]
\tauto = false
[gc]
\tauto = 0
"""


def fetch_ids(repo: Repo, remote: str, oids: Sequence[str], *, haves: Sequence[str] | None,
              env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    """`git fetch` of `oids` (no ref written): in a view when `haves` is given (the commits
    here that those extend, besides branches and tags), else plainly (every ref a have: an
    archive's runs are mostly here already, as runs of their own)."""
    args = ["fetch", "--quiet", "--no-tags", "--no-write-fetch-head",
            "--no-recurse-submodules", "--stdin", remote]
    wanted = "".join(oid + "\n" for oid in dict.fromkeys(oids)).encode()
    if haves is not None and not (repo.common_dir / "shallow").exists():
        repo.gitexp_dir.mkdir(parents=True, exist_ok=True)
        _sweep(repo.gitexp_dir)
        view = Path(tempfile.mkdtemp(prefix=VIEW_PREFIX, dir=repo.gitexp_dir))
        try:
            _make_view(repo, view, haves)
            proc = run_git(["--git-dir", str(view), *args], cwd=repo.root, env=env,
                           input=wanted, check=False)
            if proc.returncode == 0:
                _adopt(view / "objects", repo.common_dir / "objects")
                # as a plain fetch ends: git's own housekeeping (a pack a fetch adds up)
                run_git(["--git-dir", str(repo.git_dir), "maintenance", "run", "--auto",
                         "--quiet"], cwd=repo.root, env=env, check=False)
                return proc
        finally:
            shutil.rmtree(view, ignore_errors=True)
    return run_git(["--git-dir", str(repo.git_dir), *args], cwd=repo.root, env=env,
                   input=wanted, check=False)


def _sweep(where: Path) -> None:
    """Views left by fetches that were killed (a live one is younger than STALE_VIEW)."""
    for old in where.glob(f"{VIEW_PREFIX}*"):
        with contextlib.suppress(OSError):
            if time.time() - old.stat().st_mtime > STALE_VIEW:
                shutil.rmtree(old, ignore_errors=True)


def _make_view(repo: Repo, view: Path, haves: Sequence[str]) -> None:
    run_git(["init", "-q", "--bare", "--template=", f"--object-format={repo.object_format}",
             str(view)])
    own = (view / "config").read_text()  # its format and version: git reads them unincluded
    (view / "config").write_text(
        f"[include]\n\tpath = {_quoted(repo.common_dir / 'config')}\n{own}"
        + _OVERRIDES.format(seen=SEEN))
    (view / "objects/info").mkdir(exist_ok=True)
    (view / "objects/info/alternates").write_text(f"{repo.common_dir / 'objects'}\n")
    if haves:
        run_git(["--git-dir", str(view), "update-ref", "--stdin"], input="".join(
            f"create refs/have/{n} {oid}\n"
            for n, oid in enumerate(dict.fromkeys(haves))).encode())


def _quoted(path: Path) -> str:
    return '"' + str(path).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _adopt(objects: Path, into: Path) -> None:
    """The view's new objects moved into the repository's: loose ones, then each pack (its
    index last). A `.keep` is the fetch's own lock, released when it ended: not carried."""
    for sub in sorted(objects.iterdir()):
        if len(sub.name) == 2 and sub.is_dir():  # a loose object's directory
            (into / sub.name).mkdir(exist_ok=True)
            for obj in sub.iterdir():
                obj.replace(into / sub.name / obj.name)
    packs = objects / "pack"
    files = sorted(packs.iterdir(), key=lambda f: (f.suffix == ".idx", f.name)) \
        if packs.is_dir() else []
    for f in files:
        if f.suffix != ".keep":
            f.replace(into / "pack" / f.name)
