"""Selecting runs: `--where 'lr<0.01 and status==succeeded'`, `--sort -loss`, `--limit`.

Runs are looked at as flat *rows* (`row_of`): record and result fields by name, plus the
`metrics` and `params` dicts. A bare name is a row field, else a metric, else a param;
`metrics.loss` and `params.lr` say which. The expression language is parsed here by hand
(no `eval`): comparisons `< <= > >= == = !=`, `and`, `or`, `not`, parentheses, numbers,
quoted or bare strings. A missing value makes its comparison false.

A name no run knows is refused, not matched against nothing (a typo must not read as "no
runs"): a name is known when it is a built-in field or `ls` column (`COLUMNS`), or a metric
or param of at least one run of the repository, whatever the other filters. So a metric no
run has logged yet is unknown too, until one does; the error names the closest known names.

Booleans (`true`/`false`, and JSON booleans in metrics and params) are equal only to
booleans, and are never ordered: `flag == true` and `flag != false` work, but `<`, `<=`, `>`,
`>=` with a boolean on either side are false, as with a missing value (False < True would
be Python's accident, not an order anyone meant; a boolean is never taken for 0 or 1).
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from gitexp.errors import GitexpError
from gitexp.git import Repo
from gitexp.git.config import Config
from gitexp.model import ids
from gitexp.model.record import STATUSES
from gitexp.model.row import FIELDS, SUMMARY, Row, row_of
from gitexp.service import index, params, runs
from gitexp.service.narrow import Node, narrow
from gitexp.service.runs import Run

Predicate = Callable[[Row], bool]
COLUMNS = (*FIELDS, "run", "rerun", "by", "commit")  # every name that is no metric or param
HINT = "e.g. --where 'lr<0.01 and status==succeeded' (quote it for the shell)"
MAX_DEPTH = 64  # nested `not`s and parentheses in one --where
NAME = re.compile(r"[A-Za-z_][\w.\-/:]*")  # a field, metric or param: --sort, --columns
_TOKEN = re.compile(r"""\s*(?:
    (?P<num>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?(?![\w.]))
  | (?P<op><=|>=|==|!=|=|<|>)
  | (?P<paren>[()])
  | (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<word>[A-Za-z_][\w.\-/:]*)
  )""", re.VERBOSE)
_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "<": lambda a, b: a < b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b, "==": lambda a, b: a == b, "=": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
}


def value_of(row: Row, name: str) -> Any:
    if name in row and name not in ("metrics", "params"):
        return row[name]
    head, _, rest = name.partition(".")
    if head in ("metrics", "params") and rest:
        return _lookup(row.get(head, {}), rest)
    metrics = row.get("metrics", {})
    return metrics[name] if name in metrics else _lookup(row.get("params", {}), name)


LS_ONLY = {"run": "id", "rerun": "rerun_of", "by": "user"}  # `ls` columns: the fields shown


def words(values: Iterable[str] | None) -> tuple[str, ...]:
    """`--status a,b --status c` -> (a, b, c): repeatable options that also take lists."""
    return tuple(v.strip() for item in values or () for v in item.split(",") if v.strip())


def values(rows: list[Row], cols: Iterable[str]) -> list[list[Any]]:
    """The cells of `cols` as values, not text (no `-`, nothing cut, every digit), row by
    row: what an export (`ls --csv`) writes; `ls` draws the same columns as text."""
    names = [LS_ONLY.get(c, c) for c in cols]
    return [[value_of(row, n) for n in names] for row in rows]


def _lookup(values: dict[str, Any], name: str) -> Any:
    if name in values:
        return values[name]
    # `lr` also finds `train.lr` from a nested params.yaml, when only one key ends so
    nested = [v for k, v in values.items() if k.endswith("." + name)]
    return nested[0] if len(nested) == 1 else None


def needs_params(names: Iterable[str], rows: list[Row]) -> bool:
    """Whether any name may be a param (so params files must be read): not a field, not a
    metric that some run has."""
    names = list(names)
    if not names:
        return False
    known = set(COLUMNS)
    for row in rows:
        known.update(row.get("metrics", {}))
    return any(n.startswith("params.") or (n not in known and not n.startswith("metrics."))
               for n in names)


def add_file_params(repo: Repo, rows: list[Row]) -> None:
    """Put params.yaml/params.json params under each row's own (argv, record) params."""
    files = params.at_snapshots(repo, [(r["snapshot"], r["cwd"]) for r in rows])
    for r in rows:
        r["params"] = {**files.get((r["snapshot"], r["cwd"]), {}), **r["params"]}


