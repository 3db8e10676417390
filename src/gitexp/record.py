"""Run records and results: frozen dataclasses, JSON with a schema version, no pickle."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Literal

from gitexp.errors import GitexpError

SCHEMA = 1
Status = Literal["queued", "running", "succeeded", "failed", "cancelled", "lost"]
LIVE: frozenset[str] = frozenset({"queued", "running"})
TERMINAL: frozenset[str] = frozenset({"succeeded", "failed", "cancelled", "lost"})
STATUSES: tuple[str, ...] = ("queued", "running", "succeeded", "failed", "cancelled", "lost")


@dataclass(frozen=True)
class Environment:
    python: str
    platform: str
    packages: str | None = None  # blob id of the sorted `name==version` list: stored once
    variables: dict[str, str] = field(default_factory=dict)  # an allow-list, never secrets


@dataclass(frozen=True)
class RunRecord:
    """What was launched. Frozen when the snapshot commit is made."""

    id: str
    argv: list[str]
    cwd: str  # the subdirectory (posix, relative to the repo root; "" for the root)
    base: str | None  # HEAD when launched; None in a repo without commits
    branch: str | None
    user: str
    launched_at: float
    target: str
    backend: str
    store: str  # URL of the store where code travels and results come back
    env: Environment
    data: dict[str, Any] | None = None  # DVC data version: {path: {hash, size, nfiles}}
    params: dict[str, Any] = field(default_factory=dict)
    name: str | None = None
    rerun_of: str | None = None
    sweep: str | None = None
    outs: list[str] = field(default_factory=list)
    snapshot: str = ""  # the commit itself; not stored in its own message, filled on load

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("snapshot")
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], snapshot: str = "") -> RunRecord:
        known = {f.name for f in fields(cls)}
        env = Environment(**_only(Environment, d.get("env") or {}))
        data = {k: v for k, v in d.items() if k in known and k not in ("env", "snapshot")}
        try:
            rec = cls(**data, env=env, snapshot=snapshot)
        except TypeError as exc:
            raise GitexpError(f"corrupted run record: {exc}",
                              hint="`git exp rm RUN` removes a run that cannot be read") from None
        if not isinstance(rec.argv, list) or not all(isinstance(a, str) for a in rec.argv):
            raise GitexpError("corrupted run record: argv is not a list of strings")
        return rec

    def with_snapshot(self, snapshot: str) -> RunRecord:
        return replace(self, snapshot=snapshot)


@dataclass(frozen=True)
class Result:
    """How the run ended (or how far it got, for a live run)."""

    status: str
    exit_code: int | None = None
    started_at: float | None = None
    ended_at: float | None = None
    host: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)  # final values
    error: str | None = None  # why the agent gave up before/around the command
    outputs: dict[str, Any] = field(default_factory=dict)
    check: dict[str, Any] | None = None  # rerun --check verdict

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Result:
        res = cls(**_only(cls, d))
        if res.status not in STATUSES:
            raise GitexpError(f"corrupted result: unknown status {res.status!r}")
        return res

    @property
    def duration(self) -> float | None:
        if self.started_at is None or self.ended_at is None:
            return None
        return self.ended_at - self.started_at


def _only(cls: type, d: dict[str, Any]) -> dict[str, Any]:
    # Newer writers may add fields; an older reader keeps what it knows.
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in d.items() if k in names}


# -- commit messages ------------------------------------------------------------------------
# Both the snapshot and the results commit carry the record as JSON in their message, so one
# `git for-each-ref --format=%(contents)` reads every run without touching a tree.

def encode_message(record: RunRecord, result: Result | None) -> str:
    title = f"gitexp run {record.id}" + (f": {result.status}" if result else "")
    body: dict[str, Any] = {"schema": SCHEMA, "record": record.to_dict()}
    if result is not None:
        body["result"] = result.to_dict()
    return f"{title}\n\n{json.dumps(body, sort_keys=True, separators=(',', ':'))}\n"


def decode_message(message: str, snapshot: str) -> tuple[RunRecord, Result | None]:
    _, _, payload = message.partition("\n\n")
    try:
        body = json.loads(payload)
        if not isinstance(body, dict) or not isinstance(body.get("record"), dict):
            raise ValueError("no record")
        if int(body.get("schema", 0)) > SCHEMA:
            raise GitexpError(f"run record schema {body['schema']} is newer than this gitexp",
                              hint="upgrade gitexp: `pip install -U gitexp`")
        record = RunRecord.from_dict(body["record"], snapshot=snapshot)
        result = Result.from_dict(body["result"]) if isinstance(body.get("result"), dict) else None
    except (ValueError, TypeError, KeyError) as exc:
        raise GitexpError(f"corrupted run record ({exc})",
                          hint="`git exp rm RUN` removes a run that cannot be read") from None
    return record, result
