"""Launching runs: snapshot, record, start the agent. The first half of the service layer
(runs.py reads, observes and cancels what this module starts).

No printing, no CLI: functions take explicit objects and return data.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from gitexp import faults, secrets
from gitexp.backends import Backend, Launch, StartsAhead, backend_for, max_checkpoint
from gitexp.data import dev as data
from gitexp.data import plan
from gitexp.errors import GitexpError
from gitexp.git import NO_REF, Repo, lfs, snapshot
from gitexp.git.config import Config, Target
from gitexp.git.writeback import write_back
from gitexp.model import ids
from gitexp.model.record import Result, RunRecord, encode_message
from gitexp.model.runstate import RunState
from gitexp.service import environment, preflight, trust
from gitexp.service.rerun import refuse_if_succeeded
from gitexp.service.runs import Run
from gitexp.stores import Store, open_store, run_key, transport

Prepare = Callable[[RunRecord, Target, Store], None]  # more for the agent: mail settings


@dataclass(frozen=True)
class LaunchRequest:
    argv: list[str]
    cwd: Path  # where the user stood; the job runs in the same subdirectory
    name: str | None = None
    target: str | None = None
    outs: tuple[str, ...] = ()
    params: dict[str, Any] | None = None
    rerun_of: str | None = None
    sweep: str | None = None
    commit_data: bool = False  # record changed DVC-tracked data (dvc commit) instead of refusing
    progress: Callable[[str, int, int], None] | None = None  # (what, done, total): data push
    say: Callable[[str], None] | None = None  # one-line notices for the user (e.g. committed)
    force: bool = False  # launch even if the same run already succeeded
    prepare: Prepare | None = None  # the caller's additions to the store (mail settings)
    keep: bool = False  # keep the VM or container after the run (the target's `keep`)
    allow_large: bool = False  # over the snapshot's budget (preflight): take it all anyway


def start(repo: Repo, config: Config, req: LaunchRequest) -> Run:
    """Snapshot, record and start one run."""
    recorded = record_runs(repo, config, [req], ahead=True)
    return submit(repo, config, recorded.records[0], target=recorded.target,
                  backend=recorded.backend, store=recorded.store, prepare=req.prepare,
                  progress=req.progress)


@dataclass(frozen=True)
class Recorded:
    target: Target
    backend: Backend
    store: Store
    records: list[RunRecord]


def record_runs(repo: Repo, config: Config, reqs: list[LaunchRequest], *,
                ahead: bool = False) -> Recorded:
    """Snapshot the work tree once and record one run per request (a sweep: one per point),
    all on the same target. Nothing is started yet - but with `ahead`, one run's agent on a
    target that can (`StartsAhead`): its start-up overlaps the snapshot."""
    if not reqs or not all(req.argv and req.argv[0] for req in reqs):
        raise GitexpError("no command given", hint="git exp run -- python train.py --lr 3e-4")
    target = config.target(reqs[0].target)
    target.check()
    if reqs[0].say:  # a misspelt setting would otherwise leave its default in silence
        for warning in [*config.unknown(), *target.unknown()]:
            reqs[0].say(warning)
    if reqs[0].keep:  # for this launch only
        target = replace(target, settings={**target.settings, "keep": "true"})
    subdirs = [_subdir(repo, req.cwd) for req in reqs]
    for req in reqs:
        _check_command(req.argv, req.cwd)
    names = [ids.check_name(req.name) if req.name is not None else ids.default_name(req.argv)
             for req in reqs]
    # First what the target needs (a missing extra, gitexp.extras): nothing is recorded yet.
    backend = backend_for(target, repo)
    store = open_store(backend.store_url())
    first_id, drop = None, _nothing  # the id the agent started ahead was given
    if ahead and len(reqs) == 1 and isinstance(backend, StartsAhead):
        first_id, drop = backend.start_ahead(name=names[0], heartbeat=config.heartbeat(),
                                             max_checkpoint=max_checkpoint(config))
    try:
        records = _record(repo, config, reqs, target, store, subdirs, names, first_id)
    except BaseException:
        drop()  # the agent started ahead ends, having done nothing
        raise
    return Recorded(target=target, backend=backend, store=store, records=records)


def _record(repo: Repo, config: Config, reqs: list[LaunchRequest], target: Target,  # noqa: PLR0917
            store: Store, subdirs: list[str], names: list[str],
            first_id: str | None) -> list[RunRecord]:
    """`record_runs` from the snapshot on (`first_id`: the id to try first)."""
    ahead = preflight.taken(repo, allow_large=reqs[0].allow_large)  # cli/_ahead's, if any
    if ahead is not None:
        listed, snap = ahead
    else:
        listed = preflight.check(repo, config, allow_large=reqs[0].allow_large)
        # `--commit-data` may have changed tracked files (dvc.lock, *.dvc): then list again.
        committed = data.check_worktree(repo, commit=reqs[0].commit_data, say=reqs[0].say)
        snap = snapshot.take(repo, None if committed else listed)
    if snap.lfs:  # contents, never pointers, or refuse
        lfs.check_launch(repo, snap.tree, target.backend)
    if snap.secret_files and reqs[0].say:  # tracked, so shipped: say so, and launch anyway
        reqs[0].say(_secret_files_warning(snap.secret_files))
    if len(reqs) == 1 and not reqs[0].force:  # the same code, command and data: say so
        refuse_if_succeeded(repo, snap.tree, reqs[0].argv, subdirs[0])
    data_version, data_plan = data.prepare_launch(
        repo, config, target, snap.tree, outs=any(r.outs for r in reqs),
        commands=[r.argv for r in reqs], progress=reqs[0].progress)
    env = environment.capture(repo, reqs[0].argv)
    branch, user = repo.branch(), _user(config)
    records = []
    for req, subdir, name in zip(reqs, subdirs, names, strict=True):
        record = RunRecord(
            id="", argv=list(req.argv), cwd=subdir, base=snap.base, branch=branch, user=user,
            launched_at=time.time(), target=target.name, backend=target.backend,
            store=store.url, env=env, params=req.params or {}, name=req.name,
            rerun_of=req.rerun_of, sweep=req.sweep, outs=list(req.outs), data=data_version,
            launched_from=socket.gethostname())
        records.append(_commit(repo, store, record, snap.tree, name, data_plan=data_plan,
                               first_id=first_id))
    return records


def _nothing() -> None:
    pass


def relaunch(repo: Repo, config: Config, run: Run, *, target: str | None = None,
             prepare: Prepare | None = None) -> Run:
    """A rerun: a new run of `run`'s snapshot tree and parents, argv, subdirectory and data
    version, recorded with `rerun_of`. The current work tree is not looked at."""
    old = run.record
    tgt = config.target(target or old.target)
    config.check()  # every setting in range, before anything is recorded
    tgt.check()
    backend = backend_for(tgt, repo)  # a missing extra stops here, before anything is recorded
    store = open_store(backend.store_url())
    tree = repo.rev_parse(f"{old.snapshot}^{{tree}}")
    if tree is None:
        raise GitexpError(f"the snapshot of run {old.id} is not in this repository",
                          hint="git fetch origin 'refs/experiments/*:refs/experiments/*'")
    lfs.check_launch(repo, tree, tgt.backend)
    _, data_plan = data.prepare_launch(repo, config, tgt, tree, outs=bool(old.outs),
                                       commands=[old.argv])
    record = replace(old, id="", user=_user(config), launched_at=time.time(),
                     launched_from=socket.gethostname(),
                     target=tgt.name, backend=tgt.backend, store=store.url,
                     env=environment.capture(repo, old.argv), rerun_of=old.id, snapshot="")
    record = _commit(repo, store, record, tree, old.name or ids.default_name(old.argv),
                     data_plan=data_plan)
    return submit(repo, config, record, target=tgt, backend=backend, store=store,
                  prepare=prepare)


def _commit(repo: Repo, store: Store, record: RunRecord, tree: str, name: str, *,
            data_plan: dict[str, Any] | None, first_id: str | None = None) -> RunRecord:
    """The run's snapshot commit and ref, then at once its queued status in the store: a
    launch killed from here on is seen as interrupted (`runs._launch_lost`)."""
    record = _commit_record(repo, record, tree, name, first_id)
    RunState(store, record.id).set_queued()
    if data_plan is not None:  # how the agent gets the data: names and paths, no secrets
        plan.write_plan(store, record.id, data_plan)
    return record


def submit(repo: Repo, config: Config, record: RunRecord, *, target: Target,
           backend: Backend, store: Store, prepare: Prepare | None = None,
           progress: Callable[[str, int, int], None] | None = None) -> Run:
    """Start the agent for a recorded run; a failure to start leaves the run `failed`."""
    try:  # queued already: `_commit` wrote it with the ref, a moment ago
        ready(repo, config, record, target=target, store=store, prepare=prepare,
              progress=progress, queued=False)
        handle = backend.submit(launch=Launch(
            repo=repo, record=record, store=store, heartbeat=config.heartbeat(),
            max_checkpoint=max_checkpoint(config)))
        faults.point("launch.handle")
    except GitexpError as exc:
        fail(repo, store, [record], exc.message)
        raise
    RunState(store, record.id).set_handle(target.name, handle)
    return Run(record=record, result=Result(status="queued"), commit=record.snapshot,
               written_back=False, own=record.seal is not None)


def ready(repo: Repo, config: Config, record: RunRecord, *, target: Target, store: Store,
          prepare: Prepare | None = None,
          progress: Callable[[str, int, int], None] | None = None,
          queued: bool = True) -> None:
    """Everything the agent finds in the store before it starts: its queued status (unless
    `queued` is False: just written), the caller's additions (`prepare`), the names of
    secrets to mask, and the code (remote workers)."""
    if queued:
        RunState(store, record.id).set_queued()
    faults.point("launch.submit")
    if prepare is not None:
        prepare(record, target, store)
    secrets.publish_names(store, record.id, config, target)  # names: the agent masks values
    if target.backend != "local":  # the worker gets the snapshot from the store
        sent = (lambda done, total: progress("code", done, total)) if progress else None
        transport.push_code(repo, store, record.snapshot, progress=sent)


def fail(repo: Repo, store: Store, records: list[RunRecord], why: str) -> None:
    """Runs that could not be started end `failed`: in the store (waiting sweep members
    count them as finished), in their log, and in git."""
    for record in records:
        failed = Result(status="failed", error=why, ended_at=time.time())
        RunState(store, record.id).write_result(failed, snapshot=record.snapshot)
        store.append(run_key(record.id, "log"), f"gitexp: {why}\n".encode())
        write_back(repo, record, failed, store)  # a no-op for one already written back


def _commit_record(repo: Repo, record: RunRecord, tree: str, name: str,
                   first_id: str | None = None) -> RunRecord:
    parents = [record.base] if record.base else []
    for attempt in range(8):
        run_id = first_id if first_id and not attempt else ids.new_id(name)
        rec = replace(record, id=run_id)
        rec = replace(rec, seal=trust.seal(repo, rec, tree))  # over the id too: it is unique
        commit = repo.commit_tree(tree, parents, encode_message(rec, None))
        faults.point("launch.commit")
        # Create-only: an id that exists (or existed and was kept as a ref) is never reused.
        if repo.update_ref(ids.ref_for(run_id), commit, NO_REF, f"gitexp: launch {run_id}"):
            faults.point("launch.ref")
            return rec.with_snapshot(commit)
        if repo.rev_parse(ids.ref_for(run_id)) is None:  # not taken: the refs cannot be written
            raise GitexpError(f"cannot create {ids.ref_for(run_id)}",
                              hint="is the repository writable, and no other git holding "
                                   "a lock on its refs? then try again")
    raise GitexpError("could not allocate a run id", hint="retry; is the repository writable?")


def _secret_files_warning(paths: tuple[str, ...]) -> str:
    listed = ", ".join(paths[:5]) + (f" and {len(paths) - 5} more" if len(paths) > 5 else "")
    return (f"gitexp: warning: the snapshot ships tracked files that may hold credentials: "
            f"{listed} (`git rm --cached` them to keep them out)")


def _subdir(repo: Repo, cwd: Path) -> str:
    try:
        rel = cwd.resolve().relative_to(repo.root.resolve())
    except ValueError:
        raise GitexpError(f"{cwd} is outside the work tree {repo.root}") from None
    if rel.parts and rel.parts[0] == ".git":
        raise GitexpError("cannot run from inside .git", hint="cd to the work tree")
    return rel.as_posix() if rel.parts else ""


def _check_command(argv: list[str], cwd: Path) -> None:
    prog = argv[0]
    if "/" in prog:
        path = cwd / prog
        if not path.exists():
            raise GitexpError(f"command not found: {prog}",
                              hint="the path is relative to the directory you run from")
        if not os.access(path, os.X_OK):
            raise GitexpError(f"{prog} is not executable",
                              hint=f"chmod +x {prog}, or run it through its interpreter")
    elif shutil.which(prog) is None:
        raise GitexpError(f"command not found: {prog}",
                          hint="check the spelling, or activate the environment that has it")


def _user(config: Config) -> str:
    name, email = config.get("user.name"), config.get("user.email")
    if name and email:
        return f"{name} <{email}>"
    return name or email or getpass.getuser()
