"""Mail about runs: checkpoint and end-of-run mail with loss curves, one thread per run.

Senders (`smtp`, `mailgun`, `maildir`) sit behind one small Protocol and a registry. Whatever
the sender, `deliver` retries with backoff and then spools the message to an outbox: mail
never raises into a run. The agent drives mail through `mailer.RunMailer`; the dev side
writes the run's settings at launch and sends the `lost` mail (`dev.py`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from email.message import EmailMessage
from importlib import import_module
from typing import Protocol

from gitexp.notify.settings import NotifySettings

log = logging.getLogger("gitexp.notify")


class PermanentError(Exception):
    """A refusal that retrying cannot fix (bad credentials, no recipient, HTTP 4xx)."""


class Outbox(Protocol):
    def put(self, message: EmailMessage, *, note: str | None = None) -> None:
        """Keep `message` for a person or a later retry; `note` says why it was not sent."""


class Sender(Protocol):
    name: str

    def send(self, message: EmailMessage) -> None:
        """Hand `message` on; raise PermanentError when retrying is pointless."""


# kind -> "module:factory"; a factory takes (settings, secrets, outbox) and returns a Sender
REGISTRY: dict[str, str] = {
    "maildir": "gitexp.notify.maildir:MaildirSender",
    "smtp": "gitexp.notify.smtp:SMTPSender",
    "mailgun": "gitexp.notify.mailgun:MailgunSender",
}


def sender_for(settings: NotifySettings, secrets: Mapping[str, str], outbox: Outbox) -> Sender:
    module, _, name = REGISTRY[settings.sender].partition(":")
    sender: Sender = getattr(import_module(module), name)(settings, secrets, outbox)
    return sender


def deliver(message: EmailMessage, sender: Sender, outbox: Outbox, *, attempts: int = 3,
            backoff: float = 1.0, sleep: Callable[[float], None] = time.sleep) -> str:
    """Send with retries; on final failure spool to `outbox`. Returns `sent`, `spooled` or
    `dropped` (even the outbox failed). Never raises."""
    why = ""
    for attempt in range(attempts):
        try:
            sender.send(message)
            return "sent"
        except PermanentError as exc:
            why = str(exc)
            break
        except Exception as exc:  # whatever the transport throws, mail must not
            why = f"{type(exc).__name__}: {exc}"
        if attempt + 1 < attempts:
            sleep(backoff * 2 ** attempt)
    log.warning("gitexp: mail via %s failed (%s); kept in the outbox", sender.name, why)
    try:
        outbox.put(message, note=f"{sender.name}: {why}"[:300])
    except Exception:
        log.warning("gitexp: the outbox failed too; mail dropped")
        return "dropped"
    return "spooled"
