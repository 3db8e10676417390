"""Warm checkouts (worker/workspace.Pool): a run's tree is moved from the previous run's with
git's one-tree reset instead of written whole, and is still exactly its snapshot.

Real git repositories throughout; the pool is driven directly (as the agent does) and end
to end through `git exp run`.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gitexp.worker import workspace
from tests.helpers import exp, git, wait_done

SETTINGS = settings(max_examples=10, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])

NAMES = st.sampled_from(["a", "b", "c.py", "d/e", "d/f.txt", "g/h/i", "g/j", "k l", "m.bin"])
CONTENT = st.binary(max_size=64)
ENTRY = st.one_of(
    st.tuples(st.just("file"), CONTENT),
    st.tuples(st.just("exec"), CONTENT),
    st.tuples(st.just("link"), st.sampled_from(["a", "d/e", "../outside", "missing"])),
)
TREES = st.dictionaries(NAMES, ENTRY, min_size=1, max_size=8)


def _write_tree(root: Path, tree: dict[str, tuple[str, object]]) -> None:
    """Make the work tree of `root` exactly `tree` (the .git aside)."""
    for child in root.iterdir():
        if child.name != ".git":
            workspace._remove(child)
    for name, (kind, value) in tree.items():
        path = root / name
        if any(p in tree for p in _parents(name)):  # a file where a directory is wanted
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        if kind == "link":
            path.symlink_to(str(value))
        else:
            assert isinstance(value, bytes)
            path.write_bytes(value)
            path.chmod(0o755 if kind == "exec" else 0o644)


def _parents(name: str) -> list[str]:
    parts = name.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def _commit(src: Path, tree: dict[str, tuple[str, object]]) -> str:
    _write_tree(src, tree)
    git("add", "-A", cwd=src)
    git("commit", "-q", "--allow-empty", "-m", "snap", cwd=src)
    return git("rev-parse", "HEAD", cwd=src).strip()


def _listing(root: Path) -> dict[str, tuple[str, bytes]]:
    """Every path under `root` but .git: kind (file mode or link) and content or target."""
    out: dict[str, tuple[str, bytes]] = {}
    for dirpath, dirs, files in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        if rel == ".git" or rel.startswith(".git" + os.sep):
            continue
        for name in [*files, *(d for d in dirs if os.path.islink(os.path.join(dirpath, d)))]:
            path = Path(dirpath) / name
            key = os.path.normpath(os.path.join(rel, name))
            if key == ".git":
                continue
            if path.is_symlink():
                out[key] = ("link", os.readlink(path).encode())
            else:
                mode = "exec" if path.stat().st_mode & stat.S_IXUSR else "file"
                out[key] = (mode, path.read_bytes())
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(dirpath, d))]
    return out


def _expected(src: Path, snapshot: str) -> dict[str, tuple[str, bytes]]:
    """What `snapshot` holds, from git's own objects (not from any checkout)."""
    out: dict[str, tuple[str, bytes]] = {}
    listing = git("ls-tree", "-r", "-z", snapshot, cwd=src)
    for entry in filter(None, listing.split("\0")):
        meta, path = entry.split("\t", 1)
        mode, _, oid = meta.split()
        blob = subprocess.run(["git", "cat-file", "blob", oid], cwd=src, check=True,
                              capture_output=True).stdout
        kind = {"120000": "link", "100755": "exec"}.get(mode, "file")
        out[path] = (kind, blob)
    return out


def _mess_up(tree: Path, outside: Path) -> None:
    """What a job may leave: edits, mode changes, deletions, untracked and ignored files,
    a symlinked directory pointing outside, a nested repository, and a tampered .git."""
    files = sorted(p for p in tree.rglob("*") if ".git" not in p.parts and p.is_file()
                   and not p.is_symlink())
    for i, path in enumerate(files):
        if i % 3 == 0:
            path.write_bytes(b"changed by the job\n")
        elif i % 3 == 1:
            path.chmod(path.stat().st_mode ^ stat.S_IXUSR)
        else:
            path.unlink()
    (tree / "untracked.txt").write_text("left behind\n")
    (tree / "out" / "deep").mkdir(parents=True, exist_ok=True)
    (tree / "out" / "deep" / "model.bin").write_bytes(b"\0" * 1000)
    (tree / ".gitignore").write_text("*.log\n")
    (tree / "run.log").write_text("ignored, still a leftover\n")
    if not (tree / "d").exists():
        (tree / "d").symlink_to(outside)
    git("init", "-q", str(tree / "nested"), cwd=tree)
    hooks = tree / ".git" / "hooks"
    hooks.mkdir(parents=True, exist_ok=True)
    (hooks / "post-checkout").write_text("#!/bin/sh\ntouch \"$GIT_DIR/../HOOK-RAN\"\n")
    (hooks / "post-checkout").chmod(0o755)
    (tree / ".git" / "info").mkdir(exist_ok=True)
    (tree / ".git" / "info" / "attributes").write_text("* text eol=crlf\n")
    git("config", "core.sparseCheckout", "true", cwd=tree)
    listed = [p for p in git("ls-files", "-z", cwd=tree).split("\0") if p]
    if listed:  # a flag that would make git skip the file's check
        git("update-index", "--skip-worktree", listed[0], cwd=tree)


