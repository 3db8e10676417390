"""The kill ratio of the last `make mutate` (mutmut 3's results in mutants/), per module and
in all: killed / (killed + survived). A timeout counts as killed (the mutant made the tests
hang: they noticed it); a mutant no selected test ran counts as survived (nothing noticed
it). Suspicious, segfault and not-checked mutants are shown apart and left out of the ratio.

    python scripts/mutation_score.py [--survivors] [--min 0.85]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import Counter
from pathlib import Path

# mutmut's exit codes (mutmut/stats.py); anything else is "suspicious", as mutmut says
KILLED, TIMEOUT, SURVIVED, NO_TESTS = {1, 3}, {24, -24, 152, 255, 36}, {0}, {5, 33}


def status(code: int | None) -> str:
    if code is None:
        return "not checked"
    for name, codes in (("killed", KILLED), ("timeout", TIMEOUT), ("survived", SURVIVED),
                        ("no tests", NO_TESTS)):
        if code in codes:
            return name
    return "other"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--survivors", action="store_true", help="list the mutants that lived")
    parser.add_argument("--min", type=float, default=None, help="fail below this ratio")
    parser.add_argument("--dir", default="mutants")
    args = parser.parse_args()
    metas = sorted(Path(args.dir).rglob("*.py.meta"))
    if not metas:
        print(f"no mutmut results under {args.dir}/: run `make mutate` first", file=sys.stderr)
        return 2
    total: Counter[str] = Counter()
    lived: list[str] = []
    print(f"{'module':<28}{'killed':>8}{'timeout':>9}{'survived':>10}{'no tests':>10}"
          f"{'other':>7}{'ratio':>8}")
    for meta in metas:
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        counts = Counter(status(c) for c in codes.values())
        if not codes:
            continue
        lived += [k for k, c in codes.items() if status(c) in ("survived", "no tests")]
        total += counts
        name = meta.relative_to(args.dir).as_posix().removesuffix(".meta")
        print(f"{name.removeprefix('src/'):<28}" + _row(counts))
    print(f"{'all':<28}" + _row(total))
    if args.survivors:
        print("\n".join(["", "survivors:", *sorted(lived)]))
    ratio = _ratio(total)
    print(f"\nkill ratio {ratio:.1%} = (killed + timeout) / (killed + timeout + survived + "
          "no tests); timeouts count as killed")
    if total["not checked"]:  # a sample (MUTATE_SAMPLE): what the whole would be, at 95 %
        low, high = _wilson(total)
        print(f"{total['not checked']} mutants not checked: over all of them the ratio lies "
              f"in [{low:.1%}, {high:.1%}] (95 % Wilson interval, if the sample is random)")
    return 1 if args.min is not None and ratio < args.min else 0


def _ratio(c: Counter[str]) -> float:
    dead = c["killed"] + c["timeout"]
    return dead / max(1, dead + c["survived"] + c["no tests"])


def _wilson(c: Counter[str], z: float = 1.96) -> tuple[float, float]:
    n = c["killed"] + c["timeout"] + c["survived"] + c["no tests"]
    if not n:
        return 0.0, 1.0
    p = _ratio(c)
    centre, half = p + z * z / (2 * n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - half) / (1 + z * z / n), (centre + half) / (1 + z * z / n)


def _row(c: Counter[str]) -> str:
    checked = c["killed"] + c["timeout"] + c["survived"] + c["no tests"]
    ratio = f"{_ratio(c):>8.1%}" if checked else f"{'-':>8}"  # none checked (yet): no ratio
    return (f"{c['killed']:>8}{c['timeout']:>9}{c['survived']:>10}{c['no tests']:>10}"
            f"{c['other'] + c['not checked']:>7}{ratio}")


if __name__ == "__main__":
    sys.exit(main())
