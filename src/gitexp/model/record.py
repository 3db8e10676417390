"""Run records and results: frozen dataclasses, JSON with a schema version, no pickle."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from types import UnionType
from typing import Any, Union, get_args, get_origin, get_type_hints

from gitexp.errors import GitexpError
from gitexp.model import checks
from gitexp.model.ids import id_from_ref, is_valid_id, is_valid_name

SCHEMA = 1
STATUSES: tuple[str, ...] = ("queued", "running", "succeeded", "failed", "cancelled", "lost",
                             "timeout")  # timeout: a time limit stopped it (Slurm's --time)
LIVE: frozenset[str] = frozenset(STATUSES[:2])
TERMINAL: frozenset[str] = frozenset(STATUSES[2:])  # every run ends in one of these


# Only variables that change results and never hold secrets are recorded, and only these are
# read back: a record listing LD_PRELOAD or PATH was not written by gitexp.
RECORDED_VARIABLES = (
    "CUDA_VISIBLE_DEVICES", "PYTHONHASHSEED", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
    "CUBLAS_WORKSPACE_CONFIG", "TF_DETERMINISTIC_OPS",
)


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
    user: str  # `Name <email>` from git config: what the launcher says, so forgeable
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
    launched_from: str | None = None  # the launching machine's host name
    seal: str | None = None  # proof that this user launched it here (service/trust.py)
    snapshot: str = ""  # the commit itself; not stored in its own message, filled on load

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("snapshot")
        return d

    @classmethod
    def from_dict(cls, d: Any, snapshot: str = "") -> RunRecord:
        return _record_of(d, snapshot)

    def with_snapshot(self, snapshot: str) -> RunRecord:
        return replace(self, snapshot=snapshot)


@dataclass(frozen=True)
class Attempt:
    """One try at running the command of a run: a preempted attempt is followed by another
    on the same snapshot, data and command, up to the target's maxAttempts."""
    n: int  # 1, 2, ...
    host: str | None = None
    started_at: float | None = None
    ended_at: float | None = None
    reason: str | None = None  # how it ended: `preempted` or the run's status; None: live
    resumed_from: str | None = None  # the label of the checkpoint it restored; None: fresh


ATTEMPT_ENDS = frozenset({"preempted", "interrupted", "succeeded", "failed", "cancelled",
                          "lost", "timeout"})
MAX_ATTEMPTS = 100  # more attempts than this in a result is a forged one


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
    attempts: list[Attempt] = field(default_factory=list)  # when there was more than one

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if not self.attempts:  # a run of one attempt reads as before attempts existed
            d.pop("attempts")
        return d

    @classmethod
    def from_dict(cls, d: Any) -> Result:
        return _result_of(d)

    @property
    def duration(self) -> float | None:
        if self.started_at is None or self.ended_at is None:
            return None
        return self.ended_at - self.started_at


# -- validation -------------------------------------------------------------------------------
# A record is read from git, where anyone with push access (or a bad disk) may have put any
# JSON: every field is checked against its annotation, so a wrong type is one clear error
# here and never a crash far away (`launched_at` in arithmetic, `metrics.items()`, ...).
_RM_HINT = "`git exp rm RUN` removes a run that cannot be read"
_NoneType = type(None)


def _corrupted(what: str, why: str) -> GitexpError:
    return GitexpError(f"corrupted {what}: {why}", hint=_RM_HINT)


def check_types(obj: RunRecord | Result | Environment | Attempt) -> None:
    """Raise GitexpError unless every field of `obj` has the type its annotation says."""
    what = "result" if isinstance(obj, (Result, Attempt)) else "run record"
    if (name := _check_of(type(obj))(obj)) is not None:
        hint = get_type_hints(type(obj))[name]
        value = getattr(obj, name)
        raise _corrupted(what, f"{name} is {type(value).__name__}, not {_show(hint)}")
    if isinstance(obj, RunRecord):
        check_types(obj.env)
    if isinstance(obj, Result):
        for attempt in obj.attempts:
            check_types(attempt)
    if isinstance(obj, Result) and obj.status not in STATUSES:
        raise _corrupted(what, f"unknown status {obj.status!r}")
    if isinstance(obj, Attempt) and (problem := _attempt_problem(obj)):
        raise _corrupted(what, problem)
    if isinstance(obj, RunRecord) and obj.id and not is_valid_id(obj.id):
        raise _corrupted(what, f"invalid run id {obj.id!r}")
    problem = (_record_problem(obj) if isinstance(obj, RunRecord)
               else _result_problem(obj) if isinstance(obj, Result) else None)
    if problem:
        raise _corrupted(what, problem)


