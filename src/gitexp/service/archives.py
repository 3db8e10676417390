"""Archives: how a shared remote holds 100,000 finished runs in a few hundred refs.

A remote's oldest finished runs are folded into archive refs, `refs/exp-archive/<first id>`:
a commit whose parents are exactly its runs' commits (so fetch, push and gc keep every run
reachable) and whose tree is one blob, `runs`, listing `<id> <commit>` a line, sorted by id.
Its date is a second before its oldest run's launch: git walks commits newest first, and an
archive newer than its 1,000 parents made every fetch that has it walk them all (docs/
architecture.md, "Team scale"). Archives are made the same way by every clone (the same runs
give the same object) and only ever created or, by `rm --remote`, replaced.

Locally nothing changes: one ref per run, as ever. An archive is read (`read`) at the one
boundary where it comes in, and every run it lists is then judged like a run ref of its own
(`sharing.transitions`); the archives a clone has taken are remembered in
`.git/gitexp/archives.json`, so a fetch with nothing new reads none.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass

from gitexp.errors import GitexpError
from gitexp.git import Commit, Object, Repo
from gitexp.model import ids

PREFIX = "refs/exp-archive/"
MAX_RUNS = 1000  # runs one archive lists: its commit has this many parents at most
FOLD_AT = 600  # exp.foldAt: a remote holding more finished runs than this one ref each is
# folded, all but the newest sixth of that (100), so its advertisement stays ~50 KB at any size
MAX_LISTING = MAX_RUNS * 200  # bytes: an id and a sha256 hex id are well under 200
_AUTHOR = b"gitexp <gitexp@localhost>"
KNOWN = "archives.json"  # under .git/gitexp: archive ref -> the commit this clone took


@dataclass(frozen=True)
class Archive:
    ref: str  # refs/exp-archive/<first id>
    oid: str  # its commit
    runs: dict[str, str]  # run ref -> commit, in the listing's (id) order
    dated: int  # its commit's time: a second before its oldest run's launch


def is_archive(ref: str) -> bool:
    return ref.startswith(PREFIX)


def make(repo: Repo, runs: dict[str, str], oldest: float) -> Archive:
    """The archive of `runs` (run ref -> commit), written to the object store (not to a ref).
    `oldest`: the earliest launch among them; the archive is dated a second before (an
    archive made again without some run keeps its date: `oldest` its date + 1)."""
    if not 0 < len(runs) <= MAX_RUNS:
        raise ValueError(f"an archive lists 1 to {MAX_RUNS} runs, not {len(runs)}")
    listed = sorted((ids.id_from_ref(ref) or "", commit) for ref, commit in runs.items())
    blob = repo.hash_object("".join(f"{i} {c}\n" for i, c in listed).encode())
    tree = repo.mktree([f"100644 blob {blob}\truns"])
    when = max(0, math.floor(oldest) - 1) if math.isfinite(oldest) else 0
    stamp = _AUTHOR + f" {when} +0000".encode()
    body = b"".join([f"tree {tree}\n".encode(), *(f"parent {c}\n".encode() for _, c in listed),
                     b"author ", stamp, b"\ncommitter ", stamp,
                     f"\n\ngitexp archive of {len(listed)} runs\n".encode()])
    oid = repo.git("hash-object", "-w", "-t", "commit", "--stdin", input=body).strip()
    return Archive(PREFIX + listed[0][0], oid, {ids.ref_for(i): c for i, c in listed}, when)


def read(repo: Repo, offered: dict[str, str]) -> tuple[list[Archive], dict[str, str]]:
    """The archives `offered` (ref -> commit), each checked whole, in one `cat-file`: those
    exactly as `make` writes them (but for date and message), and why each other one is
    refused (one line, the reason alone). Their runs are not judged here: that is
    `sharing.transitions`', as for any run ref."""
    specs = [s for oid in offered.values() for s in (oid, f"{oid}^{{tree}}", f"{oid}:runs")]
    objects = repo.read_objects(specs, max_size=MAX_LISTING + (MAX_RUNS + 8) * 80)
    good, bad = [], {}
    for n, (ref, oid) in enumerate(offered.items()):
        try:
            good.append(_checked(repo, ref, oid, objects[3 * n:3 * n + 3]))
        except GitexpError as exc:
            bad[ref] = exc.message
    return good, bad


