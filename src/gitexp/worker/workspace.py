"""An isolated checkout of a snapshot, where the job runs.

The checkout is a git repository of its own (the job may call `git rev-parse HEAD`) that
borrows objects from a source repository through `objects/info/alternates`: no copy of the
history, and nothing written to the source.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from gitexp.errors import GitError, GitexpError
from gitexp.git import Repo, format_of, init_options, lfs, run_git


def checkout(objects_from: Path, snapshot: str, dest: Path) -> Path:
    """Check out `snapshot` into `dest` and verify that HEAD is exactly that commit."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    # Alternates only work between repositories of one object format: the snapshot's.
    run_git(["init", "-q", *init_options(format_of(snapshot)), str(dest)])
    objects = objects_from / "objects" if (objects_from / "objects").is_dir() else objects_from
    (dest / ".git" / "objects" / "info" / "alternates").write_text(f"{objects.resolve()}\n")
    _lfs(objects_from, snapshot, dest)
    # Hooks and filters of the user's repo are not run here: a plain checkout of the tree
    # (git-lfs's filter aside, when the snapshot has LFS files: see _lfs).
    proc = run_git(["-C", str(dest), "-c", "advice.detachedHead=false", "checkout", "-q",
                    "--detach", snapshot], check=False)
    if proc.returncode != 0:
        raise GitexpError(f"cannot check out snapshot {snapshot[:12]}: "
                          f"{proc.stderr.decode(errors='replace').strip()}")
    verify(dest, snapshot)
    return dest


def verify(dest: Path, snapshot: str) -> None:
    head = run_git(["-C", str(dest), "rev-parse", "HEAD"]).stdout.decode().strip()
    if head != snapshot:
        raise GitexpError(f"checked-out commit {head[:12]} is not the snapshot {snapshot[:12]}",
                          hint="the code source is corrupted or tampered with")


def _lfs(objects_from: Path, snapshot: str, dest: Path) -> None:
    """Files tracked by git-lfs reach the job with their contents: their objects are linked
    in from the source repository's LFS store and git-lfs's filter smudges them at checkout.
    A missing object or a missing git-lfs is an error: never pointer files in silence."""
    git_dir = dest / ".git"
    try:
        linked = lfs.link_objects(Repo.at_git_dir(git_dir), snapshot, objects_from / "lfs",
                                  git_dir / "lfs")
    except GitError:
        return  # no such snapshot here: the checkout says so, in its own words
    if not linked:
        return
    proc = run_git(["-C", str(dest), "lfs", "install", "--local"], check=False)
    if proc.returncode != 0:
        raise GitexpError("the snapshot has git-lfs files and git-lfs is not installed here",
                          hint="install git-lfs on the worker (`apt-get install git-lfs`)")
