"""A `--where` as SQL over the index: a condition every matching run meets (a superset),
so that the index hands `where.select` the few candidates rather than every run, and the
one rule in `where.py` still decides. Anything it cannot narrow soundly (`not`, `!=`, a
comparison with null, a field other than status/target) admits every run.

Sound because the index's `vals` hold, for each run, every metric and param with the same
`float()` and `str()` that `where._coerce` compares, by name and by last dotted part (a
bare `lr` may mean `train.lr`); a comparison that is true needs such a value. A run not
written back is always a candidate: its row in the index may be older than what a look at
its store shows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Sql = tuple[str, list[Any]] | None  # None: every run may match
Token = tuple[str, str, int]  # where.py's: (kind, text, position)
Literal = Callable[[str, str], Any]  # where.py's: a token's value
_SQL_OPS = {"<": "<", "<=": "<=", ">": ">", ">=": ">=", "==": "=", "=": "="}
_COLUMN_FIELDS = ("status", "target")  # fields the runs table has a column for


def narrow(where: list[Token], literal: Literal, fields: tuple[str, ...],
           status: tuple[str, ...] = (), target: tuple[str, ...] = ()) -> Sql:
    """The SQL condition on `runs` for a query (None: no narrowing): `where` is the tokens of
    an expression `where.compile_where` took, `literal` its values' parser, `fields` the
    names that are no metric or param."""
    parts = []
    if where:
        parts.append(_Narrow(where, literal, fields).expr())
    for column, wanted in (("status", status), ("target", target)):
        if wanted:
            marks = ", ".join("?" for _ in wanted)
            parts.append((f"{column} IN ({marks})", list(wanted)))
    found = _all(parts)
    if found is None:
        return None
    return f"status IS NULL OR ({found[0]})", found[1]


def _all(parts: list[Sql]) -> Sql:
    known = [p for p in parts if p is not None]
    if not known:
        return None
    return " AND ".join(f"({c})" for c, _ in known), [a for _, args in known for a in args]


def _any(parts: list[Sql]) -> Sql:
    if any(p is None for p in parts):
        return None
    return " OR ".join(f"({c})" for c, _ in parts), [a for _, args in parts  # type: ignore[misc]
                                                     for a in args]


class _Narrow:
    """The grammar of `where._Parser`, giving SQL instead of predicates."""

    def __init__(self, toks: list[Token], literal: Literal, fields: tuple[str, ...]) -> None:
        self.tokens, self.i = toks, 0
        self.literal, self.fields = literal, fields

    def peek(self) -> Token | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self) -> Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def is_word(self, word: str) -> bool:
        tok = self.peek()
        return tok is not None and tok[0] == "word" and tok[1].lower() == word

    def expr(self) -> Sql:
        parts = [self.conj()]
        while self.is_word("or"):
            self.take()
            parts.append(self.conj())
        return _any(parts)

    def conj(self) -> Sql:
        parts = [self.neg()]
        while self.is_word("and"):
            self.take()
            parts.append(self.neg())
        return _all(parts)

    def neg(self) -> Sql:
        if self.is_word("not"):
            self.take()
            self.neg()
            return None  # the complement of a superset is no superset
        tok = self.peek()
        if tok is not None and tok[1] == "(":
            self.take()
            inner = self.expr()
            self.take()  # ")"
            return inner
        return self.comparison()

    def comparison(self) -> Sql:
        name = self.take()[1]
        op = self.take()[1]
        kind, raw, _ = self.take()
        return _compare(name, op, self.literal(kind, raw), self.fields)


def _compare(name: str, op: str, want: Any, fields: tuple[str, ...]) -> Sql:
    if op not in _SQL_OPS or want is None:
        return None  # `!=` and null comparisons hold for missing values too
    if name in _COLUMN_FIELDS and isinstance(want, str):
        return (f"{name} {_SQL_OPS[op]} ?", [want]) if op in ("==", "=") else None
    if name in fields:
        return None
    head, _, rest = name.partition(".")
    kind = {"metrics": 0, "params": 1}.get(head) if rest else None
    key = rest if kind is not None else name
    have = "leaf = ? AND (name = ? OR substr(name, -?) = ?)"
    args: list[Any] = [key.rpartition(".")[2], key, len(key) + 1, "." + key]
    if kind is not None:
        have += " AND kind = ?"
        args.append(kind)
    if isinstance(want, bool):
        pass  # only a boolean equals a boolean: the name must be there, nothing more
    elif isinstance(want, float):
        have += f" AND num {_SQL_OPS[op]} ?"
        args.append(want)
    else:
        have += f" AND text {_SQL_OPS[op]} ?"
        args.append(want)
    return f"ref IN (SELECT ref FROM vals WHERE {have})", args  # noqa: S608 - values as arguments
