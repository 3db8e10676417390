"""What a run read from git may say: the shapes of its paths, names and words.

A record or result may have been written by anyone with push access to a shared remote, so
the decoder (model/record.py) holds every field to these rules before anything prints it,
joins it to a directory, or passes it to a program. Each check returns why not, or None.
"""

from __future__ import annotations

import posixpath
import re

# The backends a record may name (backends.REGISTRY maps each to its code): a record from a
# newer gitexp with one more is refused with "unknown backend", not half understood.
BACKENDS = ("local", "ssh", "docker", "gce", "slurm", "kubernetes")
MAX_WORD = 256  # a target, user, host, branch...: far longer than any real one
MAX_PATH = 4096  # PATH_MAX

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
# A DVC hash: md5 (with `.dir` for a directory), or a cloud etag; never a path of its own.
_HASH = re.compile(r"[0-9A-Za-z][0-9A-Za-z_-]{0,127}(?:\.dir)?")
_URL = re.compile(r"[a-z][a-z0-9+.-]*://\S*")
_OID = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")  # sha1 or sha256


def text_problem(value: str, limit: int = MAX_WORD) -> str | None:
    """A one-line word to show and compare: no control or direction-changing characters."""
    if len(value) > limit:
        return f"longer than {limit} characters"
    if _CONTROL.search(value):
        return "has control characters"
    return None


def path_problem(path: str, *, empty_ok: bool = False) -> str | None:
    """A path that may be joined to the work tree: relative, normalised posix, inside it,
    and never into git's own directory (where a file is a hook or a config that runs code)."""
    if path == "":
        return None if empty_ok else "is empty"
    if why := text_problem(path, MAX_PATH):
        return why
    if path.startswith("/") or "\\" in path or (len(path) > 1 and path[1] == ":"):
        return "is not relative"
    parts = path.split("/")
    if posixpath.normpath(path) != path or ".." in parts or "." in parts:
        return "is not a normalised path inside the repository"
    if any(p.lower().rstrip(". ") in (".git", "git~1") for p in parts):  # `.GIT`, `.git.`, 8.3
        return "points into .git"
    return None


def oid_problem(value: str, like: str = "") -> str | None:
    """An object id; when `like` is one (the run's own commit, which git gave), of the same
    object format: a sha1 id in a SHA-256 repository names nothing, or the wrong thing."""
    if not _OID.fullmatch(value):
        return "is not an object id"
    if _OID.fullmatch(like) and len(like) != len(value):
        return f"is not a {'sha256' if len(like) == 64 else 'sha1'} object id like its commit"
    return None


def hash_problem(value: str) -> str | None:
    return None if _HASH.fullmatch(value) else "is not a DVC hash"


def backend_problem(value: str) -> str | None:
    return None if value in BACKENDS else "is not a backend this gitexp knows"


def url_problem(value: str) -> str | None:
    if why := text_problem(value, MAX_PATH):
        return why
    return None if _URL.fullmatch(value) else "is not a URL"
