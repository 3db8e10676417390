"""Mail through Mailgun's HTTP API. Mailgun itself cannot run here: a local HTTP server on
loopback STANDS IN FOR MAILGUN'S API (`POST /v3/<domain>/messages`), and the tests assert the
exact request gitexp makes: URL, basic auth `api:KEY`, form fields and the PNG attachment."""

from __future__ import annotations

import base64
import email
import email.policy
import io
import json
import threading
from collections.abc import Iterator
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from gitexp.notify import PermanentError, deliver
from gitexp.notify.compose import Mail, compose
from gitexp.notify.maildir import MaildirOutbox
from gitexp.notify.mailgun import MailgunSender
from gitexp.notify.settings import NotifySettings
from tests.conftest import make_repo
from tests.helpers import exp, exp_json, git
from tests.test_notify import record
from tests.test_notify_smtp import agent_done

KEY = "key-0123456789abcdef-mailgun"


class FakeMailgun:
    """Records each request: path, headers, and the multipart form parsed into parts."""

    def __init__(self, status: int = 200) -> None:
        self.requests: list[dict[str, Any]] = []
        self.status = status
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                form = email.message_from_bytes(
                    f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode() + body,
                    policy=email.policy.default)
                fake.requests.append({"path": self.path, "headers": dict(self.headers),
                                      "parts": list(form.iter_parts())})  # type: ignore[attr-defined]
                self.send_response(fake.status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(json.dumps({"id": "<x@mg>", "message": "Queued"}).encode())

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def fields(self, n: int = 0) -> list[tuple[str, str]]:
        return [(p.get_param("name", header="content-disposition"), p.get_content())
                for p in self.requests[n]["parts"] if not p.get_filename()]

    def files(self, n: int = 0) -> list[EmailMessage]:
        return [p for p in self.requests[n]["parts"] if p.get_filename()]


@pytest.fixture
def mailgun() -> Iterator[FakeMailgun]:
    fake = FakeMailgun()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


def settings(url: str) -> NotifySettings:
    return NotifySettings(repo="proj", to=["me@example.com", "lab@example.com"],
                          sender_address="gitexp <runs@mg.example.com>", sender="mailgun",
                          mailgun_domain="mg.example.com", mailgun_url=url,
                          id_domain="mg.example.com")


def test_the_request_has_the_url_auth_fields_thread_headers_and_the_png(
        mailgun: FakeMailgun, tmp_path: Path):
    s = settings(mailgun.url)
    msg = compose(s, record(), Mail(event="succeeded", seq=2, metrics={"loss": 0.125},
                                    plots={"loss.png": _png()}))
    sender = MailgunSender(s, {"GITEXP_MAILGUN_KEY": KEY}, MaildirOutbox(tmp_path / "box"))
    sender.send(msg)
    [req] = mailgun.requests
    assert req["path"] == "/v3/mg.example.com/messages"
    assert req["headers"]["Authorization"] == \
        "Basic " + base64.b64encode(f"api:{KEY}".encode()).decode()
    fields = mailgun.fields()
    named = dict(fields)
    assert [v for k, v in fields if k == "to"] == ["me@example.com", "lab@example.com"]
    assert named["from"] == "gitexp <runs@mg.example.com>"
    assert named["subject"] == "[gitexp] ✓ train-1127-1200-abcd train.py loss=0.125"
    assert "succeeded" in named["text"] and "0.125" in named["text"]
    assert "<html" in named["html"] and "cid:loss.png" in named["html"]
    assert named["h:Message-ID"] == "<train-1127-1200-abcd.2.gitexp@mg.example.com>"
    assert named["h:In-Reply-To"] == "<train-1127-1200-abcd.1.gitexp@mg.example.com>"
    [png] = mailgun.files()
    assert png.get_param("name", header="content-disposition") == "inline"
    assert png.get_filename() == "loss.png" and png.get_content_type() == "image/png"
    assert Image.open(io.BytesIO(png.get_content())).format == "PNG"


def test_a_refusal_is_not_retried_and_the_mail_is_kept(tmp_path: Path):
    fake = FakeMailgun(status=401)
    try:
        s = settings(fake.url)
        box = MaildirOutbox(tmp_path / "box")
        msg = compose(s, record(), Mail(event="failed", seq=1))
        sender = MailgunSender(s, {"GITEXP_MAILGUN_KEY": KEY}, box)
        with pytest.raises(PermanentError, match="401"):
            sender.send(msg)
        assert deliver(msg, sender, box, sleep=lambda _: None) == "spooled"
        assert len(fake.requests) == 2  # one per call above: no retries of a 401
        [kept] = box.messages()
        assert "Mailgun refused: HTTP 401" in kept["X-Gitexp-Undelivered"]
        assert KEY not in kept.as_string()
    finally:
        fake.server.shutdown()
        fake.server.server_close()


def test_a_run_mails_through_mailgun_with_the_key_from_the_environment(
        mailgun: FakeMailgun, tmp_path: Path):
    repo = make_repo(tmp_path / "proj", {"train.py": (
        "import gitexp\nfor i in range(5):\n    gitexp.log(step=i, loss=1/(i+1))\n")})
    for key, value in {"exp.notify.sender": "mailgun", "exp.notify.to": "me@example.com",
                       "exp.notify.mailgun.domain": "mg.example.com",
                       "exp.notify.mailgun.url": mailgun.url}.items():
        git("config", key, value, cwd=repo)
    exp("run", "--", "python", "train.py", cwd=repo, env={"GITEXP_MAILGUN_KEY": KEY})
    run_id = exp_json("ls", cwd=repo)[0]["id"]
    agent_done(repo, run_id)
    [req] = mailgun.requests
    assert req["path"] == "/v3/mg.example.com/messages"
    assert dict(mailgun.fields())["h:X-Gitexp-Event"] == "succeeded"
    assert [f.get_filename() for f in mailgun.files()] == ["loss.png"]
    settings_file = repo / ".git/gitexp/store/runs" / run_id / "notify-settings.json"
    assert KEY not in settings_file.read_text()


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), "white").save(out, format="PNG")
    return out.getvalue()