@pytest.fixture
def src(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    git("init", "-q", str(src), cwd=tmp_path)
    git("config", "user.email", "t@example.com", cwd=src)
    git("config", "user.name", "t", cwd=src)
    return src


@given(first=TREES, second=TREES, died=st.lists(st.booleans(), min_size=4, max_size=4))
@SETTINGS
def test_a_warm_checkout_is_exactly_each_snapshot(tmp_path_factory: pytest.TempPathFactory,
                                                   first: dict, second: dict,
                                                   died: list[bool]) -> None:
    """Random trees A then B then A, then A's tree in another commit (its update writes
    nothing), through one slot, a job's mess between every two, and the agent either giving
    the checkout back (put back, pristine: the next update is two-tree) or dying with it
    (the next update resets every file): the tree is each
    snapshot byte for byte (modes and symlinks too), nothing else is there, and nothing
    outside the tree was written through a symlink the job left."""
    tmp = tmp_path_factory.mktemp("warm")
    src = tmp / "src"
    git("init", "-q", str(src), cwd=tmp)
    git("config", "user.email", "t@example.com", cwd=src)
    git("config", "user.name", "t", cwd=src)
    outside = tmp / "outside"
    outside.mkdir()
    # the last: A's tree again in another commit (a rerun, a sweep's next point)
    snaps = [_commit(src, first), _commit(src, second), _commit(src, first)]
    assert git("rev-parse", f"{snaps[2]}^{{tree}}", cwd=src) == \
        git("rev-parse", f"{snaps[0]}^{{tree}}", cwd=src)
    pool = workspace.Pool(tmp / "pool", 1)
    for snap, dies in zip([snaps[0], snaps[1], snaps[0], snaps[2]], died, strict=True):
        held = pool.take(src / ".git", snap, say=print)
        assert held is not None and held.slot == tmp / "pool" / "0"
        assert _listing(held.tree) == _expected(src, snap)
        assert git("rev-parse", "HEAD", cwd=held.tree).strip() == snap
        assert git("status", "--porcelain", "--ignored", cwd=held.tree) == ""
        assert not (held.tree / "HOOK-RAN").exists()
        _mess_up(held.tree, outside)
        if dies:  # the kernel drops the lock of a dead agent; nothing was put back
            assert held._lock is not None
            os.close(held._lock)
            assert not (held.slot / "pristine").exists()
        else:
            held.release()
            assert (held.slot / "pristine").read_text() == snap
            assert _listing(held.tree) == _expected(src, snap)  # put back already
    assert list(outside.iterdir()) == []


def test_unchanged_files_are_not_written_again(src: Path, tmp_path: Path) -> None:
    """Files written per run follow files changed: an unchanged file keeps its inode and
    mtime from one run to the next, even after the job read every file."""
    files = {f"pkg/m{i}.py": ("file", f"x = {i}\n".encode()) for i in range(200)}
    a = _commit(src, files)
    b = _commit(src, {**files, "pkg/m7.py": ("file", b"x = 'seven'\n")})
    pool = workspace.Pool(tmp_path / "pool", 2)
    held = pool.take(src / ".git", a, say=print)
    assert held is not None
    before = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in held.tree.rglob("*.py")}
    (held.tree / "pkg" / "m9.py").write_text("edited by the job\n")
    held.release()
    time.sleep(0.01)
    again = pool.take(src / ".git", b, say=print)
    assert again is not None and again.tree == held.tree
    after = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in again.tree.rglob("*.py")}
    rewritten = sorted(p.name for p in before if before[p] != after[p])
    assert rewritten == ["m7.py", "m9.py"]  # the changed one and the one the job edited
    assert (again.tree / "pkg" / "m9.py").read_text() == "x = 9\n"
    again.release()


