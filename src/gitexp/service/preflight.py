"""Checks before a launch snapshots anything.

The snapshot's budget: a snapshot commits every untracked-not-ignored file, so forgotten
checkpoints or a dataset would silently go into git objects, to every worker and remote. Two
limits, one check, one pass over what `git add -A` would hash (untracked and changed files):
all untracked files together stay under `exp.maxUntrackedSize` (default 50 MB), and no one
file (untracked or changed) is over `exp.maxFileSize` (default 50 MB). Over either, the
launch stops before anything is recorded and names the largest files and the fixes
(.gitignore, `dvc add`, `--allow-large` for this launch). Untracked credential-like files do
not count: they stay behind (`secrets.SECRET_FILES`).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

from gitexp.errors import GitexpError
from gitexp.git import Repo, run_git, snapshot
from gitexp.git.config import Config
from gitexp.secrets import secret_like_file

DEFAULT_MAX_FILE_SIZE = 50 * 1000**2
DEFAULT_MAX_UNTRACKED_SIZE = 50 * 1000**2
LISTED = 5  # the largest files an error names


def check(repo: Repo, config: Config, *, allow_large: bool = False) -> snapshot.Changes:
    """Refuse a launch over the snapshot's budget (or with a repository inside the work
    tree); the work tree's changes it listed, for the snapshot to hash (one walk)."""
    # Settings read only after the run's ref exists are checked now, while nothing is made.
    config.check()
    _check_submodules(repo)
    file_limit, untracked_limit = max_file_size(config), max_untracked_size(config)
    # Untracked files and changed tracked ones: what `git add -A` would hash.
    listed = snapshot.changes(repo)
    nested = listed.nested
    if nested:
        raise GitexpError(
            f"{nested[0].rstrip('/')} is a git repository inside the work tree: the snapshot "
            "would record only its commit, not its files",
            hint="make it a submodule (`git submodule add`), ignore it (.gitignore), "
                 "or commit its files here")
    if not allow_large and (file_limit > 0 or untracked_limit > 0):
        _check_budget(_sizes(repo, listed.entries), file_limit, untracked_limit)
    return listed


Taken = tuple[snapshot.Changes, snapshot.Snapshot]


class _Ahead(threading.Thread):
    """`check`, then the snapshot's tree, in a thread: the launch asks for them later."""

    def __init__(self, repo: Repo, config: Config, allow_large: bool) -> None:
        super().__init__(name="gitexp-snapshot", daemon=True)
        self.repo, self.config, self.allow_large = repo, config, allow_large
        self.taken: Taken | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            listed = check(self.repo, self.config, allow_large=self.allow_large)
            self.taken = listed, snapshot.take(self.repo, listed)
        except BaseException as exc:
            self.error = exc


_ahead: dict[tuple[Path, Path, bool], _Ahead] = {}


def take_ahead(repo: Repo, config: Config, *, allow_large: bool) -> Callable[[], None]:
    """`check` and the snapshot's tree started now, in a thread: `git exp run` starts them
    before it imports what launches a run (cli/_ahead.py), and they wait on git, not on
    Python, so the walk, the budget's look and the tree cost the user no time of their own
    (~40 ms at 20,000 files). A refusal is raised by `taken`, where the launch would have
    made it. Not for a DVC project: its data check comes between the two (`--commit-data`
    may change files). The function returned waits for an unused one to end."""
    ahead = _Ahead(repo, config, allow_large)
    key = (repo.git_dir, repo.root, allow_large)
    _ahead[key] = ahead
    ahead.start()

    def drop() -> None:
        if _ahead.get(key) is ahead:
            del _ahead[key]
        ahead.join()  # its private index is removed by itself, before the process ends

    return drop


def taken(repo: Repo, *, allow_large: bool) -> Taken | None:
    """What `take_ahead` found for this repository and budget (its refusal raised here), or
    None when none was started."""
    ahead = _ahead.pop((repo.git_dir, repo.root, allow_large), None)
    if ahead is None:
        return None
    ahead.join()
    if ahead.error is not None:
        raise ahead.error
    return ahead.taken


def _sizes(repo: Repo, entries: tuple[tuple[str, bool], ...]) -> list[tuple[str, int, bool]]:
    """(path, size, untracked) of each entry still there, largest first."""
    sized = []
    for name, untracked in entries:
        if untracked and secret_like_file(name):
            continue  # stays behind (snapshot.take)
        try:
            st = os.lstat(repo.root / name)
        except OSError:
            continue  # deleted (a change, but nothing to ship) or vanished meanwhile
        sized.append((name, st.st_size, untracked))
    sized.sort(key=lambda e: (-e[1], e[0]))
    return sized


