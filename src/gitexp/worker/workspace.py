"""An isolated checkout of a snapshot, where the job runs.

The checkout is a git repository of its own (the job may call `git rev-parse HEAD`) that
borrows objects from a source repository through `objects/info/alternates`: no copy of the
history, and nothing written to the source.

Warm checkouts. Writing every file of the project for each run, and deleting them all after,
is what made a job wait (seconds on a 20,000-file tree). So a worker keeps a few checkouts
(`Pool`: `<root>/<k>/`, k < size) and moves one from snapshot to snapshot:

- when its run ends, after the result is written (the user no longer waits), the agent puts
  the tree back to that run's snapshot with git's one-tree reset (it rewrites only the files
  whose index entry differs or whose stat data changed since gitexp wrote them) and
  `git clean -ffdx`, then marks it `<k>/pristine` (the snapshot's id);
- the next run moves a pristine checkout with git's two-tree update (`read-tree -m -u OLD
  NEW`), which touches only the files that differ between the two snapshots: the job waits
  for what changed, not for a look at every file. A checkout that is not pristine (its run's
  agent died) gets the one-tree reset and clean instead, at take.

What the previous job left is never trusted:

- the index that drives the reset is gitexp's own (`<k>/index`, outside the tree), so flags
  a job set in its `.git/index` (skip-worktree, assume-unchanged) change nothing;
- the tree's `.git` is made anew after every job (config, hooks, info/attributes,
  alternates: none of the previous job's survives), with an empty template: by the put-back
  (the next run keeps that one), or at take when the checkout is not pristine;
- `git clean -ffdx` removes every file the snapshot does not have, ignored ones included;
- a run holds its checkout under an exclusive `flock` (released by the kernel when the agent
  dies): concurrent runs never share one, and take a fresh checkout when all are taken;
- `<k>/ready` exists only between a verified update and the next one: a checkout whose
  update was interrupted is rebuilt from scratch, never reused; `<k>/pristine` is written
  only after a verified put-back, under the lock, and removed by the next take before it
  changes anything.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gitexp import faults
from gitexp.errors import GitError, GitexpError
from gitexp.git import Repo, format_of, init_options, is_object_id, lfs, run_git

# Our own commands in a checkout never run a hook or an fsmonitor a job might have named.
_SAFE = ["-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false",
         "-c", "advice.detachedHead=false"]


@dataclass
class Checkout:
    """A checkout a run holds: `tree` is where the job runs. Warm ones go back to their
    pool (`release`); a fresh one is the run's own and goes with its work directory."""
    tree: Path
    slot: Path | None = None  # the pool's <k>/ directory, when warm
    snapshot: str = ""  # what the tree was made, when warm
    objects_from: Path | None = None  # where its objects are, when warm
    _lock: int | None = None

    @property
    def warm(self) -> bool:
        return self.slot is not None

    def release(self) -> None:
        """Give a warm checkout back, put back to its snapshot (the job's leftovers, which
        may be large outputs, go now), and marked pristine for the next run's two-tree
        update; if that fails, unmarked: the next run resets it whole."""
        if self._lock is None:
            return
        assert self.slot is not None and self.objects_from is not None
        try:  # with a new .git: nothing the job set there (attributes, config) counts
            _populate(self.tree, self.objects_from, self.snapshot, index=_index(self.slot),
                      steps=_reset(self.snapshot))
            faults.point("workspace.release")
            tmp = self.slot / "pristine.tmp"
            tmp.write_text(self.snapshot)
            tmp.replace(self.slot / "pristine")
        except (GitexpError, OSError):
            (self.slot / "pristine").unlink(missing_ok=True)
        finally:
            os.close(self._lock)
            self._lock = None

    def discard(self) -> None:
        """Free the checkout's files now (a full disk): a warm one is rebuilt next time."""
        if self.slot is not None:
            (self.slot / "ready").unlink(missing_ok=True)
        _remove(self.tree)


