"""Live metrics: `ls`, `show` and `watch` show the latest value of each metric of a running
run, read from one small file the agent keeps in the run's store (runs/<id>/latest.json)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from gitexp.model.runstate import LATEST, MAX_LATEST, RunState
from gitexp.stores.file import FileStore
from tests.conftest import make_repo
from tests.helpers import exp, exp_json, wait_done, wait_for

TRAIN = """\
import os, time, gitexp
for i in range(8):
    gitexp.log(step=i, loss=1.0 / (i + 1), acc=i / 10)
deadline = time.time() + 60
while not os.path.exists({go!r}) and time.time() < deadline:
    time.sleep(0.05)
"""


def live_metrics(repo: Path, run_id: str) -> dict[str, object] | None:
    shown = exp_json("show", run_id, cwd=repo)
    metrics = (shown["result"] or {}).get("metrics") or {}
    return metrics if shown["status"] == "running" and metrics.get("loss") == 0.125 else None


def test_a_running_run_shows_its_latest_metrics_in_ls_show_and_watch(tmp_path: Path):
    go = tmp_path / "go"
    repo = make_repo(tmp_path / "proj", {"train.py": TRAIN.format(go=str(go))})
    run_id = exp("run", "-d", "--", "python", "train.py", cwd=repo).stdout.strip()
    watch = subprocess.Popen(["git", "exp", "watch", "--interval", "0.2", "--until-idle"],
                             cwd=repo, stdout=subprocess.PIPE, text=True)
    try:
        metrics = wait_for(lambda: live_metrics(repo, run_id), what="live metrics in show")
        assert metrics == {"loss": 0.125, "acc": 0.7}  # the 8th point; step is no metric
        [row] = exp_json("ls", cwd=repo)
        assert row["status"] == "running" and row["result"]["metrics"] == metrics
        table = exp("ls", cwd=repo).stdout.splitlines()
        assert "loss" in table[0] and "acc" in table[0] and "0.125" in table[1], table
        assert " running " in table[1] and "elsewhere" not in table[1], table  # our own run
        assert "loss = 0.125" in exp("show", run_id, cwd=repo).stdout
        go.write_text("")
        out, _ = watch.communicate(timeout=60)
    finally:
        if watch.poll() is None:
            watch.kill()
            watch.wait()
    assert f"{run_id}  running  acc=0.7  loss=0.125" in out, out  # by name: a stable order
    assert f"{run_id}  running -> succeeded  acc=0.7  loss=0.125" in out, out
    assert wait_done(run_id, repo)["result"]["metrics"] == {"loss": 0.125, "acc": 0.7}


def test_latest_metrics_from_a_store_are_decoded_as_a_series_line(tmp_path: Path):
    """The store is untrusted: only a flat object of scalars counts, read bounded."""
    state = RunState(FileStore(tmp_path), "r1")
    key = tmp_path / "runs" / "r1" / LATEST
    assert state.latest() == {}  # none yet
    state.set_latest({"loss": 0.5, "step": 3, "note": "ok"})
    assert state.latest() == {"loss": 0.5, "note": "ok"}  # step/time are no metrics
    for forged in (b'{"loss": {"deep": 1}, "acc": [1, 2]}', b"[1, 2]", b"\xff\xfe not json",
                   b"[" * 100_000, json.dumps({"loss": "x" * MAX_LATEST}).encode()):
        key.write_bytes(forged)
        assert state.latest() == {}, forged[:40]
    many = {f"m{i}": float(i) for i in range(20_000)}  # a job logging thousands of names
    state.set_latest(many)
    assert key.stat().st_size <= MAX_LATEST
    kept = state.latest()
    assert 1000 < len(kept) < len(many) and kept["m0"] == 0.0
