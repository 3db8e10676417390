"""A tiny training job: fit y = w*x + b to the DVC-tracked data with plain gradient descent.

    python train.py --lr 0.1 --epochs 20 [--data data] [--model model.json]

Reports the loss curve with `gitexp.log` and a checkpoint every N epochs, which saves the
training state (`state.json`) to the run's store: a run interrupted by its platform goes on
from there in its next attempt (`gitexp.resume()`). Writes the model (a candidate for
`git exp run --out model.json`). Pure Python: no numpy needed.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import gitexp


def load(path: Path) -> list[tuple[float, float]]:
    lines = path.read_text(encoding="utf-8").splitlines()[1:]
    return [(float(x), float(y)) for x, y in (line.split(",") for line in lines)]


def mse(w: float, b: float, rows: list[tuple[float, float]]) -> float:
    return sum((w * x + b - y) ** 2 for x, y in rows) / len(rows)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--data", type=Path, default=Path("data"))
    p.add_argument("--model", type=Path, default=Path("model.json"))
    p.add_argument("--checkpoint-every", type=int, default=10, metavar="N",
                   help="a checkpoint (which may send mail) every N epochs")
    p.add_argument("--pause", type=float, default=0.0, metavar="S",
                   help="sleep S seconds per epoch (time to interrupt it, in the demo)")
    a = p.parse_args()
    train, valid = load(a.data / "train.csv"), load(a.data / "valid.csv")
    w = b = 0.0
    first = 1
    if (saved := gitexp.resume()) is not None:  # an earlier attempt of this run was cut
        state = json.loads((Path(saved) / "state.json").read_text(encoding="utf-8"))
        w, b, first = state["w"], state["b"], state["epoch"] + 1
        print(f"resumed after epoch {state['epoch']}", flush=True)
    for epoch in range(first, a.epochs + 1):
        time.sleep(a.pause)
        gw = sum(2 * (w * x + b - y) * x for x, y in train) / len(train)
        gb = sum(2 * (w * x + b - y) for x, y in train) / len(train)
        w, b = w - a.lr * gw, b - a.lr * gb
        loss, val_loss = mse(w, b, train), mse(w, b, valid)
        gitexp.log(step=epoch, loss=loss, val_loss=val_loss)
        if a.checkpoint_every and epoch % a.checkpoint_every == 0:
            Path("state.json").write_text(json.dumps({"w": w, "b": b, "epoch": epoch}))
            gitexp.checkpoint(f"epoch {epoch}", step=epoch, loss=loss, files=["state.json"])
        print(f"epoch {epoch:3d}  loss {loss:.4f}  val_loss {val_loss:.4f}", flush=True)
    a.model.write_text(json.dumps({"w": w, "b": b}, indent=2) + "\n", encoding="utf-8")
    print(f"model: w={w:.3f} b={b:.3f} -> {a.model}")


if __name__ == "__main__":
    main()
