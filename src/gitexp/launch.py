"""Launching runs: snapshot, record, start the agent. The first half of the service layer
(runs.py reads, observes and cancels what this module starts).

No printing, no CLI: functions take explicit objects and return data.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from gitexp import data, environment, faults, preflight, refs, snapshot
from gitexp.backends import Backend, Launch, backend_for
from gitexp.config import Config, Target
from gitexp.errors import GitexpError
from gitexp.git import ZERO_OID, Repo
from gitexp.record import Result, RunRecord, encode_message
from gitexp.results import write_back
from gitexp.runs import Run
from gitexp.stores import Store, open_store, run_key


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


def start(repo: Repo, config: Config, req: LaunchRequest) -> Run:
    """Snapshot, record and start one run."""
    recorded = record_runs(repo, config, [req])
    return submit(repo, config, recorded.records[0], target=recorded.target,
                  backend=recorded.backend, store=recorded.store, progress=req.progress)


@dataclass(frozen=True)
class Recorded:
    target: Target
    backend: Backend
    store: Store
    records: list[RunRecord]


def record_runs(repo: Repo, config: Config, reqs: list[LaunchRequest]) -> Recorded:
    """Snapshot the work tree once and record one run per request (a sweep: one per point),
    all on the same target. Nothing is started yet."""
    if not reqs or not all(req.argv and req.argv[0] for req in reqs):
        raise GitexpError("no command given", hint="git exp run -- python train.py --lr 3e-4")
    target = config.target(reqs[0].target)
    subdirs = [_subdir(repo, req.cwd) for req in reqs]
    for req in reqs:
        _check_command(req.argv, req.cwd)
    names = [refs.check_name(req.name) if req.name is not None else refs.default_name(req.argv)
             for req in reqs]
    preflight.check(repo, config)
    data.check_worktree(repo, commit=reqs[0].commit_data, say=reqs[0].say)
    snap = snapshot.take(repo)
    if snap.secret_files and reqs[0].say:  # tracked, so shipped: say so, and launch anyway
        reqs[0].say(_secret_files_warning(snap.secret_files))
    if len(reqs) == 1 and not reqs[0].force:  # the same code, command and data: say so
        from gitexp.rerun import refuse_if_succeeded

        refuse_if_succeeded(repo, snap.tree, reqs[0].argv, subdirs[0])
    data_version, data_plan = data.prepare_launch(
        repo, config, target, snap.tree, outs=any(r.outs for r in reqs),
        progress=reqs[0].progress)
    backend = backend_for(target, repo)
    store = open_store(backend.store_url())
    env = environment.capture(repo, reqs[0].argv)
    records = []
    for req, subdir, name in zip(reqs, subdirs, names, strict=True):
        record = RunRecord(
            id="", argv=list(req.argv), cwd=subdir, base=snap.base,
            branch=repo.branch(), user=_user(config), launched_at=time.time(),
            target=target.name, backend=target.backend, store=store.url, env=env,
            params=req.params or {}, name=req.name, rerun_of=req.rerun_of, sweep=req.sweep,
            outs=list(req.outs), data=data_version,
        )
        records.append(_commit_record(repo, record, snap.tree, name))
        # At once: a launch killed from here on is seen as interrupted (`_launch_lost`).
        store.write(run_key(records[-1].id, "status.json"), queued_status())
        if data_plan is not None:  # how the agent gets the data: names and paths, no secrets
            data.write_plan(store, records[-1].id, data_plan)
    return Recorded(target=target, backend=backend, store=store, records=records)


def relaunch(repo: Repo, config: Config, run: Run, *, target: str | None = None) -> Run:
    """A rerun: a new run of `run`'s snapshot tree and parents, argv, subdirectory and data
    version, recorded with `rerun_of`. The current work tree is not looked at."""
    old = run.record
    tgt = config.target(target or old.target)
    tree = repo.rev_parse(f"{old.snapshot}^{{tree}}")
    if tree is None:
        raise GitexpError(f"the snapshot of run {old.id} is not in this repository",
                          hint="git fetch origin 'refs/experiments/*:refs/experiments/*'")
    _, data_plan = data.prepare_launch(repo, config, tgt, tree, outs=bool(old.outs))
    backend = backend_for(tgt, repo)
    store = open_store(backend.store_url())
    record = RunRecord(
        id="", argv=list(old.argv), cwd=old.cwd, base=old.base, branch=old.branch,
        user=_user(config), launched_at=time.time(), target=tgt.name, backend=tgt.backend,
        store=store.url, env=environment.capture(repo, old.argv), data=old.data,
        params=dict(old.params), name=old.name, rerun_of=old.id, sweep=old.sweep,
        outs=list(old.outs),
    )
    record = _commit_record(repo, record, tree, old.name or refs.default_name(old.argv))
    if data_plan is not None:
        data.write_plan(store, record.id, data_plan)
    return submit(repo, config, record, target=tgt, backend=backend, store=store)


def submit(repo: Repo, config: Config, record: RunRecord, *, target: Target,
           backend: Backend, store: Store,
           progress: Callable[[str, int, int], None] | None = None) -> Run:
    """Start the agent for a recorded run; a failure to start leaves the run `failed`."""
    heartbeat = config.get_float("exp.heartbeat", 2.0)
    store.write(run_key(record.id, "status.json"), queued_status())
    faults.point("launch.submit")
    try:
        from gitexp.notify import dev as notify  # the run's mail settings, secret-free

        notify.at_launch(repo, config, record, target, store)
        from gitexp import secrets  # names only: the agent masks their values in the log

        secrets.publish_names(store, record.id, config, target)
        if target.backend != "local":  # the worker gets the snapshot from the store
            from gitexp import transport

            sent = (lambda done, total: progress("code", done, total)) if progress else None
            transport.push_code(repo, store, record.snapshot, progress=sent)
        handle = backend.submit(launch=Launch(repo=repo, record=record, store=store,
                                              heartbeat=heartbeat))
        faults.point("launch.handle")
    except GitexpError as exc:
        failed = Result(status="failed", error=exc.message, ended_at=time.time())
        store.append(run_key(record.id, "log"), f"gitexp: {exc.message}\n".encode())
        write_back(repo, record, failed, store)
        raise
    store.write(run_key(record.id, "handle.json"),
                json.dumps({"target": target.name, **handle}).encode())
    return Run(record=record, result=Result(status="queued"), commit=record.snapshot,
               written_back=False)


def queued_status() -> bytes:
    """A queued run's status; it names the launching process, so that a launch killed
    before the agent started is seen as lost without waiting for LAUNCH_TIMEOUT."""
    launcher = {"host": socket.gethostname(), "pid": os.getpid()}
    return json.dumps({"status": "queued", "launcher": launcher}).encode()


def _commit_record(repo: Repo, record: RunRecord, tree: str, name: str) -> RunRecord:
    parents = [record.base] if record.base else []
    for _ in range(8):
        run_id = refs.new_id(name)
        rec = replace(record, id=run_id)
        commit = repo.commit_tree(tree, parents, encode_message(rec, None))
        faults.point("launch.commit")
        # Create-only: an id that exists (or existed and was kept as a ref) is never reused.
        if repo.update_ref(refs.ref_for(run_id), commit, ZERO_OID, f"gitexp: launch {run_id}"):
            faults.point("launch.ref")
            return rec.with_snapshot(commit)
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
