"""The dev side of data, at launch: check the work tree's data, pin its version, ship it.

A `plan` (store key `runs/<id>/data.json`) tells the agent where the data comes from:
`cache` (this machine's DVC cache, to link from) or `remote` (a DVC remote to pull from).
It holds names and paths only, never credentials.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gitexp.data import dvcrepo, status, version
from gitexp.data.dvcrepo import Progress
from gitexp.data.status import local_cache_dir
from gitexp.errors import GitexpError
from gitexp.git import Repo
from gitexp.git.config import Config, Target
from gitexp.model.record import RunRecord
from gitexp.stores import Store, run_key

PLAN_KEY = "data.json"


def check_worktree(repo: Repo, *, commit: bool = False,
                   say: Callable[[str], None] | None = None) -> list[str]:
    """Refuse on DVC-tracked data changed without `dvc add`/`dvc commit` (or record it, with
    `commit`); the paths recorded."""
    if not is_dvc_project(repo):
        return []  # no DVC, no checks: a plain repository pays nothing here
    return [u.path for u in status.check(repo, commit=commit, say=say)]


def version_of(repo: Repo, tree: str) -> dict[str, Any] | None:
    """The data version of a snapshot tree, as it goes into `RunRecord.data`."""
    return version.to_record(version.of_tree(repo, tree))


def is_dvc_project(repo: Repo) -> bool:
    return (repo.root / ".dvc").is_dir()


def dvc_remote_of(target: Target) -> str | None:
    return target.get("dvcremote") or target.get("dvc-remote")


def prepare_launch(repo: Repo, config: Config, target: Target, tree: str, *, outs: bool,
                   progress: Progress | None = None) -> tuple[dict[str, Any] | None,
                                                             dict[str, Any] | None]:
    """The data version of the snapshot `tree` and the plan for the worker; for a target
    that does not share this machine's DVC cache, the version is pushed to its DVC remote
    first (so a failed push starts nothing)."""
    if outs and not is_dvc_project(repo):
        raise GitexpError("--out records outputs through DVC, but this is not a DVC project",
                          hint="`dvc init` here (and `dvc remote add -d NAME URL` to share "
                               "outputs beyond this machine)")
    if not is_dvc_project(repo):
        return None, None
    data = version_of(repo, tree)
    plan = plan_for(config, target, local_cache_dir(repo))
    items = [i for i in version.from_record(data).values() if i.cached]
    if plan["push"] and items:
        with dvcrepo.opened(repo.root) as dvc:
            dvcrepo.push(dvc, items, plan["remote"], progress)
    return data, plan


def plan_for(config: Config, target: Target, cache: Path) -> dict[str, Any]:
    """How the worker gets the data. The local target links from this machine's DVC cache,
    unless it names a DVC remote; every other target pulls from a DVC remote."""
    remote = dvc_remote_of(target)
    shared = target.backend == "local" and remote is None
    verify = config.boolean("exp.verifyData", True)
    return {"remote": remote, "cache": str(cache) if shared else None, "verify": verify,
            "push": not shared}


def push_for_target(repo: Repo, record: RunRecord, remote: str | None,
                    progress: Progress | None = None) -> int:
    """Send a run's data version to the DVC remote `remote` (None: DVC's default remote):
    only objects the remote lacks. Returns how many were sent. (`prepare_launch` already
    does this for every launch; backends that move data themselves may call it.)"""
    items = [i for i in version.from_record(record.data).values() if i.cached]
    if not items:
        return 0
    with dvcrepo.opened(repo.root) as dvc:
        return dvcrepo.push(dvc, items, remote, progress)


def write_plan(store: Store, run_id: str, plan: dict[str, Any]) -> None:
    store.write(run_key(run_id, PLAN_KEY), json.dumps(plan, sort_keys=True).encode())


def read_plan(store: Store | None, run_id: str) -> dict[str, Any]:
    raw = store.read(run_key(run_id, PLAN_KEY)) if store is not None else None
    try:
        plan = json.loads(raw) if raw else {}
    except ValueError:
        plan = {}
    return plan if isinstance(plan, dict) else {}
