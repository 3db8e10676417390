"""SMTP (smtplib): STARTTLS, implicit TLS or plain; the password only from the environment.

    git config exp.notify.sender smtp
    git config exp.notify.smtp.host smtp.example.com   # port 587, STARTTLS by default
    git config exp.notify.smtp.user me@example.com
    export GITEXP_SMTP_PASSWORD=...                     # on the worker: the target's secrets
"""

from __future__ import annotations

import ipaddress
import smtplib
import ssl
from collections.abc import Mapping
from email.message import EmailMessage
from email.utils import parseaddr

from gitexp.notify import Outbox, PermanentError
from gitexp.notify.settings import SMTP_PASSWORD_ENV, NotifySettings

TIMEOUT = 15.0


class SMTPSender:
    name = "smtp"

    def __init__(self, settings: NotifySettings, secrets: Mapping[str, str],
                 outbox: Outbox) -> None:
        self.settings = settings
        self._password = secrets.get(SMTP_PASSWORD_ENV)

    def send(self, message: EmailMessage) -> None:
        s = self.settings
        if not s.to:
            raise PermanentError("no recipient: set `git config exp.notify.to you@example.com`")
        if s.smtp_user and not self._password:
            raise PermanentError(f"exp.notify.smtp.user is set but {SMTP_PASSWORD_ENV} is not")
        if s.smtp_user and s.smtp_security == "none" and not _loopback(s.smtp_host):
            raise PermanentError("refusing to send the SMTP password unencrypted: "
                                 "set exp.notify.smtp.security to starttls or ssl")
        context = ssl.create_default_context()
        client = (smtplib.SMTP_SSL(s.smtp_host, s.smtp_port, timeout=TIMEOUT, context=context)
                  if s.smtp_security == "ssl"
                  else smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=TIMEOUT))
        try:
            with client:
                if s.smtp_security == "starttls":
                    client.starttls(context=context)
                if s.smtp_user and self._password:
                    client.login(s.smtp_user, self._password)
                client.send_message(message, from_addr=parseaddr(s.sender_address)[1],
                                    to_addrs=s.to)
        except (smtplib.SMTPAuthenticationError, smtplib.SMTPNotSupportedError,
                smtplib.SMTPRecipientsRefused) as exc:
            raise PermanentError(f"SMTP refused: {_reason(exc)}") from None
        except smtplib.SMTPResponseException as exc:
            if exc.smtp_code >= 500:
                raise PermanentError(f"SMTP refused: {_reason(exc)}") from None
            raise


def _reason(exc: Exception) -> str:
    # The server's words only; smtplib never puts the password in an exception.
    if isinstance(exc, smtplib.SMTPResponseException):
        text = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) \
            else str(exc.smtp_error)
        return f"{exc.smtp_code} {text}"
    return type(exc).__name__


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
