"""`rm`/`gc` that cannot remove a run say so: on a really read-only repository (a read-only
bind mount: root ignores file modes) and when a run's ref moved between the read and the
delete (the `gc.remove` fault point stops `git exp rm` there). A run that was not removed
keeps everything: its ref, its store data, its work directory."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.helpers import assert_user_error, exp, exp_json, git, wait_for
from tests.services._util import is_root, unavailable


def launch(repo: Path, name: str, *argv: str) -> str:
    exp("run", "--force", "-n", name, "--", *argv, cwd=repo, check=False)
    return str(next(r["id"] for r in exp_json("ls", cwd=repo) if r["id"].startswith(name)))


def ref(repo: Path, run_id: str) -> str:
    return git("rev-parse", "-q", "--verify", f"refs/experiments/{run_id}", cwd=repo,
               check=False).strip()


def store_dir(repo: Path, run_id: str) -> Path:
    return repo / ".git" / "gitexp" / "store" / "runs" / run_id


@contextmanager
def read_only(path: Path) -> Iterator[None]:
    """`path` read-only for everyone, root included, until the block ends."""
    if not is_root():
        unavailable("read-only bind mount", "needs root")
    try:
        subprocess.run(["mount", "--bind", str(path), str(path)], check=True,
                       capture_output=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        unavailable("read-only bind mount", str(exc))
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(path)], check=True,
                       capture_output=True)
        yield
    finally:
        subprocess.run(["umount", str(path)], check=True, capture_output=True)


def test_rm_and_gc_on_a_read_only_repository_name_every_run_they_kept(repo: Path) -> None:
    ok, bad = launch(repo, "ok", "true"), launch(repo, "bad", "false")
    before = {i: ref(repo, i) for i in (ok, bad)}
    with read_only(repo / ".git"):
        rm = exp("rm", ok, bad, cwd=repo, check=False)
        gc = exp("gc", "--failed", cwd=repo, check=False)
    for proc, named in ((rm, (ok, bad)), (gc, (bad,))):
        assert_user_error(proc, *named, "Read-only file system")
        assert proc.returncode == 1 and "removed" not in proc.stdout
        assert "hint: is the repository read-only" in proc.stderr
    assert ok not in gc.stderr  # gc names what it tried: the failed run only
    assert {i: ref(repo, i) for i in (ok, bad)} == before
    assert store_dir(repo, ok).is_dir() and store_dir(repo, bad).is_dir()
    # writable again: the same commands finish the job
    assert f"removed {bad}" in exp("gc", "--failed", cwd=repo).stdout
    assert f"removed {ok}" in exp("rm", ok, cwd=repo).stdout
    assert not store_dir(repo, ok).exists() and ref(repo, ok) == ""


def _stopped_under(pid: int) -> int | None:
    """A process under `pid` (git runs git-exp as its child) stopped by SIGSTOP."""
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            state = Path(f"/proc/{p}/stat").read_text().rpartition(")")[2].split()[0]
            children = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            continue
        if state == "T":
            return p
        todo += [int(c) for c in children]
    return None


def test_rm_keeps_whole_a_run_whose_ref_moved_and_removes_the_others(repo: Path) -> None:
    moved, other = launch(repo, "moved", "true"), launch(repo, "other", "true")
    work = repo / ".git" / "gitexp" / "work" / moved
    work.mkdir(parents=True, exist_ok=True)  # as a run's leftover checkout would be
    (work / "f").write_text("x")
    # `rm moved other` stops before it deletes the first ref ...
    proc = subprocess.Popen(["git", "exp", "rm", moved, other], cwd=repo, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "GITEXP_FAULT": "gc.remove:stop"})
    try:
        stopped = wait_for(lambda: _stopped_under(proc.pid), timeout=30, what="rm to stop")
        # ... meanwhile that run's ref moves (a write-back, a fetch): to the snapshot here
        git("update-ref", f"refs/experiments/{moved}", f"refs/experiments/{moved}^", cwd=repo)
        new = ref(repo, moved)
        os.kill(stopped, signal.SIGCONT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    done = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    assert_user_error(done, f"could not remove 1 run(s): {moved} (its ref changed meanwhile)")
    assert done.returncode == 1 and out.splitlines() == [f"removed {other}"]
    assert ref(repo, moved) == new  # the moved ref, untouched
    assert store_dir(repo, moved).is_dir() and (work / "f").read_text() == "x"
    assert ref(repo, other) == "" and not store_dir(repo, other).exists()
