"""Removing runs: `git exp rm RUN...` and `git exp gc [--older-than 30d] [--failed]
[--keep-best METRIC N]`.

A removed run loses its ref (`refs/experiments/<id>`), its local store data
(`.git/gitexp/store/runs/<id>`), any leftover local checkout and its index row (with
`rm --remote`, its ref and `exp/*` tag on the remote first). Its objects stay until git's own
gc prunes them. Live runs are never removed: cancel them first. `gc` also frees the work
directories (`.git/gitexp/work/<id>`) that dead agents left behind (`sweep_work`), and
`gc --checkouts` the warm checkouts no run holds (`clear_checkouts`).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from gitexp import faults
from gitexp.errors import GitexpError
from gitexp.git import Repo
from gitexp.git.config import Config
from gitexp.knobs import duration_seconds
from gitexp.model import ids
from gitexp.model.record import LIVE
from gitexp.service import index, sharing
from gitexp.service import runs as service
from gitexp.service.runs import Run
from gitexp.service.sharing import PushReport
from gitexp.service.where import pick, sort_keys
from gitexp.worker import workspace

NOT_SUCCEEDED = frozenset({"failed", "cancelled", "lost", "timeout"})


@dataclass(frozen=True)
class Policy:
    older_than: float | None = None  # seconds
    failed: bool = False  # failed, cancelled or lost
    keep_best: tuple[str, int] | None = None  # ("-acc", 5): keep the 5 best, remove the rest

    @classmethod
    def parse(cls, *, older_than: str | None, failed: bool,
              keep_best: tuple[str, int] | None) -> Policy:
        age = None
        if older_than is not None:
            try:
                age = duration_seconds(older_than)
            except ValueError:
                raise GitexpError(f"--older-than {older_than!r} is not a duration",
                                  hint="e.g. --older-than 30d (units: s, m, h, d)") from None
        if keep_best is not None:
            if len(sort_keys(keep_best[0])) != 1:  # validates the name: exactly one
                raise GitexpError(f"--keep-best needs one metric, not {keep_best[0]!r}",
                                  hint="e.g. --keep-best loss 5, or --keep-best -acc 5")
            if keep_best[1] < 0:
                raise GitexpError("--keep-best needs a count of 0 or more",
                                  hint="e.g. --keep-best loss 5, or --keep-best -acc 5")
        if age is None and not failed and keep_best is None:
            raise GitexpError("gc needs at least one of --older-than, --failed, --keep-best",
                              hint="e.g. `git exp gc --failed --older-than 30d --dry-run`")
        return cls(older_than=age, failed=failed, keep_best=keep_best)


def select(runs: list[Run], policy: Policy, now: float | None = None) -> list[Run]:
    """The ended runs that match every criterion given. `--keep-best M N` matches the runs
    that have metric M but are not among the N best (lowest; `-M`: highest)."""
    now = time.time() if now is None else now
    picked = [r for r in runs if r.status not in LIVE]
    if policy.older_than is not None:
        picked = [r for r in picked if now - r.record.launched_at > policy.older_than]
    if policy.failed:
        picked = [r for r in picked if r.status in NOT_SUCCEEDED]
    if policy.keep_best is not None:
        spec, count = policy.keep_best
        name, descending = sort_keys(spec)[0]
        ranked = [r for r in runs if r.status not in LIVE and _number(r, name) is not None]
        ranked.sort(key=lambda r: _number(r, name) or 0.0, reverse=descending)
        kept = {r.id for r in ranked[:count]}
        ranked_ids = {r.id for r in ranked}
        picked = [r for r in picked if r.id in ranked_ids and r.id not in kept]
    return picked


def plan(repo: Repo, config: Config, policy: Policy,
         now: float | None = None) -> tuple[list[Run], list[Run]]:
    """What `gc` removes, and the runs not written back, looked at first (those that ended
    are written back, and may go). Only the runs the index finds near the policy are read
    (`index.ended`), so the work grows with what goes, not with every run there is."""
    now = time.time() if now is None else now
    seen = service.unfinished_runs(repo, config)
    metric = sort_keys(policy.keep_best[0])[0][0] if policy.keep_best else None
    entries = index.ended(
        repo, before=None if policy.older_than is None else now - policy.older_than,
        statuses=NOT_SUCCEEDED if policy.failed else (), metric=metric)
    near = [Run(record=e.record, result=e.result, commit=e.commit, written_back=True,
                own=e.own) for e in entries]
    near.sort(key=lambda r: r.record.launched_at, reverse=True)  # as `ls` lists them
    return select(near, policy, now), seen


def _number(run: Run, name: str) -> float | None:
    value = (run.result.metrics if run.result else {}).get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def named(repo: Repo, config: Config, specs: list[str], sweep: str | None = None
          ) -> tuple[list[Run], list[str]]:
    """What `rm` removes: the runs of a sweep (narrowed to RUN... if given), or RUN... alone
    (with, by name, those whose record cannot be read: see `resolve`)."""
    if sweep is not None:
        return pick(repo, config, specs, sweep=sweep), []
    if not specs:
        raise GitexpError("name the runs to remove",
                          hint="git exp rm RUN..., or git exp rm --sweep ID (all its runs)")
    return resolve(repo, config, specs)


def resolve(repo: Repo, config: Config, specs: list[str]) -> tuple[list[Run], list[str]]:
    """The runs `specs` name, and the ids of named runs whose record cannot be read (so
    that `rm` can still remove those)."""
    found: dict[str, Run] = {}
    broken: list[str] = []
    known = set(index.run_ids(repo))
    named = {spec: ids.match(spec, known) for spec in specs}  # one listing for all of them
    entries = index.entries_of(repo, (ids.PREFIX + i for i in named.values() if i))
    for spec in specs:
        entry = entries.get(ids.PREFIX + (named[spec] or ""))
        if entry is not None:
            run = Run(record=entry.record, result=entry.result, commit=entry.commit,
                      written_back=entry.written_back, own=entry.own)
            found[run.id] = run if run.written_back else service.observe(repo, config, run)
            continue
        try:  # no readable run by that name: as `find` says it
            run = service.find(repo, spec, config)
        except GitexpError:
            # exact names only, from git's own list: `rm` must never reach outside the namespace
            if ids.PREFIX + spec in index.unreadable(repo):
                broken.append(spec)
                continue
            raise
        found[run.id] = run
    return list(found.values()), broken


@dataclass
class Removed:
    """What `rm`/`gc` did: the runs removed, and each run kept with the reason."""
    ids: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (run id, why)

    def __add__(self, other: Removed) -> Removed:
        return Removed(self.ids + other.ids, self.failed + other.failed)

    def check(self) -> None:
        """GitexpError naming every run not removed (after the removed ones were said)."""
        if not self.failed:
            return
        said = "; ".join(f"{run_id} ({why})" for run_id, why in self.failed)
        moved = any(why == MOVED for _, why in self.failed)
        raise GitexpError(
            f"could not remove {len(self.failed)} run(s): {said}",
            hint=("a run that changed meanwhile is kept whole: `git exp rm` it again"
                  if moved else "is the repository read-only, or locked by another git? "
                  "check .git's permissions and mounts, then try again"))


MOVED = "its ref changed meanwhile"


def remove_broken(repo: Repo, run_ids: list[str]) -> Removed:
    """Remove runs whose record cannot be read: their refs and local data."""
    done = Removed()
    for run_id in run_ids:
        ref = ids.PREFIX + run_id
        _remove_one(repo, run_id, ref, repo.rev_parse(ref), done)
    return done


def remove_everywhere(repo: Repo, runs: list[Run], broken: list[str], remote: str | None, *,
                      config: Config | None = None, say: Callable[[str], None] | None = None,
                      ) -> tuple[PushReport, Removed]:
    """`rm --remote`: delete the runs from `remote` (default: the branch's), then here all
    but those the remote refused to let go (so that a second try can name them again)."""
    _refuse_live(repo, runs, config, say)
    report = sharing.unpublish(repo, remote, [r.id for r in runs] +
                               [i for i in broken if ids.is_valid_id(i)])
    kept = {ref.removeprefix(ids.PREFIX) for ref, _ in report.rejected}
    return report, (remove(repo, [r for r in runs if r.id not in kept], config) +
                    remove_broken(repo, [i for i in broken if i not in kept]))


def remove(repo: Repo, runs: list[Run], config: Config | None = None,
           say: Callable[[str], None] | None = None) -> Removed:
    """Delete each run's ref (only if it still points where we saw it), then its local
    store and work directories and its index row. A run whose ref could not go (it moved,
    the repository is read-only) keeps everything, and is named in `Removed.failed`."""
    _refuse_live(repo, runs, config, say)
    done = Removed()
    if len(runs) > 1:  # one transaction for all (packed refs are rewritten once, not per run)
        faults.point("gc.remove")
        refs = [ids.ref_for(run.id) for run in runs]
        if repo.delete_refs({ref: run.commit for ref, run in zip(refs, runs, strict=True)}):
            for run in runs:
                done.ids.append(run.id)
                _drop_data(repo, run.id)
            index.forget(repo, refs)
            return done
    for run in runs:  # one by one, each with its own reason (a ref moved meanwhile, ...)
        _remove_one(repo, run.id, ids.ref_for(run.id), run.commit, done)
    return done


def _remove_one(repo: Repo, run_id: str, ref: str, old: str | None, done: Removed) -> None:
    # The ref first, with its expected old value: if it moved (a write-back, a fetch, a new
    # run under a reused name) nothing of the run is touched.
    faults.point("gc.remove")
    why = repo.delete_ref_or_why(ref, old) if old else "no such ref"
    if why is not None:
        moved = old is not None and repo.rev_parse(ref) not in (None, old)
        done.failed.append((run_id, MOVED if moved else why))
        return
    done.ids.append(run_id)
    _drop_data(repo, run_id)
    index.forget(repo, [ref])


def _drop_data(repo: Repo, run_id: str) -> None:
    if ids.is_valid_id(run_id):  # a bad name has no local data
        for where in ("store/runs", "work"):
            shutil.rmtree(repo.gitexp_dir / where / run_id, ignore_errors=True)


def _refuse_live(repo: Repo, runs: list[Run], config: Config | None,
                 say: Callable[[str], None] | None) -> None:
    """Live runs are never removed. A run that cannot be looked at for want of an optional
    module (gitexp.extras) is not known to be live: it may go, with a word (`say`) that its
    job, if any, was not stopped."""
    config = config or Config.load(repo)
    live, unseen = [], []
    for run in (r for r in runs if r.status in LIVE):
        lacking = service.lacking_extra(repo, config, run)
        if lacking is None:
            live.append(run.id)
        else:
            unseen.append(f"gitexp: {run.id}: status unknown ({lacking.message}); its job, "
                          "if still running, was not stopped")
    if live:
        raise GitexpError(f"run {live[0]} is still {_status(runs, live[0])}",
                          hint=f"`git exp cancel {live[0]}` first")
    if say is not None:
        for line in unseen:
            say(line)


def _status(runs: list[Run], run_id: str) -> str:
    return next(r.status for r in runs if r.id == run_id)


def clear_checkouts(repo: Repo) -> list[Path]:
    """Remove this machine's warm checkouts that no run holds (the local target's, and the
    container targets' kept on this host): the ones removed."""
    pools = sorted(repo.gitexp_dir.glob("warm*")) if repo.gitexp_dir.is_dir() else []
    return [slot for pool in pools if pool.is_dir() and not pool.is_symlink()
            for slot in workspace.Pool(pool, 0).clear()]


def sweep_work(repo: Repo, runs: list[Run]) -> list[str]:
    """Remove the local work directories of runs that ended or that no ref names any more,
    never one of a live run or one whose agent still runs here; the ids freed."""
    work = repo.gitexp_dir / "work"
    live = {r.id for r in runs if not r.written_back and r.status in LIVE}
    names = sorted(p.name for p in work.iterdir() if p.is_dir()) if work.is_dir() else []
    # `cache` holds the code fetched from remote stores, for every run
    return [name for name in names if name not in live and name != "cache"
            and service.drop_workdir(repo, name)]
