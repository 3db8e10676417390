"""`git exp outputs` and `checkout --outputs` write only inside the work tree, never under
`.git`, never through a symlink: tested as an attacker would, with a forged run (its result
naming `../escape`, `.git/config`, ...) and a forged `.dir` listing in the DVC cache."""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest

from gitexp.data.outputs import check_restorable, restore_outputs
from gitexp.errors import GitexpError
from gitexp.git import Repo
from gitexp.model.record import SCHEMA
from tests.helpers import assert_user_error, exp, git
from tests.test_data import make_dvc_repo, md5

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

PAYLOAD = b"attacker bytes\n"
RUN = "forged-run"


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A DVC project with a local remote, a canary directory next to it, and PAYLOAD in its
    DVC cache (what a forged output's hash names, so a restore would really write)."""
    config = f"[core]\n    remote = store\n['remote \"store\"']\n    url = {tmp_path / 'remote'}\n"
    proj = make_dvc_repo(tmp_path / "proj", {"labels.csv": "a\n"}, ["labels.csv"], config)
    (tmp_path / "canary").mkdir()
    (tmp_path / "canary" / "secret").write_text("keep me\n")
    (tmp_path / "elsewhere").mkdir()
    put_in_cache(proj, PAYLOAD)
    return proj


def put_in_cache(proj: Path, data: bytes, suffix: str = "") -> str:
    value = md5(data)
    obj = proj / ".dvc" / "cache" / "files" / "md5" / value[:2] / (value[2:] + suffix)
    obj.parent.mkdir(parents=True, exist_ok=True)
    obj.write_bytes(data)
    return value + suffix


def forge_run(proj: Path, outputs: dict[str, Any], *, snapshot: str = "HEAD") -> None:
    """A finished run made by hand (no gitexp involved): its result declares `outputs`."""
    snap = git("rev-parse", snapshot, cwd=proj).strip()
    record = {"id": RUN, "argv": ["true"], "cwd": "", "base": None, "branch": None,
              "user": "mallory", "launched_at": 1.0, "target": "local", "backend": "local",
              "store": "file:///nowhere", "env": {"python": "3", "platform": "p"}}
    body = {"schema": SCHEMA, "record": record,
            "result": {"status": "succeeded", "exit_code": 0, "outputs": outputs}}
    message = f"gitexp run {RUN}: succeeded\n\n{json.dumps(body)}\n"
    tree = git("rev-parse", f"{snap}^{{tree}}", cwd=proj).strip()
    commit = git("commit-tree", tree, "-p", snap, cwd=proj, input=message.encode()).strip()
    git("update-ref", f"refs/experiments/{RUN}", commit, cwd=proj)


def entry(value: str, size: int = len(PAYLOAD)) -> dict[str, Any]:
    return {"hash": value, "algo": "md5", "size": size, "remote": None}


def fingerprint(top: Path) -> dict[str, str]:
    """Every file and symlink under `top` (the repository with .git, the canary): bytes,
    mode, or link target. DVC's and gitexp's own scratch space may change."""
    out = {}
    for path in sorted(top.rglob("*")):
        rel = path.relative_to(top).as_posix()
        if "/.git/gitexp/" in f"/{rel}" or "/.dvc/tmp/" in f"/{rel}":
            continue
        if path.is_symlink():
            out[rel] = "-> " + os.readlink(path)
        elif path.is_file():
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest() + oct(path.stat().st_mode)
        elif path.is_dir():
            out[rel] = "dir"
    return out


@functools.cache
def trust() -> tuple[str, ...]:
    """A forged run is a foreign one: where consent exists, give it, so the layer under
    test is the one that refuses."""
    return ("--trust",) if "--trust" in exp("outputs", "-h", cwd=Path.cwd()).stdout else ()


def refused_everywhere(proj: Path, *needles: str, fetched: str = "") -> None:
    """`outputs`, `outputs --force` and `checkout --outputs` all refuse, changing nothing
    (but for the `fetched` object, brought into the DVC cache to be checked)."""
    top = proj.parent
    before = fingerprint(top)
    for args in (("outputs", RUN), ("outputs", RUN, "--force"), ("checkout", RUN, "--outputs")):
        proc = exp(*args, *trust(), cwd=proj, check=False)
        assert_user_error(proc, *needles)
        after = fingerprint(top)
        if fetched:
            after.pop(fetched)
            after.pop(fetched.rsplit("/", 1)[0], None)
        assert after == before, args


BAD_PATHS = ["../escape", "../canary/secret", ".git/config", ".git/hooks/post-checkout",
             ".GIT/config", ".git", "sub/.git/config", ".git./config", "sub/../../x", "./x",
             "a//b", "x/", "/abs", "a\nb", "a\x1bb", "a\\..\\b", ".dvc/config", ".gitexp/config"]


def test_a_bad_output_path_is_refused_before_anything_moves(victim: Path) -> None:
    repo = Repo.discover(victim)
    for bad in BAD_PATHS:
        outputs = {"fine.bin": entry(md5(PAYLOAD)), bad: entry(md5(PAYLOAD))}
        with pytest.raises(GitexpError) as caught:
            restore_outputs(repo, RUN, outputs, force=True)
        assert caught.value.message.startswith(f"run {RUN} declares an output "), bad
        assert caught.value.message.endswith(f": {bad!r}"), bad
        assert "\n" not in caught.value.message and "\x1b" not in caught.value.message
        assert not (victim / "fine.bin").exists()  # the whole operation, not the bad one
        with pytest.raises(GitexpError):
            check_restorable(repo, RUN, outputs, snapshot="HEAD")


def test_the_message_names_the_escape(victim: Path) -> None:
    with pytest.raises(GitexpError) as caught:
        restore_outputs(Repo.discover(victim), RUN, {"../x": entry(md5(PAYLOAD))})
    assert caught.value.message == f"run {RUN} declares an output outside the work tree: '../x'"
    assert caught.value.hint


@pytest.mark.parametrize("bad", ["../escape", ".git/hooks/post-checkout", "/abs", "a\x1bb"])
def test_the_cli_refuses_a_forged_output_and_nothing_changes(victim: Path, bad: str) -> None:
    if bad == "/abs":
        bad = str(victim.parent / "canary" / "secret")
    forge_run(victim, {bad: entry(md5(PAYLOAD))})
    refused_everywhere(victim)
    assert (victim.parent / "canary" / "secret").read_text() == "keep me\n"


def test_a_malformed_hash_never_becomes_a_cache_path(victim: Path) -> None:
    for value in ["../../../../escape", "ab/../../x", "0" * 31, "/etc/passwd", "0" * 32 + "/"]:
        with pytest.raises(GitexpError, match="malformed output entry"):
            restore_outputs(Repo.discover(victim), RUN, {"model.bin": entry(value)})


def test_nested_outputs_are_refused(victim: Path) -> None:
    outputs = {"out": entry(md5(PAYLOAD)), "out/x": entry(md5(PAYLOAD))}
    with pytest.raises(GitexpError, match="inside another"):
        restore_outputs(Repo.discover(victim), RUN, outputs)


# -- forged `.dir` listings: from the DVC cache or remote, just as untrusted -------------------
@pytest.mark.parametrize("relpath", ["../../escape", "../canary/secret", ".git/config",
                                     "sub/../../x", "/abs", "a\nb", "ok/../../.git/config"])
def test_a_forged_directory_listing_is_refused_and_nothing_is_written(victim: Path,
                                                                      relpath: str) -> None:
    good = md5(PAYLOAD)
    listing = json.dumps([{"md5": good, "relpath": "fine.txt"},
                          {"md5": good, "relpath": relpath}]).encode()
    forge_run(victim, {"out": {**entry(put_in_cache(victim, listing, ".dir")), "nfiles": 2}})
    refused_everywhere(victim, "refusing the DVC data of 'out'", repr(relpath))
    assert not (victim / "out").exists()


@pytest.mark.parametrize("md5_value", ["../../../../escape", md5(PAYLOAD)])
def test_a_forged_listing_on_the_dvc_remote_is_refused_once_fetched(victim: Path,
                                                                    md5_value: str) -> None:
    """The listing is not in the cache: it is fetched alone, checked, and nothing it names
    is fetched or written (DVC would make `<cache>/../../escape` of that md5)."""
    remote = victim.parent / "remote"
    (remote / "escape").mkdir(parents=True)  # what the forged md5 names on the remote
    (remote / "escape" / "x").write_bytes(PAYLOAD)
    listing = json.dumps([{"md5": md5_value, "relpath": "../../escape"}]).encode()
    value = md5(listing)
    obj = remote / "files" / "md5" / value[:2] / (value[2:] + ".dir")
    obj.parent.mkdir(parents=True)
    obj.write_bytes(listing)
    forge_run(victim, {"out": {**entry(value + ".dir"), "remote": "store"}})
    refused_everywhere(victim, "refusing the DVC data of 'out'",
                       fetched=f"proj/.dvc/cache/files/md5/{value[:2]}/{value[2:]}.dir")


@pytest.mark.parametrize("bad", [{"md5": "../../../../x", "relpath": "f"},
                                 {"md5": "0" * 32 + ".dir", "relpath": "f"},
                                 {"relpath": "f"}, "not an entry",
                                 {"md5": "0" * 32, "relpath": "a"},  # `a` and `a/b`
                                 {"md5": "0" * 32, "relpath": "f"}])  # twice
def test_a_listing_entry_must_be_an_md5_and_a_path(victim: Path, bad: Any) -> None:
    entries = [{"md5": md5(PAYLOAD), "relpath": "a/b"}, {"md5": md5(PAYLOAD), "relpath": "f"}]
    forge_run(victim, {"out": entry(put_in_cache(victim, json.dumps([*entries, bad]).encode(),
                                                 ".dir"))})
    refused_everywhere(victim, "refusing the DVC data of 'out'")


# -- symlinks: never followed, wherever they come from -----------------------------------------
def test_a_symlinked_directory_in_the_work_tree_is_refused(victim: Path) -> None:
    (victim / "link").symlink_to(victim.parent / "elsewhere")
    git("add", "link", cwd=victim)
    git("commit", "-qm", "a link", cwd=victim)
    forge_run(victim, {"link/model.bin": entry(md5(PAYLOAD))})
    refused_everywhere(victim, "'link', which is a symlink")
    assert list((victim.parent / "elsewhere").iterdir()) == []


def test_an_untracked_symlink_on_the_way_is_refused(victim: Path) -> None:
    (victim / "deep").mkdir()
    (victim / "deep" / "link").symlink_to(victim.parent / "elsewhere")
    (victim / ".git" / "info" / "exclude").write_text("deep/\n")
    forge_run(victim, {"deep/link/sub/model.bin": entry(md5(PAYLOAD))})
    refused_everywhere(victim, "'deep/link', which is a symlink")
    assert list((victim.parent / "elsewhere").iterdir()) == []


def test_a_symlink_the_snapshot_would_check_out_refuses_the_checkout(victim: Path) -> None:
    git("switch", "-q", "-c", "evil", cwd=victim)
    (victim / "link").symlink_to(victim.parent / "elsewhere")
    git("add", "link", cwd=victim)
    git("commit", "-qm", "a link", cwd=victim)
    forge_run(victim, {"link/model.bin": entry(md5(PAYLOAD))}, snapshot="evil")
    git("switch", "-q", "main", cwd=victim)
    head = git("rev-parse", "HEAD", cwd=victim)
    before = fingerprint(victim.parent)
    proc = exp("checkout", RUN, "--outputs", *trust(), cwd=victim, check=False)
    assert_user_error(proc, "'link', which is a symlink in its snapshot")
    assert fingerprint(victim.parent) == before
    assert git("rev-parse", "HEAD", cwd=victim) == head  # the code did not move either


def test_force_replaces_a_symlink_at_the_output_never_writes_through_it(victim: Path) -> None:
    (victim / "model.bin").symlink_to(victim.parent / "canary" / "secret")
    repo = Repo.discover(victim)
    outputs = {"model.bin": entry(md5(PAYLOAD))}
    with pytest.raises(GitexpError, match="exists and differs"):
        restore_outputs(repo, RUN, outputs)
    assert restore_outputs(repo, RUN, outputs, force=True) == ["model.bin"]
    assert not (victim / "model.bin").is_symlink()
    assert (victim / "model.bin").read_bytes() == PAYLOAD
    assert (victim.parent / "canary" / "secret").read_text() == "keep me\n"


def test_a_fifo_in_the_way_is_refused_without_hanging(victim: Path) -> None:
    os.mkfifo(victim / "model.bin")
    with pytest.raises(GitexpError, match="exists and differs"):
        restore_outputs(Repo.discover(victim), RUN, {"model.bin": entry(md5(PAYLOAD))})


# -- the legitimate paths still work -----------------------------------------------------------
def test_a_directory_output_is_restored_exactly_and_force_replaces_it(victim: Path) -> None:
    files = {"a.txt": b"a\n", "sub/b.txt": b"b\n", "sub/deeper/c.bin": bytes(range(256))}
    listing = json.dumps([{"md5": put_in_cache(victim, data), "relpath": rel}
                          for rel, data in sorted(files.items())]).encode()
    outputs = {"models/run1": {**entry(put_in_cache(victim, listing, ".dir")), "nfiles": 3}}
    repo = Repo.discover(victim)
    assert restore_outputs(repo, RUN, outputs) == ["models/run1"]
    out = victim / "models" / "run1"
    assert {p.relative_to(out).as_posix(): p.read_bytes()
            for p in out.rglob("*") if p.is_file()} == files
    (out / "extra.txt").write_text("mine\n")
    (out / "link").symlink_to(victim.parent / "canary")
    with pytest.raises(GitexpError, match="exists and differs"):
        restore_outputs(repo, RUN, outputs)
    restore_outputs(repo, RUN, outputs, force=True)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) \
        == sorted(files)
    assert (victim.parent / "canary" / "secret").read_text() == "keep me\n"
    assert not [p for p in victim.joinpath("models").iterdir() if p.name != "run1"]


def test_a_corrupted_cache_object_is_never_put_in_place(victim: Path) -> None:
    value = put_in_cache(victim, b"the real bytes\n")
    obj = victim / ".dvc" / "cache" / "files" / "md5" / value[:2] / value[2:]
    obj.write_bytes(b"tampered\n")
    (victim / "model.bin").write_bytes(b"mine\n")
    with pytest.raises(GitexpError, match="corrupted"):
        restore_outputs(Repo.discover(victim), RUN, {"model.bin": entry(value)}, force=True)
    assert (victim / "model.bin").read_bytes() == b"mine\n"
    assert sorted(p.name for p in victim.iterdir() if p.name.startswith(".gitexp")) == []