# -- the query ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Query:
    status: tuple[str, ...] = ()
    target: tuple[str, ...] = ()
    where: str | None = None
    sort: str | None = None
    limit: int | None = None
    columns: tuple[str, ...] = field(default=())
    sweep: str | None = None

    def __post_init__(self) -> None:
        # Refused here, not silently matched against nothing: a typo must not read as "no runs"
        unknown = [s for s in self.status if s not in STATUSES]
        if unknown:
            raise GitexpError(f"unknown status {unknown[0]!r}",
                              hint=f"statuses: {', '.join(STATUSES)}")
        bad = [c for c in self.columns if not NAME.fullmatch(c)]
        if bad:
            raise GitexpError(f"cannot show column {bad[0]!r}",
                              hint="columns are fields, metrics or params: --columns run,lr,loss")
        sort_keys(self.sort)  # validates it

    def filters(self) -> bool:
        return bool(self.status or self.target or self.where or self.sweep)

    def names(self) -> list[str]:
        """Every name the query looks at (to know whether params are needed)."""
        out = [k for k, _ in sort_keys(self.sort)] + list(self.columns)
        if self.where:
            out += _names(parse_where(self.where))
        return out


def listing(repo: Repo, config: Config, query: Query,
            seen: dict[str, runs.Run] | None = None, *, whole: bool = False) -> list[Row]:
    """The rows `git exp ls` shows: from the index, with unfinished runs looked at afresh
    (finished ones get written back, dead ones become lost) and params files read only when
    the query may name a param. `whole`: every field and every param of each row, whatever
    the query names (the web view shows them all)."""
    return _listing(repo, config, query, whole=whole)[0]


def runs_of(repo: Repo, config: Config, query: Query, specs: Iterable[str] = ()) -> list[Run]:
    """The runs `specs` name (default: every run), narrowed by the query's filters, in the
    query's order: what `plot`, `report`, `cancel` and `rm` act on."""
    named = {run.id: run for run in (runs.find(repo, spec, config) for spec in specs)}
    if not query.filters() and not query.sort and query.limit is None:
        return list(named.values()) or runs.list_runs(repo, config)
    rows, fresh = _listing(repo, config, query)
    if named:
        return [named[row["id"]] for row in rows if row["id"] in named]
    stored = ({e.record.id: e for e in index.sync(repo)}
              if any(row["id"] not in fresh for row in rows) else {})
    return [fresh.get(row["id"]) or _run(stored[row["id"]]) for row in rows
            if row["id"] in fresh or row["id"] in stored]


def pick(repo: Repo, config: Config, specs: Iterable[str] = (), *, sweep: str | None = None,
         where: str | None = None) -> list[Run]:
    """`runs_of` for the verbs that act on runs (`plot`, `report`, `cancel`, `rm`): RUN...,
    `--sweep` and `--where`; a selection that leaves no run is an error, not a no-op."""
    query = Query(sweep=sweep, where=where)
    found = runs_of(repo, config, query, specs)
    if not found and query.filters():
        said = " ".join(f"--{k} {v!r}" for k, v in (("sweep", sweep), ("where", where)) if v)
        raise GitexpError(f"no run matches {said}" + (" among the runs named" if specs else ""),
                          hint=f"`git exp ls {said}` lists what matches")
    return found


def _run(entry: index.Entry) -> Run:
    return Run(record=entry.record, result=entry.result, commit=entry.commit,
               written_back=entry.written_back, own=entry.own)


