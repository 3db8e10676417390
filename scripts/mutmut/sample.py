"""Print a seeded random sample of the mutants `make mutate` would check, one name a line:
a full run takes hours on two cores, a sample of a few hundred gives the kill ratio within a
few points (scripts/mutation_score.py prints the interval).

    python scripts/mutmut/sample.py N SEED 'gitexp.service.gc.*' ...   (run after generation)
"""

from __future__ import annotations

import fnmatch
import json
import random
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    size, seed, patterns = int(argv[0]), int(argv[1]), argv[2:]
    names = sorted(name for meta in Path("mutants").rglob("*.py.meta")
                   for name in json.loads(meta.read_text())["exit_code_by_key"]
                   if any(fnmatch.fnmatchcase(name, p) for p in patterns))
    if not names:
        print("no mutants: generate them first (mutmut run)", file=sys.stderr)
        return 2
    sample = random.Random(seed).sample(names, min(size, len(names)))
    print("\n".join(sorted(sample)))
    print(f"sampled {len(sample)} of {len(names)} mutants (seed {seed})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
