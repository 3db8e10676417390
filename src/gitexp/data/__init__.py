"""Data versions through DVC: pin what data a run used, refuse unversioned data, move it.

- dev (at launch): `check_worktree` (refuse or `--commit-data`), `version_of` (the record's `data`),
  `prepare_launch` (push if needed); `plan`: how the worker gets it
- worker: `materialise` (link or pull, then verify), `save_outputs`
- afterwards: `restore_outputs` (`git exp outputs RUN`)

Nothing here imports DVC at module level; only `dvcrepo` does, inside its functions.

Import the side you are (`data.dev`, `data.worker`, `data.outputs`): this package imports
none of them, so that the worker's agent never pays for the launch's half (~30 ms of its
start, on the way to the job's first line).
"""

from __future__ import annotations

from pathlib import Path


def is_dvc_project(root: Path) -> bool:
    """A DVC project: the work tree `root` has DVC's directory."""
    return (root / ".dvc").is_dir()