def _listing(repo: Repo, config: Config, query: Query,
             whole: bool = False) -> tuple[list[Row], dict[str, Run]]:
    """The rows selected, and the unfinished runs looked at on the way, by id."""
    full = whole or bool(query.where or query.sort or query.columns)
    # `whole` wants every param of every row: no narrowing by the index's values
    found = None if whole else _candidates(repo, query, summary=not full)
    rows = index.rows(repo, summary=not full) if found is None else found
    fresh: dict[str, Run] = {}
    for i, row in enumerate(rows):
        if not row["written_back"] and row["own"]:  # another's live run: nothing to look at
            try:
                run = runs.find(repo, row["id"], config)
            except GitexpError:
                continue
            fresh[run.id] = run
            new = row_of(run.record, run.result, run.commit, own=run.own)
            rows[i] = new if full else {k: new[k] for k in SUMMARY}
            rows[i]["written_back"] = run.written_back
    if query.sweep is not None:
        query = replace(query, sweep=sweep_id(query.sweep, rows))
    names = query.names()
    if whole or (found is None and needs_params(names, rows)):  # candidates: no param named
        add_file_params(repo, rows)
    if full and found is None:  # candidates: every name was known
        check_names(names, rows)
    picked = select(rows, query)
    return picked, fresh


def _candidates(repo: Repo, query: Query, *, summary: bool) -> list[Row] | None:
    """The rows that may be selected, from the index by SQL: a page of the newest (and
    every unfinished run of this user's, to look at), or what `narrow` admits. None when
    only every row will do: a sweep to resolve, a name that may be a param (params files
    are read per run) or that no run has, a sort or no limit with nothing to narrow by."""
    if query.sweep is not None:
        return None
    for name in query.names():
        if name in COLUMNS:
            continue
        if name.startswith("params.") or not index.known(repo, name.removeprefix("metrics."),
                                                         0):
            return None
    sql = narrow(parse_where(query.where) if query.where else None, COLUMNS,
                 query.status, query.target)
    if sql is not None:
        return index.page(repo, summary=summary, narrow=sql)
    if query.sort or query.limit is None:
        return None
    rows = index.page(repo, summary=summary, limit=query.limit)
    live = index.page(repo, summary=summary, narrow=("status IS NULL AND own = 1", []))
    if rows is None or live is None:
        return None
    shown = {row["id"] for row in rows}
    return rows + [row for row in live if row["id"] not in shown]


def sweep_id(spec: str, rows: list[Row]) -> str:
    """The sweep `spec` names, by the rule run ids follow (a unique prefix or suffix)."""
    found = ids.match(spec, {r["sweep"] for r in rows if r.get("sweep")}, "sweep")
    if found is None:
        raise GitexpError(f"no sweep matches {spec!r}",
                          hint="`git exp ls --columns run,sweep,status` shows the sweep ids")
    return found


def known_names(rows: list[Row]) -> tuple[set[str], set[str]]:
    """The metric names and the param names of any of `rows` (nested params by full name)."""
    metrics: set[str] = set()
    params: set[str] = set()
    for row in rows:
        metrics.update(row.get("metrics") or ())
        params.update(row.get("params") or ())
    return metrics, params


def check_names(names: Iterable[str], rows: list[Row]) -> None:
    """Refuse a name that is no field, column, metric or param of any run (see the module
    docstring), naming the closest known ones. Rows are read only until every name is
    found: usually the first run has them all."""
    wanted = {n for n in names if n not in COLUMNS}
    if not rows or not wanted:
        return  # no run at all: `ls` says so; nothing can be a typo yet
    for row in rows:
        wanted = {n for n in wanted if not _has(row, n)}
        if not wanted:
            return
    name = next(n for n in names if n in wanted)
    metrics, params = known_names(rows)
    raise GitexpError(f"no field {name!r} in any run", hint=_did_you_mean(
        name, sorted(metrics), sorted(params), list(COLUMNS)))


def _has(row: Row, name: str) -> bool:
    metrics, params = row.get("metrics") or {}, row.get("params") or {}
    head, _, rest = name.partition(".")
    if head == "metrics" and rest:
        return rest in metrics
    if head == "params" and rest:
        name = rest
    elif name in metrics:
        return True
    return name in params or any(k.endswith("." + name) for k in params)


