"""Removing runs: `git exp rm RUN...` and `git exp gc [--older-than 30d] [--failed]
[--keep-best METRIC N]`.

A removed run loses its ref (`refs/experiments/<id>`), its local store data
(`.git/gitexp/store/runs/<id>`), any leftover local checkout and its index row (with
`rm --remote`, its ref and `exp/*` tag on the remote first). Its objects stay until git's own
gc prunes them. Live runs are never removed: cancel them first.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass

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

NOT_SUCCEEDED = frozenset({"failed", "cancelled", "lost"})


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
    for spec in specs:
        try:
            run = service.find(repo, spec, config)
        except GitexpError:
            # exact names only, from git's own list: `rm` must never reach outside the namespace
            if ids.PREFIX + spec in index.unreadable(repo):
                broken.append(spec)
                continue
            raise
        found[run.id] = run
    return list(found.values()), broken


def remove_broken(repo: Repo, run_ids: list[str]) -> list[str]:
    """Remove runs whose record cannot be read: their refs and local data."""
    removed = [i for i in run_ids if repo.delete_ref(ids.PREFIX + i)]
    for run_id in filter(ids.is_valid_id, removed):  # a bad name has no local data
        for where in ("store/runs", "work"):
            shutil.rmtree(repo.gitexp_dir / where / run_id, ignore_errors=True)
    index.forget(repo, [ids.PREFIX + i for i in removed])
    return removed


def remove_everywhere(repo: Repo, runs: list[Run], broken: list[str], remote: str | None, *,
                      config: Config | None = None, say: Callable[[str], None] | None = None,
                      ) -> tuple[PushReport, list[str]]:
    """`rm --remote`: delete the runs from `remote` (default: the branch's), then here all
    but those the remote refused to let go (so that a second try can name them again)."""
    _refuse_live(repo, runs, config, say)
    report = sharing.unpublish(repo, remote, [r.id for r in runs] +
                               [i for i in broken if ids.is_valid_id(i)])
    kept = {ref.removeprefix(ids.PREFIX) for ref, _ in report.rejected}
    return report, (remove(repo, [r for r in runs if r.id not in kept], config) +
                    remove_broken(repo, [i for i in broken if i not in kept]))


def remove(repo: Repo, runs: list[Run], config: Config | None = None,
           say: Callable[[str], None] | None = None) -> list[str]:
    """Delete each run's ref (only if it still points where we saw it), its local store and
    work directories and its index row. Returns the ids removed."""
    _refuse_live(repo, runs, config, say)
    removed = []
    for run in runs:
        if repo.delete_ref(ids.ref_for(run.id), run.commit):
            removed.append(run.id)
        for where in ("store/runs", "work"):
            shutil.rmtree(repo.gitexp_dir / where / run.id, ignore_errors=True)
    index.forget(repo, [ids.ref_for(i) for i in removed])
    return removed


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
