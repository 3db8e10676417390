"""A full disk never loses a run (issue 15): the repository lives on a small real tmpfs, filled
at the moment each case needs - the snapshot, the job's own files, the log spool, the
write-back, the commands that only look. Each ends with `git fsck` clean."""

from __future__ import annotations

import email.message
import errno
import json
import logging
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gitexp import disk
from gitexp.notify import deliver
from gitexp.notify.maildir import MaildirOutbox, MaildirSender
from tests.conftest import make_repo
from tests.helpers import assert_user_error, exp, exp_json, git, wait_for
from tests.services._util import is_root, unavailable

NO_SPACE = "no space left on device"


@dataclass
class Disk:
    root: Path  # a tmpfs of its own

    @property
    def repo(self) -> Path:
        return self.root / "repo"

    def fill(self, leave: int = 0, at: Path | None = None) -> None:
        """Leave about `leave` bytes free (in pages) on the file system of `at` (the disk)."""
        where = at or self.root
        hog = where / "hog"
        hog.unlink(missing_ok=True)
        st = os.statvfs(where)
        with hog.open("wb") as f:
            left = max(0, st.f_bavail * st.f_frsize - leave)
            while left:
                try:
                    left -= f.write(b"\0" * min(left, 1 << 20))
                except OSError:
                    break

    def free(self, at: Path | None = None) -> None:
        ((at or self.root) / "hog").unlink(missing_ok=True)


def _mount(where: Path, size: str) -> None:
    if not is_root():
        unavailable("tmpfs", "mounting a tmpfs needs root")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                          capture_output=True, text=True, check=False)
    if proc.returncode:
        unavailable("tmpfs", proc.stderr.strip())


def _umount(where: Path) -> None:
    # Lazy: an agent still ending (killed below) must not keep the test's mount alive.
    subprocess.run(["umount", "-l", str(where)], capture_output=True, check=False)


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Disk]:
    """A 4 MiB tmpfs of the test's own."""
    root = tmp_path / "disk"
    root.mkdir()
    _mount(root, "4m")
    try:
        yield Disk(root)
    finally:
        _agents_gone(root)
        _umount(root)


@pytest.fixture
def small_disk(tmpfs: Disk) -> Iterator[Disk]:
    """A repository on the tmpfs; `git fsck` must find it clean at the end."""
    make_repo(tmpfs.repo)
    yield tmpfs
    tmpfs.free()
    fsck = subprocess.run(["git", "fsck", "--no-dangling"], cwd=tmpfs.repo,
                          capture_output=True, text=True, check=False)
    assert fsck.returncode == 0 and not fsck.stdout.strip(), fsck.stdout + fsck.stderr


