"""Runs that come back: `gitexp.checkpoint(files=)` saves a job's files to the run's store,
and a preempted attempt is followed by another that resumes from them (`gitexp.resume()`),
up to the target's maxAttempts. The local target's platform signal is a SIGTERM to the job
from anything but gitexp's own cancel."""

from __future__ import annotations

import email
import email.policy
import json
import mailbox
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from gitexp.errors import EXIT_TIMEOUT, GitexpError, exit_for
from gitexp.model.record import Attempt, Result, attempts_of
from gitexp.model.runstate import CHECKPOINT, Checkpoint, RunState
from gitexp.stores.file import FileStore
from gitexp.worker.checkpoints import Uploader, restore
from tests.conftest import make_repo
from tests.helpers import exp, git, wait_done, wait_for

# Deterministic training that checkpoints every step, with a series of its own as dvclive
# writes one (resumed as dvclive's resume=True does: from the checkpoint's copy). With a pause
# file (PAUSE_AT, or the first argument), the first attempt stops at step 4 (naming its pid)
# until it is killed, and a resumed one waits for the file's `.go`.
TRAIN = """\
import json, os, shutil, sys, time, gitexp
start, w = 0, 0.0
pause = os.environ.get("PAUSE_AT") or (sys.argv[1] if len(sys.argv) > 1 else None)
tsv = "dvclive/plots/metrics/acc.tsv"
os.makedirs(os.path.dirname(tsv), exist_ok=True)
with open(tsv, "w") as f:
    f.write("step\\tacc\\n")
r = gitexp.resume()
if r:
    with open(os.path.join(r, "ckpt.json")) as f:
        st = json.load(f)
    start, w = st["step"] + 1, st["w"]
    shutil.copy(os.path.join(r, tsv), tsv)
    print(f"resumed at step {start}", flush=True)
    while pause and not os.path.exists(pause + ".go"):
        time.sleep(0.05)
for step in range(start, 8):
    w = w * 0.9 + step
    with open("ckpt.json", "w") as f:
        json.dump({"step": step, "w": w}, f)
    gitexp.log(step=step, loss=1 / (1 + w))
    with open(tsv, "a") as f:
        f.write(f"{step}\\t{step / 10}\\n")
    gitexp.checkpoint(f"step {step}", step=step, files=["ckpt.json", tsv])
    if step == 4 and not r and pause:
        with open(pause, "w") as f:
            f.write(str(os.getpid()))
        time.sleep(120)
with open("model.txt", "w") as f:
    f.write(repr(w))
gitexp.checkpoint("final", step=8, files=["model.txt"])
"""


def _final_file(repo: Path, run_id: str, name: str) -> bytes:
    state = RunState(FileStore(repo / ".git" / "gitexp" / "store"), run_id)
    latest = state.checkpoint()
    assert latest is not None and latest.label == "final", latest
    return (repo / ".git/gitexp/store/runs" / run_id / "checkpoints" / str(latest.n)
            / name).read_bytes()


