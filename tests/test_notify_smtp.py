"""Jobs that email you, end to end: `git exp run` on the local target with a REAL SMTP server
(aiosmtpd on loopback). Every message received is parsed; the curves are decoded as images."""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from gitexp.notify.maildir import MaildirOutbox
from tests.conftest import make_repo
from tests.helpers import exp, exp_json, git, wait_for
from tests.services._util import free_port, pid_alive
from tests.services.smtp import SmtpServer

BURSTS = """\
import time, gitexp
for i in range(50):
    gitexp.log(step=i, loss=2.0 / (i + 1), acc=i / 100)
    gitexp.checkpoint(f"ckpt {i}", loss=2.0 / (i + 1))
time.sleep(3)  # the mailer looks every 2 s: it finds the whole burst
for i in range(50, 100):
    gitexp.log(step=i, loss=2.0 / (i + 1), acc=i / 100)
    gitexp.checkpoint(f"ckpt {i}", loss=2.0 / (i + 1))
print("trained")
"""


def smtp_repo(path: Path, port: int, files: dict[str, str]) -> Path:
    repo = make_repo(path, {**files, "README.md": "x\n"})
    for key, value in {"exp.notify.sender": "smtp", "exp.notify.to": "me@example.com",
                       "exp.notify.from": "gitexp <runs@lab.example>",
                       "exp.notify.smtp.host": "127.0.0.1", "exp.notify.smtp.port": str(port),
                       "exp.notify.smtp.security": "none", "exp.notify.minInterval": "1h"}.items():
        git("config", key, value, cwd=repo)
    return repo


def agent_done(repo: Path, run_id: str, timeout: float = 40) -> None:
    """The agent sends its last mail after the result is in: wait until it has exited."""
    handle = repo / ".git/gitexp/store/runs" / run_id / "handle.json"
    pid = json.loads(wait_for(handle.read_text, what="handle"))["pid"]
    wait_for(lambda: not pid_alive(pid), timeout=timeout, what="the agent to exit")


def pngs(msg: EmailMessage) -> dict[str, bytes]:
    return {str(p.get_filename()): p.get_content() for p in msg.walk()
            if p.get_content_type() == "image/png"}


def test_checkpoint_and_end_mail_thread_carry_curves_and_a_burst_is_one_digest(
        tmp_path: Path, smtp_server: SmtpServer):
    repo = smtp_repo(tmp_path / "proj", smtp_server.port, {"train.py": BURSTS})
    proc = exp("run", "--", "python", "train.py", cwd=repo)
    assert "trained" in proc.stdout
    run_id = exp_json("ls", cwd=repo)[0]["id"]
    agent_done(repo, run_id)
    msgs = smtp_server.wait_for(2, timeout=5)
    assert len(msgs) == 2, [m["X-Gitexp-Event"] for m in msgs]  # 100 checkpoints, 2 mails
    events = [m["X-Gitexp-Event"] for m in msgs]
    assert events == ["checkpoint", "succeeded"]
    # Every checkpoint is reported exactly once, across the checkpoint digest and the end mail.
    reported = [c for m in msgs for c in _checkpoint_lines(m)]
    assert sorted(reported) == sorted(f"ckpt {i}" for i in range(100))
    assert len(_checkpoint_lines(msgs[0])) >= 50  # the first burst: one mail, not 50
    # One thread, each mail answering the previous one; the subject says what happened.
    assert msgs[0]["Subject"] == f"[gitexp] checkpoint {run_id} train.py ckpt 49 loss=0.04"
    assert msgs[1]["Subject"] == f"[gitexp] ✓ {run_id} train.py loss=0.02"
    first, last = msgs
    assert first["Message-ID"] == f"<{run_id}.1.gitexp@lab.example>"
    assert last["In-Reply-To"] == first["Message-ID"]
    assert last["References"] == first["Message-ID"]
    assert smtp_server.envelopes[0] == ("runs@lab.example", ["me@example.com"])
    # The curves: real PNGs, one per metric, named (file, title metadata) after their metric.
    for msg in msgs:
        images = pngs(msg)
        assert set(images) == {"loss.png", "acc.png"}
        for name, data in images.items():
            image = Image.open(io.BytesIO(data))
            image.load()
            assert image.format == "PNG" and image.size[0] >= 600 and image.size[1] >= 300
            assert image.info["Title"] == name.removesuffix(".png")
            assert run_id in image.info["Description"]
    body = last.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert f"run {run_id} succeeded (exit 0)" in body
    assert "python train.py" in body and "local (local)" in body
    assert "loss" in body and "0.02" in body  # the final loss, 2/100
    html = last.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "cid:loss.png" in html and "cid:acc.png" in html


