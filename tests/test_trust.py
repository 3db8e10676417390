"""Whose run is it: the seal (service/trust.py), consent, and what is read from a store.

The hostile-remote suite (test_hostile.py) attacks through a fetch; these pin the rules
themselves on one real repository."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from gitexp.git import Repo
from gitexp.model.runstate import RunState
from gitexp.service import trust
from gitexp.stores.file import FileStore
from tests.helpers import assert_user_error, exp, exp_json, git, wait_done

TRAIN = "open('ran', 'a').write('x')\n"


def launched(repo: Path) -> str:
    (repo / "train.py").write_text(TRAIN)
    run_id = exp("run", "-d", "--", "python", "train.py", cwd=repo).stdout.strip()
    assert wait_done(run_id, repo)["status"] == "succeeded"
    return run_id


def test_a_run_launched_here_is_own_and_reruns_without_asking(repo: Path):
    run_id = launched(repo)
    shown = exp_json("show", run_id, cwd=repo)
    assert shown["own"] is True
    assert len(shown["record"]["seal"]) == 64
    key = Path(os.environ["HOME"]) / ".config" / "gitexp" / "seal.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert key.read_text().strip() not in json.dumps(shown)  # the key never travels
    exp("rerun", run_id, cwd=repo)  # no --trust needed
    assert "by" not in exp("ls", cwd=repo).stdout.splitlines()[0].split()


def test_its_record_on_other_code_is_not_own(repo: Path):
    """The seal covers the snapshot's tree: the user's own record, copied onto other code
    under the same id (a run they removed, re-forged from what they once pushed), is foreign."""
    run_id = launched(repo)
    message = git("log", "-1", "--format=%B", f"refs/experiments/{run_id}^", cwd=repo)
    (repo / "train.py").write_text("open('pwned', 'w')\n")
    git("add", "train.py", cwd=repo)
    forged = git("commit-tree", git("write-tree", cwd=repo).strip(), "-m", message,
                 cwd=repo).strip()
    git("update-ref", f"refs/experiments/{run_id}", forged, cwd=repo)
    git("reset", "-q", "--hard", cwd=repo)
    assert exp_json("show", run_id, cwd=repo)["own"] is False
    proc = exp("rerun", run_id, cwd=repo, check=False)
    assert_user_error(proc, "not launched by you here", "--trust")
    assert not (repo / "pwned").exists()


def test_another_users_key_sees_the_run_as_foreign_and_exp_trust_is_personal(
        repo: Path, tmp_path: Path):
    run_id = launched(repo)
    other = {"XDG_CONFIG_HOME": str(tmp_path / "other-user")}
    line = exp("ls", cwd=repo, env=other).stdout.splitlines()
    assert line[0].split()[-1] == "by" and "test@example.com" in line[1]
    # A committed `.gitexp/config` is the team's (anyone who commits writes it): no trust
    (repo / ".gitexp").mkdir()
    (repo / ".gitexp" / "config").write_text("[exp]\n\ttrust = *\n")
    proc = exp("rerun", "--script", run_id, cwd=repo, env=other, check=False)
    assert_user_error(proc, "not launched by you here", "exp.trust 'test@example.com'")
    git("config", "--add", "exp.trust", "*@example.com", cwd=repo)  # the user's own word
    assert "exec python train.py" in exp("rerun", "--script", run_id, cwd=repo, env=other).stdout


def test_a_read_only_home_seals_with_the_repositorys_key(repo: Path, tmp_path: Path):
    home = tmp_path / "ro-home"
    home.mkdir()
    home.chmod(0o500)
    try:
        run_id = launched_with(repo, {"XDG_CONFIG_HOME": str(home / ".config")})
    finally:
        home.chmod(0o700)
    assert (repo / ".git" / "gitexp" / "seal.key").is_file()
    assert exp_json("show", run_id, cwd=repo)["own"] is True


def launched_with(repo: Path, env: dict[str, str]) -> str:
    if os.geteuid() == 0:  # root writes anywhere: make the home a file instead
        env = {"XDG_CONFIG_HOME": str(repo.parent / "not-a-dir" / "x")}
        (repo.parent / "not-a-dir").write_text("")
    (repo / "train.py").write_text(TRAIN)
    run_id = exp("run", "-d", "--", "python", "train.py", cwd=repo, env=env).stdout.strip()
    assert wait_done(run_id, repo)["status"] == "succeeded"
    return run_id


def test_a_handle_in_the_store_is_numbers_and_plain_words(repo: Path):
    state = RunState(FileStore(repo / "store"), "r-1")
    for bad in ({"job": "-rf"}, {"container": "--privileged"}, {"pid": True},
                {"job": ["1"]}, {"job": "a b"}, {"host": "h\x1b[2J"}):
        state.set_handle("gpu", bad)
        assert state.handle() is None, bad
    good = {"job": "123_4", "array": "123", "host": "user@login:22", "pid": 77,
            "log": "/home/u/.cache/gitexp/r-1.log"}
    state.set_handle("my box", good)
    assert state.handle() == {**good, "target": "my box"}


def test_fingerprint_follows_the_keys(repo: Path):
    r = Repo.discover(repo)
    empty = trust.fingerprint(r)
    launched(repo)
    assert trust.fingerprint(r) != empty