def test_concurrent_takers_never_share_a_checkout(src: Path, tmp_path: Path) -> None:
    """10 runs at once with 3 warm checkouts: at most one holder per checkout at any time;
    the others get None (a fresh checkout of their own)."""
    snap = _commit(src, {"a": ("file", b"a\n")})
    pool = workspace.Pool(tmp_path / "pool", 3)
    holders: dict[Path, int] = {}
    clash: list[Path] = []
    got: list[Path | None] = []
    mutex = threading.Lock()
    start = threading.Barrier(10)

    def one() -> None:
        start.wait()
        held = pool.take(src / ".git", snap, say=print)
        with mutex:
            got.append(held.slot if held else None)
            if held:
                holders[held.slot] = holders.get(held.slot, 0) + 1  # type: ignore[index]
                if holders[held.slot] > 1:  # type: ignore[index]
                    clash.append(held.slot)  # type: ignore[arg-type]
        time.sleep(0.3)
        if held:
            with mutex:
                holders[held.slot] -= 1  # type: ignore[index]
            held.release()

    threads = [threading.Thread(target=one) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not clash
    warm = [s for s in got if s is not None]
    assert 1 <= len(warm) <= 3 and len(set(warm)) == len(warm)
    assert got.count(None) == 10 - len(warm)


def test_a_checkout_killed_mid_update_is_rebuilt(src: Path, tmp_path: Path) -> None:
    """An agent SIGKILLed in the middle of moving a checkout leaves it half one snapshot,
    half the other: the next run sees it was never finished and rebuilds it whole."""
    files = {f"f{i}": ("file", f"{i}\n".encode()) for i in range(50)}
    a = _commit(src, files)
    b = _commit(src, {f"f{i}": ("file", f"b{i}\n".encode()) for i in range(50)})
    pool_dir = tmp_path / "pool"
    code = (f"import sys; from pathlib import Path; from gitexp.worker import workspace\n"
            f"workspace.Pool(Path({str(pool_dir)!r}), 1).take(Path({str(src / '.git')!r}), "
            f"sys.argv[1], say=print)\n")
    env = {**os.environ, "GITEXP_FAULT": "workspace.update"}
    subprocess.run([sys.executable, "-c", code, a], check=True)  # warm with a
    proc = subprocess.run([sys.executable, "-c", code, b], env=env, check=False)
    assert proc.returncode == -signal.SIGKILL
    assert not (pool_dir / "0" / "ready").exists()
    # Already b's (the kill came after the reset): an update would keep it, a rebuild not.
    witness = tmp_path / "witness"
    os.link(pool_dir / "0" / "tree" / "f0", witness)
    held = workspace.Pool(pool_dir, 1).take(src / ".git", b, say=print)
    assert held is not None
    assert _listing(held.tree) == _expected(src, b)
    assert witness.stat().st_nlink == 1  # the tree's f0 is a new file
    held.release()


def test_a_checkout_killed_while_put_back_is_reset_whole(src: Path, tmp_path: Path) -> None:
    """An agent killed after putting its checkout back but before marking it pristine: the
    next run does not trust it, and resets every file (a file the two-tree update would
    have kept is checked, and rewritten since its content is wrong)."""
    a = _commit(src, {f"f{i}": ("file", f"{i}\n".encode()) for i in range(20)})
    b = _commit(src, {**{f"f{i}": ("file", f"{i}\n".encode()) for i in range(20)},
                      "new": ("file", b"new\n")})
    pool_dir = tmp_path / "pool"
    code = (f"import sys; from pathlib import Path; from gitexp.worker import workspace\n"
            f"held = workspace.Pool(Path({str(pool_dir)!r}), 1).take("
            f"Path({str(src / '.git')!r}), sys.argv[1], say=print)\n"
            f"(held.tree / 'out.bin').write_bytes(b'output')\n"
            f"held.release()\n")
    env = {**os.environ, "GITEXP_FAULT": "workspace.release"}
    proc = subprocess.run([sys.executable, "-c", code, a], env=env, check=False)
    assert proc.returncode == -signal.SIGKILL
    assert (pool_dir / "0" / "ready").exists() and not (pool_dir / "0" / "pristine").exists()
    (pool_dir / "0" / "tree" / "f3").write_text("changed after the put-back\n")
    held = workspace.Pool(pool_dir, 1).take(src / ".git", b, say=print)
    assert held is not None
    assert _listing(held.tree) == _expected(src, b)
    held.release()
    assert (pool_dir / "0" / "pristine").read_text() == b


def test_runs_move_one_warm_checkout_and_leftovers_never_reach_the_next(repo: Path) -> None:
    """End to end: two runs one after the other use the same warm checkout; what the first
    job left (an untracked output, an edited tracked file) is gone for the second, whose
    `git status` is clean; `git exp gc` clears the checkout no run holds."""
    job = ("import os, pathlib, subprocess; p = pathlib.Path('leftover.txt'); "
           "print('CWD', os.getcwd()); print('SAW', p.exists()); "
           "print('STATUS', repr(subprocess.run(['git', 'status', '--porcelain'], "
           "capture_output=True, text=True).stdout)); "
           "p.write_text('x'); pathlib.Path('README.md').write_text('edited')")
    cwds = []
    for _ in range(2):
        run_id = exp("run", "-d", "--force", "--", sys.executable, "-c", job,
                     cwd=repo).stdout.strip()
        wait_done(run_id, repo)
        log = exp("logs", run_id, cwd=repo).stdout
        assert "SAW False" in log and "STATUS ''" in log, log
        cwds.append(next(ln.split()[1] for ln in log.splitlines() if ln.startswith("CWD")))
    warm = repo / ".git" / "gitexp" / "warm"
    assert cwds[0] == cwds[1] and Path(cwds[0]).is_relative_to(warm)
    assert not (warm / "0" / "tree" / "leftover.txt").exists()  # cleaned at the end too
    proc = exp("gc", "--checkouts", cwd=repo)
    assert "removed 1 warm checkout" in proc.stdout + proc.stderr
    assert not (warm / "0" / "tree").exists()