def _checkpoint_lines(msg: EmailMessage) -> list[str]:
    text = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    section = text.split("checkpoints since the last mail", 1)[-1].split("\n\n", 1)[0]
    return [" ".join(line.split()[2:4]) for line in section.splitlines()[1:] if "ckpt" in line]


FAILS = """\
import gitexp, sys
gitexp.log(step=1, loss=0.5)
print("about to fail", flush=True)
raise SystemExit(3)
"""


def test_a_failed_run_mails_its_last_log_lines(tmp_path: Path, smtp_server: SmtpServer):
    repo = smtp_repo(tmp_path / "proj", smtp_server.port, {"train.py": FAILS})
    proc = exp("run", "--", "python", "train.py", cwd=repo, check=False)
    assert proc.returncode == 3
    [msg] = smtp_server.wait_for(1, timeout=30)
    assert msg["X-Gitexp-Event"] == "failed"
    body = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "failed (exit 3)" in body
    assert "last lines of the log:" in body and "about to fail" in body


def test_smtp_down_for_the_whole_run_the_run_is_unharmed_and_mail_waits_in_the_outbox(
        tmp_path: Path):
    dead_port = free_port()  # nothing listens here
    repo = smtp_repo(tmp_path / "proj", dead_port, {"train.py": FAILS.replace("3)", "0)")})
    git("config", "exp.notify.minInterval", "0", cwd=repo)
    proc = exp("run", "--", "python", "train.py", cwd=repo)
    assert proc.returncode == 0
    run = exp_json("ls", cwd=repo)[0]
    assert run["status"] == "succeeded" and run["result"]["exit_code"] == 0
    agent_done(repo, run["id"])
    kept = MaildirOutbox(repo / ".git/gitexp/outbox").messages()
    assert [m["X-Gitexp-Event"] for m in kept] == ["succeeded"]
    assert "smtp: ConnectionRefusedError" in str(kept[0]["X-Gitexp-Undelivered"])
    assert kept[0]["Subject"] == f"[gitexp] ✓ {run['id']} train.py loss=0.5"
    assert pngs(kept[0])  # the curves wait too
    # Nothing about mail leaked into the job's log or result.
    log = exp("logs", run["id"], cwd=repo).stdout
    assert "smtp" not in log.lower() and "mail" not in log.lower()


def test_git_exp_watch_sends_the_outbox_once_the_server_is_back(tmp_path: Path,
                                                                 smtp_server: SmtpServer):
    repo = smtp_repo(tmp_path / "proj", free_port(), {"train.py": FAILS.replace("3)", "0)")})
    exp("run", "--", "python", "train.py", cwd=repo)
    run_id = exp_json("ls", cwd=repo)[0]["id"]
    agent_done(repo, run_id)
    box = MaildirOutbox(repo / ".git/gitexp/outbox")
    [(_, kept)] = box.undelivered()
    git("config", "exp.notify.smtp.port", str(smtp_server.port), cwd=repo)  # it is back
    exp("watch", "--until-idle", cwd=repo)
    [sent] = smtp_server.wait_for(1)
    assert sent["Message-ID"] == kept["Message-ID"] and sent["X-Gitexp-Undelivered"] is None
    assert box.messages() == []