def _check_budget(sized: list[tuple[str, int, bool]], file_limit: int,
                  untracked_limit: int) -> None:
    untracked = [(n, s) for n, s, u in sized if u]
    total = sum(s for _, s in untracked)
    big = [(n, s) for n, s, _ in sized if s > file_limit] if file_limit > 0 else []
    over_total = untracked_limit > 0 and total > untracked_limit
    if over_total:  # it names the largest files, so the one-file rule's ones too
        message = (f"{human(total)} of untracked files would go into the snapshot, over "
                   f"exp.maxUntrackedSize ({human(untracked_limit)}): {_listed(untracked)}")
        files = untracked
    elif big:
        message = (f"files over exp.maxFileSize ({human(file_limit)}) would go into the "
                   f"snapshot: {_listed(big)}")
        files = big
    else:
        return
    # Every limit this launch is over, so that raising the one named is not followed by a
    # refusal under the other.
    limits = [(k, need) for k, need, over in (("exp.maxUntrackedSize", total, over_total),
                                              ("exp.maxFileSize", sized[0][1], bool(big)))
              if over]
    raise GitexpError(message, hint=_fixes(files, limits))


def _listed(files: list[tuple[str, int]]) -> str:
    # The largest, and only those that matter: a 5-byte file beside 60 MB is noise.
    floor = sum(s for _, s in files) / 100
    shown = [f"{n} ({human(s)})" for n, s in files[:LISTED] if s >= floor]
    more = len(files) - len(shown)
    return ", ".join(shown) + (f" and {more} more" if more else "")


def _fixes(files: list[tuple[str, int]], limits: list[tuple[str, int]]) -> str:
    # Name the directory that holds most of the bytes: ignoring it is usually the fix.
    by_dir: dict[str, int] = {}
    for name, size in files:
        folder = name.rpartition("/")[0]
        by_dir[folder] = by_dir.get(folder, 0) + size
    folder = max(by_dir, key=lambda d: by_dir[d])
    path = f"{folder}/" if folder and len(files) > 1 else files[0][0]
    them = "them" if len(files) > 1 else "it"
    raising = " and ".join(f"`git config {k} {_above(need)}`" for k, need in limits)
    return (f"ignore {them} (`{path}` in .gitignore), version {them} with DVC "
            f"(`dvc add {path.rstrip('/')}`), or launch anyway with --allow-large; "
            f"{raising} {'raise the limits' if len(limits) > 1 else 'raises the limit'}")


def _above(size: int) -> str:
    """A round limit that lets `size` through: 188 MB -> 200M, 5 GB -> 6G."""
    if size < 1000**3:
        return f"{size // (10 * 1000**2) * 10 + 10}M"
    return f"{size // 1000**3 + 1}G"


def _check_submodules(repo: Repo) -> None:
    """A snapshot records a submodule by its commit only: edits inside one would silently not
    be part of the run, so a submodule with uncommitted changes stops the launch."""
    if not (repo.root / ".gitmodules").is_file():
        return  # no submodules: no extra git call
    git = ["--literal-pathspecs", "--git-dir", str(repo.git_dir), "--work-tree", str(repo.root)]
    staged = run_git([*git, "ls-files", "--stage", "-z"], cwd=repo.root).stdout
    links = [e.split(b"\t", 1)[1] for e in staged.split(b"\0") if e.startswith(b"160000 ")]
    if not links:
        return
    status = run_git([*git, "status", "--porcelain=v2", "-z", "--no-renames",
                      "--ignore-submodules=none", "--untracked-files=no", "--",
                      *(p.decode(errors="surrogateescape") for p in links)], cwd=repo.root).stdout
    for entry in status.split(b"\0"):
        parts = entry.split(b" ", 8)
        # `1 XY S<c><m><u> ...`: m = tracked changes inside, u = untracked files inside
        if len(parts) == 9 and parts[0] == b"1" and parts[2][:1] == b"S" and \
                (parts[2][2:3] == b"M" or parts[2][3:4] == b"U"):
            path = parts[8].decode(errors="surrogateescape")
            raise GitexpError(
                f"submodule {path} has uncommitted changes: the snapshot records only its commit",
                hint=f"commit them in the submodule (`git -C {path} status`), then retry")


def max_file_size(config: Config) -> int:
    return config.size("exp.maxFileSize", DEFAULT_MAX_FILE_SIZE)


def max_untracked_size(config: Config) -> int:
    return config.size("exp.maxUntrackedSize", DEFAULT_MAX_UNTRACKED_SIZE)


def human(size: int) -> str:
    for unit, div in (("GB", 1000**3), ("MB", 1000**2), ("kB", 1000)):
        if size >= div:
            return f"{size / div:.3g} {unit}"
    return f"{size} bytes"
