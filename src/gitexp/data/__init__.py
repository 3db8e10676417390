"""Data versions through DVC: pin what data a run used, refuse unversioned data, move it.

- dev (at launch): `check_worktree` (refuse or `--commit-data`), `version_of` (the record's `data`),
  `prepare_launch` (push if needed) / `write_plan` (how the worker gets it)
- worker: `materialise` (link or pull, then verify), `save_outputs`
- afterwards: `restore_outputs` (`git exp outputs RUN`)

Nothing here imports DVC at module level; only `dvcrepo` does, inside its functions.
"""

from gitexp.data.dev import (
    check_worktree,
    is_dvc_project,
    prepare_launch,
    push_for_target,
    read_plan,
    version_of,
    write_plan,
)
from gitexp.data.outputs import restore_outputs
from gitexp.data.version import DataItem
from gitexp.data.worker import is_pipeline, job_argv, materialise, save_outputs

__all__ = [
    "DataItem",
    "check_worktree",
    "is_dvc_project",
    "is_pipeline",
    "job_argv",
    "materialise",
    "prepare_launch",
    "push_for_target",
    "read_plan",
    "restore_outputs",
    "save_outputs",
    "version_of",
    "write_plan",
]
