"""Sharing runs through ordinary git remotes: `refs/experiments/*` and `refs/tags/exp/*`.

Only finished (written-back) runs travel: a live run's ref still points at its snapshot, and a
clone that fetched it could never see it end (its store is on the launcher's side).

Pushes never force. Fetches bring the commits of the refs that differ, by object id, and
judge them before any ref is written; then each run ref is created, fast-forwarded (snapshot
-> results commit), or left alone when the local one is ahead or different; nothing local is
ever rewound or overwritten.

A shared run is immutable: `transitions` is the one rule, for fetch and push (and so for the
pre-push hook) alike. A new run must decode and have the shape gitexp makes; an existing
run moves only snapshot -> results commit -> verdict commit, its code, command, data and
result never changing. Whatever else a remote offers is refused, the local ref untouched.

A remote's oldest finished runs are folded into archive refs (service/archives.py) by the
push that finds too many one ref each; a fetch takes an archive's runs as if each were a ref
of its own, all of them or, when one is refused, none.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import subprocess
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace

from gitexp import __version__
from gitexp.errors import GitexpError
from gitexp.git import Commit, Object, Repo, fetching, pushing, refs_stamp, run_git, tree_of
from gitexp.git.config import Config
from gitexp.git.writeback import RESULTS_DIR
from gitexp.model import ids
from gitexp.model.record import DecodedRun, Result, decode_run
from gitexp.service import archives, cores, index
from gitexp.service.tagging import NOTES_REF, merge_from

Progress = Callable[[int, int], None]  # (done, total)
PUSH_GUARD = "GITEXP_PUSHING_RUNS"  # == hooks.run.PUSH_GUARD: our own pre-push does nothing
NAMESPACES = (ids.PREFIX, ids.TAG_PREFIX)


@dataclass(frozen=True)
class PushReport:
    remote: str
    pushed: list[str] = field(default_factory=list)  # refs the remote did not have as such
    up_to_date: int = 0
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (ref, why)
    live: list[str] = field(default_factory=list)  # unfinished runs, not pushed
    folded: int = 0  # runs folded into archives on the remote by this push
    archived: list[str] = field(default_factory=list)  # the archive refs it created
    unfolded: int = 0  # runs due to fold that the pre-push hook left to `git exp push`


@dataclass(frozen=True)
class FetchReport:
    remote: str
    new: list[str] = field(default_factory=list)  # refs created here
    updated: list[str] = field(default_factory=list)  # fast-forwarded (a run that finished)
    kept: list[tuple[str, str]] = field(default_factory=list)  # (ref, why the local one stays)
    refused: list[tuple[str, str]] = field(default_factory=list)  # (ref, one line: why)
    notes: str = ""  # the remote's tags and notes: "merged", or why they were not


def default_remote(repo: Repo, pushing: bool) -> str:
    branch = repo.branch()
    keys = ([f"branch.{branch}.pushRemote"] if branch and pushing else [])
    keys += ["remote.pushDefault"] if pushing else []
    keys += [f"branch.{branch}.remote"] if branch else []
    for key in keys:
        value = repo.git("config", "--get", key, check=False).strip()
        if value and value != ".":
            return value
    remotes = repo.git("remote").split()
    if "origin" in remotes or len(remotes) == 1:
        return "origin" if "origin" in remotes else remotes[0]
    raise GitexpError("which remote? this repository has " +
                      (f"{len(remotes)} remotes" if remotes else "no remote"),
                      hint=f"name one: `git exp {'push' if pushing else 'fetch'} REMOTE` "
                           "(`git remote -v` lists them)")


def is_remote(repo: Repo, word: str) -> bool:
    """A configured remote, or something git would take as a URL or path."""
    return word in repo.git("remote").split() or any(c in word for c in "/:") or word == "."


def push(repo: Repo, remote: str | None = None, run_ids: Sequence[str] = (), *,
         own_only: bool = False, progress: Progress | None = None) -> PushReport:
    """Push finished runs (all, or `run_ids`; with `own_only`, those this user launched here)
    and their `exp/*` tags; never forces, and never moves a ref of the remote's along a
    transition gitexp does not make (`transitions`). `progress(done, total)`: runs folded,
    when a fold takes more than one push (a remote in the old layout)."""
    remote = _check_remote(remote or default_remote(repo, pushing=True))
    advertised = _remote_refs(repo, remote)
    fold_at = Config.load(repo).count("exp.foldAt", archives.FOLD_AT) or 0
    key = None if run_ids else _settled_key(repo, remote, advertised, own_only, fold_at)
    if key is not None and (settled := _settled(repo, key)) is not None:
        return PushReport(remote, up_to_date=settled[0], live=settled[1])  # in sync, as left
    theirs, offered = _split(advertised)
    # Every archive offered taken before: the runs they list at the commits held here are in
    # sync, counted by SQL; the few others are compared below (0.9 s a push at 100,000 runs
    # when each was)
    kept = {} if run_ids else _kept(repo, offered)
    # own_only, the pre-push hook: what came from elsewhere is not passed on unasked
    heads, finished, live, archived = _run_refs(repo, own=own_only, archived=kept.values())
    every, foldable = heads, set(finished)  # a fold takes any run both sides hold alike
    tags = _refs(repo, ids.TAG_PREFIX, full=True)
    if own_only:
        tags = _own_tags(repo, tags, heads, bool(archived))
    if run_ids:
        wanted = [ids.ref_for(i) for i in run_ids]
        unfinished = [r for r in wanted if r in live]
        if unfinished:
            raise GitexpError(f"run {unfinished[0][len(ids.PREFIX):]} has not finished yet",
                              hint="push it once `git exp ls` shows it ended")
        wanted += [t for i in run_ids if (t := ids.TAG_PREFIX + i) in tags]
    else:
        wanted = finished + list(tags)
    notes = {} if own_only else _refs(repo, NOTES_REF, full=True)  # tags and notes: by hand
    wanted += list(notes)
    ours = {**heads, **tags, **notes}
    if own_only and 0 < fold_at < len(wanted) + sum(r.startswith(ids.PREFIX) for r in theirs):
        every, ended, _, _ = _run_refs(repo, archived=kept.values())  # a fold may be due:
        foldable = set(ended)                                          # every run counts
    # The archives' listings (0.2 s at 100,000 runs, but for those kept) only where they can
    # matter: for a run the remote holds otherwise than one ref alike, or for a fold.
    alike = sum(1 for r in foldable if r in theirs and theirs[r] == every.get(r))
    needed = kept or any(r in ours and theirs.get(r) != ours[r] for r in wanted) or \
        0 < fold_at < alike
    listed = _listed_for(repo, remote, offered, kept, ours=ours, theirs=theirs,
                         wanted=wanted) if needed else {}
    there = {**listed, **theirs}  # the remote's runs, whether one ref each or archived
    rejected = _refused_pushes(repo, {r: (there[r], ours[r]) for r in wanted
                                      if r in there and r in ours and there[r] != ours[r]
                                      and r != NOTES_REF})  # notes: git's fast-forward rule
    todo = [r for r in wanted if r in ours and there.get(r) != ours[r] and r not in rejected]
    lives = [r[len(ids.PREFIX):] for r in live]
    done = len(wanted) - len(todo) - len(rejected) + archived
    sent = PushReport(remote, [], done, sorted(rejected.items()), lives)
    if todo:  # named: a glob would take others along, and archived runs back one ref each
        named = bool(run_ids or live or rejected or own_only or offered)
        sent = _send(repo, sent, {r: ours[r] for r in todo}, named)
    singles = {r: oid for r, oid in theirs.items() if r.startswith(ids.PREFIX)}
    singles.update({r: ours[r] for r in sent.pushed if r.startswith(ids.PREFIX) and r in ours})
    held = {r: oid for r, oid in singles.items()  # each archived run stays where it is
            if r in foldable and every.get(r) == oid and r not in listed}
    twice = {r: oid for r, oid in singles.items() if listed.get(r) == oid}
    there_now = {*advertised, *sent.pushed} - set(twice)  # the remote's refs, as we leave them
    if twice:  # an older gitexp's hook pushed archived runs again: their archive has them
        _push_leased(repo, sent.remote, {r: (oid, None) for r, oid in twice.items()},
                     there_now, atomic=False)  # a failure leaves them for the next push
    report = _fold(repo, sent, held, fold_at, there_now, whole=not own_only, progress=progress)
    if key is not None and not (report.pushed or report.rejected or report.folded or twice):
        _settle(repo, key, report)
    return report


SETTLED = "settled.json"  # under .git/gitexp: (remote, own) -> the state a push found in sync


def _listed_for(repo: Repo, remote: str, offered: dict[str, str], kept: dict[str, str], *,
                ours: dict[str, str], theirs: dict[str, str],
                wanted: list[str]) -> dict[str, str]:
    """What the remote's archives list (`_listed`) of the runs a push compares, and of those
    it holds one ref each (an archived one pushed again): by the kept listings (`_kept`)
    when there are, else every archive's."""
    if kept:
        return _listed_kept(repo, kept, [*ours, *theirs])
    listed, partial = _listed(repo, remote, offered)
    there = {**listed, **theirs}
    if partial and any(r in ours and there.get(r) != ours[r] for r in wanted):
        # The archives this clone lacks may hold those runs (folded by another clone): else
        # they would be sent again, one ref each, and deleted again by that clone's push.
        listed, _ = _listed(repo, remote, offered, fetching=True)
    return listed


