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

from typing import Any

Sql = tuple[str, list[Any]] | None  # None: every run may match
# A parsed --where (`where.parse_where`): ("cmp", name, op, value), ("not", node),
# ("and", [node, ...]) or ("or", [node, ...]).
Node = tuple[Any, ...]
_SQL_OPS = {"<": "<", "<=": "<=", ">": ">", ">=": ">=", "==": "=", "=": "="}
_COLUMN_FIELDS = ("status", "target")  # fields the runs table has a column for


def narrow(where: Node | None, fields: tuple[str, ...], status: tuple[str, ...] = (),
           target: tuple[str, ...] = ()) -> Sql:
    """The SQL condition on `runs` for a query (None: no narrowing): `where` the parsed
    expression, `fields` the names that are no metric or param."""
    parts = []
    if where is not None:
        parts.append(_sql(where, fields))
    for column, wanted in (("status", status), ("target", target)):
        if wanted:
            marks = ", ".join("?" for _ in wanted)
            parts.append((f"{column} IN ({marks})", list(wanted)))
    found = _all(parts)
    if found is None:
        return None
    return f"status IS NULL OR ({found[0]})", found[1]


def _sql(node: Node, fields: tuple[str, ...]) -> Sql:
    if node[0] == "cmp":
        return _compare(node[1], node[2], node[3], fields)
    if node[0] == "not":
        return None  # the complement of a superset is no superset
    parts = [_sql(n, fields) for n in node[1]]
    return _any(parts) if node[0] == "or" else _all(parts)


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
