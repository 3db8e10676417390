"""gitexp: every experiment run is an auditable, rerunnable git object.

Inside a job launched by `git exp run`, report metrics with::
    import gitexp
    gitexp.log(step=3, loss=0.25, acc=0.91)
    gitexp.checkpoint("epoch 3 done", loss=0.25, files=["ckpt.pt"])
    start = gitexp.resume()  # the latest checkpoint's files, when this attempt resumes one

Outside a run all are cheap no-ops. This module imports nothing heavy on purpose.
"""

# ruff: noqa: PTH100, PTH103, PTH109, PTH112, PTH113, PTH118, PTH120, PTH202, PTH206
# (no pathlib: every job imports this module, and it stays lean)
from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "checkpoint", "log", "resume"]

METRICS_ENV = "GITEXP_METRICS"
# Set by the agent for the job: where `checkpoint(files=...)` leaves its copies for the agent
# to upload, the most bytes one checkpoint may hold, and the restored checkpoint's directory.
CHECKPOINTS_ENV = "GITEXP_CHECKPOINTS"
MAX_CHECKPOINT_ENV = "GITEXP_MAX_CHECKPOINT"
RESUME_ENV = "GITEXP_RESUME"


def _append(line: dict[str, Any]) -> None:
    path = os.environ.get(METRICS_ENV)
    if not path:
        return
    # One short append per call keeps lines whole even if the job is killed mid-way.
    with open(path, "a", encoding="utf-8") as f:  # noqa: PTH123 - the cheapest path
        f.write(json.dumps(line, default=_plain) + "\n")


def log(step: int | None = None, **metrics: Any) -> None:
    """Append one point of the run's metric series (e.g. `log(step=3, loss=0.25)`)."""
    if METRICS_ENV in os.environ:
        _append({"time": time.time(), "step": step, **metrics})


def checkpoint(message: str = "", *, files: Sequence[str] = (), **metrics: Any) -> None:
    """Mark a checkpoint (it may trigger a mail); also logs `metrics` as a point. `files`
    (paths under the job's directory) are saved to the run's store: the next attempt of a
    preempted run finds them in `resume()`. They are copied before this returns, so the job
    may overwrite them at once; the upload happens in the agent, while the job goes on."""
    if METRICS_ENV not in os.environ:
        return
    line: dict[str, Any] = {"time": time.time(), "_checkpoint": message, **metrics}
    if files and os.environ.get(CHECKPOINTS_ENV):
        spool = _copy_files(list(files), os.environ[CHECKPOINTS_ENV])
        if spool is not None:  # nested: no point of the series, only the agent reads it
            line["_save"] = {"spool": spool[0], "files": spool[1]}
    _append(line)


def resume() -> str | None:
    """The directory holding the latest saved checkpoint's files (by the paths given to
    `checkpoint`) when this attempt continues an earlier one of the same run, else None."""
    path = os.environ.get(RESUME_ENV)
    return path if path and os.path.isdir(path) else None


def _copy_files(files: list[str], root: str) -> tuple[str, list[str]] | None:
    """Copy `files` into a new directory under `root`; (its name, the paths) or None when
    the checkpoint is refused (said on stderr, which is the run's log). A copy, not a hard
    link: torch.save and numpy rewrite the same file in place, so a link would change under
    the agent's upload; the copy is in-kernel (copy_file_range: a reflink where the file
    system has them) and costs about what a read would."""
    here = os.getcwd()
    names, total = [], 0
    limit = int(os.environ.get(MAX_CHECKPOINT_ENV) or 0)
    for name in files:
        rel = os.path.relpath(os.path.abspath(name), here)
        real = os.path.relpath(os.path.realpath(name), os.path.realpath(here))
        if os.pardir in (rel.split(os.sep)[0], real.split(os.sep)[0]) \
                or not os.path.isfile(name):
            _refuse(f"{name!r} is no file under the job's directory")
            return None
        total += os.path.getsize(name)
        names.append(rel.replace(os.sep, "/"))
    if limit and total > limit:
        _refuse(f"{total} bytes, over exp.maxCheckpointSize ({limit})")
        return None
    spool = f"c{os.getpid()}_{time.time_ns()}"  # unique, and a plain word the agent accepts
    for rel in names:
        dest = os.path.join(root, spool, rel)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        _copy(rel, dest)
    return spool, names


def _copy(source: str, dest: str) -> None:
    with open(source, "rb") as src, open(dest, "wb") as out:  # noqa: PTH123 - see above
        left = os.fstat(src.fileno()).st_size
        try:
            while left > 0 and (done := os.copy_file_range(src.fileno(), out.fileno(), left)):
                left -= done
        except OSError:  # no copy_file_range across these file systems: by hand
            src.seek(out.seek(0, os.SEEK_END))
            while chunk := src.read(1 << 20):
                out.write(chunk)


def _refuse(why: str) -> None:
    print(f"gitexp: checkpoint files not saved: {why}", file=sys.stderr, flush=True)


def _plain(value: Any) -> Any:
    # numpy/torch scalars and the like: anything that converts to a float
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)
