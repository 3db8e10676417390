"""The dev side of data, at launch: check the work tree's data, pin its version, ship it.

A `plan` (store key `runs/<id>/data.json`) tells the agent where the data comes from:
`cache` (this machine's DVC cache, to link from) or `remote` (a DVC remote to pull from).
It holds names and paths only, never credentials.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from gitexp.data import dvcrepo, is_dvc_project, status, verify, version
from gitexp.data.dvcrepo import Progress
from gitexp.data.status import local_cache_dir
from gitexp.data.version import DataItem
from gitexp.errors import GitexpError
from gitexp.git import Repo
from gitexp.git.config import Config, Target
from gitexp.model.record import RunRecord


def check_worktree(repo: Repo, *, commit: bool = False,
                   say: Callable[[str], None] | None = None) -> list[str]:
    """Refuse on DVC-tracked data changed without `dvc add`/`dvc commit` (or record it, with
    `commit`); the paths recorded."""
    if not is_dvc_project(repo.root):
        return []  # no DVC, no checks: a plain repository pays nothing here
    return [u.path for u in status.check(repo, commit=commit, say=say)]


def version_of(repo: Repo, tree: str) -> dict[str, Any] | None:
    """The data version of a snapshot tree, as it goes into `RunRecord.data`."""
    return version.to_record(version.of_tree(repo, tree))


def dvc_remote_of(target: Target) -> str | None:
    return target.get("dvcremote") or target.get("dvc-remote")


def prepare_launch(repo: Repo, config: Config, target: Target, tree: str, *, outs: bool,
                   commands: Iterable[list[str]] = (),
                   progress: Progress | None = None) -> tuple[dict[str, Any] | None,
                                                             dict[str, Any] | None]:
    """The data version of the snapshot `tree` and the plan for the worker, once every input
    the `commands` need is known to be obtainable (this machine's DVC cache, or the DVC
    remote the worker pulls from); a GitexpError listing what is missing otherwise. For a
    target that does not share this machine's DVC cache, what the cache holds is pushed to
    its DVC remote first. Either way nothing is recorded or started before this returns."""
    if outs and not is_dvc_project(repo.root):
        raise GitexpError("--out records outputs through DVC, but this is not a DVC project",
                          hint="`dvc init` here (and `dvc remote add -d NAME URL` to share "
                               "outputs beyond this machine)")
    if not is_dvc_project(repo.root):
        return None, None
    data = version_of(repo, tree)
    plan = plan_for(config, target, local_cache_dir(repo), repo.root / ".dvc")
    items = list(version.from_record(data).values())
    required, regenerated = needed_by(items, commands)
    if not required and not regenerated:
        return data, plan
    cache = local_cache_dir(repo)
    not_here = verify.missing(cache, required)
    if not_here or plan["push"]:
        with dvcrepo.opened(repo.root) as dvc:
            remote = plan["remote"] or dvcrepo.default_remote(dvc)
            absent = dvcrepo.absent_from_remote(dvc, not_here, remote) if not_here else []
            if absent:
                raise _unobtainable(absent, remote, regenerated)
            if plan["push"]:  # outputs the job regenerates go too when the cache has them
                lacking = {i.path for i in not_here + verify.missing(cache, regenerated)}
                dvcrepo.push(dvc, [i for i in required + regenerated if i.path not in lacking],
                             plan["remote"], progress)
    return data, plan


def needed_by(items: list[DataItem], commands: Iterable[list[str]]) -> tuple[list[DataItem],
                                                                            list[DataItem]]:
    """(required, regenerated) for every command of a launch (a sweep: each point's): an
    item is required if any command needs it. No command known: everything is required."""
    commands = list(commands)
    if not commands:
        return [i for i in items if i.cached], []
    required: dict[str, DataItem] = {}
    regenerated: dict[str, DataItem] = {}
    for argv in commands:
        req, regen = version.needed(items, argv)
        required.update((i.path, i) for i in req)
        regenerated.update((i.path, i) for i in regen)
    return list(required.values()), [i for p, i in regenerated.items() if p not in required]


def _unobtainable(absent: list[DataItem], remote: str | None,
                  regenerated: list[DataItem]) -> GitexpError:
    listed = ", ".join(f"{i.path} ({i.hash[:12]})" for i in absent[:5])
    more = f" and {len(absent) - 5} more" if len(absent) > 5 else ""
    where = f"the DVC remote {remote!r}" if remote else "any DVC remote (none is configured)"
    why = (f"; {len(regenerated)} stage output(s) the pipeline regenerates are not needed"
           if regenerated else "")
    return GitexpError(f"data the run needs is neither in the DVC cache nor on {where}: "
                       f"{listed}{more}",
                       hint=f"`dvc push` it from a machine that has it (or `dvc pull` here), "
                            f"then launch again{why}")


def plan_for(config: Config, target: Target, cache: Path,
             dvc_dir: Path | None = None) -> dict[str, Any]:
    """How the worker gets the data. The local target links from this machine's DVC cache,
    unless it names a DVC remote; every other target pulls from a DVC remote. The local
    target also learns where this project's `.dvc` is: a remote at a relative path (`url =
    ../storage`) means the same directory from the run's checkout as from here."""
    remote = dvc_remote_of(target)
    local = target.backend == "local"
    shared = local and remote is None
    verify = config.boolean("exp.verifyData", True)
    return {"remote": remote, "cache": str(cache) if shared else None, "verify": verify,
            "push": not shared, "dvc_dir": str(dvc_dir) if local and dvc_dir else None}


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
