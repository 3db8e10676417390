"""Mail about runs: checkpoint and end-of-run mail with loss curves, one thread per run.

Senders (`smtp`, `mailgun`, `maildir`) sit behind one small Protocol and a registry. Whatever
the sender, `deliver` retries with backoff and then spools the message to an outbox: mail
never raises into a run. The agent drives mail through `mailer.RunMailer`; the dev side
writes the run's settings at launch and sends the `lost` mail (`dev.py`).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Mapping
from email.message import EmailMessage
from importlib import import_module
from typing import Protocol

from gitexp import disk
from gitexp.errors import GitexpError
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
            why = reason(exc)
            if disk.is_full(exc):  # waiting frees no space
                break
        if attempt + 1 < attempts:
            sleep(backoff * 2 ** attempt)
    try:
        outbox.put(message, note=f"{sender.name}: {why}"[:300])
    except Exception as exc:
        log.warning("warning: mail via %s failed (%s), and so did the outbox (%s): mail "
                    "dropped", sender.name, why, reason(exc))
        return "dropped"
    log.warning("gitexp: mail via %s failed (%s); kept in the outbox", sender.name, why)
    return "spooled"


def reason(exc: BaseException) -> str:
    """One line for why mail failed: a full disk says where."""
    full = disk.error_for(exc) if isinstance(exc, OSError) else None
    return full.message if full else f"{type(exc).__name__}: {exc}"


def failed(what: str, *args: object) -> None:
    """Log a mail step that failed, inside its `except`: the machine's trouble (a full disk,
    an unreachable server) in one line; anything else, a bug, with its traceback."""
    exc = sys.exc_info()[1]
    if isinstance(exc, (OSError, GitexpError)):
        why = exc.message if isinstance(exc, GitexpError) else reason(exc)
        log.warning("warning: " + what + ": %s", *args, why)
    else:
        log.exception(what, *args)