def _agents_gone(root: Path) -> None:
    """Stop the agents and jobs this test started under `root` (named in their command line
    or working there), by pid."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            mine = str(root) in (proc / "cmdline").read_bytes().decode(errors="replace") \
                or Path(os.readlink(proc / "cwd")).is_relative_to(root)
            if mine:
                os.kill(int(proc.name), 9)
        except (OSError, ValueError):
            continue


def _refs(repo: Path) -> set[str]:
    return set(git("for-each-ref", "--format=%(refname)", "refs/experiments", cwd=repo).split())


def _work(repo: Path, run: str) -> Path:
    return repo / ".git" / "gitexp" / "work" / run


# -- (a) the snapshot ---------------------------------------------------------------------------
def test_a_snapshot_without_space_records_nothing(small_disk: Disk):
    repo = small_disk.repo
    (repo / "new.txt").write_text("untracked, to be snapshotted\n")
    (repo / "README.md").write_text("edited\n")
    before = (_refs(repo), git("status", "--porcelain", cwd=repo), (repo / ".git/index")
              .read_bytes())
    small_disk.fill()
    proc = exp("run", "--", "true", cwd=repo, check=False)
    assert_user_error(proc, f"{NO_SPACE} on {small_disk.root}",
                      f"hint: free space on {small_disk.root} and retry")
    assert "healthy git repository" not in proc.stderr
    small_disk.free()
    after = (_refs(repo), git("status", "--porcelain", cwd=repo), (repo / ".git/index")
             .read_bytes())
    assert after == before  # no ref; the work tree and the index as they were
    assert (repo / "README.md").read_text() == "edited\n"
    assert not list((repo / ".git" / "gitexp" / "tmp").iterdir())  # no private index left
    git("gc", "-q", "--prune=now", cwd=repo)  # anything it wrote is unreachable: gc prunes it
    assert not git("fsck", "--unreachable", "--no-reflogs", cwd=repo).strip()


# -- (b) the job fills the disk ----------------------------------------------------------------
def test_a_job_that_fills_the_disk_fails_with_the_reason(small_disk: Disk):
    repo = small_disk.repo
    small_disk.fill(leave=1 << 20)
    job = ("import time; print('writing', flush=True); time.sleep(0.6); "
           "open('big', 'wb').write(b'x' * (8 << 20))")
    proc = exp("run", "-n", "fill", "--", sys.executable, "-c", job, cwd=repo, check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
    run = next(r.rpartition("/")[2] for r in _refs(repo) if "/fill-" in r)
    shown = exp_json("show", run, cwd=repo)
    assert shown["status"] == "failed"  # the agent lived to say so: not `lost`
    error = shown["result"]["error"]
    assert NO_SPACE in error and str(small_disk.root) in error, shown
    log = exp("logs", run, cwd=repo).stdout
    assert log.startswith("writing\n")  # the log up to where space ran out
    assert not _work(repo, run).exists()  # the job's files are gone: the space is back
    assert "Traceback" not in (repo / f".git/gitexp/store/runs/{run}/agent.log").read_text()


# -- (c) the log spool fills the disk ----------------------------------------------------------
def test_a_log_that_fills_the_disk_is_kept_up_to_there(small_disk: Disk):
    repo = small_disk.repo
    small_disk.fill(leave=256 << 10)
    job = "for i in range(200000): print('line', i, 'x' * 100)"
    proc = exp("run", "-n", "loud", "--", sys.executable, "-c", job, cwd=repo, check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
    run = next(r.rpartition("/")[2] for r in _refs(repo) if "/loud-" in r)
    shown = exp_json("show", run, cwd=repo)
    assert shown["status"] == "failed" and NO_SPACE in shown["result"]["error"], shown
    log = exp("logs", run, cwd=repo).stdout
    assert log.startswith("line 0 x") and "line 1 x" in log
    assert log.rstrip().endswith(f"{NO_SPACE} on {small_disk.root}: the log ends here")
    assert not _work(repo, run).exists()


# -- (d) the write-back ------------------------------------------------------------------------
def test_a_write_back_without_space_waits_for_space(small_disk: Disk, tmp_path: Path):
    """The objects on a disk of their own: the store has room, git has none."""
    repo = small_disk.repo
    objects = repo / ".git" / "objects"
    kept = tmp_path / "objects"
    subprocess.run(["cp", "-a", str(objects), str(kept)], check=True)
    _mount(objects, "2m")
    try:
        subprocess.run(["cp", "-a", f"{kept}/.", str(objects)], check=True)
        go = tmp_path / "go"
        run = exp("run", "-d", "-n", "wb", "--", "sh", "-c",
                  f"until [ -e '{go}' ]; do sleep 0.1; done", cwd=repo).stdout.strip()
        wait_for(lambda: exp_json("show", run, cwd=repo)["status"] == "running",
                 what="the run to start")
        small_disk.fill(at=objects)
        go.touch()
        ended = wait_for(lambda: _ended(repo, run), what="the run to end")
        assert ended.returncode == 0, ended.stderr  # shown as it ended
        assert json.loads(ended.stdout)["status"] == "succeeded"
        warning = [ln for ln in ended.stderr.splitlines() if ln.strip()]
        assert warning[0].startswith(f"warning: run {run} ended (succeeded) but is not "
                                     f"written back: {NO_SPACE} on {objects}"), ended.stderr
        assert warning[1].startswith(f"hint: free space on {objects}"), ended.stderr
        assert "Traceback" not in ended.stderr
        snapshot = git("rev-parse", f"refs/experiments/{run}", cwd=repo).strip()
        assert not git("cat-file", "-p", snapshot, cwd=repo).count("\nparent ") > 1
        small_disk.free(at=objects)
        listed = exp("ls", cwd=repo)
        assert "warning" not in listed.stderr, listed.stderr
        results = git("rev-parse", f"refs/experiments/{run}", cwd=repo).strip()
        assert results != snapshot  # written back once there was room
        assert git("rev-parse", f"{results}^1", cwd=repo).strip() == snapshot
        assert exp_json("show", run, cwd=repo)["status"] == "succeeded"
        assert not _work(repo, run).exists()
        git("fsck", cwd=repo)
    finally:
        _agents_gone(small_disk.root)
        subprocess.run(["cp", "-a", f"{objects}/.", str(kept)], check=True)
        _umount(objects)
        subprocess.run(["cp", "-a", f"{kept}/.", str(objects)], check=True)


def _ended(repo: Path, run: str) -> subprocess.CompletedProcess[str] | None:
    proc = exp("show", run, "--json", cwd=repo)
    return proc if json.loads(proc.stdout)["status"] not in ("queued", "running") else None


# -- (e) commands that only look ---------------------------------------------------------------
def test_looking_on_a_full_disk_is_quiet_and_a_dead_run_says_why(small_disk: Disk):
    repo = small_disk.repo
    live = exp("run", "-d", "-n", "live", "--", "sleep", "30", cwd=repo).stdout.strip()
    wait_for(lambda: exp_json("show", live, cwd=repo)["status"] == "running",
             what="the run to start")
    (repo / ".git" / "gitexp" / "index.sqlite").unlink()  # the cache must be rebuilt: no room
    small_disk.fill()
    for args in (["ls"], ["show", live], ["logs", live],
                 ["watch", "--interval", "0.3", "--until-idle"]):
        proc = exp(*args, cwd=repo, check=False, timeout=60)
        assert proc.returncode == 0, (args, proc.stderr)
        assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr, \
            (args, proc.stderr)
        for line in proc.stderr.splitlines():  # a run not written back: one warning
            assert line.startswith(("warning: run ", "hint: free space on")), (args, line)
    # no heartbeat could be written: the run is lost, and says where the space ran out
    shown = exp_json("show", live, cwd=repo)
    assert shown["status"] == "lost", shown
    assert f"({NO_SPACE} on {small_disk.root})" in shown["result"]["error"], shown
    _agents_gone(small_disk.root)
    small_disk.free()
    exp("ls", cwd=repo)  # written back now
    assert exp_json("show", live, cwd=repo)["status"] == "lost"


def test_an_output_on_a_full_disk_is_one_line(small_disk: Disk):
    repo = small_disk.repo
    for cache in (repo / ".git" / "gitexp").glob("index.sqlite*"):
        cache.unlink()  # a cache that cannot be written deletes itself, freeing its space
    small_disk.fill()
    proc = exp("report", "-o", str(small_disk.root / "report.html"), cwd=repo, check=False)
    assert_user_error(proc, f"{NO_SPACE} on {small_disk.root}", "free space on",
                      "report.html")
    assert not (small_disk.root / "report.html").exists()  # no half a report


def test_the_crash_log_on_a_full_disk(tmpfs: Disk, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]):
    """A bug, with nowhere to write its crash log: still one line, exit 3."""
    from gitexp import cli
    from gitexp.cli import _app

    def bug(args: list[str] | None = None) -> None:
        raise RuntimeError("a bug")

    tmpfs.fill()
    monkeypatch.setattr(tempfile, "tempdir", str(tmpfs.root))
    monkeypatch.setattr(_app, "load", bug)
    assert cli.main(["ls"]) == 3
    err = capsys.readouterr().err
    assert err.startswith("error: internal error (a bug in gitexp); its crash log could not "
                          f"be written: {NO_SPACE} on {tmpfs.root}"), err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 2
    assert not list(tmpfs.root.glob("gitexp-crash-*"))


def test_the_outbox_on_a_full_disk_is_one_warning(tmpfs: Disk,
                                                  caplog: pytest.LogCaptureFixture):
    box = MaildirOutbox(tmpfs.root / "outbox")
    box.put(_mail("before"))  # the Maildir exists
    tmpfs.fill()
    with caplog.at_level(logging.WARNING, logger="gitexp.notify"):
        outcome = deliver(_mail("full"), MaildirSender(None, {}, box),  # type: ignore[arg-type]
                          box, attempts=3, backoff=5.0)
    assert outcome == "dropped"
    (record,) = caplog.records  # at once (no backoff for a full disk) and in one line
    assert record.exc_info is None and NO_SPACE in record.getMessage()


def _mail(subject: str) -> email.message.EmailMessage:
    msg = email.message.EmailMessage()
    msg["Subject"] = subject
    msg.set_content("body")
    return msg


def test_what_each_errno_says(tmp_path: Path):
    for code, what, hint in ((errno.ENOSPC, NO_SPACE, "free space on"),
                             (errno.EDQUOT, "disk quota exceeded", "free space on"),
                             (errno.EROFS, "read-only file system", "make")):
        err = disk.error_for(OSError(code, os.strerror(code), str(tmp_path / "f")))
        assert err is not None and err.message.startswith(f"{what} on /"), err
        assert err.hint is not None and err.hint.startswith(hint)
    assert disk.error_for(OSError(errno.ENOENT, "gone")) is None
