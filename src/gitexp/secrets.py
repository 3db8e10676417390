"""Secrets: which environment variables hold them, how they reach a worker, how to hide them.

A secret (a mail password, a cloud key, an API token) is read from the launching machine's
environment and travels to the worker only through its target's own channel - for `ssh`,
the ssh session's stdin - never through argv, the store, a run record or a log.

Which variables travel, by name (values never appear in config):
- gitexp's own: GITEXP_SMTP_PASSWORD, GITEXP_MAILGUN_KEY (the agent's mailer needs them);
- every target: `git config exp.secrets "WANDB_API_KEY HF_TOKEN"`;
- one target: `git config exp.target.NAME.secrets "AWS_SECRET_ACCESS_KEY"`.
`exp.target.NAME.env` names plain variables that travel the same way but need no hiding
(say STORAGE_EMULATOR_HOST or CUDA_VISIBLE_DEVICES).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from gitexp.config import Config, Target

OWN = ("GITEXP_SMTP_PASSWORD", "GITEXP_MAILGUN_KEY")
MASK = "***"
MIN_LENGTH = 4  # shorter values would mask ordinary words in a log
# Names that smell of a secret: never recorded, and masked wherever an environment is shown.
_SECRET_NAME = re.compile(
    r"(PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|ACCESS_KEY|PRIVATE_KEY|CREDENTIAL|AUTH)",
    re.IGNORECASE)


def looks_secret(name: str) -> bool:
    return bool(_SECRET_NAME.search(name))


def secret_names(config: Config, target: Target | None = None) -> list[str]:
    names = [*OWN, *_names(config.get("exp.secrets"))]
    if target is not None:
        names += _names(target.get("secrets"))
    return list(dict.fromkeys(names))


def forwarded(config: Config, target: Target,
              environ: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """(secrets, plain variables) of `environ` that travel to this target's workers."""
    secrets = {n: environ[n] for n in secret_names(config, target) if environ.get(n)}
    plain = {n: environ[n] for n in _names(target.get("env"))
             if n in environ and n not in secrets}
    return secrets, plain


def scrub_env(environ: Mapping[str, str], extra: Iterable[str] = ()) -> dict[str, str]:
    """`environ` without its secrets (for a job that must not inherit them, or a dump)."""
    drop = set(OWN) | set(extra)
    return {k: v for k, v in environ.items() if k not in drop and not looks_secret(k)}


def redact(text: str, values: Iterable[str]) -> str:
    """`text` with every secret value masked."""
    for value in sorted({v for v in values if len(v) >= MIN_LENGTH}, key=len, reverse=True):
        text = text.replace(value, MASK)
    return text


def redact_bytes(data: bytes, values: Iterable[str]) -> bytes:
    for value in sorted({v for v in values if len(v) >= MIN_LENGTH}, key=len, reverse=True):
        data = data.replace(value.encode(), MASK.encode())
    return data


def _names(raw: str | None) -> list[str]:
    return [n for n in re.split(r"[\s,]+", raw or "") if n]
