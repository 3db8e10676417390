"""The agent's side of `gitexp.checkpoint(files=...)`: the job copies the files into a spool
directory of their own and names it in its metrics line; the uploader sends them to the run's
store in the background (the job goes on meanwhile) and then moves the store's pointer
(`RunState.set_checkpoint`), so a half-uploaded checkpoint is never the latest. Only the
newest checkpoint matters: one that a newer one overtakes before its upload is dropped.

The line comes from the job, so it is untrusted like the files: the spool's name is one
plain word, every path a clean relative one inside that spool directory, each a regular
file (no symlink), and all together within the size limit.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gitexp.errors import GitexpError
from gitexp.model.checks import path_problem, text_problem
from gitexp.model.dvcyaml import inside
from gitexp.model.runstate import MAX_CHECKPOINT_FILES, Checkpoint, RunState

_SPOOL = re.compile(r"c[A-Za-z0-9_]{1,64}")  # tempfile.mkdtemp(prefix="c")'s names
MAX_LABEL = 200


@dataclass(frozen=True)
class _Pending:
    spool: Path
    label: str
    step: int | None
    files: tuple[tuple[str, int], ...]


class Uploader:
    def __init__(self, state: RunState, root: Path, limit: int,
                 say: Callable[[str], None]) -> None:
        self.state, self.root, self.limit, self.say = state, root, limit, say
        latest = state.checkpoint()
        self.latest: Checkpoint | None = latest  # what the store holds, as far as we know
        self._next = latest.n + 1 if latest else 0  # never a number the pointer names
        self._pending: _Pending | None = None
        self._busy = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._loop, name="gitexp-checkpoints",
                                        daemon=True)
        self._thread.start()

    def offer(self, point: dict[str, Any]) -> None:
        """A metrics line with `_save`: check it and queue it (dropping an older pending)."""
        pending = self._check(point)
        if pending is None:
            return
        with self._cond:
            if self._pending is not None:
                shutil.rmtree(self._pending.spool, ignore_errors=True)
            self._pending = pending
            self._cond.notify_all()

    def drain(self, timeout: float) -> bool:
        """Wait for the queued checkpoint to be up (an attempt's end); False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._pending is not None or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def _check(self, point: dict[str, Any]) -> _Pending | None:
        save, label, step = point.get("_save"), point.get("_checkpoint"), point.get("step")
        spool = save.get("spool") if isinstance(save, dict) else None
        files = save.get("files") if isinstance(save, dict) else None
        if not (isinstance(spool, str) and _SPOOL.fullmatch(spool)):
            return None
        where = self.root / spool
        if where.is_symlink() or not where.is_dir():
            return None
        why = None
        sizes: list[tuple[str, int]] = []
        if not (isinstance(files, list) and 0 < len(files) <= MAX_CHECKPOINT_FILES):
            why = "no list of files"
        for path in files if why is None and isinstance(files, list) else []:
            local = inside(where, path) if isinstance(path, str) and \
                not path_problem(path) else None
            if local is None or local.is_symlink() or not local.is_file():
                why = f"{str(path)[:80]!r} is no file the job saved"
                break
            sizes.append((path, local.stat().st_size))
        total = sum(size for _, size in sizes)
        if why is None and total > self.limit:
            why = f"{total} bytes, over exp.maxCheckpointSize ({self.limit})"
        if why is not None:
            self.say(f"gitexp: checkpoint refused: {why}; the run goes on")
            shutil.rmtree(where, ignore_errors=True)
            return None
        text = label if isinstance(label, str) and not text_problem(label) else ""
        return _Pending(spool=where, label=text[:MAX_LABEL],
                        step=step if isinstance(step, int) and not isinstance(step, bool)
                        else None, files=tuple(sizes))

    def _loop(self) -> None:
        while True:
            with self._cond:
                while self._pending is None:
                    self._cond.wait()
                job, self._pending, self._busy = self._pending, None, True
            try:
                self._upload(job)
            except (GitexpError, OSError) as exc:  # this one is lost; the next may go
                self.say(f"gitexp: checkpoint {job.label!r} not saved: "
                         f"{getattr(exc, 'message', exc)}")
            finally:
                shutil.rmtree(job.spool, ignore_errors=True)
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _upload(self, job: _Pending) -> None:
        n, self._next = self._next, self._next + 1
        for path, _ in job.files:
            self.state.put_checkpoint_file(n, path, job.spool / path)
        checkpoint = Checkpoint(n=n, label=job.label, step=job.step, files=job.files,
                                time=time.time())
        self.state.set_checkpoint(checkpoint)
        self.latest = checkpoint


def restore(state: RunState, into: Path, say: Callable[[str], None]) -> Checkpoint | None:
    """The latest checkpoint's files in `into` (made afresh), or None when there is none to
    resume from (none saved, or a pointer or file the store damaged: said in the log)."""
    checkpoint = state.checkpoint()
    if checkpoint is None:
        return None
    shutil.rmtree(into, ignore_errors=True)
    into.mkdir(parents=True)
    with contextlib.suppress(GitexpError, OSError):
        if state.restore_checkpoint(checkpoint, into):
            return checkpoint
    say(f"gitexp: checkpoint {checkpoint.label!r} could not be restored: starting afresh")
    shutil.rmtree(into, ignore_errors=True)
    return None
