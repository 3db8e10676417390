"""A full disk (or a quota, or a read-only mount) is the machine's trouble, not a bug and not
the repository's health: every layer that writes turns it into one `DiskFullError` naming the
file system, so the user learns where to free space. Standard library only (both sides)."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from gitexp.errors import GitexpError

# errno -> what the user reads; git prints the same conditions as strerror text.
WHAT = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded",
        errno.EROFS: "read-only file system"}
_GIT_SAYS = {os.strerror(code): what for code, what in WHAT.items()}
LOW = 64 << 10  # bytes free under which a file system counts as full (a page or a few)


class DiskFullError(GitexpError):
    """Writing failed for want of space (or a quota, or a read-only mount) on `mount`."""

    def __init__(self, what: str, path: Path | str | None, detail: str = "") -> None:
        # No path: a stream (stdout redirected to a full disk), whose file gitexp never named.
        self.mount = mount_of(path) if path is not None else None
        where = f"{self.mount}" if self.mount else "the disk the output goes to"
        super().__init__(f"{what}" + (f" on {self.mount}" if self.mount else "")
                         + (f" ({detail})" if detail else ""),
                         hint=f"free space on {where} and retry"
                         if what != WHAT[errno.EROFS] else f"make {where} writable")
        self.what = what


def is_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in WHAT


def error_for(exc: OSError, path: Path | str | None = None) -> DiskFullError | None:
    """The DiskFullError `exc` means, or None when it is another OS error."""
    if exc.errno not in WHAT:
        return None
    written = exc.filename2 or exc.filename  # a copy names its source first
    detail = f"writing {written}" if written else "" if path is not None else "writing the output"
    return DiskFullError(WHAT[exc.errno], path if path is not None else written, detail)


@contextmanager
def writing(path: Path, *, partial: bool = True) -> Iterator[None]:
    """Write `path` inside: a full disk is raised as DiskFullError naming it (a write() call
    does not), and with `partial=False` the half-written file is removed."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in WHAT:
            raise
        if not partial and _regular(path):  # never a device, a pipe or a link (`-o /dev/full`)
            path.unlink(missing_ok=True)
        raise DiskFullError(WHAT[exc.errno], path, f"writing {path}") from None


def _regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(path.lstat().st_mode)
    except OSError:
        return False


def from_git(stderr: str, path: Path | str, verb: str) -> DiskFullError | None:
    """The DiskFullError git's own message means (it says strerror's words)."""
    for says, what in _GIT_SAYS.items():
        if says in stderr:
            last = stderr.strip().splitlines()[-1]
            objects = Path(path) / "objects"
            if "object" in last and objects.is_dir():  # may be a mount (or a link) of its own
                path = objects
            for prefix in ("fatal: ", "error: "):
                last = last.removeprefix(prefix)
            return DiskFullError(what, path, f"git {verb}: {last.removesuffix(': ' + says)}")
    return None


def full_at(path: Path | str) -> str | None:
    """'no space left on device on MOUNT' when the file system of `path` is (nearly) full
    now; None when it has room or cannot be asked. Said of a run that failed at that moment:
    the likeliest reason, named as what was seen."""
    try:
        st = os.statvfs(_existing(Path(path)))
    except OSError:
        return None
    return f"{WHAT[errno.ENOSPC]} on {mount_of(path)}" if st.f_bavail * st.f_frsize < LOW \
        else None


def mount_of(path: Path | str) -> str:
    """The mount point holding `path` (the path itself when nothing better is known)."""
    here = _existing(Path(path).resolve())
    try:
        while not os.path.ismount(here) and here.parent != here:
            here = here.parent
    except OSError:
        pass
    return str(here)


def _existing(path: Path) -> Path:
    while not path.exists() and path.parent != path:
        path = path.parent
    return path
