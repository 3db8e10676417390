"""A run as one flat row: what `ls` shows, `--where` filters on and the index keeps."""

from __future__ import annotations

import json
import shlex
from typing import Any

from gitexp.model.params import from_argv
from gitexp.model.record import Result, RunRecord

Row = dict[str, Any]
# Fields every row has; any other name is looked up among metrics, then params.
FIELDS = (
    "id", "status", "target", "backend", "user", "branch", "cwd", "name", "sweep", "rerun_of",
    "base", "snapshot", "launched_at", "started", "ended", "duration", "exit_code", "host",
    "command", "verdict", "error", "own", "launched_from",
)
# What plain `ls` needs of a row (the index keeps it apart: cheaper to decode at 10,000 runs)
SUMMARY = ("id", "status", "target", "sweep", "launched_at", "started", "duration", "command",
           "rerun_of", "verdict", "metrics", "written_back", "own", "user",
           "launched_from", "attempt")


def row_of(record: RunRecord, result: Result | None, commit: str = "", *,
           own: bool = False) -> Row:
    """What `ls` shows and `--where` sees of one run (JSON-safe; the index stores it).
    `own`: launched by this user here (service/trust.py), which the record cannot say."""
    res = result or Result(status="queued")
    check = res.check or None
    return {
        "id": record.id, "status": res.status, "target": record.target,
        "backend": record.backend, "user": record.user, "branch": record.branch,
        "cwd": record.cwd, "name": record.name, "sweep": record.sweep,
        "rerun_of": record.rerun_of, "base": record.base, "snapshot": record.snapshot,
        "commit": commit, "launched_at": record.launched_at, "started": res.started_at,
        "ended": res.ended_at, "duration": res.duration, "exit_code": res.exit_code,
        "host": res.host, "command": shlex.join(record.argv), "error": res.error,
        "verdict": None if check is None else
        ("reproduced" if check.get("reproduced") else "not reproduced"),
        "metrics": dict(res.metrics),
        "params": {**from_argv(record.argv), **record.params},  # files: `add_file_params`
        "written_back": result is not None, "own": own, "launched_from": record.launched_from,
        "attempt": res.attempts[-1].n if res.attempts else 1,
    }


def as_json(record: RunRecord, result: Result | None, commit: str, *,
            own: bool = False) -> dict[str, Any]:
    """A run as `ls --json` and `show --json` print it: the record and result whole."""
    return {
        "id": record.id, "status": result.status if result else "queued", "commit": commit,
        "snapshot": record.snapshot, "record": record.to_dict(),
        "result": result.to_dict() if result else None,
        "own": own,  # launched by you here (sealed); else someone else's, fetched
    }


def json_text(data: Any) -> str:
    """`data` as `--json` prints it (`cli._app.print_json`): the index keeps each run's text
    so that `ls --json` at 10,000 runs neither decodes nor encodes them again."""
    return json.dumps(data, indent=2, sort_keys=True, default=str)
