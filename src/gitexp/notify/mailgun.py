"""Mailgun's HTTP API (`POST {url}/v3/{domain}/messages`, basic auth `api:KEY`).

    git config exp.notify.sender mailgun
    git config exp.notify.mailgun.domain mg.example.com
    git config exp.notify.mailgun.url https://api.eu.mailgun.net   # optional (EU region)
    export GITEXP_MAILGUN_KEY=...

The same fields as the SMTP mail: text and HTML bodies, the thread headers (`h:`), and the
curves as `inline` files (Mailgun names their content id after the file name, which is what
the HTML body's `cid:` links use).
"""

from __future__ import annotations

import base64
import secrets as random_source
import urllib.error
import urllib.request
from collections.abc import Mapping
from email.message import EmailMessage

from gitexp.notify import Outbox, PermanentError
from gitexp.notify.settings import MAILGUN_KEY_ENV, NotifySettings

TIMEOUT = 20.0
HEADERS = ("Message-ID", "In-Reply-To", "References", "X-Gitexp-Run", "X-Gitexp-Event")


class MailgunSender:
    name = "mailgun"

    def __init__(self, settings: NotifySettings, secrets: Mapping[str, str],
                 outbox: Outbox) -> None:
        self.settings = settings
        self._key = secrets.get(MAILGUN_KEY_ENV)

    def send(self, message: EmailMessage) -> None:
        s = self.settings
        if not self._key:
            raise PermanentError(f"{MAILGUN_KEY_ENV} is not set")
        if not s.mailgun_domain:
            raise PermanentError("set `git config exp.notify.mailgun.domain mg.example.com`")
        if not s.to:
            raise PermanentError("no recipient: set `git config exp.notify.to you@example.com`")
        body, content_type = encode_form(*form_of(message, s))
        auth = base64.b64encode(f"api:{self._key}".encode()).decode()
        request = urllib.request.Request(  # noqa: S310 - the URL is https (or a test's loopback)
            f"{s.mailgun_url}/v3/{s.mailgun_domain}/messages", data=body, method="POST",
            headers={"Content-Type": content_type, "Authorization": f"Basic {auth}"})
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as response:  # noqa: S310
                response.read()
        except urllib.error.HTTPError as exc:
            if 400 <= exc.code < 500 and exc.code != 429:
                raise PermanentError(f"Mailgun refused: HTTP {exc.code} {exc.reason}") from None
            raise


def form_of(message: EmailMessage, s: NotifySettings
            ) -> tuple[list[tuple[str, str]], list[tuple[str, str, bytes]]]:
    fields = [("from", s.sender_address), *(("to", addr) for addr in s.to),
              ("subject", str(message["Subject"]))]
    for subtype in ("plain", "html"):
        part = message.get_body((subtype,))
        if part is not None:
            fields.append(("text" if subtype == "plain" else "html",
                           part.get_content()))
    fields += [(f"h:{name}", str(message[name])) for name in HEADERS if message[name]]
    files = [("inline", part.get_filename() or "plot.png", part.get_content())
             for part in message.walk() if part.get_content_type() == "image/png"]
    return fields, files


def encode_form(fields: list[tuple[str, str]], files: list[tuple[str, str, bytes]]
                ) -> tuple[bytes, str]:
    """multipart/form-data, as Mailgun wants attachments (urllib has no encoder of its own)."""
    boundary = "gitexp-" + random_source.token_hex(16)
    out: list[bytes] = []
    for name, value in fields:
        out += [f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n"
                f"Content-Type: text/plain; charset=utf-8\r\n\r\n".encode(),
                value.encode(), b"\r\n"]
    for name, filename, data in files:
        out += [f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; "
                f"filename=\"{filename}\"\r\nContent-Type: image/png\r\n\r\n".encode(),
                data, b"\r\n"]
    out.append(f"--{boundary}--\r\n".encode())
    return b"".join(out), f"multipart/form-data; boundary={boundary}"
