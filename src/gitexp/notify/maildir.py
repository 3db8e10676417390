"""The embedded default: mail goes to a Maildir at `.git/gitexp/outbox` (any mail client
opens it, e.g. `mutt -f .git/gitexp/outbox`). The same outbox keeps the mail another sender
could not deliver.

A worker that cannot reach the dev repository spools to its store instead
(`runs/<id>/outbox/`); the dev side moves those into the Maildir (`collect`).
"""

from __future__ import annotations

import email
import email.policy
import mailbox
import time
from collections.abc import Mapping
from email.message import EmailMessage
from pathlib import Path

from gitexp.notify import Outbox
from gitexp.notify.settings import NotifySettings
from gitexp.stores import Store, run_key

UNDELIVERED_HEADER = "X-Gitexp-Undelivered"


class MaildirOutbox:
    def __init__(self, path: Path) -> None:
        self.path = path

    def put(self, message: EmailMessage, *, note: str | None = None) -> None:
        if note:
            del message[UNDELIVERED_HEADER]
            message[UNDELIVERED_HEADER] = note
        self.path.parent.mkdir(parents=True, exist_ok=True)
        mailbox.Maildir(self.path, create=True).add(message)

    def messages(self) -> list[EmailMessage]:
        """Every message in the Maildir, oldest first."""
        box = mailbox.Maildir(self.path, create=False) if self.path.is_dir() else None
        if box is None:
            return []
        found = []
        for stored in box:
            msg = email.message_from_bytes(stored.as_bytes(), policy=email.policy.default)
            found.append((stored.get_date(), msg))
        return [msg for _, msg in sorted(found, key=lambda pair: pair[0])]


    def undelivered(self) -> list[tuple[str, EmailMessage]]:
        """(key, message) of the mail a sender gave up on, oldest first."""
        if not self.path.is_dir():
            return []
        box = mailbox.Maildir(self.path, create=False)
        found = [(stored.get_date(), key, stored) for key, stored in box.iteritems()
                 if stored[UNDELIVERED_HEADER]]
        return [(key, email.message_from_bytes(stored.as_bytes(), policy=email.policy.default))
                for _, key, stored in sorted(found, key=lambda t: t[0])]

    def remove(self, key: str) -> None:
        mailbox.Maildir(self.path, create=False).discard(key)


class StoreOutbox:
    """Spool in the run's store, for a worker without the dev repository at hand."""

    def __init__(self, store: Store, run_id: str) -> None:
        self.store = store
        self.run_id = run_id

    def put(self, message: EmailMessage, *, note: str | None = None) -> None:
        if note:
            del message[UNDELIVERED_HEADER]
            message[UNDELIVERED_HEADER] = note
        key = run_key(self.run_id, f"outbox/{time.time_ns()}.eml")
        self.store.write(key, message.as_bytes())


def collect(store: Store, run_id: str, outbox: MaildirOutbox) -> int:
    """Move mail a worker spooled in the store into the local Maildir; returns how many."""
    moved = 0
    for key in store.list(run_key(run_id, "outbox")):
        data = store.read(key)
        if data:
            msg = email.message_from_bytes(data, policy=email.policy.default)
            outbox.put(msg)
            moved += 1
        store.delete(key)
    return moved


class MaildirSender:
    """Delivery is the outbox itself."""
    name = "maildir"

    def __init__(self, settings: NotifySettings, secrets: Mapping[str, str],
                 outbox: Outbox) -> None:
        self.outbox = outbox

    def send(self, message: EmailMessage) -> None:
        self.outbox.put(message)
