"""Checks before a launch snapshots anything.

Large untracked files: a snapshot commits every untracked-not-ignored file, so a forgotten
10 GB dataset would silently go into git objects and travel to every worker. Above
`exp.maxFileSize` (default 50 MB) the launch stops and says to version it with DVC or ignore it.
"""

from __future__ import annotations

import os

from gitexp.config import Config
from gitexp.errors import ConfigError, GitexpError
from gitexp.git import Repo, run_git

DEFAULT_MAX_FILE_SIZE = 50 * 1000**2
_UNITS = {"": 1, "k": 1000, "m": 1000**2, "g": 1000**3, "t": 1000**4,
          "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4,
          "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4}


def check(repo: Repo, config: Config) -> None:
    limit = max_file_size(config)
    if limit <= 0:
        return
    out = run_git(["--git-dir", str(repo.git_dir), "--work-tree", str(repo.root), "ls-files",
                   "--others", "--exclude-standard", "-z"], cwd=repo.root).stdout
    big: list[tuple[str, int]] = []
    for raw in out.split(b"\0"):
        if not raw:
            continue
        name = raw.decode(errors="surrogateescape")
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
            f"untracked files over {human(limit)} would go into the snapshot: {listed}{more}",
            hint=f"version data with DVC (`dvc add {first}`) or ignore it (.gitignore); "
                 "`git config exp.maxFileSize 1G` raises the limit",
        )


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
