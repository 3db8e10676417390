"""Work on every core: many runs read and judged by forked workers, a batch each.

Reading a run is Python (JSON, the fields' rules): one process reads ~7,000 a second, so a
first `ls` or a first fetch of a shared remote's 100,000 runs waits on one core unless the
batches are shared out.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol, TypeVar

T = TypeVar("T")
R = TypeVar("R")
MAX_WORKERS = 8


class Mapper(Protocol):
    def __call__(self, fn: Callable[[T], R], work: Iterable[T]) -> Iterator[R]: ...


@contextlib.contextmanager
def workers(pieces: int, *, worth: bool, ordered: bool = True,
            setup: Callable[..., None] | None = None, args: tuple[Any, ...] = ()
            ) -> Iterator[Mapper | None]:
    """A `map` over `pieces` pieces of work by a pool of forked workers (each running
    `setup(*args)` first), when it is `worth` it and there are cores and pieces to share;
    else None: the work is the caller's, here. `ordered`: results in the order of the work,
    else as each is done. The workers are forked when this is entered: threads (a progress
    bar's) start after."""
    cores = min(os.cpu_count() or 1, pieces, MAX_WORKERS)
    # A fork copies one thread: a lock another one held would stay held in the worker.
    if not worth or cores < 2 or threading.active_count() > 1 or not hasattr(os, "fork"):
        yield None
        return
    import multiprocessing

    # Ctrl-C is the parent's to take (it ends the pool): held back while the workers are
    # forked, so that one not yet ignoring it cannot print a traceback, and not lost.
    held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        pool = multiprocessing.get_context("fork").Pool(
            cores, initializer=_started, initargs=(setup, args))
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
    with pool:
        yield pool.imap if ordered else pool.imap_unordered  # type: ignore[misc]


def _started(setup: Callable[..., None] | None, args: tuple[Any, ...]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    if setup is not None:
        setup(*args)