def taken_again(repo: Repo, offered: dict[str, str]) -> list[Archive]:
    """Archives this clone took before (`known`, the very commits), read back without being
    checked again: an object id names its content, and this one was checked when taken (a
    push at 100,000 runs spent 1.6 s re-checking 100 listings). One that no longer reads is
    left out."""
    specs = [s for oid in offered.values() for s in (oid, f"{oid}:runs")]
    objects = repo.read_objects(specs, max_size=MAX_LISTING + (MAX_RUNS + 8) * 80)
    out = []
    for n, (ref, oid) in enumerate(offered.items()):
        commit, listing = objects[2 * n:2 * n + 2]
        if commit.data is None or listing.data is None:
            continue
        try:
            runs = dict(line.split(" ", 1) for line in listing.data.decode("ascii").splitlines())
        except ValueError:  # not what was taken (archives.json edited by hand): left out
            continue
        out.append(Archive(ref, oid, {ids.PREFIX + i: c for i, c in runs.items()},  # checked
                           _dated(commit.data)))
    return out


def _checked(repo: Repo, ref: str, oid: str, objects: list[Object]) -> Archive:
    commit_obj, tree_obj, listing_obj = objects  # the commit, its tree, its `runs`
    first = ref[len(PREFIX):] if is_archive(ref) else ""
    if not ids.is_valid_id(first):
        raise GitexpError("its name is no run id")
    if commit_obj.type != "commit" or commit_obj.data is None:
        raise GitexpError("it is no commit" if commit_obj.found else "its commit is missing")
    if tree_obj.type != "tree" or tree_obj.data is None:
        raise GitexpError("its tree cannot be read")
    # Byte for byte: a parsed tree would let a second `runs` entry hide behind the first
    if listing_obj.type != "blob" or listing_obj.data is None or \
            tree_obj.data != b"100644 runs\0" + bytes.fromhex(listing_obj.oid):
        raise GitexpError("its tree is not one `runs` listing")
    runs = _listing(listing_obj.data, repo.oid_hex)
    if next(iter(runs)) != ids.ref_for(first):
        raise GitexpError("its name is not its first run's id")
    if Commit.parse(commit_obj.data).parents != list(runs.values()):
        raise GitexpError("its parents are not the runs it lists")
    return Archive(ref, oid, runs, _dated(commit_obj.data))


def _dated(data: bytes) -> int:
    """The committer time of a commit object (0 when it says none)."""
    head = data.partition(b"\n\n")[0]
    at = head.find(b"\ncommitter ")  # after the 1,000 parent lines: found, not split (2 ms)
    if at < 0:
        return 0
    line = head[at + 1:].partition(b"\n")[0]
    word = line.rsplit(b" ", 2)[-2] if line.count(b" ") >= 2 else b""
    return int(word) if word.isdigit() else 0


def _listing(data: bytes, hex_len: int) -> dict[str, str]:
    if len(data) > MAX_LISTING or not data.endswith(b"\n"):
        raise GitexpError("its listing is not one")
    try:
        lines = data.decode("ascii").split("\n")[:-1]
    except UnicodeDecodeError:
        raise GitexpError("its listing is not ASCII") from None
    if not 0 < len(lines) <= MAX_RUNS:
        raise GitexpError(f"it lists {len(lines)} runs (1 to {MAX_RUNS})")
    runs: dict[str, str] = {}
    last = ""
    for n, line in enumerate(lines, 1):
        run_id, _, commit = line.partition(" ")
        if not ids.is_valid_id(run_id) or len(commit) != hex_len or \
                commit.strip("0123456789abcdef"):
            raise GitexpError(f"line {n} of its listing is no `<run id> <commit>`")
        if run_id <= last:
            raise GitexpError(f"line {n} of its listing is out of order or repeated")
        runs[ids.ref_for(run_id)], last = commit, run_id
    return runs


def plan(finished: list[tuple[str, str, float]],
         fold_at: int = FOLD_AT) -> list[list[tuple[str, str, float]]]:
    """The runs to fold, given the remote's finished runs held one ref each as (ref, commit,
    launched_at): none up to `fold_at` (0: never); else all but the newest sixth of
    `fold_at`, oldest first, in archives of equal size up to MAX_RUNS each."""
    if not fold_at or len(finished) <= fold_at:
        return []
    by_age = sorted(finished, key=lambda r: (r[2], r[0]))[:len(finished) - fold_at // 6]
    count = -(-len(by_age) // MAX_RUNS)
    size = -(-len(by_age) // count)
    return [by_age[at:at + size] for at in range(0, len(by_age), size)]


def known(repo: Repo) -> dict[str, str]:
    """The archives this clone has taken: ref -> commit (a lost or damaged file: none, so the
    next fetch reads them again)."""
    try:
        data = json.loads((repo.gitexp_dir / KNOWN).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if isinstance(k, str) and is_archive(k)
            and isinstance(v, str) and repo.is_oid(v)}


def remember(repo: Repo, taken: dict[str, str]) -> None:
    """Add `taken` (ref -> commit) to the archives this clone has taken."""
    if not taken:
        return
    path = repo.gitexp_dir / KNOWN
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{KNOWN}.{os.getpid()}")  # a concurrent fetch writes its own
    tmp.write_text(json.dumps({**known(repo), **taken}, sort_keys=True))
    tmp.replace(path)
