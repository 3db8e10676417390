"""Generate the example dataset, byte for byte the same on every machine and Python 3.

    python make_data.py [DIR]      (default: data/)

A noisy line y = 3x - 2, split into train.csv and valid.csv. The bytes never change, so
`dvc add data` reproduces the hash committed in examples/data.dvc.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

ROWS = {"train.csv": 800, "valid.csv": 200}


def rows(rng: random.Random, n: int) -> list[str]:
    out = ["x,y"]
    for _ in range(n):
        x = rng.uniform(-1.0, 1.0)
        y = 3.0 * x - 2.0 + rng.gauss(0.0, 0.1)
        out.append(f"{x:.6f},{y:.6f}")
    return out


def main(target: Path) -> None:
    rng = random.Random(20240501)  # the seed pins the bytes
    target.mkdir(parents=True, exist_ok=True)
    for name, n in ROWS.items():
        (target / name).write_text("\n".join(rows(rng, n)) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "data"))
