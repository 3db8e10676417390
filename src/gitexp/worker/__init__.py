"""The worker's side: the agent, its checkout, the bootstrap of a remote worker, sweep turns.

This module itself stays tiny: backends import `agent_argv` from here on the developer's
machine without loading the agent.
"""

from __future__ import annotations


def agent_argv(python: str, *, store: str, run_id: str, snapshot: str, code: str,
               workdir: str, heartbeat: float | str, repo: str | None = None,
               flush: float | None = None) -> list[str]:
    """The agent's command line, the one way every target starts it (their templates get it
    whole). Values may be shell expressions where a template runs it (`ShellWord`)."""
    argv = [python, "-m", "gitexp.worker.agent", "--store", store, "--code", code,
            "--run", run_id, "--snapshot", snapshot, "--workdir", workdir,
            "--heartbeat", str(heartbeat)]
    if repo is not None:
        argv += ["--repo", repo]
    if flush is not None:
        argv += ["--flush", str(flush)]
    return argv
