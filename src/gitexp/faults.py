"""Named fault points, for the fault-injection tests (tests/test_faults.py).

`GITEXP_FAULT=<name>` makes the process that reaches `point("<name>")` kill itself with
SIGKILL there, as a power cut or the OOM killer would; `GITEXP_FAULT=<name>@<n>` waits for
the n-th time; `GITEXP_FAULT=<name>:stop` stops it there instead (SIGSTOP), for a test to
change something under it and let it go on (SIGCONT). Unset (always, outside the tests), a
point costs one dictionary lookup.

Points: snapshot.add, launch.commit, launch.ref, launch.submit, launch.handle,
transport.pack, transport.send, agent.prepare, agent.heartbeat, agent.append, agent.result,
agent.finish, workspace.update (a warm checkout half moved), workspace.release (put back,
not yet marked pristine), writeback.commit, gc.remove
(before a run's ref is deleted).
"""

from __future__ import annotations

import os
import signal

ENV = "GITEXP_FAULT"
_hits: dict[str, int] = {}


def point(name: str) -> None:
    spec = os.environ.get(ENV)
    if not spec:
        return
    spec, _, how = spec.partition(":")
    wanted, _, nth = spec.partition("@")
    if wanted != name:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] == int(nth or 1):  # once: a stopped process goes on past it
        os.kill(os.getpid(), signal.SIGSTOP if how == "stop" else signal.SIGKILL)
