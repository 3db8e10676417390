"""The ref namespace of runs, and run ids."""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterable
from pathlib import PurePath

from gitexp.errors import GitexpError

PREFIX = "refs/experiments/"
TAG_PREFIX = "refs/tags/exp/"

# Ids are safe everywhere they travel: a ref component, a file name, a shell word, a DNS-ish
# Kubernetes/GCE label. Lower-case letters, digits and single dashes; at most 63 characters.
# Dash-separated runs of letters and digits, the length looked ahead: linear, and twice as
# fast as a lookahead a character (a cold `ls` checks 100,000 ref names). fullmatch: `$`
# would allow "\n".
_WORDS = r"[a-z0-9]+(?:-[a-z0-9]+)*"
_ID = re.compile(rf"(?=[a-z0-9-]{{1,63}}\Z){_WORDS}")
_NAME = re.compile(rf"(?=[a-z0-9-]{{1,40}}\Z){_WORDS}")
# A line `<run ref> <object id>` whose name is a run id: 100,000 of them found in one pass
# (0.05 s, against 0.25 s a line at a time)
_HEAD = re.compile(rf"^({re.escape(PREFIX)}(?=[a-z0-9-]{{1,63}} ){_WORDS}) ([0-9a-f]+)$", re.M)
_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no look-alikes (l/1, o/0, i)


def ref_for(run_id: str) -> str:
    check_id(run_id)
    return PREFIX + run_id


def id_from_ref(ref: str) -> str | None:
    if not ref.startswith(PREFIX):
        return None
    run_id = ref[len(PREFIX):]
    return run_id if _ID.fullmatch(run_id) else None


def run_heads(listing: str) -> tuple[dict[str, str], list[str]]:
    """Of lines `<ref> <object id>` under PREFIX (`git for-each-ref`): run ref -> object id,
    and the refs whose name is no run id."""
    heads = dict(_HEAD.findall(listing))
    lines = listing.splitlines()
    if len(heads) == len(lines):
        return heads, []
    return heads, [ref for ref, _, _ in (line.rpartition(" ") for line in lines)
                   if ref not in heads]


def is_valid_id(run_id: str) -> bool:
    return bool(_ID.fullmatch(run_id))


def is_valid_name(name: str) -> bool:
    return bool(_NAME.fullmatch(name))


def check_id(run_id: str) -> None:
    if not _ID.fullmatch(run_id):
        raise GitexpError(f"invalid run id {run_id!r}",
                          hint="run ids are lower-case letters, digits and dashes")


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise GitexpError(
            f"invalid run name {name!r}",
            hint="use 1-40 lower-case letters, digits and single dashes, e.g. `-n lr-sweep`",
        )
    return name


def match(spec: str, known: Iterable[str], what: str = "run") -> str | None:
    """The one id of `known` that `spec` names: itself, or the only id it is a prefix or
    suffix of (`k7qx` for `train-1127-1342-k7qx`). None when nothing matches; a GitexpError
    naming the candidates when several do. Runs and sweeps are matched by this same rule."""
    if not spec:
        return None
    known = known if isinstance(known, set | frozenset) else set(known)  # many specs: one set
    if spec in known:
        return spec
    found = sorted(k for k in known if k.startswith(spec) or k.endswith(spec))
    if len(found) > 1:
        more = f" and {len(found) - 4} more" if len(found) > 4 else ""
        raise GitexpError(f"{spec!r} matches {len(found)} {what}s: {', '.join(found[:4])}{more}",
                          hint="give more of the id")
    return found[0] if found else None


_INTERPRETERS = re.compile(r"(python|pypy|bash|sh|zsh|node|rscript|julia|uv|poetry)[0-9.]*")


def default_name(argv: list[str]) -> str:
    """`python train.py --lr 3` -> `train`, `python -m pkg.train` -> `train`, `./x.sh` -> `x`."""
    pick = argv[0] if argv else "run"
    if argv and _INTERPRETERS.fullmatch(PurePath(argv[0]).name.lower()):
        rest = argv[1:]
        if rest[:1] == ["-m"] and len(rest) > 1:
            pick = rest[1].rsplit(".", 1)[-1]
        elif rest and not rest[0].startswith("-"):
            pick = rest[0]
    name = PurePath(pick).name
    stem = name.rsplit(".", 1)[0] if "." in name[1:] else name
    slug = re.sub(r"[^a-z0-9]+", "-", stem.lower()).strip("-")[:24].strip("-")
    return slug or "run"


def new_id(name: str, now: float | None = None) -> str:
    """`train-1127-1342-k7qx`: readable, sortable within a day, and never reused in practice
    (the caller also creates the ref with create-only semantics, so a clash is retried)."""
    stamp = time.strftime("%m%d-%H%M", time.localtime(now))
    suffix = "".join(secrets.choice(_ALPHABET) for _ in range(4))
    return f"{name}-{stamp}-{suffix}"


def slot_name(sweep: str, index: int) -> str:
    """Slot `index` of `sweep` as an id-like name (a container, a VM, a Kubernetes Job):
    unique per slot, at most 63 characters."""
    tail = f"-s{index}"
    return sweep[:63 - len(tail)].rstrip("-") + tail