class Pool:
    """Up to `size` warm checkouts under `root`, one run at a time in each."""

    def __init__(self, root: Path, size: int) -> None:
        self.root = root
        self.size = size

    def take(self, objects_from: Path, snapshot: str, *,
             say: Callable[[str], None]) -> Checkout | None:
        """A warm checkout of `snapshot`, or None when every one is taken (or the pool
        cannot be used here: then `say` tells why once)."""
        if self.size <= 0:
            return None
        try:
            _own_dir(self.root)
        except OSError as exc:
            say(f"gitexp: no warm checkout ({self.root}: {exc.strerror or exc}): "
                "a fresh one")
            return None
        for k in range(self.size):
            slot = self.root / str(k)
            lock = _try_lock(slot)
            if lock is None:
                continue
            try:
                return Checkout(tree=_update(slot, objects_from, snapshot), slot=slot,
                                snapshot=snapshot, objects_from=objects_from, _lock=lock)
            except BaseException:
                os.close(lock)
                raise
        return None

    def clear(self) -> list[Path]:
        """Remove every checkout no run holds (`git exp gc`); those removed."""
        removed: list[Path] = []
        if not self.root.is_dir():
            return removed
        for slot in sorted(p for p in self.root.iterdir() if p.name.isdigit()):
            lock = _try_lock(slot)
            if lock is None:
                continue
            try:
                (slot / "ready").unlink(missing_ok=True)
                (slot / "pristine").unlink(missing_ok=True)
                _remove(slot / "tree")
                (slot / "index").unlink(missing_ok=True)
                removed.append(slot)
            finally:
                os.close(lock)
        return removed


def checkout(objects_from: Path, snapshot: str, dest: Path) -> Path:
    """Check out `snapshot` into the fresh directory `dest`, HEAD verified."""
    _remove(dest)
    dest.mkdir(parents=True)
    _populate(dest, objects_from, snapshot, index=dest / ".git" / "index",
              steps=_reset(snapshot, clean=False))
    return dest


def verify(dest: Path, snapshot: str) -> None:
    """HEAD is the snapshot: the file itself (detached, written by us just now)."""
    head = (dest / ".git" / "HEAD").read_text(errors="replace").strip()
    if head != snapshot:
        raise GitexpError(f"checked-out commit {head[:12]} is not the snapshot {snapshot[:12]}",
                          hint="the code source is corrupted or tampered with")


# -- the update ---------------------------------------------------------------------------------
def _update(slot: Path, objects_from: Path, snapshot: str) -> Path:
    tree, ready, pristine = slot / "tree", slot / "ready", slot / "pristine"
    warm = ready.exists()
    was = _read_pristine(pristine) if warm else None
    if not warm:  # never finished its last update (or new): from scratch
        _remove(tree)
        (slot / "index").unlink(missing_ok=True)
    pristine.unlink(missing_ok=True)
    ready.unlink(missing_ok=True)
    tree.mkdir(exist_ok=True)
    # Pristine: only what differs between the two snapshots (nothing at all when they hold
    # one tree: a rerun, a sweep's next point); else a look at every file.
    steps = [["read-tree", "-m", "-u", was, snapshot]] if was else _reset(snapshot, clean=warm)
    if was and _one_tree(tree, was, snapshot):
        steps = []
    try:
        # A pristine tree's `.git` was made by the put-back, after its job ended: kept.
        _populate(tree, objects_from, snapshot, index=_index(slot), steps=steps,
                  keep_git=was is not None)
    except GitexpError:
        if not warm:
            raise
        # A tree a job left in a state git cannot reset (a directory made read-only...), or
        # a previous snapshot no longer here: once more from nothing, and that one's error
        # is the run's.
        _remove(tree)
        (slot / "index").unlink(missing_ok=True)
        tree.mkdir()
        _populate(tree, objects_from, snapshot, index=_index(slot),
                  steps=_reset(snapshot, clean=False))
    ready.touch()
    return tree


def _one_tree(tree: Path, was: str, snapshot: str) -> bool:
    """Whether two snapshots hold the same tree, asked in the pristine checkout (its `.git`
    made by the put-back, under the lock; its index is then that tree's, as the reset left
    it): git's two-tree update would write no file yet rewrite the whole index."""
    proc = run_git(["-C", str(tree), *_SAFE, "rev-parse", f"{was}^{{tree}}",
                    f"{snapshot}^{{tree}}"], check=False)
    trees = proc.stdout.split()
    return proc.returncode == 0 and len(trees) == 2 and trees[0] == trees[1]


