"""Checks before a launch snapshots anything.

Large untracked files: a snapshot commits every untracked-not-ignored file, so a forgotten
10 GB dataset would silently go into git objects and travel to every worker. Above
`exp.maxFileSize` (default 50 MB) the launch stops and says to version it with DVC or ignore it.
"""

from __future__ import annotations

import os

from gitexp.errors import ConfigError, GitexpError
from gitexp.git import Repo, run_git
from gitexp.git.config import Config

DEFAULT_MAX_FILE_SIZE = 50 * 1000**2
_UNITS = {"": 1, "k": 1000, "m": 1000**2, "g": 1000**3, "t": 1000**4,
          "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4,
          "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4}


def check(repo: Repo, config: Config) -> None:
    # Settings read only after the run's ref exists are checked now, while nothing is made.
    config.lost_after()  # reads (and so checks) exp.heartbeat and exp.lostAfter
    _check_submodules(repo)
    limit = max_file_size(config)
    # Untracked files and modified tracked ones (`git add -A` would hash both), in one pass.
    out = run_git(["--git-dir", str(repo.git_dir), "--work-tree", str(repo.root), "ls-files",
                   "--others", "--modified", "--exclude-standard", "-z"], cwd=repo.root).stdout
    names = [raw.decode(errors="surrogateescape") for raw in out.split(b"\0") if raw]
    nested = [n for n in names if n.endswith("/")]  # how ls-files shows a repository inside
    if nested:
        raise GitexpError(
            f"{nested[0].rstrip('/')} is a git repository inside the work tree: the snapshot "
            "would record only its commit, not its files",
            hint="make it a submodule (`git submodule add`), ignore it (.gitignore), "
                 "or commit its files here")
    if limit <= 0:
        return
    big: list[tuple[str, int]] = []
    for name in names:
        try:
            st = os.lstat(repo.root / name)
        except OSError:
            continue  # vanished meanwhile: nothing to ship
        if st.st_size > limit:
            big.append((name, st.st_size))
    if big:
        listed = ", ".join(f"{n} ({human(s)})" for n, s in big[:5])
        more = f" and {len(big) - 5} more" if len(big) > 5 else ""
        first = big[0][0]
        raise GitexpError(
            f"files over {human(limit)} would go into the snapshot: {listed}{more}",
            hint=f"version data with DVC (`dvc add {first}`) or ignore it (.gitignore); "
                 "`git config exp.maxFileSize 1G` raises the limit",
        )


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
    raw = config.get("exp.maxfilesize")
    if raw is None:
        return DEFAULT_MAX_FILE_SIZE
    text = raw.strip().lower().replace(" ", "")
    digits = text.rstrip("kmgtib")
    unit = text[len(digits):]
    try:
        return int(float(digits) * _UNITS[unit])
    except (ValueError, KeyError):
        raise ConfigError(f"exp.maxFileSize = {raw!r} is not a size",
                          hint="e.g. `git config exp.maxFileSize 200M` (0 turns it off)") from None


def human(size: int) -> str:
    for unit, div in (("GB", 1000**3), ("MB", 1000**2), ("kB", 1000)):
        if size >= div:
            return f"{size / div:.3g} {unit}"
    return f"{size} bytes"
