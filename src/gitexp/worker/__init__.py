"""The worker's side: the agent, its checkout, the bootstrap of a remote worker, a sweep's
slots.

This module itself stays tiny: backends import `agent_argv` from here on the developer's
machine without loading the agent.
"""

from __future__ import annotations

# The agent's defaults, which are the knobs' (exp.target.<n>.maxAttempts, exp.maxCheckpointSize):
# a target passes only what differs, so a command line names no setting left as it is.
ATTEMPTS = 3
CHECKPOINT_BYTES = 1 << 30
# The agent's exit when the platform took its machine mid-attempt (SIGTERM's 128+15) and it
# left the run, without a result, to the platform's retry: the one exit a Job retries.
PREEMPTED_EXIT = 143


def agent_argv(python: str, *, store: str, code: str, workdir: str, heartbeat: float | str,
               run_id: str | None = None, snapshot: str | None = None,
               slot: tuple[str, int] | None = None, repo: str | None = None,
               flush: float | None = None,
               warm: tuple[int, str] | None = None,
               limits: tuple[int, int] | None = None, log: str | None = None) -> list[str]:
    """The agent's command line, the one way every target starts it (their templates get it
    whole). Values may be shell expressions where a template runs it (`ShellWord`).

    Either one run (`run_id`, `snapshot`), or a sweep's slot (`slot`: the sweep and k),
    which runs the sweep's runs one after another (worker.slots); then `workdir` holds
    one work directory per run. `warm`: how many warm checkouts the worker keeps, and
    where (worker.workspace.Pool). `limits`: how far a preempted run may come back, its
    attempts and the bytes of one checkpoint (exp.target.<n>.maxAttempts,
    exp.maxCheckpointSize); each only when it is not the agent's default. A `snapshot` of
    "-" is read from the agent's stdin when it is taken (an agent started ahead:
    backends.StartsAhead); `log` is where the agent then sends its own output."""
    if slot is not None:
        job = ["--sweep", slot[0], "--slot", str(slot[1])]
    elif run_id is not None and snapshot is not None:
        job = ["--run", run_id, "--snapshot", snapshot]
    else:
        raise ValueError("agent_argv: a run and its snapshot, or a slot")
    argv = [python, "-m", "gitexp.worker.agent", "--store", store, "--code", code, *job,
            "--workdir", workdir, "--heartbeat", str(heartbeat)]
    if repo is not None:
        argv += ["--repo", repo]
    if flush is not None:
        argv += ["--flush", str(flush)]
    if warm is not None and warm[0] > 0:
        argv += ["--warm", str(warm[0]), "--warm-dir", warm[1]]
    if limits is not None and limits[0] != ATTEMPTS:
        argv += ["--max-attempts", str(limits[0])]
    if limits is not None and limits[1] != CHECKPOINT_BYTES:
        argv += ["--max-checkpoint", str(limits[1])]
    if log is not None:
        argv += ["--log", log]
    return argv
