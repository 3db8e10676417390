"""`smtp_server`: an aiosmtpd server in this process on a free loopback port, keeping every
message it receives (parsed with email.policy.default) for the test to inspect."""

from __future__ import annotations

import email
import email.policy
import os
import ssl
import subprocess
import threading
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from tests.services._util import free_port, unavailable


class _Collect:
    """aiosmtpd handler: parse and keep each message; `envelopes` keeps the SMTP envelope."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.arrived = threading.Condition()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.original_content or envelope.content,
                                           policy=email.policy.default)
        with self.arrived:
            self.messages.append(message)
            self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
            self.arrived.notify_all()
        return "250 Message accepted for delivery"


class SmtpServer:
    """Without `credentials`: accepts any mail. With them: requires STARTTLS (certificate
    `cafile`, valid for 127.0.0.1 and localhost) and then AUTH with exactly these credentials."""

    def __init__(self, credentials: tuple[str, str] | None = None,
                 cafile: Path | None = None, keyfile: Path | None = None) -> None:
        from aiosmtpd.controller import Controller

        self._handler = _Collect()
        self.host = "127.0.0.1"
        self.port = 0
        self.credentials = credentials
        self.cafile = cafile
        self.logins: list[str] = []  # usernames that authenticated successfully
        options: dict[str, Any] = {}
        if credentials is not None:
            assert cafile is not None and keyfile is not None
            tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            tls.load_cert_chain(cafile, keyfile)
            options = {"tls_context": tls, "require_starttls": True, "auth_required": True,
                       "auth_require_tls": True, "authenticator": self._authenticate}
        last: Exception | None = None
        # port=0 does not work with Controller; a picked port may be raced for: retry.
        for _ in range(5):
            port = free_port()
            controller = Controller(self._handler, hostname=self.host, port=port, **options)
            try:
                controller.start()
            except (OSError, RuntimeError) as exc:
                last = exc
                continue
            self._controller = controller
            self.port = port
            return
        raise RuntimeError(f"aiosmtpd did not start: {last}")

    def _authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str,
                      auth_data: Any) -> Any:
        from aiosmtpd.smtp import AuthResult, LoginPassword

        if not isinstance(auth_data, LoginPassword) or self.credentials is None:
            return AuthResult(success=False, handled=False)
        given = (auth_data.login.decode(), auth_data.password.decode())
        if given != self.credentials:
            return AuthResult(success=False, handled=False)
        self.logins.append(given[0])
        return AuthResult(success=True)

    @property
    def env(self) -> dict[str, str]:
        """Makes ssl.create_default_context() (smtplib's STARTTLS) trust this server."""
        return {"SSL_CERT_FILE": str(self.cafile)} if self.cafile else {}

    @property
    def messages(self) -> list[EmailMessage]:
        return self._handler.messages

    @property
    def envelopes(self) -> list[tuple[str, list[str]]]:
        """(MAIL FROM, RCPT TOs) per message, in arrival order."""
        return self._handler.envelopes

    def wait_for(self, n: int = 1, timeout: float = 10) -> list[EmailMessage]:
        """Waits until at least `n` messages arrived; returns them all (AssertionError if not)."""
        with self._handler.arrived:
            if not self._handler.arrived.wait_for(lambda: len(self.messages) >= n, timeout):
                raise AssertionError(f"expected {n} message(s) within {timeout}s, "
                                     f"got {len(self.messages)}")
        return list(self.messages)

    def stop(self) -> None:
        if self.port:
            self._controller.stop()
            self.port = 0


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate (and key) for 127.0.0.1 and localhost, valid for a day."""
    cert, key = directory / "smtp-cert.pem", directory / "smtp-key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    return cert, key


@pytest.fixture(scope="session")
def _smtp_certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return self_signed_certificate(tmp_path_factory.mktemp("smtp-tls"))


@pytest.fixture
def smtp_auth_server(_smtp_certificate: tuple[Path, Path],
                     monkeypatch: pytest.MonkeyPatch) -> Iterator[SmtpServer]:
    """An SMTP server requiring STARTTLS + AUTH as `gitexp` / `.credentials[1]`. Its `.env`
    (SSL_CERT_FILE, so the client trusts the server) is set in os.environ for this test;
    pass it on to subprocesses too."""
    cert, key = _smtp_certificate
    try:
        server = SmtpServer(credentials=("gitexp", "s3cret-" + os.urandom(4).hex()),
                            cafile=cert, keyfile=key)
    except (RuntimeError, ImportError, ssl.SSLError) as exc:
        unavailable("smtp (auth)", str(exc))
    for name, value in server.env.items():
        monkeypatch.setenv(name, value)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    """A fresh SMTP server per test (starts in milliseconds); no AUTH, no TLS."""
    try:
        server = SmtpServer()
    except (RuntimeError, ImportError) as exc:
        unavailable("smtp", str(exc))
    try:
        yield server
    finally:
        server.stop()



