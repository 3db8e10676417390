"""What the mail of a run needs to know, minus every secret.

Settings come from `exp.notify.*` (repo-wide) overridden by `exp.target.<name>.notify<Key>`
(per target, e.g. `exp.target.gpu.notifyMinInterval 2h`). They are frozen at launch into the
store (`runs/<id>/notify-settings.json`) so the worker and the dev side agree on them, and on
the thread ids derived from them. Passwords and API keys are not settings: they are read from
the environment of whoever sends (`SECRET_ENV`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from email.utils import getaddresses, parseaddr
from typing import Any

from gitexp import knobs
from gitexp.git.config import Config, Target

SMTP_PASSWORD_ENV = "GITEXP_SMTP_PASSWORD"  # noqa: S105 - a variable name, not a password
MAILGUN_KEY_ENV = "GITEXP_MAILGUN_KEY"
SECRET_ENV = (SMTP_PASSWORD_ENV, MAILGUN_KEY_ENV)

SENDERS = knobs.knob("exp.notify.sender").choices
EVENTS = tuple(e for e in knobs.knob("exp.notify.on").choices if e != "none")
DEFAULT_ON = tuple(knobs.knob("exp.notify.on").default.split(","))  # the one default
DEFAULT_MIN_INTERVAL = 30 * 60.0


@dataclass(frozen=True)
class NotifySettings:
    repo: str  # the repository's name, for the subject
    to: list[str] = field(default_factory=list)
    sender_address: str = "gitexp <gitexp@localhost>"
    sender: str = "maildir"
    on: list[str] = field(default_factory=lambda: list(DEFAULT_ON))
    min_interval: float = DEFAULT_MIN_INTERVAL
    smtp_host: str = "localhost"
    smtp_port: int = 587
    smtp_user: str | None = None
    smtp_security: str = "starttls"
    mailgun_domain: str | None = None
    mailgun_url: str = "https://api.mailgun.net"
    id_domain: str = "gitexp.localhost"  # right side of every Message-ID of this run

    def wants(self, event: str) -> bool:
        return event in self.on

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> NotifySettings:
        raw = json.loads(data)
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known})


def from_config(config: Config, target: Target, repo_name: str) -> NotifySettings:
    """The settings for a run on `target`; ConfigError names the offending key."""

    def get(key: str) -> str | None:
        override = target.get("notify" + key.replace(".", ""))
        return override if override is not None else config.get(f"exp.notify.{key}")

    def typed(key: str, kind: str) -> Any:
        """`key` checked against its range (gitexp.knobs), named as the user set it."""
        override = target.get("notify" + key.replace(".", ""))
        if override is not None:
            name = f"exp.target.{target.name}.notify{key.replace('.', '')}"
            return knobs.parse(name, override, kind)
        raw = config.get(f"exp.notify.{key}")
        return None if raw is None else knobs.parse(knobs.knob(f"exp.notify.{key}").key, raw,
                                                    kind)

    email = config.get("user.email")
    to = [addr for _, addr in getaddresses([get("to") or email or ""]) if addr]
    sender_address = get("from") or (f"gitexp <{to[0]}>" if to else "gitexp <gitexp@localhost>")
    sender = typed("sender", "choice") or "maildir"
    on = typed("on", "choices")
    on = list(DEFAULT_ON) if on is None else [e for e in on if e != "none"]
    port = typed("smtp.port", "count")
    security = typed("smtp.security", "choice") or ("ssl" if port == 465 else "starttls")
    interval = typed("mininterval", "duration")
    domain = parseaddr(sender_address)[1].rpartition("@")[2]
    return NotifySettings(
        repo=repo_name, to=to, sender_address=sender_address, sender=sender, on=on,
        min_interval=DEFAULT_MIN_INTERVAL if interval is None else interval,
        smtp_host=get("smtp.host") or "localhost",
        smtp_port=port or (465 if security == "ssl" else 587),
        smtp_user=get("smtp.user"), smtp_security=security,
        mailgun_domain=get("mailgun.domain"),
        mailgun_url=(get("mailgun.url") or "https://api.mailgun.net").rstrip("/"),
        id_domain=domain or "gitexp.localhost",
    )


def secrets_from(environ: dict[str, str] | Any) -> dict[str, str]:
    """The sending secrets present in `environ` (the worker's or the dev side's)."""
    return {k: environ[k] for k in SECRET_ENV if environ.get(k)}
