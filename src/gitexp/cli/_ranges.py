"""The ranges of the verbs' options, checked as the command line is parsed: a value out of
range is one `error:` line naming the option and its range, exit 2 (a usage error), before
anything runs. (click's own ranges would let NaN through, and speak in several lines.)"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from gitexp.errors import UsageError
from gitexp.knobs import duration_seconds

Check = Callable[[Any, Any, Any], Any]  # typer's callback: (ctx, param, value) -> value


def _option(param: Any) -> str:
    names = [n for n in getattr(param, "opts", ()) if n.startswith("--")]
    return names[0] if names else str(getattr(param, "name", "option"))


def _refuse(param: Any, value: object, hint: str) -> UsageError:
    return UsageError(f"{_option(param)} {value!s} is out of range", hint=hint)


def number(low: float, high: float, what: str) -> Check:
    """A finite number from `low` to `high` (`what` says it in the hint)."""
    span = f"from {low:g} to {high:g}" if math.isfinite(high) else f"of {low:g} or more"

    def check(_ctx: Any, param: Any, value: float | None) -> float | None:
        if value is not None and not (math.isfinite(value) and low <= value <= high):
            raise _refuse(param, f"{value:g}", f"{what} {span}")
        return value
    return check


def count(low: int, high: int, what: str = "a whole number") -> Check:
    def check(_ctx: Any, param: Any, value: int | None) -> int | None:
        if value is not None and not low <= value <= high:
            raise _refuse(param, value, f"{what} from {low} to {high}")
        return value
    return check


def duration(_ctx: Any, param: Any, value: str | None) -> str | None:
    """A duration (`30d`, `12h`, `90m`, `45s`, seconds): checked here, parsed by the core."""
    if value is not None:
        try:
            duration_seconds(value)
        except ValueError:
            raise UsageError(f"{_option(param)} {value!r} is not a duration",
                             hint="a number of s, m, h or d, e.g. 30d or 12h") from None
    return value


def name(_ctx: Any, param: Any, value: str | None) -> str | None:
    """A name that, when given, is not blank (`-t ""` is a slip, not "the default")."""
    if value is not None and not value.strip():
        raise UsageError(f"{_option(param)} is empty",
                         hint=f"give a name, or leave {_option(param)} out for the default")
    return value


def metric_and_count(_ctx: Any, param: Any,
                     value: tuple[str, int] | None) -> tuple[str, int] | None:
    """`--keep-best METRIC N`: a metric (`-` for highest first) and a count of 0 or more."""
    if value:
        metric, kept = value
        if not metric.strip().lstrip("-+").strip():
            raise UsageError(f"{_option(param)} needs a metric, not {metric!r}",
                             hint="e.g. --keep-best loss 5, or --keep-best -acc 5")
        if not 0 <= kept <= 10**9:
            raise UsageError(f"{_option(param)} {metric} {kept} is out of range: keep a "
                             "count of 0 or more",
                             hint="e.g. --keep-best loss 5, or --keep-best -acc 5")
    return value
