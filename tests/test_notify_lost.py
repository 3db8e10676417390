"""A dead worker cannot send mail: the dev side does, once, continuing the run's thread.
Mail goes to the embedded default, the Maildir outbox at `.git/gitexp/outbox`."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
from pathlib import Path

from gitexp.notify.maildir import MaildirOutbox
from tests.conftest import make_repo
from tests.helpers import exp, exp_json, wait_for
from tests.services._util import pid_alive

HANGS = """\
import time, gitexp
gitexp.log(step=1, loss=0.9)
gitexp.checkpoint("warm", loss=0.9)
print("training on", flush=True)
time.sleep(300)
"""


def kill_agent_and_job(repo: Path, run_id: str) -> None:
    store = repo / ".git/gitexp/store/runs" / run_id
    agent = json.loads((store / "handle.json").read_text())["pid"]
    def running() -> dict | None:
        status = json.loads((store / "status.json").read_text())
        return status if status.get("status") == "running" else None
    job = wait_for(running, what="the job to start")["pid"]
    os.kill(agent, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):  # its guard may have ended it already
        os.killpg(job, signal.SIGKILL)
    wait_for(lambda: not pid_alive(agent), what="the agent to die")


def outbox(repo: Path) -> MaildirOutbox:
    return MaildirOutbox(repo / ".git/gitexp/outbox")


def test_a_lost_run_is_mailed_once_from_the_dev_side_in_the_same_thread(tmp_path: Path):
    repo = make_repo(tmp_path / "proj", {"train.py": HANGS})
    run_id = exp("run", "-d", "--", "python", "train.py", cwd=repo).stdout.strip()
    # The checkpoint mail (the default sender writes into the outbox).
    [first] = wait_for(lambda: outbox(repo).messages(), timeout=30, what="checkpoint mail")
    assert first["X-Gitexp-Event"] == "checkpoint"
    kill_agent_and_job(repo, run_id)
    assert exp_json("ls", cwd=repo)[0]["status"] == "lost"
    exp("show", run_id, cwd=repo)
    assert len(outbox(repo).messages()) == 1  # looking at runs never sends mail
    exp("watch", "--until-idle", cwd=repo)  # `watch` mails the loss `ls` noticed
    mails = outbox(repo).messages()
    assert [m["X-Gitexp-Event"] for m in mails] == ["checkpoint", "lost"]
    lost = mails[1]
    assert first["Subject"] == f"[gitexp] checkpoint {run_id} train.py warm loss=0.9"
    assert lost["Subject"] == f"[gitexp] lost {run_id} train.py loss=0.9"  # the outcome
    assert lost["In-Reply-To"] == first["Message-ID"]
    body = lost.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert f"run {run_id} was lost: the agent is gone" in body
    assert "training on" in body  # the last lines of its log
    assert any(p.get_filename() == "loss.png" for p in lost.walk())
    exp("ls", cwd=repo)
    exp("watch", "--until-idle", cwd=repo)
    assert len(outbox(repo).messages()) == 2  # once: watching again mails nothing more


def test_git_exp_watch_notices_the_loss_without_anyone_running_ls(tmp_path: Path):
    repo = make_repo(tmp_path / "proj", {"train.py": HANGS})
    run_id = exp("run", "-d", "--", "python", "train.py", cwd=repo).stdout.strip()
    watch = subprocess.Popen(["git", "exp", "watch", "--interval", "0.3",
                              "--until-idle"], cwd=repo, stdout=subprocess.PIPE, text=True)
    try:
        wait_for((repo / ".git/gitexp/store/runs" / run_id / "handle.json").exists)
        kill_agent_and_job(repo, run_id)
        out, _ = watch.communicate(timeout=30)
    finally:
        if watch.poll() is None:
            watch.kill()
            watch.wait()
    assert watch.returncode == 0
    [line] = [ln for ln in out.splitlines() if "lost" in ln]
    # The loss, and the job's last metrics when they reached the store before it was killed.
    assert re.fullmatch(rf"\d\d:\d\d:\d\d  {run_id}  (\w+ -> )?lost(  loss=0\.9)?", line), line
    assert [m["X-Gitexp-Event"] for m in outbox(repo).messages()][-1] == "lost"