def _did_you_mean(name: str, metrics: list[str], params: list[str], fields: list[str]) -> str:
    close = difflib.get_close_matches(name.rpartition(".")[2] if name.startswith(
        ("metrics.", "params.")) else name, [*metrics, *params, *fields], n=3, cutoff=0.6)
    guess = f"did you mean {' or '.join(close)}? " if close else ""

    def some(kind: str, names: list[str]) -> str:
        return f"{kind} {', '.join(names[:8])}{', ...' if len(names) > 8 else ''}"

    kinds = [some(k, n) for k, n in (("metrics", metrics), ("params", params)) if n]
    return (guess + "known: " + "; ".join([*kinds, some("fields", fields)])
            + " (a metric is known once a run has logged it)")


def select(rows: list[Row], query: Query) -> list[Row]:
    """Filter, sort (newest first unless told) and cut."""
    test = compile_where(query.where) if query.where else None
    picked = [
        r for r in rows
        if (not query.status or r["status"] in query.status)
        and (not query.target or r["target"] in query.target)
        and (query.sweep is None or r["sweep"] == query.sweep)
        and (test is None or test(r))
    ]
    # ties by id, as `index.page` orders them: the same order from SQL, the index or git
    picked.sort(key=lambda r: r.get("id") or "")
    picked.sort(key=lambda r: r.get("launched_at") or 0.0, reverse=True)
    for name, descending in reversed(sort_keys(query.sort)):
        keyed = [(_sortable(value_of(r, name)), r) for r in picked]
        present = [(k, r) for k, r in keyed if k is not None]
        present.sort(key=lambda kr: kr[0], reverse=descending)
        # runs without the value go last either way (stable: the earlier order holds within)
        picked = [r for _, r in present] + [r for k, r in keyed if k is None]
    if query.limit is not None:
        if query.limit < 0:
            raise GitexpError("--limit must be 0 or more", hint="e.g. --limit 20")
        picked = picked[: query.limit]
    return picked


def sort_keys(spec: str | None) -> list[tuple[str, bool]]:
    """`-loss,acc` -> [("loss", True), ("acc", False)]; `-` means descending."""
    keys = []
    for raw in (spec or "").split(","):
        part = raw.strip()
        if not part:
            continue
        name = part.lstrip("-+")
        if not NAME.fullmatch(name):
            raise GitexpError(f"cannot sort by {part!r}", hint="e.g. --sort -acc or --sort loss")
        keys.append((name, part.startswith("-")))
    return keys


def _sortable(v: Any) -> tuple[int, Any] | None:
    if v is None:
        return None
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return (0, float(v))
    return (1, str(v))  # numbers before strings: never compare the two


# -- the --where parser: text -> tree -> predicate (here) or SQL (narrow.py) -------------------
@functools.lru_cache(maxsize=32)  # one query asks for its tree several times
def parse_where(text: str) -> Node:
    """The expression as a tree (`Node`), or GitexpError saying where it is wrong."""
    parser = _Parser(text, _tokens(text))
    tree = parser.expr()
    if parser.peek() is not None:
        parser.fail(f"unexpected {parser.peek()[1]!r}")  # type: ignore[index]
    return tree


def compile_where(text: str) -> Predicate:
    return _predicate(parse_where(text))


def _predicate(node: Node) -> Predicate:
    if node[0] == "cmp":
        return _compare(node[1], node[2], node[3])
    if node[0] == "not":
        inner = _predicate(node[1])
        return lambda r: not inner(r)
    parts = [_predicate(n) for n in node[1]]
    return _any(parts) if node[0] == "or" else _all(parts)


def _names(node: Node) -> list[str]:
    """The names compared, in order."""
    if node[0] == "cmp":
        return [node[1]]
    if node[0] == "not":
        return _names(node[1])
    return [name for n in node[1] for name in _names(n)]


def _tokens(text: str) -> list[tuple[str, str, int]]:
    out, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            col = len(text) - len(text[pos:].lstrip())
            raise GitexpError(f"bad --where expression {_clip(text)}: unexpected {text[col]!r} "
                              f"at column {col + 1}", hint=HINT)
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind), m.start(kind)))
        pos = m.end()
    return out