# -- what the fields may say ------------------------------------------------------------------
# Types are not enough: a path is joined to the work tree, an id names refs and store keys, a
# word is printed and compared. Free text (argv, params, metric names, error) is only ever
# shown through the renderers' escaping, so it may say anything but NUL in argv.
_SEAL = re.compile(r"[0-9a-f]{64}")


def _record_problem(rec: RunRecord) -> str | None:  # noqa: PLR0911, PLR0912 - a rule a field
    if not rec.argv or any("\0" in a for a in rec.argv):
        return "argv is empty or has a NUL"
    if why := checks.path_problem(rec.cwd, empty_ok=True):
        return f"cwd {rec.cwd!r} {why}"
    for i, out in enumerate(rec.outs):
        if why := checks.path_problem(out):
            return f"outs[{i}] {out!r} {why}"
    if rec.data is not None and (why := _entries_problem("data", rec.data)):
        return why
    for name in ("base", "packages"):
        oid = getattr(rec.env, name) if name == "packages" else rec.base
        if oid is not None and (why := checks.oid_problem(oid, like=rec.snapshot)):
            return f"{name} {why}"
    if rec.seal is not None and not _SEAL.fullmatch(rec.seal):
        return "seal is not a seal"
    for name in ("rerun_of", "sweep"):
        if (v := getattr(rec, name)) is not None and not is_valid_id(v):
            return f"{name} {v!r} is not a run id"
    if rec.name is not None and not is_valid_name(rec.name):
        return f"name {rec.name!r} is not a run name"
    if why := checks.backend_problem(rec.backend):
        return f"backend {rec.backend!r} {why}"
    if why := checks.url_problem(rec.store):
        return f"store {rec.store!r} {why}"
    words = {"target": rec.target, "user": rec.user, "branch": rec.branch or "",
             "launched_from": rec.launched_from or "",
             "env.python": rec.env.python, "env.platform": rec.env.platform,
             **{f"env.variables.{k}": v for k, v in rec.env.variables.items()}}
    for name, word in words.items():
        if why := checks.text_problem(word):
            return f"{name} {word[:40]!r} {why}"
    if not math.isfinite(rec.launched_at):
        return "launched_at is not a time"
    return None


def _result_problem(res: Result) -> str | None:
    for name in ("started_at", "ended_at"):
        if (t := getattr(res, name)) is not None and not math.isfinite(t):
            return f"{name} is not a time"
    if res.host is not None and (why := checks.text_problem(res.host)):
        return f"host {res.host[:40]!r} {why}"
    return _entries_problem("outputs", res.outputs)


def _attempt_problem(att: Attempt) -> str | None:
    if not 1 <= att.n <= MAX_ATTEMPTS:
        return f"attempt {att.n} is out of range"
    if att.reason is not None and att.reason not in ATTEMPT_ENDS:
        return f"attempt {att.n} ended by an unknown reason"
    for name in ("started_at", "ended_at"):
        if (t := getattr(att, name)) is not None and not math.isfinite(t):
            return f"attempt {att.n}: {name} is not a time"
    for name in ("host", "resumed_from"):
        if (word := getattr(att, name)) is not None and (why := checks.text_problem(word)):
            return f"attempt {att.n}: {name} {word[:40]!r} {why}"
    return None


def _entries_problem(what: str, entries: dict[str, Any]) -> str | None:
    """DVC entries, {path: {hash, source, remote, ...}}: their paths become files in the work
    tree and their hashes file names in the DVC cache."""
    for path, entry in entries.items():
        if why := checks.path_problem(path):
            return f"{what} path {path!r} {why}"
        if not isinstance(entry, dict):
            return f"{what} entry {path!r} is not an object"
        h, source, remote = entry.get("hash"), entry.get("source"), entry.get("remote")
        if h is not None and not (isinstance(h, str) and not checks.hash_problem(h)):
            return f"{what} entry {path!r} has a bad hash"
        if source is not None and not (isinstance(source, str) and not checks.path_problem(
                source.partition(":")[0])):
            return f"{what} entry {path!r} has a bad source"
        if remote is not None and not (isinstance(remote, str) and not checks.text_problem(remote)):
            return f"{what} entry {path!r} has a bad remote"
    return None


Check = Callable[[Any], "str | None"]
_CHECKS: dict[type, Check] = {}


def _check_of(cls: type) -> Check:
    """One function per class that returns the first field whose value does not fit its
    annotation (None: all do), generated from the annotations as dataclasses generate
    `__init__`: a record is checked in straight-line code, not through a closure a field
    (a cold `ls` checks 100,000 of them). A nested dataclass (env, attempts) is checked on
    its own."""
    if cls not in _CHECKS:
        names: dict[str, Any] = {}
        lines = ["def check(o):"]
        for name, hint in get_type_hints(cls).items():
            test = _test(hint, "v", names, 0)
            if test != "True":
                lines += [f"    v = o.{name}", f"    if not ({test}):", f"        return {name!r}"]
        lines.append("    return None")
        exec("\n".join(lines), names)  # noqa: S102 - source made from annotations only
        _CHECKS[cls] = names["check"]
    return _CHECKS[cls]


