"""secrets.py, function by function: which names are secrets, what travels to a worker,
what is masked. (End to end: test_security.py and test_secret_scan.py.)"""

from __future__ import annotations

import json
from pathlib import Path

from gitexp import secrets
from gitexp.git import Repo
from gitexp.git.config import Config
from gitexp.stores.file import FileStore
from tests.helpers import git


def config(repo: Path, **values: str) -> Config:
    """The repository's real configuration after `git config KEY VALUE` for each value."""
    for key, value in values.items():
        git("config", key.replace("__", "."), value, cwd=repo)
    return Config.load(Repo.discover(repo))


def test_names_that_look_secret() -> None:
    for name in ("DB_PASSWORD", "db_passwd", "MY_SECRET", "HF_TOKEN", "OPENAI_API_KEY",
                 "APIKEY", "AWS_SECRET_ACCESS_KEY", "SSH_PRIVATE_KEY", "GCP_CREDENTIALS",
                 "AUTH_HEADER"):
        assert secrets.looks_secret(name), name
    for name in ("HOME", "PATH", "CUDA_VISIBLE_DEVICES", "KEYBOARD"):
        assert not secrets.looks_secret(name), name


def test_secret_names_are_gitexps_own_the_global_and_the_targets_once_each(repo: Path) -> None:
    cfg = config(repo, exp__secrets="HF_TOKEN, WANDB_API_KEY  HF_TOKEN",
                 exp__target__gpu__backend="local", exp__target__gpu__secrets="AWS_KEY,HF_TOKEN")
    assert secrets.secret_names(cfg) == [*secrets.OWN, "HF_TOKEN", "WANDB_API_KEY"]
    assert secrets.secret_names(cfg, cfg.targets()["gpu"]) == [
        *secrets.OWN, "HF_TOKEN", "WANDB_API_KEY", "AWS_KEY"]


def test_forwarded_takes_set_secrets_and_the_targets_plain_variables(repo: Path) -> None:
    cfg = config(repo, exp__secrets="HF_TOKEN EMPTY_TOKEN UNSET_TOKEN",
                 exp__target__gpu__backend="local", exp__target__gpu__secrets="GPU_KEY",
                 exp__target__gpu__env="CUDA_VISIBLE_DEVICES HF_TOKEN MISSING")
    environ = {"HF_TOKEN": "hf-1234", "EMPTY_TOKEN": "", "CUDA_VISIBLE_DEVICES": "0,1",
               "HOME": "/home/me", "GITEXP_SMTP_PASSWORD": "pw-5678", "GPU_KEY": "g-9"}
    sent, plain = secrets.forwarded(cfg, cfg.targets()["gpu"], environ)
    assert sent == {"HF_TOKEN": "hf-1234", "GITEXP_SMTP_PASSWORD": "pw-5678", "GPU_KEY": "g-9"}
    assert plain == {"CUDA_VISIBLE_DEVICES": "0,1"}  # HF_TOKEN travels once, as a secret


def test_scrub_env_drops_gitexps_own_the_extra_and_the_secret_looking() -> None:
    environ = {"HOME": "/h", "GITEXP_MAILGUN_KEY": "k", "MY_TOKEN": "t", "PLAIN_NAME": "p",
               "LANG": "C"}
    assert secrets.scrub_env(environ) == {"HOME": "/h", "PLAIN_NAME": "p", "LANG": "C"}
    assert secrets.scrub_env(environ, extra=["PLAIN_NAME"]) == {"HOME": "/h", "LANG": "C"}


def test_redact_masks_longest_values_first_and_never_short_ones() -> None:
    text = "user abcd, key abcdefgh, pin 123, again abcdefgh"
    values = ["abcd", "abcdefgh", "123"]
    assert secrets.redact(text, values) == "user ***, key ***, pin 123, again ***"
    assert secrets.redact_bytes(text.encode(), values) == \
        b"user ***, key ***, pin 123, again ***"
    assert secrets.redact("1234 and 123", ["1234"]) == "*** and 123"  # exactly MIN_LENGTH
    # by length, not by letter: the longer value holds the shorter one
    for redact, box in ((secrets.redact, str), (secrets.redact_bytes, str.encode)):
        assert redact(box("k=abcdzzzz"), ["zzzz", "abcdzzzz"]) == box("k=***")  # type: ignore


def test_published_names_cover_every_targets_secrets_and_secretenv(repo: Path,
                                                                  tmp_path: Path) -> None:
    cfg = config(repo, exp__secrets="GLOBAL_S", exp__target__a__backend="local",
                 exp__target__a__secrets="A_S", exp__target__b__backend="local",
                 exp__target__b__secretenv="B_S=projects/x/secrets/y, C_S=z")
    store = FileStore(tmp_path / "store")
    secrets.publish_names(store, "r", cfg, cfg.targets()["a"])
    names = json.loads(store.read(f"runs/r/{secrets.NAMES_KEY}") or b"")
    assert names == sorted({*secrets.OWN, "GLOBAL_S", "A_S", "B_S", "C_S"})


def test_values_to_redact_ignores_a_missing_list_and_short_values(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "store")
    env = {"GITEXP_MAILGUN_KEY": "key-12345", "MY_TOKEN": "tok", "X_SECRET": "line\nbreak"}
    assert secrets.values_to_redact(store, "r", env) == sorted(
        {"key-12345", "line\nbreak", "line\\nbreak"})


def test_redactor_holds_back_only_what_may_begin_a_secret() -> None:
    r = secrets.Redactor(["s3cret-value", "abc"])  # "abc": too short to mask
    assert r.feed(b"abc plain s3c") == b"abc plain "  # "s3c" may begin the secret
    assert r.feed(b"ret-value! s") == b"***! "
    assert r.feed(b"x") == b"sx"
    assert r.feed(b"tail s3cret") == b"tail "
    assert r.flush() == b"s3cret" and r.flush() == b""
    passthrough = secrets.Redactor(["ab"])  # no value long enough: bytes go straight out
    assert passthrough.feed(b"ab s") == b"ab s" and passthrough.flush() == b""


def test_secret_like_files_by_name_anywhere_in_the_tree() -> None:
    for path in (".env", "conf/.env.local", "certs/Server.PEM", "deploy/id_rsa.pub",
                 "x/.netrc", "deep/er/.netrc", "credentials.json", "a/b/vault.kdbx"):
        assert secrets.secret_like_file(path), path
    for path in ("env.py", "docs/pem.md", "credentials.json.example", ".envrc/x", "key"):
        assert not secrets.secret_like_file(path), path
