"""Whose run is it? A run this user launched on this machine carries a seal; any other is
foreign, and gitexp runs its command, or writes its outputs, only with the user's consent.

Everything else in a record is forgeable by whoever can push to a shared remote (the `user`
field included), so the proof is an HMAC over the record and its snapshot's tree, keyed by a
secret that never leaves this user's config directory (`~/.config/gitexp/seal.key`; the
repository's `.git/gitexp/seal.key` where home is read-only). The key
never reaches a record, a log, the store or argv; losing it only makes old runs foreign.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import hmac
import json
import os
import secrets
import shlex
from pathlib import Path
from typing import Any

from gitexp.errors import GitexpError
from gitexp.git import Repo
from gitexp.model.record import DecodedRun, RunRecord
from gitexp.printable import printable

_DOMAIN = b"gitexp seal 1\n"


def key_paths(repo: Repo) -> tuple[Path, Path]:
    """The user's key; and this repository's, for a home gitexp cannot write to."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "gitexp" / "seal.key", repo.gitexp_dir / "seal.key"


_KEYS: dict[Path, bytes] = {}  # read once per process: `ls` checks thousands of seals


def _keys(repo: Repo) -> list[bytes]:
    found = []
    for path in key_paths(repo):
        if path not in _KEYS:
            with contextlib.suppress(OSError, ValueError):
                key = bytes.fromhex(path.read_text().strip())
                if len(key) == 32:
                    _KEYS[path] = key
        if path in _KEYS:
            found.append(_KEYS[path])
    return found


def fingerprint(repo: Repo) -> int:
    """A 31-bit digest of this user's keys: what the index's `own` column was computed with."""
    digest = hashlib.sha256(b"".join(_keys(repo))).digest()
    return int.from_bytes(digest[:4], "big") >> 1


def _make_key(repo: Repo) -> bytes | None:
    for path in key_paths(repo):
        try:  # readable by this user alone; of two racing creators the first one's stays
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32) + "\n")
        except FileExistsError:
            pass
        except OSError:
            continue
        keys = _keys(repo)
        if keys:
            return keys[0]
    return None


def _mac(key: bytes, fields: dict[str, Any], tree: str) -> str:
    """Over the record's fields as its message has them (the seal aside) and the tree."""
    text = json.dumps({k: v for k, v in fields.items() if k != "seal"}, sort_keys=True,
                      separators=(",", ":"))
    return hmac.new(key, _DOMAIN + tree.encode() + b"\n" + text.encode(),
                    hashlib.sha256).hexdigest()


def seal(repo: Repo, record: RunRecord, tree: str) -> str | None:
    """The seal of a run about to be launched with the snapshot tree `tree`."""
    keys = _keys(repo)
    key = keys[0] if keys else _make_key(repo)
    return _mac(key, record.to_dict(), tree) if key else None


def sealed(repo: Repo, run: DecodedRun, tree: str | None) -> bool:
    """Launched by this user on this machine, with exactly this record and snapshot tree
    (None: looked up here; "": not to be found)."""
    seal_ = run.record.seal
    if seal_ is None:
        return False
    if tree is None:
        tree = repo.rev_parse(f"{run.record.snapshot}^{{tree}}") or ""
    return bool(tree) and any(hmac.compare_digest(_mac(key, run.fields, tree), seal_)
                              for key in _keys(repo))


def trusted_authors(repo: Repo) -> list[str]:
    """`exp.trust` patterns over a record's `user` (e.g. `ada@team.org`, `*@team.org`), from
    the user's own git config only: the shared `.gitexp` file travels with the code, so whoever
    commits to it would name themselves. Patterns trust what a record claims, which anyone
    who can push may forge: a convenience among people who trust the remote, not a proof."""
    out = repo.git("config", "--get-all", "exp.trust", check=False)
    return [p.strip() for p in out.splitlines() if p.strip()]


def trusts_author(repo: Repo, record: RunRecord) -> bool:
    names = {record.user, email_of(record.user)}
    return any(fnmatch.fnmatchcase(n, p) for p in trusted_authors(repo) for n in names)


def require(repo: Repo, record: RunRecord, *, own: bool, trust: bool, doing: str) -> None:
    """Refuse to `doing` (e.g. "run its command") a run this user did not launch here (not
    `own`), unless the user consents (`--trust`) or trusts its author (`exp.trust`)."""
    if trust or own or trusts_author(repo, record):
        return
    who = printable(record.user)
    pattern = email_of(record.user).replace("'", "")  # it goes into a shell line of the hint
    raise GitexpError(
        f"run {record.id} was not launched by you here (its record says {who}); "
        f"gitexp would {doing}: {_quote(record.argv)}",
        hint=f"read it first (`git exp show {record.id}`), then pass --trust, or trust its "
             f"author: `git config --add exp.trust '{pattern}'`")


def _quote(argv: list[str]) -> str:
    return printable(shlex.join(argv), limit=200)


def email_of(user: str) -> str:
    """`Ada <ada@team.org>` -> `ada@team.org`; anything else as it is."""
    return user.rpartition("<")[2].rstrip(">") if user.endswith(">") else user