def _kept(repo: Repo, offered: dict[str, str]) -> dict[str, str]:
    """The archives `offered` (ref -> commit) when this clone took every one of them, those
    whose listings the index keeps (read from git the first time); else none, and the
    archives are judged as ever (`_archives`)."""
    taken = archives.known(repo)
    if not offered or any(taken.get(ref) != oid for ref, oid in offered.items()):
        return {}
    have = index.kept_listings(repo, offered.values())
    missing = {ref: oid for ref, oid in offered.items() if oid not in have}
    if missing:  # one that no longer reads is left out, as `taken_again` leaves it
        index.keep_listings(repo, {a.oid: a.runs for a in archives.taken_again(repo, missing)},
                            taken.values())
        have = index.kept_listings(repo, offered.values())  # what the file holds
    return {ref: oid for ref, oid in offered.items() if oid in have}


def _listed_kept(repo: Repo, kept: dict[str, str], refs: Iterable[str]) -> dict[str, str]:
    """`_listed` of the runs `refs` by the kept listings of the archives `kept`: a run
    listed twice goes by the later archive, as there."""
    order = {oid: n for n, oid in enumerate(kept.values())}
    found = index.listed_in(repo, list(kept.values()),
                            [r for r in refs if r.startswith(ids.PREFIX)])
    if found is None:  # the file went unusable: read them (every one)
        return _listed_from(archives.taken_again(repo, kept))
    return {ref: commit for _, ref, commit in sorted(found, key=lambda f: order[f[0]])}


def _own_tags(repo: Repo, tags: dict[str, str], heads: dict[str, str],
              archived: bool) -> dict[str, str]:
    """The `exp/*` tags of the runs this user launched here: `heads`, and with `archived`
    those left out of it (in sync through an archive)."""
    runs = {tag: ids.PREFIX + tag[len(ids.TAG_PREFIX):] for tag in tags}
    mine = set(heads)
    if archived:
        mine |= set(index.heads_of(repo, [r for r in runs.values() if r not in mine],
                                   own=True) or ())
    return {tag: oid for tag, oid in tags.items() if runs[tag] in mine}


def _settled_key(repo: Repo, remote: str, advertised: dict[str, str], own: bool,
                 fold_at: int) -> str | None:
    """What a push of every run depends on, as one digest: the remote's refs as advertised,
    where this clone's run, tag and notes refs are stored (`refs_stamp`: any ref written
    moves it), the archives it took, and the settings. Equal to the digest a push that found
    nothing to do recorded: that push would again do nothing (0.6 s at 100,000 runs of
    comparing them, one by one). None when a stamp cannot tell (a ref written this second,
    reftable)."""
    stamps = [refs_stamp(repo, prefix) for prefix in (ids.PREFIX, ids.TAG_PREFIX, "refs/notes/")]
    if None in stamps:
        return None
    try:
        taken = (repo.gitexp_dir / archives.KNOWN).read_bytes()
    except OSError:
        taken = b""
    digest = hashlib.sha256(json.dumps([__version__, remote, own, fold_at, stamps]).encode())
    digest.update(hashlib.sha256(taken).digest())
    digest.update("".join(f"{oid} {ref}\n" for ref, oid in sorted(advertised.items())).encode())
    return digest.hexdigest()


def _settled(repo: Repo, key: str) -> tuple[int, list[str]] | None:
    """What the push that recorded `key` reported (runs up to date, live runs), or None."""
    try:
        got = json.loads((repo.gitexp_dir / SETTLED).read_text())
        done, live = got[key]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(done, int) or not isinstance(live, list) or \
            not all(isinstance(i, str) and ids.is_valid_id(i) for i in live):
        return None
    return done, live