def _reset(snapshot: str, *, clean: bool = True) -> list[list[str]]:
    """The steps that make a tree exactly `snapshot`, whatever it holds: tracked files by
    the one-tree reset, then (`clean`: the tree was not empty) every other file removed."""
    return [["read-tree", "--reset", "-u", snapshot]] + ([["clean", "-ffdxq"]] if clean else [])


def _read_pristine(path: Path) -> str | None:
    """The snapshot a pristine checkout is exactly (an object id), or None."""
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text if is_object_id(text) else None


def _populate(tree: Path, objects_from: Path, snapshot: str, *, index: Path,
              steps: list[list[str]], keep_git: bool = False) -> None:
    """Make `tree` exactly `snapshot`: a new `.git` (unless `keep_git` and the one there
    borrows from `objects_from` already), then `steps` (git commands driven by `index`,
    gitexp's own: files it says are current are kept)."""
    git_dir = tree / ".git"
    objects = objects_from / "objects" if (objects_from / "objects").is_dir() else objects_from
    alternates = git_dir / "objects" / "info" / "alternates"
    if not (keep_git and _read(alternates) == f"{objects.resolve()}\n"):
        _remove(git_dir)
        # Alternates only work between repositories of one object format: the snapshot's.
        run_git(["init", "-q", "--template=", *init_options(format_of(snapshot)), str(tree)])
        alternates.parent.mkdir(parents=True, exist_ok=True)
        alternates.write_text(f"{objects.resolve()}\n")
    _lfs(objects_from, snapshot, tree)
    for step in steps:
        try:
            _git(tree, *step, index=index)
        except GitexpError as exc:
            raise GitexpError(f"cannot check out snapshot {snapshot[:12]}: {exc.message}") \
                from None
        faults.point("workspace.update")
    if index != git_dir / "index":  # the job's git sees the same, current, index
        shutil.copyfile(index, git_dir / "index")
    # A tag's id (a forged record) would check out its commit: HEAD is then not it.
    run_git(["-C", str(tree), *_SAFE, "update-ref", "--no-deref", "HEAD",
             f"{snapshot}^{{commit}}"])
    verify(tree, snapshot)


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError):
        return None


def _git(tree: Path, *args: str, index: Path) -> None:
    proc = run_git(["-C", str(tree), *_SAFE, *args], check=False,
                   env={"GIT_INDEX_FILE": str(index)})
    if proc.returncode != 0:
        raise GitexpError(proc.stderr.decode(errors="replace").strip() or f"git {args[0]} failed")


def _index(slot: Path | None) -> Path:
    assert slot is not None
    return slot / "index"


def _try_lock(slot: Path) -> int | None:
    """The slot's lock, held until closed (or the holder dies); None when another holds it."""
    slot.mkdir(mode=0o700, exist_ok=True)
    fd = os.open(slot / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _own_dir(root: Path) -> None:
    """`root` as a directory of ours that no one else may write (it may be under a shared
    /tmp on a cluster node): else PermissionError."""
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = os.lstat(root)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o022:
        raise PermissionError(1, "not a directory of this user's alone")


def _remove(path: Path) -> None:
    """Remove a file, symlink or tree, including directories a job made read-only."""
    if path.is_symlink() or path.is_file():
        path.unlink()
        return
    if not path.exists():
        return
    with contextlib.suppress(OSError):
        shutil.rmtree(path)
        return
    _writable(path)
    shutil.rmtree(path)


def _writable(tree: Path) -> None:
    with contextlib.suppress(OSError):
        tree.chmod(0o700)
        for sub in tree.iterdir():  # never into a symlink, nor chmod through one
            if sub.is_dir() and not sub.is_symlink():
                _writable(sub)


def _lfs(objects_from: Path, snapshot: str, dest: Path) -> None:
    """Files tracked by git-lfs reach the job with their contents: their objects are linked
    in from the source repository's LFS store and git-lfs's filter smudges them at checkout.
    A missing object or a missing git-lfs is an error: never pointer files in silence."""
    git_dir = dest / ".git"
    if not (objects_from / "lfs").is_dir():
        # No LFS store to link from (a repository that never used git-lfs, a worker's code
        # cache): the launch refused any snapshot with LFS files for it (`lfs.check_launch`),
        # so no listing of the whole tree (35 ms at 20,000 files) on the way to the job.
        return
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
