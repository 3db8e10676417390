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

import fnmatch
import json
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from gitexp.stores import Store, run_key

if TYPE_CHECKING:  # the worker redacts with what this module holds, never reading settings
    from gitexp.git.config import Config, Target

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
    names = [*OWN, *config.names("exp.secrets")]
    if target is not None:
        names += target.names("secrets")
    return list(dict.fromkeys(names))


def forwarded(config: Config, target: Target,
              environ: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """(secrets, plain variables) of `environ` that travel to this target's workers."""
    secrets = {n: environ[n] for n in secret_names(config, target) if environ.get(n)}
    plain = {n: environ[n] for n in target.names("env")
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


# -- redaction on the worker -------------------------------------------------------------------
# The launch writes the names (never the values) of the run's configured secrets to its store;
# the agent masks their values, as its own environment holds them, in the job's log and metrics.
NAMES_KEY = "secret-names.json"
# Named like a secret, but not one: GIT_AUTHOR_*, XAUTHORITY, SSH_AUTH_SOCK (masking their
# values would blank an author's name or a path all over a log).
_NOT_SECRET = re.compile(r"AUTHOR|XAUTHORITY|_SOCK$", re.IGNORECASE)


def publish_names(store: Store, run_id: str, config: Config, target: Target) -> None:
    """Every name configured as a secret - for any target: a job on this one may still find
    the value in its environment (the local agent inherits the user's)."""
    names = list(secret_names(config, target))
    for each in config.targets().values():
        names += each.names("secrets")
        names += [item.partition("=")[0].strip() for item in _names(each.get("secretenv"))]
    store.write(run_key(run_id, NAMES_KEY), json.dumps(sorted(set(names))).encode())


def values_to_redact(store: Store, run_id: str, environ: Mapping[str, str]) -> list[str]:
    """The secret values a worker masks: the configured names' (from the store), gitexp's
    own, and any variable whose name smells of a secret."""
    try:
        raw = store.read(run_key(run_id, NAMES_KEY))
        names = [str(n) for n in json.loads(raw)] if raw else []
    except Exception:  # a store hiccup or a garbled list: still mask what looks secret
        names = []
    names += [*OWN, *(n for n in environ if looks_secret(n) and not _NOT_SECRET.search(n))]
    values = {environ[n] for n in names if len(environ.get(n, "")) >= MIN_LENGTH}
    # the same value as it appears inside a JSON string (metrics lines), when that differs
    return sorted(values | {json.dumps(v)[1:-1] for v in values})


class Redactor:
    """Masks secret values in bytes that arrive in pieces (a pipe): a value split across two
    pieces is still masked, because the end of a piece that could begin one is held back."""

    def __init__(self, values: Iterable[str]) -> None:
        self.values = sorted({v.encode() for v in values if len(v) >= MIN_LENGTH},
                             key=len, reverse=True)
        self._held = b""

    def feed(self, data: bytes) -> bytes:
        if not self.values:
            return data
        buf = self._held + data
        for value in self.values:
            buf = buf.replace(value, MASK.encode())
        keep = self._partial(buf)
        self._held = buf[len(buf) - keep:]
        return buf[:len(buf) - keep]

    def flush(self) -> bytes:
        out, self._held = self._held, b""
        return out

    def _partial(self, buf: bytes) -> int:
        """The length of the longest end of `buf` that begins some secret value."""
        for k in range(min(len(buf), len(self.values[0]) - 1), 0, -1):
            tail = buf[-k:]
            if any(v.startswith(tail) for v in self.values):
                return k
        return 0


# -- files that hold credentials ------------------------------------------------------------
# A snapshot ships an untracked file only if its name does not match these (a tracked one
# ships, with a warning): `git add -A` would otherwise send a forgotten .env to every worker.
SECRET_FILES = (".env", ".env.*", "*.pem", "*.key", "*.p12", "*.pfx", "*.jks", "*.keystore",
                "id_rsa*", "id_dsa*", "id_ecdsa*", "id_ed25519*", ".netrc", "_netrc",
                ".pgpass", ".pypirc", ".htpasswd", "credentials.json", "*.kdbx")


# One regex for all the patterns: a launch asks this of every untracked file (preflight).
_SECRET_FILE = re.compile("|".join(fnmatch.translate(p) for p in SECRET_FILES))


def secret_like_file(path: str) -> bool:
    return _SECRET_FILE.match(path.rsplit("/", 1)[-1].lower()) is not None


def _names(raw: str | None) -> list[str]:
    return [n for n in re.split(r"[\s,]+", raw or "") if n]