def test_a_job_killed_as_a_platform_would_resumes_and_ends_as_an_uninterrupted_run(
        tmp_path: Path):
    repo = make_repo(tmp_path / "proj", {"train.py": TRAIN})
    pause = tmp_path / "pid"
    whole = exp("run", "-d", "--", "python", "train.py", cwd=repo).stdout.strip()
    cut = exp("run", "-d", "--force", "--", "python", "train.py", cwd=repo,
              env={"PAUSE_AT": str(pause)}).stdout.strip()
    pid = int(wait_for(lambda: pause.exists() and pause.read_text(), what="step 4"))
    state = RunState(FileStore(repo / ".git" / "gitexp" / "store"), cut)
    wait_for(lambda: (c := state.checkpoint()) is not None and c.step == 4,
             what="checkpoint 'step 4' in the store")
    os.kill(pid, signal.SIGTERM)  # as Kubernetes, Slurm or a VM's shutdown stop a job
    wait_for(lambda: f"{cut}  running (attempt 2)" in exp("ls", cwd=repo).stdout,
             what="ls to show the second attempt")
    Path(f"{pause}.go").write_text("")

    a, b = wait_done(whole, repo), wait_done(cut, repo)
    assert a["status"] == b["status"] == "succeeded", (a, b)
    assert a["result"]["metrics"] == b["result"]["metrics"] and "loss" in a["result"]["metrics"]
    assert _final_file(repo, whole, "model.txt") == _final_file(repo, cut, "model.txt")
    assert "attempts" not in a["result"]  # one attempt reads as before
    first, second = (Attempt(**x) for x in b["result"]["attempts"])
    assert (first.n, first.reason, first.resumed_from) == (1, "preempted", None)
    assert (second.n, second.reason, second.resumed_from) == (2, "succeeded", "step 4")
    assert first.ended_at is not None and second.started_at is not None
    assert first.ended_at <= second.started_at
    log = exp("logs", cut, cwd=repo).stdout
    assert "resuming from checkpoint 'step 4' (step 4)" in log and "resumed at step 5" in log
    # the series goes on across attempts: steps 0-4, then 5-7 (the store's, appended)
    points = [json.loads(line) for line in
              (repo / ".git/gitexp/store/runs" / cut / "metrics.jsonl").read_text().splitlines()]
    assert [p["step"] for p in points if "loss" in p] == [*range(8)], points
    assert [(p["step"], p["acc"]) for p in points if "acc" in p] == [
        (s, s / 10) for s in range(8)], points  # dvclive's: the last attempt's whole series
    shown = exp("show", cut, cwd=repo).stdout
    assert "attempts" in shown and "resumed from step 4" in shown, shown
    # only the latest checkpoint stays in the store
    assert len(list((repo / ".git/gitexp/store/runs" / cut / "checkpoints").iterdir())) == 1
    # one mail says so, in the run's thread (the outbox: no sender configured)
    box = mailbox.Maildir(repo / ".git/gitexp/outbox", create=False)
    mails = [email.message_from_bytes(box.get_bytes(key), policy=email.policy.default)
             for key in box.iterkeys()]
    mails = [m for m in mails if m["X-Gitexp-Run"] == cut]
    resumed = [m for m in mails if m["X-Gitexp-Event"] == "resumed"]
    assert len(resumed) == 1, [m["Subject"] for m in mails]
    body = resumed[0].get_body(("plain",)).get_content()
    assert f"run {cut} was preempted at step 4 - resumed on attempt 2 from checkpoint step 4" \
        in body, body
    [end] = [m for m in mails if m["X-Gitexp-Event"] == "succeeded"]
    assert resumed[0]["Message-ID"] in end["References"].split()  # one thread


def test_with_one_attempt_a_killed_job_fails_and_an_oversized_checkpoint_is_refused(
        tmp_path: Path):
    repo = make_repo(tmp_path / "proj", {"train.py": (
        "import os, signal, gitexp\n"
        "open('big.bin', 'wb').write(b'x' * 4096)\n"
        "gitexp.checkpoint('big', files=['big.bin'])\n"
        "gitexp.checkpoint('outside', files=['../x'])\n"
        "os.kill(os.getpid(), signal.SIGTERM)\n")})
    git("config", "exp.target.local.maxAttempts", "1", cwd=repo)
    git("config", "exp.maxCheckpointSize", "1k", cwd=repo)
    run_id = exp("run", "-d", "--", "python", "train.py", cwd=repo).stdout.strip()
    done = wait_done(run_id, repo)
    assert done["status"] == "failed" and done["result"]["exit_code"] == 143, done
    assert "attempts" not in done["result"]  # never tried again
    log = exp("logs", run_id, cwd=repo).stdout
    assert "checkpoint files not saved: 4096 bytes, over exp.maxCheckpointSize (1000)" in log
    assert "checkpoint files not saved: '../x' is no file under the job's directory" in log
    assert RunState(FileStore(repo / ".git/gitexp/store"), run_id).checkpoint() is None


def test_outside_a_run_checkpoint_and_resume_are_no_ops(tmp_path: Path):
    code = ("import gitexp; gitexp.checkpoint('x', files=['nope']); "
            "assert gitexp.resume() is None; print('ok')")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GITEXP_")}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, check=True,
                         capture_output=True, text=True)
    assert out.stdout == "ok\n" and not list(tmp_path.iterdir())


# -- the store is untrusted: forged pointers and lines --------------------------------------
@pytest.mark.parametrize("files", [
    [["../../escape", 1]], [["/abs", 1]], [[".git/hooks/post-checkout", 1]],
    [["a", 1], ["a/b", 1]], [["a", 1], ["a", 1]], [["a", -1]], [], [["a\nb", 1]],
    [["a", 1]] * 300,
])
def test_a_forged_checkpoint_pointer_reads_as_none(tmp_path: Path, files: list[object]):
    state = RunState(FileStore(tmp_path), "r1")
    key = tmp_path / "runs" / "r1" / CHECKPOINT
    key.parent.mkdir(parents=True)
    key.write_text(json.dumps({"n": 1, "label": "x", "step": 1, "time": 1.0, "files": files}))
    assert state.checkpoint() is None


