"""Coverage-guided fuzzing (atheris/libFuzzer) of the run-record and `--where` parsers, the
long-running sibling of tests/test_fuzz.py. Not part of `make test`: `make fuzz` runs it for
a minute (FUZZ_SECONDS), and any input that raises something other than GitexpError is a
crash libFuzzer saves as `crash-*` for replay: `python tests/fuzz_atheris.py crash-...`."""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["gitexp"]):
    from gitexp.errors import GitexpError
    from gitexp.model.record import decode_run
    from gitexp.model.row import row_of
    from gitexp.service import index
    from gitexp.service.where import compile_where

SNAP = "5" * 40
ROWS = [
    {"status": "succeeded", "metrics": {"loss": 0.5, "acc": "x"}, "params": {"lr": "0.5"}},
    {"status": "failed", "metrics": {}, "params": {"train.bs": True, "opt.bs": None}},
]


def one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    mode = fdp.ConsumeIntInRange(0, 2)
    text = fdp.ConsumeUnicodeNoSurrogates(fdp.remaining_bytes())
    try:
        if mode == 0:
            run = decode_run(text, ref="refs/experiments/x", commit=SNAP, parents=[SNAP])
            row_of(run.record, run.result, SNAP)
        elif mode == 1:
            index._row("refs/experiments/x", SNAP,
                       f"tree {SNAP}\nparent {SNAP}\n\n{text}".encode(errors="surrogateescape"))
        else:
            predicate = compile_where(text)
            for row in ROWS:
                predicate(row)
    except GitexpError:
        pass


if __name__ == "__main__":
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