def _clip(text: str, width: int = 80) -> str:
    return repr(text if len(text) <= width else text[:width - 3] + "...")


class _Parser:
    def __init__(self, text: str, tokens: list[tuple[str, str, int]]) -> None:
        self.text, self.tokens, self.i = text, tokens, 0
        self.depth = 0

    def peek(self) -> tuple[str, str, int] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self) -> tuple[str, str, int]:
        tok = self.peek()
        if tok is None:
            self.fail("it ends too early")
        self.i += 1
        return tok  # type: ignore[return-value]

    def fail(self, why: str) -> None:
        raise GitexpError(f"bad --where expression {_clip(self.text)}: {why}", hint=HINT)

    def is_word(self, word: str) -> bool:
        tok = self.peek()
        return tok is not None and tok[0] == "word" and tok[1].lower() == word

    def expr(self) -> Node:
        parts = [self.conj()]
        while self.is_word("or"):
            self.take()
            parts.append(self.conj())
        return parts[0] if len(parts) == 1 else ("or", parts)

    def conj(self) -> Node:
        parts = [self.neg()]
        while self.is_word("and"):
            self.take()
            parts.append(self.neg())
        return parts[0] if len(parts) == 1 else ("and", parts)

    def neg(self) -> Node:
        self.depth += 1  # each `not` and `(` nests once: refuse before Python's stack ends
        if self.depth > MAX_DEPTH:
            self.fail(f"nested more than {MAX_DEPTH} deep")
        if self.is_word("not"):
            self.take()
            inner = self.neg()
            self.depth -= 1
            return ("not", inner)
        tok = self.peek()
        if tok is not None and tok[1] == "(":
            self.take()
            inner = self.expr()
            if self.take()[1] != ")":
                self.fail("a ')' is missing")
            self.depth -= 1
            return inner
        self.depth -= 1
        return self.comparison()

    def comparison(self) -> Node:
        kind, name, _ = self.take()
        if kind != "word" or name.lower() in ("and", "or", "not"):
            self.fail(f"expected a name (a field, metric or param) but found {name!r}")
        tok = self.peek()
        if tok is None or tok[0] != "op":
            self.fail(f"expected a comparison (<, <=, >, >=, ==, !=) after {name!r}")
        op = self.take()[1]
        kind, raw, _ = self.take()
        if kind not in ("num", "str", "word"):
            self.fail(f"expected a value after {op!r} but found {raw!r}")
        return ("cmp", name, op, _literal(kind, raw))


# Flat, not nested: `a or b or ...` with thousands of terms must not recurse once per term.
def _any(parts: list[Predicate]) -> Predicate:
    return lambda r: any(p(r) for p in parts)


def _all(parts: list[Predicate]) -> Predicate:
    return lambda r: all(p(r) for p in parts)


def _literal(kind: str, raw: str) -> Any:
    if kind == "num":
        return float(raw)
    if kind == "str":
        return re.sub(r"\\(.)", r"\1", raw[1:-1])
    return {"true": True, "false": False, "null": None, "none": None}.get(raw.lower(), raw)


def _compare(name: str, op: str, want: Any) -> Predicate:
    fn = _COMPARE[op]

    def test(row: Row) -> bool:
        have = value_of(row, name)
        if have is None or want is None:
            return (have is None) == (want is None) if op in ("==", "=") else (
                op == "!=" and (have is None) != (want is None))
        a, b = _coerce(have, want)
        if a is None:
            return op == "!="  # incomparable kinds: equal never, different always
        if isinstance(a, bool) and op not in ("==", "=", "!="):
            return False  # booleans are not ordered (see the module docstring)
        try:
            return fn(a, b)
        except TypeError:
            return False

    return test


def _coerce(have: Any, want: Any) -> tuple[Any, Any]:
    if isinstance(want, bool) or isinstance(have, bool):
        return (have, want) if isinstance(have, bool) and isinstance(want, bool) else (None, None)
    if isinstance(want, float):
        try:
            return float(have), want
        except (TypeError, ValueError):
            return None, None
    return str(have), str(want)