def _checker(hint: Any) -> Callable[[Any], bool]:
    """`hint`'s test alone, as `_check_of` inlines it for a field."""
    names: dict[str, Any] = {}
    fits: Callable[[Any], bool] = eval(f"lambda v: {_test(hint, 'v', names, 0)}", names)  # noqa: S307
    return fits


def _test(hint: Any, v: str, names: dict[str, Any], depth: int) -> str:  # noqa: PLR0911
    """A Python expression true when the value named `v` fits `hint` (JSON's types: true is
    no number; an integral float may come back as an int)."""
    origin, args = get_origin(hint), get_args(hint)
    if hint is Any or (isinstance(hint, type) and is_dataclass(hint)):
        return "True"
    if origin in (UnionType, Union):
        alts = [f"({_test(a, v, names, depth)})" for a in args if a is not _NoneType]
        return " or ".join(([f"{v} is None"] if _NoneType in args else []) + alts)
    if hint is _NoneType:
        return f"{v} is None"
    if hint is float:
        return f"isinstance({v}, (int, float)) and not isinstance({v}, bool)"
    if hint is int:
        return f"isinstance({v}, int) and not isinstance({v}, bool)"
    x, k = f"x{depth}", f"k{depth}"
    if origin is list:
        item = _test(args[0], x, names, depth + 1)
        return f"isinstance({v}, list)" + (f" and all({item} for {x} in {v})"
                                           if item != "True" else "")
    if origin is dict:
        value = _test(args[1], x, names, depth + 1)
        return f"isinstance({v}, dict) and all(isinstance({k}, str) and ({value}) " \
               f"for {k}, {x} in {v}.items())"
    kind = origin or hint
    names[f"_{kind.__name__}"] = kind
    return f"isinstance({v}, _{kind.__name__})"


def _show(hint: Any) -> str:
    if get_origin(hint) in (UnionType, Union):
        return " or ".join(_show(a) for a in get_args(hint))
    if hint is _NoneType:
        return "null"
    return hint.__name__ if isinstance(hint, type) and not get_args(hint) else str(hint)


# -- building from JSON -------------------------------------------------------------------------
# Field names once, not per record: at 10,000 runs `fields()` per call would dominate `ls`.
# Unknown keys are dropped: newer writers may add fields, an older reader keeps what it knows.
_RECORD_KEYS = frozenset(f.name for f in fields(RunRecord)) - {"env", "snapshot"}
_ENV_KEYS = frozenset(f.name for f in fields(Environment))
_RESULT_KEYS = frozenset(f.name for f in fields(Result))
_ATTEMPT_KEYS = frozenset(f.name for f in fields(Attempt))
_VARIABLES = frozenset(RECORDED_VARIABLES)


def _record_of(d: Any, snapshot: str) -> RunRecord:
    if not isinstance(d, dict):
        raise _corrupted("run record", "not a JSON object")
    env = d.get("env") or {}
    if not isinstance(env, dict):
        raise _corrupted("run record", f"env is {type(env).__name__}, not dict")
    variables = env.get("variables")
    if isinstance(variables, dict) and not variables.keys() <= _VARIABLES:
        env = {**env, "variables": {k: v for k, v in variables.items() if k in _VARIABLES}}
    try:
        rec = RunRecord(**{k: v for k, v in d.items() if k in _RECORD_KEYS},
                        env=Environment(**{k: v for k, v in env.items() if k in _ENV_KEYS}),
                        snapshot=snapshot)
    except TypeError as exc:  # a required field missing
        raise _corrupted("run record", str(exc)) from None
    check_types(rec)
    return rec


def _result_of(d: Any) -> Result:
    if not isinstance(d, dict):
        raise _corrupted("result", "not a JSON object")
    try:
        res = Result(**{k: v for k, v in d.items() if k in _RESULT_KEYS - {"attempts"}},
                     attempts=attempts_of(d.get("attempts", [])))
    except TypeError as exc:  # e.g. no status
        raise _corrupted("result", str(exc)) from None
    check_types(res)
    return res


def attempts_of(raw: Any) -> list[Attempt]:
    """A result's (or the store's) list of attempts, checked: GitexpError when damaged."""
    if not isinstance(raw, list) or len(raw) > MAX_ATTEMPTS \
            or not all(isinstance(a, dict) for a in raw):
        raise _corrupted("result", "attempts is not a list of attempts")
    try:
        attempts = [Attempt(**{k: v for k, v in a.items() if k in _ATTEMPT_KEYS}) for a in raw]
    except TypeError as exc:  # no n
        raise _corrupted("result", f"attempts: {exc}") from None
    for attempt in attempts:
        check_types(attempt)
    return attempts


