"""Make the mutants of [tool.mutmut] under mutants/ and nothing else: no stats, no tests.

`make mutate` with MUTATE_SAMPLE needs the mutants' names to draw its sample from. `mutmut
run 'none.*'` made them too, but only after a full stats run (every selected test, ~10 to
25 minutes) that the sample's own run then repeats: this takes a minute.

    python scripts/mutmut/generate.py [MAX_CHILDREN]   (from the project root)
"""

from __future__ import annotations

import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    # mutmut.__main__ also picks the "fork" start method its pool of generators relies on
    from mutmut.__main__ import create_mutants
    from mutmut.mutation.trampoline import set_mutant_under_test

    set_mutant_under_test("mutant_generation")
    Path("mutants").mkdir(exist_ok=True)
    stats = create_mutants(int(argv[0]) if argv else 2)
    print(f"generated mutants: {stats.mutated} files mutated, {stats.ignored} ignored, "
          f"{stats.unmodified} unmodified", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
