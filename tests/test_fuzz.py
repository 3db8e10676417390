"""Property tests (hypothesis) for the two parsers that read what others wrote or typed:
the run-record parser (a record comes from git, where anyone with push access may have put any
bytes) and the `--where` parser. Whatever the input, they answer or raise GitexpError, never
anything else; valid records round-trip; valid expressions mean what a reference evaluator
written here says they mean."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import tempfile
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gitexp.cli import _render
from gitexp.errors import GitexpError
from gitexp.git import Repo
from gitexp.model.checks import BACKENDS
from gitexp.model.record import (
    RECORDED_VARIABLES,
    Environment,
    Result,
    RunRecord,
    decode_run,
    encode_message,
)
from gitexp.model.row import row_of
from gitexp.service import diff, index, rerun
from gitexp.service.narrow import narrow
from gitexp.service.runs import Run
from gitexp.service.where import COLUMNS, compile_where, parse_where, value_of
from tests.helpers import git

FUZZ = settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "300")), deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
SNAP = "5" * 40
COMMIT = "c" * 40  # a results commit; its first parent SNAP is the snapshot

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12,
)

# -- valid records -----------------------------------------------------------------------------
RUN_ID = st.from_regex(r"\A[a-z0-9]{1,8}(-[a-z0-9]{1,8}){0,3}\Z")
TEXT = st.text(max_size=20)
FLOAT = st.floats(allow_nan=False)  # NaN != NaN: equality would not round-trip
SCALAR = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | FLOAT | TEXT
NESTED = st.recursive(SCALAR, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(TEXT, inner, max_size=3), max_leaves=6)
# What the decoder admits (model/checks.py): words without control characters, paths
# relative and inside the repository, DVC entries with hashes.
WORD = st.text(st.characters(exclude_categories=["Cc", "Cs"],
                             exclude_characters="\u2028\u2029\u202a\u202b\u202c\u202d"
                                                "\u202e\u2066\u2067\u2068\u2069"), max_size=20)
PATH = st.lists(st.from_regex(r"\A[a-zA-Z0-9_][a-zA-Z0-9_. -]{0,8}\Z"), min_size=1,
                max_size=3).map("/".join).filter(lambda p: ".git" not in p.lower())
TIME = st.floats(allow_nan=False, allow_infinity=False)
OID = st.from_regex(r"\A[0-9a-f]{40}\Z")
ENTRY = st.fixed_dictionaries({"hash": st.from_regex(r"\A[0-9a-f]{32}(\.dir)?\Z")},
                              optional={"size": st.integers(0, 2**40), "remote": WORD})
ENTRIES = st.dictionaries(PATH, ENTRY, max_size=3)
ENVS = st.builds(Environment, python=WORD, platform=WORD, packages=st.none() | OID,
                 variables=st.dictionaries(st.sampled_from(RECORDED_VARIABLES), WORD,
                                           max_size=3))
RECORDS = st.builds(
    RunRecord, id=RUN_ID, argv=st.lists(TEXT.filter(lambda a: "\0" not in a), min_size=1,
                                        max_size=5), cwd=st.just("") | PATH,
    base=st.none() | OID, branch=st.none() | WORD, user=WORD, launched_at=TIME,
    target=WORD, backend=st.sampled_from(BACKENDS),
    store=st.from_regex(r"\A(file|ssh|gs)://[a-z0-9/._-]{0,20}\Z"), env=ENVS,
    data=st.none() | ENTRIES, params=st.dictionaries(TEXT, NESTED, max_size=3),
    name=st.none() | st.from_regex(r"\A[a-z0-9]{1,10}\Z"), rerun_of=st.none() | RUN_ID,
    sweep=st.none() | RUN_ID, outs=st.lists(PATH, max_size=3),
)
RESULTS = st.builds(
    Result, status=st.sampled_from(["queued", "running", "succeeded", "failed", "cancelled",
                                    "lost"]),
    exit_code=st.none() | st.integers(-255, 2**31), started_at=st.none() | TIME,
    ended_at=st.none() | TIME, host=st.none() | WORD,
    metrics=st.dictionaries(TEXT, NESTED, max_size=3), error=st.none() | TEXT,
    outputs=ENTRIES,
    check=st.none() | st.dictionaries(TEXT, NESTED, max_size=3),
)


_SCRATCH: list[Repo] = []


def scratch() -> Repo:
    """An empty repository, made once: `diff` and `rerun --script` take one, and look up no
    object a fuzzed record names (its package blob is absent, the remote is given)."""
    if not _SCRATCH:
        path = Path(tempfile.mkdtemp(prefix="gitexp-fuzz-"))
        git("init", "-q", str(path), cwd=path)
        _SCRATCH.append(Repo.discover(path))
    return _SCRATCH[0]


PLAIN = RunRecord(id="plain-1", argv=["true"], cwd="", base=None, branch=None, user="u",
                  launched_at=0.0, target="local", backend="local", store="file:///s",
                  env=Environment(python="3", platform="p", packages="0" * 40,
                                  variables={"OMP_NUM_THREADS": "1"}))


def usable(record: RunRecord, result: Result | None) -> None:
    """What `ls`, `show`, `diff` and `rerun --script` do with any record the parser accepted
    (every field of it, the environment included): it must not crash them."""
    row = row_of(record, result, SNAP)
    json.dumps(row)
    for name in ("launched_at", "started", "duration", "exit_code", "loss", "params.lr"):
        value_of(row, name)
    _render.when(record.launched_at)
    _render.duration(result.duration if result else None)
    _render.printable(" ".join(record.argv))
    run = Run(record=record.with_snapshot(SNAP), result=result, commit=SNAP,
              written_back=result is not None)
    # show: its JSON, and the lines it prints
    json.dumps(_render.as_json(run))
    _render.printable(f"{record.env.python} on {record.env.platform}")
    for value in (result.metrics if result else {}).values():
        _render.value(value)
    if result is not None and result.exit_code is not None:
        assert type(result.exit_code) is int  # JSON `true` is no exit code
    # diff against a plain run, both ways: every environment key differs
    plain = Run(record=PLAIN, result=Result(status="succeeded", metrics={"loss": -2.0}),
                commit=SNAP, written_back=True)
    for a, b in ((run, plain), (plain, run)):
        env = diff.environment(scratch(), a, b)
        mets = diff.metrics(a.result.metrics if a.result else {},
                            b.result.metrics if b.result else {})
        for title, rows, metric in (("environment", env, False), ("metrics", mets, True),
                                    ("data", diff.changed(diff._hashes(a.record.data),
                                                          diff._hashes(b.record.data)), False)):
            _render._section(lambda text: None, title, rows, metric=metric)
    # rerun --script: the replay script renders, or is refused in one clean error
    try:
        script = rerun.script(scratch(), run, remote="/nowhere")
    except GitexpError:
        return
    assert script.startswith("#!/bin/sh")


def as_text(record: RunRecord, result: Result | None) -> str:
    # JSON, not ==: a NaN in a metric is equal to itself only as text
    return json.dumps([record.to_dict(), record.snapshot, result and result.to_dict()],
                      sort_keys=True)


def decode(message: str, run_id: str = "x") -> tuple[RunRecord, Result | None]:
    run = decode_run(message, ref=f"refs/experiments/{run_id}", commit=COMMIT, parents=[SNAP])
    return run.record, run.result


def decodes_or_refuses(message: str, run_id: str = "x") -> None:
    try:
        record, result = decode(message, run_id)
    except GitexpError:
        return
    usable(record, result)


@FUZZ
@given(record=RECORDS, result=st.none() | RESULTS)
def test_encode_then_decode_is_identity(record: RunRecord, result: Result | None):
    message = encode_message(record, result)
    snapshot = SNAP if result else COMMIT  # a snapshot commit is its own snapshot
    assert decode(message, record.id) == (record.with_snapshot(snapshot), result)
    usable(record, result)


@FUZZ
@given(raw=st.binary(max_size=300))
def test_arbitrary_bytes_never_raise_anything_but_gitexp_error(raw: bytes):
    decodes_or_refuses(raw.decode(errors="surrogateescape"))
    decodes_or_refuses("gitexp run x\n\n" + raw.decode(errors="replace"))


@FUZZ
@given(body=JSON)
def test_arbitrary_json_never_raises_anything_but_gitexp_error(body: Any):
    decodes_or_refuses("t\n\n" + json.dumps(body))
    decodes_or_refuses("t\n\n" + json.dumps({"schema": 1, "record": body}))
    for parse in (RunRecord.from_dict, Result.from_dict):
        with contextlib.suppress(GitexpError):
            parse(body)


_RECORD_KEYS = [f.name for f in fields(RunRecord) if f.name != "snapshot"]
_RESULT_KEYS = [f.name for f in fields(Result)]


@FUZZ
@given(record=RECORDS, result=RESULTS, where=st.sampled_from(["record", "result", "env"]),
       key=st.data(), value=JSON)
def test_one_field_of_any_type_is_accepted_only_if_usable(
        record: RunRecord, result: Result, where: str, key: st.DataObject, value: Any):
    """Valid records with one field replaced by any JSON (the likely forgery or bit rot):
    refused with GitexpError, or usable by everything that lists and shows runs. The index
    reads the same commit through the same decoder, and must agree."""
    body = json.loads(encode_message(record, result).partition("\n\n")[2])
    names = {"record": _RECORD_KEYS, "result": _RESULT_KEYS,
             "env": ["python", "platform", "packages", "variables"]}[where]
    field = key.draw(st.sampled_from(names))
    target = body["record"]["env"] if where == "env" else body[where]
    target[field] = value
    message = "t\n\n" + json.dumps(body)
    ref = f"refs/experiments/{record.id}"
    decodes_or_refuses(message, record.id)
    try:
        run = decode_run(message, ref=ref, commit=COMMIT, parents=[SNAP])
    except GitexpError:
        run = None
    vals: list[tuple[object, ...]] = []  # the values `--where` is narrowed by, made too
    row = index._row(scratch(), ref, COMMIT, run, {}, vals=vals)
    body = row[index._BODY]
    try:
        record2, result2 = decode(message, record.id)
    except GitexpError:
        assert body is None and not vals  # the index remembers it as unreadable
    else:
        usable(record2, result2)
        assert body == message and row[3] == record2.snapshot
        entry = index._decode(ref, COMMIT, row[3], body)  # as `sync` reads it back
        assert entry is not None
        assert as_text(entry.record, entry.result) == as_text(record2, result2)


@FUZZ
@given(text=st.text(max_size=60) | st.text(alphabet="()<>=!'\" andortlsu.x0123-", max_size=60))
def test_arbitrary_where_text_never_raises_anything_but_gitexp_error(text: str):
    try:
        predicate = compile_where(text)
    except GitexpError:
        return
    for row in ROW_SAMPLES:
        assert predicate(row) in (True, False)


NAMES = ["loss", "acc", "lr", "bs", "status", "metrics.loss", "params.lr", "missing"]
OPS = ["<", "<=", ">", ">=", "==", "=", "!="]
WORDS = ["succeeded", "failed", "a", "b/c", "x.y", "true", "false", "null", "none"]
NUMBERS = st.integers(-5, 5).map(str) | st.floats(-10, 10, allow_nan=False).map(repr)
STRINGS = st.text(alphabet="ab '\"\\.5", max_size=5)


def _quote(s: str, q: str) -> str:
    return q + s.replace("\\", "\\\\").replace(q, "\\" + q) + q


LITERALS = st.one_of(
    NUMBERS.map(lambda raw: ("num", raw, raw)),
    st.tuples(STRINGS, st.sampled_from(["'", '"'])).map(lambda t: ("str", t[0], _quote(*t))),
    st.sampled_from(WORDS).map(lambda w: ("word", w, w)),
)
COMPARISONS = st.tuples(st.sampled_from(NAMES), st.sampled_from(OPS), LITERALS).map(
    lambda t: ("cmp", t[0], t[1], t[2]))
EXPRS = st.recursive(COMPARISONS, lambda inner: st.one_of(
    inner.map(lambda e: ("not", e)),
    inner.map(lambda e: ("paren", e)),
    st.lists(inner, min_size=2, max_size=3).map(lambda es: ("and", es)),
    st.lists(inner, min_size=2, max_size=3).map(lambda es: ("or", es)),
), max_leaves=10)
VALUES = st.none() | st.booleans() | st.integers(-5, 5) | st.floats(-10, 10, allow_nan=False) \
    | st.sampled_from(["succeeded", "a", "0.5", "x.y", "", "b/c"])


def render(e: tuple[Any, ...], tight: bool) -> str:
    kind = e[0]
    if kind == "cmp":
        _, name, op, (_, _, text) = e
        return f"{name}{op}{text}" if tight else f"{name} {op} {text}"
    if kind == "paren":
        return f"({render(e[1], tight)})"
    if kind == "not":
        inner = e[1]
        text = render(inner, tight)
        return "not " + (f"({text})" if inner[0] in ("and", "or") else text)
    parts = [render(c, tight) for c in e[1]]
    if kind == "and":  # an `or` inside an `and` needs its parentheses
        parts = [f"({p})" if c[0] == "or" else p for c, p in zip(e[1], parts, strict=True)]
    return f" {kind} ".join(parts)


# The reference: written from the documented rules, not from the parser's code.
def lookup(row: dict[str, Any], name: str) -> Any:
    if name in row and name not in ("metrics", "params"):
        return row[name]
    if name.startswith(("metrics.", "params.")):
        group, key = name.split(".", 1)
        return _find(row[group], key)
    return row["metrics"][name] if name in row["metrics"] else _find(row["params"], name)


def _find(values: dict[str, Any], key: str) -> Any:
    if key in values:
        return values[key]
    nested = [v for k, v in values.items() if k.endswith("." + key)]
    return nested[0] if len(nested) == 1 else None


def literal(kind: str, raw: str) -> Any:
    if kind == "num":
        return float(raw)
    if kind == "word":
        return {"true": True, "false": False, "null": None, "none": None}.get(raw, raw)
    return raw


def equal(have: Any, want: Any) -> bool:
    if have is None or want is None:
        return have is None and want is None
    if isinstance(have, bool) or isinstance(want, bool):
        return isinstance(have, bool) and isinstance(want, bool) and have == want
    if isinstance(want, float):
        try:
            return float(have) == want
        except ValueError:
            return False
    return str(have) == str(want)


def ordered(have: Any, want: Any, op: str) -> bool:
    if have is None or want is None or isinstance(have, bool) or isinstance(want, bool):
        return False
    if isinstance(want, float):
        try:
            a, b = float(have), want
        except ValueError:
            return False
    else:
        a, b = str(have), str(want)
    return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]


def evaluate(e: tuple[Any, ...], row: dict[str, Any]) -> bool:
    kind = e[0]
    if kind == "cmp":
        _, name, op, (lit_kind, raw, _) = e
        have, want = lookup(row, name), literal(lit_kind, raw)
        if op in ("==", "="):
            return equal(have, want)
        if op == "!=":
            return not equal(have, want)
        return ordered(have, want, op)
    if kind == "paren":
        return evaluate(e[1], row)
    if kind == "not":
        return not evaluate(e[1], row)
    results = [evaluate(c, row) for c in e[1]]
    return all(results) if kind == "and" else any(results)


ROWS = st.builds(
    lambda status, metrics, params: {"status": status, "metrics": metrics, "params": params},
    st.sampled_from(["succeeded", "failed", "running"]),
    st.dictionaries(st.sampled_from(["loss", "acc", "lr"]), VALUES, max_size=3),
    st.dictionaries(st.sampled_from(["lr", "train.bs", "opt.bs", "loss"]), VALUES, max_size=3),
)
ROW_SAMPLES = [
    {"status": "succeeded", "metrics": {"loss": 0.5, "acc": "x"}, "params": {"lr": "0.5"}},
    {"status": "failed", "metrics": {}, "params": {"train.bs": True, "opt.bs": None}},
    {"status": "running", "metrics": {"lr": None}, "params": {"lr": 3}},
]


@FUZZ
@given(expr=EXPRS, rows=st.lists(ROWS, min_size=1, max_size=4), tight=st.booleans())
def test_valid_where_expressions_agree_with_the_reference(expr: tuple[Any, ...],
                                                         rows: list[dict[str, Any]],
                                                         tight: bool):
    text = render(expr, tight)
    predicate = compile_where(text)
    for row in rows:
        assert predicate(row) == evaluate(expr, row), (text, row)


# Expressions SQL can narrow (no `not`, no `!=`; most of EXPRS admit every run and test
# nothing) over a few values that rows hold too, so that equal and boundary cases are common.
FEW = [0, 1, "a", "0.5", True, None]
FEW_LITERALS = st.sampled_from([("num", "0", "0"), ("num", "1", "1"), ("num", "0.5", "0.5"),
                                ("str", "a", "'a'"), ("word", "a", "a"),
                                ("word", "true", "true")])
NARROWABLE = st.recursive(
    st.tuples(st.sampled_from(NAMES), st.sampled_from(OPS[:-1]), FEW_LITERALS).map(
        lambda t: ("cmp", t[0], t[1], t[2])),
    lambda inner: st.one_of(
        inner.map(lambda e: ("paren", e)),
        st.lists(inner, min_size=2, max_size=3).map(lambda es: ("and", es)),
        st.lists(inner, min_size=2, max_size=3).map(lambda es: ("or", es))), max_leaves=6)
FEW_ROWS = st.builds(
    lambda status, metrics, params: {"status": status, "metrics": metrics, "params": params},
    st.sampled_from(["succeeded", "failed"]),
    st.dictionaries(st.sampled_from(["loss", "acc", "lr"]), st.sampled_from(FEW), max_size=3),
    st.dictionaries(st.sampled_from(["lr", "train.bs", "opt.bs"]), st.sampled_from(FEW),
                    max_size=3))


def _admitted(rows: list[dict[str, Any]], texts: list[str]) -> Iterator[tuple[str, set[int]]]:
    """(text, the rows narrow.py's SQL admits) for each `--where` text SQL narrows, over the
    index's own tables holding `rows` (their `vals` as `index._vals` makes them)."""
    db = sqlite3.connect(":memory:")
    db.executescript(index._SCHEMA)
    for i, row in enumerate(rows):
        db.execute("INSERT INTO runs (ref, commit_id, run_id, status) VALUES (?, ?, ?, ?)",
                   (f"r{i}", COMMIT, f"run{i}", row["status"]))
        db.executemany("INSERT INTO vals VALUES (?,?,?,?,?,?)", index._vals(f"r{i}", row))
    for text in texts:
        sql = narrow(parse_where(text), COLUMNS)
        if sql is not None:  # else every run is a candidate
            refs = db.execute(f"SELECT ref FROM runs WHERE {sql[0]}", sql[1])
            yield text, {int(ref[1:]) for (ref,) in refs}
    db.close()


def test_every_comparison_narrows_to_a_superset_of_its_matches():
    """Every name, operator and literal of a small domain against rows holding each value
    under each name: the SQL of one comparison admits every row the reference matches."""
    rows = [{"status": status, "metrics": {}, "params": {}} for status in ("succeeded", "x")]
    for group, names in (("metrics", ("loss", "acc", "lr")), ("params", ("lr", "train.bs"))):
        rows += [{"status": "failed", "metrics": {}, "params": {}, group: {name: value}}
                 for name in names for value in FEW]
    literals = [("num", "0", "0"), ("num", "1", "1"), ("num", "0.5", "0.5"),
                ("str", "a", "'a'"), ("word", "a", "a"), ("word", "true", "true"),
                ("word", "succeeded", "succeeded"), ("str", "0.5", "'0.5'")]
    exprs = {render(e, False): e for e in (("cmp", name, op, lit) for name in NAMES
                                             for op in OPS for lit in literals)}
    checked = 0
    for text, admitted in _admitted(rows, list(exprs)):
        matched = {i for i, row in enumerate(rows) if evaluate(exprs[text], row)}
        assert matched <= admitted, (text, sorted(matched - admitted))
        checked += bool(matched)
    assert checked > 100  # not vacuous: that many comparisons matched rows and were narrowed


@FUZZ
@given(expr=st.one_of(NARROWABLE, EXPRS), rows=st.lists(st.one_of(FEW_ROWS, ROWS), max_size=6),
       tight=st.booleans())
def test_the_index_narrows_a_where_to_a_superset_of_its_matches(expr: tuple[Any, ...],
                                                                rows: list[dict[str, Any]],
                                                                tight: bool):
    """Any expression: what its SQL admits (narrow.py: `and`, `or`, `not` of comparisons)
    holds every run the reference matches; narrowing may admit too many, never drop one."""
    text = render(expr, tight)
    for _, admitted in _admitted(rows, [text]):
        matched = {i for i, row in enumerate(rows) if evaluate(expr, row)}
        assert matched <= admitted, (text, rows)


def test_the_reference_is_not_vacuous():
    """A few hand-checked answers, so a reference that agrees with a broken parser shows."""
    row = {"status": "succeeded", "metrics": {"loss": 0.25}, "params": {"train.bs": 32}}
    for text, want in [("loss < 0.5", True), ("bs == 32", True), ("bs = '32.0'", False),
                       ("status == succeeded and not loss > 1", True),
                       ("missing != null", False), ("missing == null", True),
                       ("loss < 'a'", True), ("(loss<0 or bs>=32) and status!=failed", True)]:
        assert compile_where(text)(row) is want, text


def test_booleans_are_equal_or_not_but_never_ordered():
    """The documented rule (where.py): `==`/`!=` between booleans work; ordering a boolean
    (against a boolean, a number or a string) is false, like a missing value."""
    row = {"status": "succeeded", "metrics": {"loss": False, "ok": True, "n": 0},
           "params": {}}
    for text, want in [("loss < true", False), ("loss <= true", False), ("ok > false", False),
                       ("ok >= ok", False), ("loss < 1", False), ("ok > 0", False),
                       ("loss == false", True), ("loss != true", True), ("ok == true", True),
                       ("ok == 1", False), ("ok != 1", True), ("n == false", False),
                       ("n < true", False), ("not loss < true", True)]:
        assert compile_where(text)(row) is want, text
        assert evaluate(_parse_one(text), row) is want, text  # the reference agrees


def _parse_one(text: str) -> tuple[Any, ...]:
    """`[not] NAME OP LITERAL` as the reference's expression tuple."""
    negate = text.startswith("not ")
    name, op, raw = text.removeprefix("not ").split()
    kind = "num" if raw.lstrip("-").replace(".", "", 1).isdigit() else "word"
    e: tuple[Any, ...] = ("cmp", name, op, (kind, raw, raw))
    return ("not", e) if negate else e