# -- secrets ------------------------------------------------------------------------------------
SMTP_PASSWORD = "s3cret-smtp-Pa55-7f1c"  # the secret the test hunts for
MAILGUN_KEY = "key-mailgun-9a8b7c6d5e4f"

SNOOP = """\
import os, sys, gitexp
print(dict(os.environ), flush=True)   # a job that dumps its environment into its log
gitexp.log(step=1, loss=1.0)
gitexp.checkpoint("half way", loss=0.5)
"""


class AuthSmtpServer(SmtpServer):
    """The real aiosmtpd server, with AUTH PLAIN/LOGIN required (plain text: loopback only)."""

    def __init__(self, user: str, password: str) -> None:
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult, LoginPassword

        from tests.services.smtp import _Collect

        self.logins: list[str] = []

        def check(server: Any, session: Any, envelope: Any, mechanism: str,
                  data: Any) -> AuthResult:
            ok = isinstance(data, LoginPassword) and data.login.decode() == user \
                and data.password.decode() == password
            self.logins.append(f"{mechanism}:{ok}")
            return AuthResult(success=ok)

        self._handler = _Collect()
        self.host = "127.0.0.1"
        for _ in range(5):
            self.port = free_port()
            self._controller = Controller(self._handler, hostname=self.host, port=self.port,
                                          authenticator=check, auth_required=True,
                                          auth_require_tls=False)
            try:
                self._controller.start()
                return
            except (OSError, RuntimeError):
                continue
        pytest.fail("aiosmtpd with AUTH did not start")


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_secrets_reach_no_store_commit_log_or_mail(tmp_path: Path):
    """The SMTP password and the Mailgun key are in the environment of `git exp run` (the
    local agent inherits it); afterwards they appear nowhere: not in the store, not in any
    object reachable from the run's ref, not in its log (the job printed its whole
    environment), not in any mail - yet the mail went out through an authenticated login."""
    server = AuthSmtpServer("runs@lab.example", SMTP_PASSWORD)
    try:
        repo = smtp_repo(tmp_path / "proj", server.port, {"train.py": SNOOP})
        git("config", "exp.notify.smtp.user", "runs@lab.example", cwd=repo)
        env = {"GITEXP_SMTP_PASSWORD": SMTP_PASSWORD, "GITEXP_MAILGUN_KEY": MAILGUN_KEY}
        exp("run", "--", "python", "train.py", cwd=repo, env=env)
        run_id = exp_json("ls", cwd=repo)[0]["id"]
        agent_done(repo, run_id)
        msgs = server.wait_for(1, timeout=5)
        assert server.logins and all(s.endswith(":True") for s in server.logins)
    finally:
        server.stop()
    assert "GITEXP_RUN_ID" in exp("logs", run_id, cwd=repo).stdout  # the job did dump env
    haystacks: dict[str, bytes] = {}
    for path in (repo / ".git").rglob("*"):
        if path.is_file() and "objects" not in path.parts:
            haystacks[str(path)] = path.read_bytes()  # store, outbox, index, config, logs
    objects = git("rev-list", "--objects", f"refs/experiments/{run_id}", cwd=repo).split("\n")
    for line in objects:
        if line.strip():
            oid = line.split()[0]
            kind = git("cat-file", "-t", oid, cwd=repo).strip()
            haystacks[f"{kind} {oid}"] = subprocess.run(
                ["git", "cat-file", kind, oid], cwd=repo, capture_output=True, check=True).stdout
    for n, msg in enumerate(msgs):
        haystacks[f"mail {n}"] = msg.as_bytes()
    assert len(haystacks) > 20
    for secret in (SMTP_PASSWORD, MAILGUN_KEY):
        encodings = (secret.encode(), secret.encode().hex().encode(),
                     base64.b64encode(secret.encode()), base64.b64encode(b"api:" + secret.encode()))
        for needle in encodings:
            leaks = [name for name, data in haystacks.items() if needle in data]
            assert not leaks, (secret, leaks)
    assert os.environ.get("GITEXP_SMTP_PASSWORD") is None  # the test leaked nothing itself