# -- commit messages ------------------------------------------------------------------------
# Both the snapshot and the results commit carry the record as JSON in their message, so one
# `git for-each-ref --format=%(contents)` reads every run without touching a tree.

def encode_message(record: RunRecord, result: Result | None) -> str:
    title = f"gitexp run {record.id}" + (f": {result.status}" if result else "")
    body: dict[str, Any] = {"schema": SCHEMA, "record": record.to_dict()}
    if result is not None:
        body["result"] = result.to_dict()
    return f"{title}\n\n{json.dumps(body, sort_keys=True, separators=(',', ':'))}\n"


@dataclass(frozen=True)
class DecodedRun:
    """A run as one of its commits tells it."""
    record: RunRecord  # its snapshot filled in
    result: Result | None  # None: not written back (the ref is at the snapshot)
    message: str  # the commit message, checked: the index keeps it to decode again
    # The record object as the message has it: what its seal covers (service/trust.py), so a
    # reader checks a seal without rebuilding the dict, and one from a newer gitexp too.
    fields: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


# Deeper JSON than any record needs is refused before anything recurses over it (asdict,
# json.dumps, deepcopy): a forged record must fail here, not with RecursionError later.
MAX_DEPTH = 32
# A record gitexp writes is a few KB (a 10,000-entry sweep grid or data listing: a few hundred);
# past this it is refused before it is parsed, so no one can stall or bloat every `ls`.
MAX_MESSAGE = 1 << 20


def decode_run(message: bytes | str, *, ref: str, commit: str,
               parents: Sequence[str]) -> DecodedRun:
    """The run the commit `commit` under `ref` describes, from what git says of it: its
    message and its parents (a results commit's snapshot is its first parent).

    The one door through which a run read from git comes in, forged ones included: anything
    this gitexp cannot use raises GitexpError with a one-line reason, never anything else."""
    run_id = id_from_ref(ref)
    if run_id is None:
        raise _corrupted("run record", f"{ref!r} is no run ref")
    if len(message) > MAX_MESSAGE:
        raise _corrupted("run record", f"over {MAX_MESSAGE >> 20} MB")
    try:
        text = message.decode() if isinstance(message, bytes) else message
        if not text.isascii():
            text.encode()  # lone surrogates (undecodable bytes, via surrogateescape)
        _, sep, payload = text.partition("\n\n")
        if not sep:
            raise ValueError("no JSON body")
        body = json.loads(payload)
        # Cheap in the common case: only a body with many brackets is walked.
        if payload.count("{") + payload.count("[") > MAX_DEPTH and _too_deep(body):
            raise ValueError(f"nested deeper than {MAX_DEPTH}")
    except RecursionError:  # json's own guard, far deeper than MAX_DEPTH
        raise _corrupted("run record", f"nested deeper than {MAX_DEPTH}") from None
    except ValueError as exc:  # UnicodeError is a ValueError
        raise _corrupted("run record", _one_line(exc)) from None
    if not isinstance(body, dict):
        raise _corrupted("run record", "not a JSON object")
    schema = body.get("schema")
    if type(schema) is not int:  # `type`, not isinstance: JSON true is no schema
        raise _corrupted("run record", "no schema" if schema is None
                         else f"schema is {type(schema).__name__}, not int")
    if schema > SCHEMA:
        raise GitexpError(f"run record schema {schema} is newer than this gitexp",
                          hint="upgrade gitexp: `pip install -U gitexp`")
    if schema != SCHEMA:
        raise _corrupted("run record", f"unknown schema {schema}")
    res = body.get("result")
    result = None if res is None else _result_of(res)
    # A results commit's snapshot is its first parent; a snapshot commit is its own.
    record = _record_of(body.get("record"), parents[0] if result is not None and parents
                        else commit)
    if record.id != run_id:  # forged: its id would steer store keys, refs, scripts
        raise _corrupted("run record", f"the record of run {record.id!r} under {ref!r}")
    return DecodedRun(record=record, result=result, message=text, fields=body["record"])


def _too_deep(value: Any) -> bool:
    stack = [(value, 1)]  # iterative: the point is never to recurse
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            if depth > MAX_DEPTH:
                return True
            stack.extend((x, depth + 1) for x in item)
    return False


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def format_duration(seconds: float | None) -> str:
    """`4.2s`, `3m07s`, `2h05m`; `-` when unknown. Shared by the CLI and the mails."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{seconds:.1f}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"