def test_restore_writes_only_under_its_directory_and_checks_sizes(tmp_path: Path):
    store = FileStore(tmp_path / "store")
    state = RunState(store, "r1")
    (tmp_path / "src.bin").write_bytes(b"abc")
    state.put_checkpoint_file(0, "d/m.bin", tmp_path / "src.bin")
    state.set_checkpoint(Checkpoint(n=0, label="e1", step=3, files=(("d/m.bin", 3),), time=1.0))
    said: list[str] = []
    got = restore(state, tmp_path / "into", said.append)
    assert got is not None and got.step == 3 and (tmp_path / "into/d/m.bin").read_bytes() == b"abc"
    state.set_checkpoint(Checkpoint(n=0, label="e1", step=3, files=(("d/m.bin", 9),), time=1.0))
    assert restore(state, tmp_path / "into", said.append) is None  # not the size it said
    assert said and not (tmp_path / "into").exists()
    # a newer pointer removes the older checkpoints' files
    state.put_checkpoint_file(1, "m.bin", tmp_path / "src.bin")
    state.set_checkpoint(Checkpoint(n=1, label="e2", step=4, files=(("m.bin", 3),), time=2.0))
    assert [p.name for p in (tmp_path / "store/runs/r1/checkpoints").iterdir()] == ["1"]


def test_the_uploader_refuses_what_the_job_line_cannot_name(tmp_path: Path):
    root = tmp_path / "spool"
    (root / "cgood").mkdir(parents=True)
    (root / "cgood" / "m.bin").write_bytes(b"x" * 10)
    (root / "cbig").mkdir()
    (root / "cbig" / "m.bin").write_bytes(b"x" * 10)
    (root / "clink").mkdir()
    (root / "clink" / "m.bin").symlink_to(tmp_path / "secret")
    (tmp_path / "secret").write_text("s")
    said: list[str] = []
    up = Uploader(RunState(FileStore(tmp_path / "store"), "r1"), root, 5, said.append)
    for save in ({"spool": "../spool/cgood", "files": ["m.bin"]},
                 {"spool": "clink", "files": ["m.bin"]},
                 {"spool": "cgood", "files": ["../../secret"]},
                 {"spool": "cbig", "files": ["m.bin"]}):  # 10 bytes, over 5
        up.offer({"_checkpoint": "x", "_save": save})
    assert up.drain(10) and up.latest is None
    assert len(said) == 3 and "over exp.maxCheckpointSize (5)" in said[-1], said
    assert not (root / "cgood").exists() and not (root / "cbig").exists()  # spool freed
    assert (tmp_path / "secret").exists()


def test_a_result_lists_its_attempts_and_old_results_still_decode():
    res = Result(status="succeeded", attempts=[
        Attempt(n=1, host="h", started_at=1.0, ended_at=2.0, reason="preempted"),
        Attempt(n=2, host="h", started_at=3.0, ended_at=4.0, reason="succeeded",
                resumed_from="epoch 3")])
    assert Result.from_dict(json.loads(json.dumps(res.to_dict()))) == res
    assert "attempts" not in Result(status="failed").to_dict()
    assert Result.from_dict({"status": "failed"}).attempts == []  # written before attempts
    for forged in ([{"n": 0}], [{"n": 1, "reason": "bogus"}], [{"n": 1, "host": "a\x1b[2J"}],
                   "x", [1], [{"host": "h"}], [{"n": 1, "started_at": float("nan")}]):
        with pytest.raises(GitexpError):
            attempts_of(forged)


def test_the_time_limit_warning_ends_the_run_as_timeout_never_retried(tmp_path: Path):
    """SIGUSR1 to the agent is Slurm's warning ahead of the time limit (`--signal`)."""
    repo = make_repo(tmp_path / "proj", {"train.py": (
        "import time, gitexp\n"
        "gitexp.log(step=1, loss=0.5)\n"
        "print('training', flush=True)\n"
        "time.sleep(120)\n")})
    run_id = exp("run", "-d", "--", "python", "train.py", cwd=repo).stdout.strip()
    state = RunState(FileStore(repo / ".git/gitexp/store"), run_id)
    wait_for(lambda: "training" in exp("logs", run_id, cwd=repo).stdout, what="the job")
    handle = state.handle()
    assert handle is not None
    os.kill(int(handle["pid"]), signal.SIGUSR1)
    done = wait_done(run_id, repo)
    assert done["status"] == "timeout" and "attempts" not in done["result"], done
    assert exp("logs", run_id, cwd=repo, check=False).returncode == 0
    assert exit_for("timeout", done["result"]["exit_code"]) == EXIT_TIMEOUT
    assert [r["id"] for r in json.loads(exp("ls", "--status", "timeout", "--json",
                                            cwd=repo).stdout)] == [run_id]