def _settle(repo: Repo, key: str, report: PushReport) -> None:
    """Record `key` as in sync (the last few only: one per remote and kind of push, mostly)."""
    path = repo.gitexp_dir / SETTLED
    try:
        kept = json.loads(path.read_text())
        kept = dict(list(kept.items())[-7:]) if isinstance(kept, dict) else {}
    except (OSError, ValueError):
        kept = {}
    kept[key] = [report.up_to_date, report.live]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{SETTLED}.{os.getpid()}")  # a concurrent push writes its own
    tmp.write_text(json.dumps(kept))
    tmp.replace(path)


def _send(repo: Repo, sent: PushReport, todo: dict[str, str], named: bool) -> PushReport:
    """Push `todo` (ref -> commit), named or as globs, and `sent` with what the remote
    said."""
    remote, lives = sent.remote, sent.live
    specs = [f"{r}:{r}" for r in todo] if named else \
        [f"{ns}*:{ns}*" for ns in NAMESPACES] + [f"{r}:{r}" for r in todo if r == NOTES_REF]
    many = named and len(todo) > NAMED_AT_ONCE
    with pushing.staged(repo, {r: c for r, c in todo.items() if r != NOTES_REF} if many
                        else {}) as space:
        if many:
            specs = pushing.globs(space, NAMESPACES) + [f"{r}:{r}" for r in todo
                                                        if r == NOTES_REF]
        proc = _git(repo, "push", "--porcelain", "--no-verify", remote, *specs)
    report = _parse_push(remote, proc.stdout.decode(errors="replace"), live=lives)
    if proc.returncode != 0 and not report.rejected:
        raise _failed(repo, "push to", remote, proc)
    refused = [  # the remote's notes moved on: merge, then push
        (ref, "the remote has tags or notes this clone lacks (`git exp fetch` merges them)")
        if ref == NOTES_REF else (ref, why) for ref, why in report.rejected]
    there = report.up_to_date + (sent.up_to_date if named else 0)  # a glob counts them all
    return PushReport(remote, report.pushed, there, sent.rejected + refused, lives)


