"""Params as text gives them: the `--key value` / `--key=value` flags of an argv, and the
flattened keys of a `params.yaml`/`params.json` (DVC's convention). Pure parsing."""

from __future__ import annotations

import json
import re
from typing import Any

from gitexp.model.metrics import flatten

FILES = ("params.yaml", "params.json")
_FLAG = re.compile(r"^--([A-Za-z_][\w.\-]*)(?:=(.*))?$", re.DOTALL)
_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")  # unambiguous: linear


def from_argv(argv: list[str]) -> dict[str, Any]:
    """`--lr 3e-4 --epochs=3 --fast` -> {"lr": 0.0003, "epochs": 3, "fast": True}."""
    found: dict[str, Any] = {}
    i = 0
    while i < len(argv):
        m = _FLAG.match(argv[i])
        i += 1
        if not m:
            continue
        key, value = m.group(1), m.group(2)
        if value is None:
            nxt = argv[i] if i < len(argv) else None
            if nxt is not None and not (nxt.startswith("--") or
                                        (nxt.startswith("-") and not _NUMBER.fullmatch(nxt))):
                value = nxt
                i += 1
        found[key] = True if value is None else scalar(value)
    return found


def scalar(text: str) -> Any:
    """A flag's value as the program most likely reads it: numbers become numbers."""
    if _NUMBER.fullmatch(text):
        try:
            return int(text)
        except ValueError:
            return float(text)
    return text


def from_file(name: str, text: str) -> dict[str, Any]:
    """Flattened params of one file; a broken file has none (the run itself would say so)."""
    if name.endswith(".json"):
        try:
            data = json.loads(text)
        except ValueError:
            return {}
    else:
        import yaml  # deferred: only diff and --where on params need it

        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        try:
            data = yaml.load(text, Loader=loader)  # noqa: S506 - a safe loader
        except yaml.YAMLError:
            return {}
    return flatten(data) if isinstance(data, dict) else {}