def _split(refs: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """A remote's refs as (runs, tags and notes; its archives)."""
    return ({r: oid for r, oid in refs.items() if not archives.is_archive(r)},
            {r: oid for r, oid in refs.items() if archives.is_archive(r)})


def _listed(repo: Repo, remote: str, offered: dict[str, str], *,
            fetching: bool = False) -> tuple[dict[str, str], bool]:
    """The runs the remote's archives list (run ref -> commit), from those this clone may go
    by (`_archives`), and whether some archive was left out, not held here."""
    found, partial = _archives(repo, remote, offered, fetching=fetching)
    return _listed_from(found), partial


def _listed_from(found: Iterable[archives.Archive]) -> dict[str, str]:
    return {run: commit for a in found for run, commit in a.runs.items()}


FOLDED_AT_ONCE = 5  # archives per atomic push (and per pre-push hook: a steady state's fold)
# More named refs than this go staged: git matches each named refspec against every local
# ref, so 10,000 of them at 100,000 runs took minutes (and a command line of MBs), and 100 of
# them 13 s; from a clone of 2,000 runs, 1,000 named took 2.5 s, staged 0.6 s; 100 named
# 0.38 s, staged 0.25 s (two `update-ref`s are all staging adds).
NAMED_AT_ONCE = 20


def _fold(repo: Repo, sent: PushReport, held: dict[str, str], fold_at: int,
          listed: set[str], *, whole: bool = True, progress: Progress | None = None,
          ) -> PushReport:
    """Fold the remote's oldest finished runs into archives once it holds more than
    `fold_at` (exp.foldAt) one ref each (`held`: those this clone holds alike, ref -> commit;
    `listed`: the remote's refs): each archive created only where none is, each run's ref
    deleted only where it is still that commit, FOLDED_AT_ONCE archives an atomic push (a
    remote changed meanwhile: no fold, the next push tries again). Not `whole` (the pre-push
    hook): a backlog of more than one such push (a remote in the old layout) is left to
    `git exp push`, said in `unfolded`."""
    if not fold_at or len(held) <= fold_at:
        return sent
    times = index.launch_times(repo)
    groups = archives.plan([(r, oid, times[r]) for r, oid in held.items() if r in times],
                           fold_at)
    if not whole and len(groups) > FOLDED_AT_ONCE:
        return replace(sent, unfolded=sum(len(g) for g in groups))
    made = [archives.make(repo, {r: oid for r, oid, _ in g}, min(t for *_, t in g))
            for g in groups]
    folded, created, rejected = 0, [], []
    total = sum(len(a.runs) for a in made)
    if len(made) <= FOLDED_AT_ONCE:
        progress = None  # one push: over in a moment
    for at in range(0, len(made), FOLDED_AT_ONCE):
        if progress is not None:
            progress(folded, total)
        chunk = made[at:at + FOLDED_AT_ONCE]
        changes: dict[str, tuple[str | None, str | None]] = {}
        for archive in chunk:
            changes[archive.ref] = (None, archive.oid)  # created, never replaced
            changes.update({r: (oid, None) for r, oid in archive.runs.items()})
        proc = _push_leased(repo, sent.remote, changes, listed, atomic=True)
        if proc.returncode != 0:  # e.g. a run moved meanwhile: its lease fails them all
            said = _parse_push(sent.remote, proc.stdout.decode(errors="replace"), live=[])
            why = next((w for _, w in said.rejected if "atomic push failed" not in w),
                       _why(proc))
            rejected.append((chunk[0].ref, f"not folded ({why}); the next push tries again"))
            break
        folded += sum(len(a.runs) for a in chunk)
        created += [a.ref for a in chunk]
        listed = (listed | {a.ref for a in chunk}) - {r for a in chunk for r in a.runs}
    _remember(repo, [a for a in made if a.ref in created])
    return replace(sent, folded=folded, archived=created, rejected=sent.rejected + rejected)


def unpublish(repo: Repo, remote: str | None, run_ids: Sequence[str]) -> PushReport:
    """Delete runs (their refs and `exp/*` tags) from a remote: `pushed` lists what went,
    `up_to_date` counts what it did not have. Each deletion holds only while the remote's ref
    is still what it showed a moment before (a lease: `pushing.push_leased`): a run someone
    moves meanwhile stays. An archived run leaves by its archive being replaced with one that
    lists the others (in one atomic push with the rest). UNPUBLISHED_AT_ONCE runs a push."""
    remote = _check_remote(remote or default_remote(repo, pushing=True))
    named = sorted(set(run_ids))  # ids sort by launch, as archives group runs
    parts = [_unpublish(repo, remote, named[at:at + UNPUBLISHED_AT_ONCE])
             for at in range(0, len(named), UNPUBLISHED_AT_ONCE)]
    return PushReport(remote, [r for p in parts for r in p.pushed],
                      sum(p.up_to_date for p in parts), [r for p in parts for r in p.rejected])


UNPUBLISHED_AT_ONCE = 2000  # runs a push deletes: what one atomic push stakes and stages


def _unpublish(repo: Repo, remote: str, run_ids: Sequence[str]) -> PushReport:
    theirs, offered = _split(_remote_refs(repo, remote))
    wanted = [ref for i in run_ids for ref in (ids.ref_for(i), ids.TAG_PREFIX + i)]
    present = {ref: theirs[ref] for ref in wanted if ref in theirs}
    gone = {ids.ref_for(i) for i in run_ids}
    holding = [a for a in _archives(repo, remote, offered, fetching=True)[0]
               if gone & a.runs.keys()]
    archived = sorted({r for a in holding for r in a.runs} & gone)
    absent = len([i for i in run_ids if ids.ref_for(i) not in present
                  and ids.ref_for(i) not in archived])
    if not present and not holding:
        return PushReport(remote, [], absent)
    changes: dict[str, tuple[str | None, str | None]] = {
        ref: (oid, None) for ref, oid in present.items()}
    made = []
    for a in holding:
        rest = {r: c for r, c in a.runs.items() if r not in gone}
        changes[a.ref] = (a.oid, None)
        if not rest:
            continue
        b = archives.make(repo, rest, a.dated + 1)  # the same date: a second before the oldest
        made.append(b)
        changes[b.ref] = (a.oid if b.ref == a.ref else None, b.oid)
    proc = _push_leased(repo, remote, changes, {*theirs, *offered}, atomic=bool(holding))
    report = _parse_push(remote, proc.stdout.decode(errors="replace"), live=[])
    if proc.returncode != 0 and not report.rejected:
        raise _failed(repo, "push to", remote, proc)
    # a ref the remote has gained since its listing, under one of the push's globs, is
    # refused by its lease: no business of this report
    pushed = [r for r in report.pushed if r in changes and not archives.is_archive(r)]
    rejected = [(r, why) for r, why in report.rejected
                if r in changes and not archives.is_archive(r)]
    if proc.returncode == 0:
        pushed += archived
        _remember(repo, made)
    elif holding:  # atomic: no archive replaced, so every archived run is still there
        why = next((w for r, w in report.rejected if archives.is_archive(r)), "refused")
        rejected += [(r, f"its archive was not replaced ({why})") for r in archived]
    return PushReport(remote, pushed, absent, rejected)


def _archives(repo: Repo, remote: str, offered: dict[str, str], *,
              fetching: bool = False) -> tuple[list[archives.Archive], bool]:
    """The remote's archives `offered` that this clone may go by, and whether some were left
    out because this clone lacks them (fetched by id instead when `fetching`). Those it took
    before are read back as they were; every other one is checked whole and every run it
    lists judged against this clone's runs as a fetch would (nothing written). A forged
    archive lists nothing: it can neither hide a run from a push nor get one deleted."""
    if not offered:
        return [], False
    taken = archives.known(repo)
    again = {ref: oid for ref, oid in offered.items() if taken.get(ref) == oid}
    others = {ref: oid for ref, oid in offered.items() if ref not in again}
    have = repo.read_objects(list(others.values()), max_size=0) if others else []
    lacking = {obj.spec for obj in have if not obj.found}
    if lacking and fetching:
        _fetch_ids(repo, remote, sorted(lacking), verb="push to")
    elif lacking:
        others = {ref: oid for ref, oid in others.items() if oid not in lacking}
    trusted = archives.taken_again(repo, again)
    if others:
        good, _ = archives.read(repo, others)
        local = _refs(repo, ids.PREFIX, full=True)
        for a in good:
            refused = transitions(repo, {r: (local.get(r), c) for r, c in a.runs.items()
                                         if local.get(r) != c})
            if all(why in (BEHIND, UNREADABLE) for why in refused.values()):
                trusted.append(a)
        chosen, torn = _chosen(repo, trusted)
        trusted = [replace(a, runs={r: c for r, c in a.runs.items()
                                    if r not in torn and chosen.get(r, c) == c})
                   for a in trusted]
    return trusted, bool(lacking) and not fetching


def _remote_refs(repo: Repo, remote: str, verb: str = "push to") -> dict[str, str]:
    """The remote's run refs, `exp/*` tags and archives (unpeeled), from one `ls-remote`."""
    proc = _git(repo, "ls-remote", "--refs", remote, *(f"{ns}*" for ns in NAMESPACES),
                f"{archives.PREFIX}*", NOTES_REF)
    if proc.returncode != 0:
        raise _failed(repo, verb, remote, proc)  # its first step
    pairs = (line.split("\t", 1) for line in proc.stdout.decode(errors="replace").splitlines())
    refs = {ref: oid for oid, ref in pairs
            if ref.startswith((*NAMESPACES, archives.PREFIX)) or ref == NOTES_REF}
    if any(len(oid) != repo.oid_hex for oid in refs.values()):
        raise _other_format(repo, remote)  # ls-remote shows the remote's own ids
    return refs


def _refused_pushes(repo: Repo, moves: dict[str, tuple[str, str]]) -> dict[str, str]:
    """ref -> why, for refs the remote holds otherwise: judged by the same rule as a fetch
    (old = the remote's, new = ours) when we have the remote's commit; git itself refuses a
    push over one we lack (it cannot be a fast-forward)."""
    held = repo.read_objects([old for old, _ in moves.values()], max_size=0) if moves else []
    known = {ref: move for (ref, move), obj in zip(moves.items(), held, strict=True) if obj.found}
    refused = transitions(repo, known)
    said = {BEHIND: "the remote's run is further along (`git exp fetch` brings it)",
            UNREADABLE: "the remote's run cannot be read"}
    return {ref: said.get(why, why) for ref, why in refused.items()}


def fetch(repo: Repo, remote: str | None = None, *,
          progress: Progress | None = None) -> FetchReport:
    """Fetch runs and `exp/*` tags; new ones appear, finished ones fast-forward.

    The remote's refs are listed first (one `ls-remote`) and only the commits of those that
    differ from ours are fetched, by id, and judged before any ref is written: a fetch with
    nothing new writes nothing and reads no run (staging every ref in a namespace of its own
    and deleting it again cost seconds per thousand runs). `progress(done, total)`: runs
    judged, when there are many (a first fetch of a shared remote)."""
    remote = _check_remote(remote or default_remote(repo, pushing=False))
    theirs, offered = _split(_remote_refs(repo, remote, "fetch from"))
    taken = archives.known(repo)
    new = {ref: oid for ref, oid in offered.items() if taken.get(ref) != oid}
    ours = {**_refs(repo, ids.PREFIX, full=True), **_refs(repo, ids.TAG_PREFIX, full=True)}
    wanted = [ref for ref, oid in theirs.items() if ref != NOTES_REF and ours.get(ref) != oid]
    if NOTES_REF in theirs and not _has_notes(repo, theirs[NOTES_REF]):
        wanted.append(NOTES_REF)
    if not wanted and not new:
        return FetchReport(remote)
    # New archives list runs mostly held here one ref each: then every ref is a have
    extended = [ours[ref] for ref in wanted if ref in ours]
    if NOTES_REF in wanted and (mine := repo.rev_parse(NOTES_REF)):
        extended.append(mine)
    _fetch_ids(repo, remote, [theirs[ref] for ref in wanted] + list(new.values()),
               haves=None if new else extended)
    incoming = {ref: theirs[ref] for ref in wanted}
    notes = incoming.pop(NOTES_REF, None)
    good, bad = archives.read(repo, new)
    report = _merge(repo, remote, incoming, ours, good, progress=progress)
    if len(report.new) >= PACK_AFTER:  # loose, 100,000 refs took every later fetch 1 s to list
        repo.git("pack-refs", "--all")
    report.refused.extend((ref, f"refused {_what(ref)} from {remote}: {why}")
                          for ref, why in bad.items())
    return replace(report, notes=_merge_notes(repo, notes)) if notes else report


def _fetch_ids(repo: Repo, remote: str, oids: list[str], verb: str = "fetch from",
               haves: list[str] | None = None) -> None:
    # By object id: git sends no ref advertisement again, writes no ref, and brings exactly
    # what `ls-remote` showed (a ref that moved since makes git refuse: the next fetch gets it).
    # With `haves`, at the cost of what comes, not of every run here (git.fetching).
    proc = fetching.fetch_ids(repo, remote, oids, haves=haves, env={PUSH_GUARD: "1"})
    if proc.returncode != 0:
        raise _failed(repo, verb, remote, proc)


def _has_notes(repo: Repo, oid: str) -> bool:
    """Whether our tags and notes already hold the remote's (merged before, or the same)."""
    mine = repo.rev_parse(NOTES_REF)
    return mine is not None and (mine == oid or repo.ok("merge-base", "--is-ancestor", oid, mine))


def _merge_notes(repo: Repo, incoming: str) -> str:
    """The remote's tags and notes, merged line by line into ours (`tagging.merge_from`)."""
    obj = repo.read_objects([incoming], max_size=MAX_OBJECT)[0]
    if obj.type != "commit":
        return f"refused: {NOTES_REF} there is not a commit"
    try:
        return "merged" if merge_from(repo, incoming) else ""
    except GitexpError as exc:
        return f"refused: {exc.message}"


JUDGED_AT_ONCE = 2000  # runs read and judged together: a first fetch's memory stays bounded
PARALLEL = 4 * JUDGED_AT_ONCE  # from this many runs to judge, every core judges a share
PACK_AFTER = 1000  # refs a fetch made, from which it packs them (as `git gc` would)


Move = tuple[str, tuple[str | None, str]]  # (ref, (old or None, new))
Judge = Callable[[list[dict[str, tuple[str | None, str]]], list[int]], Iterator[dict[str, str]]]


def _merge(repo: Repo, remote: str, incoming: dict[str, str], local: dict[str, str],
           offered: Sequence[archives.Archive] = (), *,
           progress: Progress | None = None) -> FetchReport:
    """Judge the moves and make the accepted ones: runs first, a batch at a time (each one
    `update-ref --stdin` transaction, every ref guarded by its old value), then the runs of
    the archives `offered` (checked already: `_unfolded`), then the tags, judged against the
    runs as they then are. Many runs are judged on every core (`_judging`)."""
    report = FetchReport(remote)
    local = dict(local)
    moves = sorted((ref, (local.get(ref), new)) for ref, new in incoming.items()
                   if local.get(ref) != new)
    runs = [m for m in moves if m[0].startswith(ids.PREFIX)]
    batches = [dict(runs[at:at + JUDGED_AT_ONCE]) for at in range(0, len(runs), JUDGED_AT_ONCE)]
    total = len(runs) + sum(len(a.runs) for a in offered)
    with cores.workers(len(batches) + len(offered), worth=total >= PARALLEL) as spread:
        judge = _judging(repo, spread, progress if total >= PARALLEL else None, total)
        for batch, refused in zip(batches, judge(batches, [len(b) for b in batches]),
                                  strict=True):
            _make(repo, report, list(batch.items()), local, refused)
        _unfolded(repo, report, offered, local, judge)
    _make(repo, report, [m for m in moves if not m[0].startswith(ids.PREFIX)], local)
    return report


def _judging(repo: Repo, spread: cores.Mapper | None, progress: Progress | None,
             total: int) -> Judge:
    """`transitions` of batches of moves, in order, by `spread` (else here), counting the
    runs judged (a batch's weight) on `progress`: started now, after any fork."""
    done = 0
    if progress is not None:
        progress(0, total)

    def judge(batches: list[dict[str, tuple[str | None, str]]],
              weights: list[int]) -> Iterator[dict[str, str]]:
        nonlocal done
        found = (spread or map)(functools.partial(transitions, repo), batches)
        for weight, refused in zip(weights, found, strict=True):
            done += weight
            if progress is not None:
                progress(done, total)
            yield refused
    return judge


def _make(repo: Repo, report: FetchReport, batch: list[Move], local: dict[str, str],
          refused: dict[str, str] | None = None) -> None:
    """One batch's moves judged (unless `refused` says already) and the accepted ones made,
    in one transaction; `local` follows."""
    refused = transitions(repo, dict(batch)) if refused is None else refused
    remote, commands = report.remote, []
    for ref, (old, new) in batch:
        why = refused.get(ref)
        if why == BEHIND:
            report.kept.append((ref, "the local run is further along"))
        elif why == UNREADABLE:
            report.kept.append((ref, f"differs from {remote}'s; the local one stays"))
        elif why:
            report.refused.append((ref, f"refused {_what(ref)} from {remote}: {why}"))
        else:
            commands.append(f"create {ref} {new}\n" if old is None else
                            f"update {ref} {new} {old}\n")
            (report.new if old is None else report.updated).append(ref)
            local[ref] = new
    if commands:
        repo.git("update-ref", "--stdin", input="".join(commands).encode())


def _unfolded(repo: Repo, report: FetchReport, offered: Sequence[archives.Archive],
              local: dict[str, str], judge: Judge) -> None:
    """The runs of the archives `offered`, each archive all or none: every run it lists is
    judged as a ref of its own would be, and one refused refuses the archive in one line.
    A run two accepted archives list at commits no transition joins (one is forged, and
    which cannot be told here) comes from neither, in one line; otherwise the furthest. An
    archive is remembered once all its runs are taken: a fetch that finds it again reads
    nothing."""
    accepted: list[tuple[archives.Archive, dict[str, str]]] = []
    every = [{ref: (local.get(ref), new) for ref, new in archive.runs.items()
              if local.get(ref) != new} for archive in offered]
    for archive, refused in zip(offered, judge(every, [len(a.runs) for a in offered]),
                                strict=True):
        bad = sorted((ref, why) for ref, why in refused.items() if why not in (BEHIND, UNREADABLE))
        if bad:
            report.refused.append((archive.ref, f"refused {_what(archive.ref)} from "
                                   f"{report.remote}: {_what(bad[0][0])}: {bad[0][1]}"))
        else:
            accepted.append((archive, refused))
    chosen, torn = _chosen(repo, [a for a, _ in accepted])
    report.refused.extend((ref, f"refused {_what(ref)} from {report.remote}: archives list "
                                "commits of it that no move joins") for ref in sorted(torn))
    taken = []
    try:
        for archive, refused in accepted:
            batch = sorted((ref, (local.get(ref), new)) for ref, new in archive.runs.items()
                           if local.get(ref) != new and chosen.get(ref, new) == new
                           and ref not in torn and refused.get(ref) != BEHIND)  # older: no news
            _make(repo, report, batch, local, refused)
            if not torn & archive.runs.keys():
                taken.append(archive)
    finally:  # those whose runs were made, even if a later one's failed
        _remember(repo, taken)


def _remember(repo: Repo, taken: Sequence[archives.Archive]) -> None:
    """Remember the archives taken (or made) here, and keep their listings in the index: a
    push counts the runs they list by SQL (`_kept`), not reading them again."""
    if taken:
        archives.remember(repo, {a.ref: a.oid for a in taken})
        index.keep_listings(repo, {a.oid: a.runs for a in taken}, archives.known(repo).values())


def _chosen(repo: Repo, listed: Sequence[archives.Archive]) -> tuple[dict[str, str], set[str]]:
    """For each run that archives in `listed` list at two commits: the one further along when
    a transition joins them (a results commit and its snapshot), else none (`torn`)."""
    seen: dict[str, set[str]] = {}
    for archive in listed:
        for ref, commit in archive.runs.items():
            seen.setdefault(ref, set()).add(commit)
    twice = {ref: sorted(commits) for ref, commits in seen.items() if len(commits) > 1}
    pairs = {ref: (c[0], c[1]) for ref, c in twice.items() if len(c) == 2}
    said = transitions(repo, pairs) if pairs else {}
    chosen: dict[str, str] = {}
    for ref, (a, b) in pairs.items():
        if ref not in said:
            chosen[ref] = b
        elif said[ref] == BEHIND:
            chosen[ref] = a
    return chosen, set(twice) - chosen.keys()


# -- the one rule: which moves of a shared ref gitexp makes ------------------------------------
BEHIND = "the other side is behind"  # the move would rewind: nothing to refuse, nothing to take
UNREADABLE = "the run it would replace cannot be read"  # nothing to compare the move with
MAX_OBJECT = 8 << 20  # no commit or tree gitexp makes is near this; a forged giant is skipped
# What a write-back writes: an annotation adds files next to them, never one of them.
WRITTEN_BACK = frozenset({b"record.json", b"result.json", b"log.txt", b"metrics.jsonl",
                          b"plots", b"packages.txt", b"dvc"})
_RESULTS = RESULTS_DIR.encode()


@dataclass(frozen=True)
class _Seen:
    """One commit of a run as git holds it: parsed, and decoded under the run's ref."""
    oid: str
    commit: Commit | None = None  # None: missing, not a commit, or too large
    run: DecodedRun | None = None
    why: str = "its commit is missing"  # why `run` is None


def transition(repo: Repo, ref: str, old: str | None, new: str) -> str | None:
    """Why `ref` may not move from `old` (None: a new ref) to `new`; None when it may."""
    return transitions(repo, {ref: (old, new)}).get(ref)


def transitions(repo: Repo, moves: Mapping[str, tuple[str | None, str]]) -> dict[str, str]:
    """The refused `moves` (ref -> (old or None, new)), each with its one-line reason (BEHIND
    when `new` is where `old` came from). Reads every commit and tree in two batches."""
    refused = {ref: "a tag never moves" for ref, (old, _) in moves.items()
               if not ref.startswith(ids.PREFIX) and old is not None}
    runs = {ref: move for ref, move in moves.items() if ref.startswith(ids.PREFIX)}
    seen = _read_commits(repo, [(ref, oid) for ref, (old, new) in runs.items()
                                for oid in (old, new) if oid])
    chains = {ref: seen[ref, new] for ref, (_, new) in runs.items()}
    shapes = _shapes(repo, chains)
    for ref, (old, _) in runs.items():
        why = _move(seen[ref, old] if old else None, chains[ref], shapes.get(ref))
        if why:
            refused[ref] = why
    tags = {ref: new for ref, (old, new) in moves.items() if ref not in refused
            and ref.startswith(ids.TAG_PREFIX)}
    if not tags:
        return refused
    heads = {**_refs(repo, ids.PREFIX, full=True),
             **{ref: new for ref, (_, new) in runs.items() if ref not in refused}}
    refused.update(_misplaced_tags(repo, tags, heads))
    return refused


def _misplaced_tags(repo: Repo, tags: dict[str, str], heads: dict[str, str]) -> dict[str, str]:
    """A tag `exp/<id>` marks the commit run <id> came from (hooks/run.py puts it there): its
    commit's tree is the run's snapshot tree, or it is refused. So no one can hang a run's
    name on another commit, nor tag a run this side does not have."""
    runs = {tag: ids.PREFIX + tag[len(ids.TAG_PREFIX):] for tag in tags}
    seen = _read_commits(repo, [(r, heads[r]) for r in runs.values() if r in heads])
    refused, specs = {}, []
    for tag, new in tags.items():
        run = seen.get((runs[tag], heads.get(runs[tag], ""))) or _Seen("")
        if run.run is None:
            refused[tag] = "it names no run this clone has"
        else:
            specs += [f"{new}^{{commit}}^{{tree}}", f"{run.run.record.snapshot}^{{tree}}"]
    found = repo.read_objects(specs, max_size=0) if specs else []
    pending = [t for t in tags if t not in refused]
    for tag, tagged, snapshot in zip(pending, found[::2], found[1::2], strict=True):
        if not tagged.found or tagged.oid != snapshot.oid:
            refused[tag] = "it is not on the commit its run came from"
    return refused


def _move(old: _Seen | None, new: _Seen, shape: str | None) -> str | None:  # noqa: PLR0911 - one return per rule
    """The reason against one run's move, given the shape `_shapes` found wrong (or None)."""
    if old is not None and old.run is not None and old.run.result is not None and \
            old.commit is not None and new.oid in old.commit.parents:
        return BEHIND  # results -> its snapshot, verdict -> its results commit
    if new.run is None or new.commit is None:
        return new.why
    if old is None:
        return shape
    if old.run is None or old.commit is None:
        return UNREADABLE
    a, b = old.run, new.run
    if a.record.snapshot != b.record.snapshot:
        return "its code changed"
    if not _same_record(a, b):
        return _changed(a.record.to_dict(), b.record.to_dict())
    if a.result is not None and b.result is not None:
        if not _same_result(a.result, b.result):
            return "its result changed"
        if a.result.check is not None and a.result.check != b.result.check:
            return "its verdict changed"
    if shape:
        return shape
    if a.result is None:  # a live snapshot: any results commit (or verdict) of it
        return None
    if b.result is None or new.commit.parents[1:] != [old.oid]:
        return "its results changed"  # only a verdict commit on this very results commit
    return None


def _changed(a: dict[str, object], b: dict[str, object]) -> str:
    keys = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
    named = {"argv": "command", "data": "data", "cwd": "directory"}
    return f"its {named.get(keys[0], 'record (' + keys[0] + ')')} changed"


def _same_record(a: DecodedRun, b: DecodedRun) -> bool:
    """The same record but for the snapshot (each commit's own way of naming it): the record
    objects as the two messages have them (no snapshot there), every key, known or not.
    Not `to_dict()`: its deep copy per run was a third of a first fetch's time."""
    return _text(a.fields) == _text(b.fields)


def _same_result(a: Result, b: Result) -> bool:
    """The same result but for the verdict (`check`), the one thing a results commit gains."""
    return _text(a.to_dict()) == _text(replace(b, check=a.check).to_dict())


def _text(data: dict[str, object]) -> str:
    # As JSON, not `==`: a NaN loss (which JSON carries) is never equal to itself.
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def _shapes(repo: Repo, chains: dict[str, _Seen]) -> dict[str, str]:
    """Why each results or verdict commit in `chains` is not one gitexp makes (none: it is).
    A results commit R: first and only parent the snapshot S, R's tree = S's tree plus
    `.gitexp-results/` (S has none), R's record = S's. A verdict V: parents [S, R], R such a
    results commit, the same record, the result plus a `check` R had not, V's tree = R's plus
    files added under `.gitexp-results/`."""
    specs: list[tuple[str, str]] = []
    for ref, c in chains.items():
        if c.run is None or c.run.result is None or c.commit is None:
            continue  # unreadable (refused already) or a snapshot: any code is a run's code
        specs += [(ref, p) for p in c.commit.parents[:2]]
        specs += [(ref, f"{c.oid}^{{tree}}"), (ref, f"{c.oid}:{RESULTS_DIR}")]
        specs += [(ref, f"{p}^{{tree}}") for p in c.commit.parents[:2]]
        specs += [(ref, f"{p}:{RESULTS_DIR}") for p in c.commit.parents[1:2]]
    objects = dict(zip(specs, repo.read_objects([s for _, s in specs], max_size=MAX_OBJECT),
                       strict=True))
    parents = {(ref, p): _decode(ref, p, objects[ref, p]) for ref, c in chains.items()
               if c.commit is not None for p in c.commit.parents[:2] if (ref, p) in objects}
    out = {}
    for ref, c in chains.items():
        if c.run is not None and c.run.result is not None and c.commit is not None:
            why = _shape(ref, c, parents, objects)
            if why:
                out[ref] = why
    return out


def _shape(ref: str, c: _Seen, parents: dict[tuple[str, str], _Seen],  # noqa: PLR0911 - a rule each
           objects: dict[tuple[str, str], Object]) -> str | None:
    assert c.commit is not None and c.run is not None and c.run.result is not None
    if len(c.commit.parents) not in (1, 2):
        return "it is no results commit gitexp makes"
    snap, *rest = (parents[ref, p] for p in c.commit.parents)
    if snap.run is None or snap.run.result is not None:
        return "its first parent is no snapshot of it"
    if not _same_record(snap.run, c.run):
        return "its record is not its snapshot's"
    tree = _tree(objects, ref, f"{c.oid}^{{tree}}")
    base = _tree(objects, ref, f"{snap.oid}^{{tree}}")
    if tree is None or base is None:
        return "its trees cannot be read"
    if _RESULTS in base or tree.get(_RESULTS, (b"",))[0] != b"40000" or \
            {k: v for k, v in tree.items() if k != _RESULTS} != base:
        return "its code changed"
    if not rest:
        return None
    results = rest[0]  # a verdict commit: [snapshot, results commit]
    if results.run is None or results.commit is None or results.commit.parents != [snap.oid] \
            or results.run.result is None or results.run.result.check is not None:
        return "it is no verdict gitexp makes: its second parent is no results commit of it"
    if not _same_record(results.run, c.run) or c.run.result.check is None \
            or not _same_result(results.run.result, c.run.result):
        return "its result changed"
    was = _tree(objects, ref, f"{results.oid}^{{tree}}")
    inner, was_inner = (_tree(objects, ref, f"{x.oid}:{RESULTS_DIR}") for x in (c, results))
    if was is None or inner is None or was_inner is None or \
            {k: v for k, v in was.items() if k != _RESULTS} != base:
        return "its second parent is no results commit of it"
    if any(inner.get(k) != v for k, v in was_inner.items()):
        return "its results changed"
    if any(k in WRITTEN_BACK for k in inner.keys() - was_inner.keys()):
        return "its results changed"  # e.g. a metrics.jsonl the run never wrote
    return None


def _tree(objects: dict[tuple[str, str], Object], ref: str,
          spec: str) -> dict[bytes, tuple[bytes, bytes]] | None:
    obj = objects.get((ref, spec))
    if obj is None or obj.type != "tree" or obj.data is None:
        return None
    try:
        return tree_of(obj.data, len(obj.oid) // 2)
    except ValueError:  # a malformed tree: git does not check what it fetches by default
        return None


def _read_commits(repo: Repo, wanted: list[tuple[str, str]]) -> dict[tuple[str, str], _Seen]:
    """(ref, oid) -> that commit, decoded under `ref`; one `cat-file --batch` for all."""
    wanted = list(dict.fromkeys(wanted))
    found = repo.read_objects([oid for _, oid in wanted], max_size=MAX_OBJECT)
    return {(ref, oid): _decode(ref, oid, obj) for (ref, oid), obj in zip(wanted, found,
                                                                         strict=True)}


def _decode(ref: str, oid: str, obj: Object) -> _Seen:
    if obj.type != "commit" or obj.data is None:
        return _Seen(oid, why="it is no commit" if obj.found else "its commit is missing")
    commit = Commit.parse(obj.data)
    try:
        run = decode_run(commit.message, ref=ref, commit=obj.oid, parents=commit.parents)
    except GitexpError as exc:
        return _Seen(oid, commit, why=f"its record cannot be read ({exc.message})")
    return _Seen(oid, commit, run)


def _what(ref: str) -> str:
    if archives.is_archive(ref):
        return f"archive {ref[len(archives.PREFIX):]}"
    if ref.startswith(ids.PREFIX):
        return f"run {ref[len(ids.PREFIX):]}"
    return f"tag {ref[len('refs/tags/'):]}"


def _run_refs(repo: Repo, *, own: bool = False, archived: Iterable[str] = (),
              ) -> tuple[dict[str, str], list[str], list[str], int]:
    """Every run ref (`own`: of the runs this user launched here) -> its commit, the
    (finished, live) run refs, and how many more the kept listings of the archives
    `archived` list alike (left out): from the index (no commit read; a ref that holds no
    readable run is none of them), else from one listing, where a results commit is titled
    `gitexp run <id>: <status>`."""
    known = index.finished_refs(repo, own=own, archived=list(archived))
    if known is None and own:  # no index: whose runs they are is read from their seals
        mine = index.own_refs(repo)
        every, ended, running, _ = _run_refs(repo)
        return ({r: c for r, c in every.items() if r in mine},
                [r for r in ended if r in mine], [r for r in running if r in mine], 0)
    if known is not None:
        found, alike = known
        return ({ref: commit for ref, (commit, _) in found.items()},
                [ref for ref, (_, done) in found.items() if done],
                [ref for ref, (_, done) in found.items() if not done], alike)
    heads: dict[str, str] = {}
    finished: list[str] = []
    live: list[str] = []
    for line in repo.for_each_ref(ids.PREFIX, "%(objectname) %(refname) %(contents:subject)"):
        oid, _, rest = line.partition(" ")
        ref, _, subject = rest.partition(" ")
        heads[ref] = oid
        (finished if ": " in subject else live).append(ref)
    return heads, finished, live, 0


def _refs(repo: Repo, prefix: str, full: bool = False) -> dict[str, str]:
    out = repo.git("for-each-ref", "--format=%(objectname) %(refname)", prefix)
    pairs = (line.split(" ", 1) for line in out.splitlines())
    return {ref if full else ref[len(prefix):]: oid for oid, ref in pairs}


def _parse_push(remote: str, out: str, live: list[str]) -> PushReport:
    report = PushReport(remote, live=live)
    up_to_date = 0
    for line in out.splitlines():
        parts = line.split("\t")
        if len(parts) < 3 or len(parts[0]) != 1:
            continue
        flag, ref, summary = parts[0], parts[1].split(":")[-1], parts[2]
        if flag == "=":
            up_to_date += 1
        elif flag == "!":
            report.rejected.append((ref, summary.strip("[] ").replace("] (", ": ").rstrip(")")))
        else:
            report.pushed.append(ref)
    return PushReport(remote, report.pushed, up_to_date, report.rejected, live)


def _push_leased(repo: Repo, remote: str, changes: dict[str, tuple[str | None, str | None]],
                 listed: Iterable[str], *, atomic: bool) -> subprocess.CompletedProcess[bytes]:
    return pushing.push_leased(repo, remote, changes, listed, atomic=atomic,
                               env={PUSH_GUARD: "1"})


def _git(repo: Repo, *args: str, input: bytes | None = None,
         ) -> subprocess.CompletedProcess[bytes]:
    # The guard keeps a pre-push hook (ours, `--no-verify` aside) from pushing runs again.
    return run_git(["--git-dir", str(repo.git_dir), *args], cwd=repo.root,
                   env={PUSH_GUARD: "1"}, input=input, check=False)


# What git says when the two ends name objects differently (sha1 and sha256); the last is an
# empty sha1 receiving end's answer to a sha256 push (git 2.39).
_FORMAT_CLASH = (b"mismatched algorithms", b"does not support this repository's hash algorithm",
                 b"unexpected capabilities^{}")


def _failed(repo: Repo, verb: str, remote: str,
            proc: subprocess.CompletedProcess[bytes]) -> GitexpError:
    if any(said in proc.stderr for said in _FORMAT_CLASH):
        return _other_format(repo, remote)
    return GitexpError(f"git {verb} {remote} failed: {_why(proc)}",
                       hint="check the remote with `git remote -v` and `git ls-remote REMOTE`")


def _other_format(repo: Repo, remote: str) -> GitexpError:
    return GitexpError(
        f"{remote} is not a {repo.object_format} repository like this one: runs cannot move "
        "between object formats",
        hint="share runs through a remote of the same format "
             "(`git rev-parse --show-object-format` names a repository's)")


def _why(proc: subprocess.CompletedProcess[bytes]) -> str:
    """git's own reason: its first `fatal:`/`error:` line (the last line is often only the
    tail of a wrapped sentence, like "and the repository exists.")."""
    lines = proc.stderr.decode(errors="replace").strip().splitlines()
    said = [ln for ln in lines if ln.startswith(("fatal: ", "error: "))]
    return (said or lines or [f"exit {proc.returncode}"])[0]


def _check_remote(remote: str) -> str:
    if remote.startswith("-"):
        raise GitexpError(f"invalid remote {remote!r}", hint="`git remote -v` lists remotes")
    return remote
