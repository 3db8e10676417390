"""Snapshots never touch the user's work, and capture exactly what `git add -A` would."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import time
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gitexp import cli
from gitexp.git import Repo, snapshot
from tests.helpers import exp, exp_json, git

NAMES = st.sampled_from([
    "a.txt", "b.py", "dir/c.txt", "dir/sub/d.bin", "with space.txt", "ünïcødé.txt",
    "dir/日本.md", "e", "dir/f g/h.txt", "-dash.txt",
])
CONTENT = st.one_of(st.text(max_size=40).map(str.encode), st.binary(max_size=64))
OPS = st.lists(st.tuples(
    st.sampled_from(["edit", "delete", "rename", "untracked", "ignored", "exec", "symlink",
                     "stage", "todir"]),
    NAMES, NAMES, CONTENT), max_size=8)
QUIET = {"GIT_OPTIONAL_LOCKS": "0"}  # `git status` must not refresh the index it observes


def observe(root: Path) -> tuple[str, bytes, str, str]:
    status = git("status", "--porcelain=v2", "-z", "--untracked-files=all", "--ignored",
                 cwd=root, env=QUIET)
    index = (root / ".git" / "index").read_bytes() if (root / ".git" / "index").exists() else b""
    head = git("rev-parse", "-q", "--verify", "HEAD", cwd=root, check=False)
    refs = git("for-each-ref", "--format=%(refname) %(objectname)", "refs/heads", "refs/tags",
               cwd=root)
    return status, index, head, refs


def expected_tree(root: Path, tmp: Path) -> str:
    """The reference: `git add -A && git write-tree` on a copy of the index."""
    index_copy = tmp / "index-copy"
    if (root / ".git" / "index").exists():  # with its mtime, or git trusts racy entries
        shutil.copy2(root / ".git" / "index", index_copy)
    env = {"GIT_INDEX_FILE": str(index_copy)}
    git("add", "-A", cwd=root, env=env)
    return git("write-tree", cwd=root, env=env).strip()


def write(root: Path, name: str, data: bytes) -> None:
    path = root / name
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)
    for parent in reversed(path.relative_to(root).parents):
        p = root / parent
        if p.is_file() or p.is_symlink():
            p.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def apply(root: Path, op: str, a: str, b: str, data: bytes) -> None:
    path = root / a
    if op == "edit":
        write(root, a, data)
    elif op == "delete" and (path.is_file() or path.is_symlink()):
        path.unlink()
    elif op == "rename" and path.is_file() and a != b and not (root / b).exists():
        (root / b).parent.mkdir(parents=True, exist_ok=True)
        path.rename(root / b)
    elif op == "untracked":
        write(root, "new/" + a, data)
    elif op == "ignored":
        write(root, "cache/" + a, data)
    elif op == "exec" and path.is_file() and not path.is_symlink():
        path.chmod(path.stat().st_mode ^ 0o111)
    elif op == "symlink" and not path.exists() and not path.is_symlink():
        path.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(b, path)
    elif op == "stage" and (path.exists() or path.is_symlink()):
        git("add", "--", a, cwd=root)
    elif op == "todir" and (path.is_file() or path.is_symlink()):  # a file becomes a folder
        write(root, f"{a}/inside", data)


@settings(max_examples=int(os.environ.get("SNAPSHOT_EXAMPLES", "200")), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(initial=st.dictionaries(NAMES, CONTENT, max_size=6), ops=OPS, commit=st.booleans())
def test_snapshot_changes_nothing_and_matches_add_all(tmp_path_factory, initial, ops, commit):
    root = tmp_path_factory.mktemp("wt")
    git("init", "-q", cwd=root)
    (root / ".gitignore").write_text("cache/\n")
    for name, data in initial.items():
        write(root, name, data)
    if commit:
        git("add", "-A", cwd=root)
        git("commit", "-qm", "base", "--allow-empty", cwd=root)
    for op in ops:
        apply(root, *op)
    before = observe(root)
    repo = Repo.discover(root)
    snap = snapshot.take(repo)
    assert observe(root) == before
    assert snap.base == (before[2].strip() or None)
    assert snap.tree == expected_tree(root, tmp_path_factory.mktemp("ref"))
    assert not (root / "cache").exists() or "cache" not in git("ls-tree", "-r", "--name-only",
                                                                snap.tree, cwd=root)


def test_cli_snapshot_commit_is_parented_on_head_and_leaves_work_untouched(repo: Path):
    (repo / "README.md").write_text("changed\n")
    (repo / "new.txt").write_text("untracked\n")
    git("add", "README.md", cwd=repo)
    (repo / "README.md").write_text("changed again\n")
    before = observe(repo)
    run_id = exp("run", "-d", "--", "true", cwd=repo).stdout.strip()
    assert observe(repo) == before
    snap = exp_json("show", run_id, cwd=repo)["snapshot"]
    assert git("rev-parse", f"{snap}^1", cwd=repo).strip() == before[2].strip()
    assert git("show", f"{snap}:README.md", cwd=repo) == "changed again\n"
    assert git("show", f"{snap}:new.txt", cwd=repo) == "untracked\n"
    assert run_id in git("for-each-ref", "refs/experiments/", cwd=repo)


def test_snapshot_in_a_repo_without_commits_has_no_parent(tmp_path: Path):
    root = tmp_path / "empty"
    root.mkdir()
    git("init", "-q", cwd=root)
    (root / "train.py").write_text("print('hi')\n")
    run_id = exp("run", "-d", "--", "true", cwd=root).stdout.strip()
    snapshot_commit = exp_json("show", run_id, cwd=root)["snapshot"]
    assert git("rev-list", "--parents", "-1", snapshot_commit, cwd=root).split() \
        == [snapshot_commit]
    assert git("show", f"{snapshot_commit}:train.py", cwd=root) == "print('hi')\n"
    assert git("rev-parse", "-q", "--verify", "HEAD", cwd=root, check=False) == ""


def test_same_size_edit_in_the_same_tick_as_the_commit_is_captured(tmp_path: Path):
    """Racy git: an edit that keeps size and mtime second must still be seen."""
    root = tmp_path / "racy"
    root.mkdir()
    git("init", "-q", cwd=root)
    repo = Repo.discover(root)
    for i in range(20):
        (root / "f.txt").write_text(f"aaaa{i:03d}\n")
        git("add", "f.txt", cwd=root)
        git("commit", "-qm", f"c{i}", cwd=root)
        (root / "f.txt").write_text(f"bbbb{i:03d}\n")  # same size, same second
        tree = snapshot.take(repo).tree
        assert git("cat-file", "-p", f"{tree}:f.txt", cwd=root) == f"bbbb{i:03d}\n", i


def test_files_that_became_directories_and_back_are_captured(tmp_path: Path):
    """The snapshot hashes only the paths one walk listed (`snapshot.changes`): a tracked
    file now a directory, a tracked directory now a file, a deletion and a new symlink come
    out as `git add -A` has them, and an untracked credential-like file stays behind."""
    root = tmp_path / "swap"
    root.mkdir()
    git("init", "-q", cwd=root)
    (root / "d").mkdir()
    (root / "d" / "x").write_text("1\n")
    (root / "f").write_text("a\n")
    (root / "gone").write_text("g\n")
    git("add", "-A", cwd=root)
    git("commit", "-qm", "base", cwd=root)
    (root / "f").unlink()
    (root / "f").mkdir()
    (root / "f" / "y").write_text("2\n")
    shutil.rmtree(root / "d")
    (root / "d").write_text("3\n")
    (root / "gone").unlink()
    (root / "lnk").symlink_to("f")
    (root / "id_rsa").write_text("key\n")
    snap = snapshot.take(Repo.discover(root))
    listed = git("ls-tree", "-r", "--name-only", snap.tree, cwd=root).split()
    assert listed == ["d", "f/y", "lnk"]
    (root / "id_rsa").unlink()
    assert snap.tree == expected_tree(root, tmp_path)


def test_credential_files_and_lfs_attributes_follow_the_work_tree_past_the_cache(
        tmp_path: Path):
    """Which tracked files look like credentials and which .gitattributes name git-lfs is
    remembered per state of the index (`index-names.json`); what the work tree changed
    since (deleted, edited, new) still counts, and a garbled cache is not believed."""
    root = tmp_path / "named"
    root.mkdir()
    git("init", "-q", cwd=root)
    (root / ".env").write_text("TOKEN=x\n")
    (root / "sub").mkdir()
    (root / "sub" / ".gitattributes").write_text("*.txt text\n")
    (root / "a.py").write_text("a\n")
    git("add", "-A", cwd=root)
    git("commit", "-qm", "base", cwd=root)
    repo = Repo.discover(root)
    first = snapshot.take(repo)
    assert (first.secret_files, first.lfs) == ((".env",), False)
    cache = root / ".git" / "gitexp" / "cache" / snapshot.NAMES_CACHE
    assert cache.is_file()
    (root / ".env").unlink()
    (root / "sub" / ".gitattributes").write_text("*.bin filter=lfs diff=lfs merge=lfs -text\n")
    (root / "keys").mkdir()
    (root / "keys" / "id_rsa").write_text("private\n")  # untracked: stays behind
    (root / "Server.PEM").write_text("cert\n")
    git("add", "Server.PEM", cwd=root)  # the index changes: the cache is no longer its list
    second = snapshot.take(repo)
    assert (second.secret_files, second.lfs) == (("Server.PEM",), True)
    assert "keys/id_rsa" not in git("ls-tree", "-r", "--name-only", second.tree, cwd=root)
    (root / "sub" / ".gitattributes").unlink()
    third = snapshot.take(repo)  # the index as before: the cache answers, the walk corrects
    assert (third.secret_files, third.lfs) == (("Server.PEM",), False)
    cache.write_text('{"key": 1, "names": {"x": "y"}}')
    (root / "sub" / ".gitattributes").write_text("*.bin filter=lfs\n")
    assert (snapshot.take(repo).secret_files, snapshot.take(repo).lfs) == (("Server.PEM",), True)


def test_a_walk_started_ahead_is_the_launchs_own_and_never_a_later_ones(repo: Path,
                                                                        monkeypatch):
    """`git exp run` starts its walk of the work tree before its imports: the next launch
    of that repository takes it; a launch refused before its walk leaves none behind for a
    later launch in the same process, which sees the tree as it is then."""
    (repo / "early.txt").write_text("there before the walk\n")
    snapshot.walk_ahead(Repo.discover(repo))
    assert ("early.txt", True) in snapshot.changes(Repo.discover(repo)).entries
    monkeypatch.chdir(repo)
    with contextlib.redirect_stderr(io.StringIO()) as err:
        assert cli.main(["run", "-t", "nowhere", "--", "true"]) != 0  # refused: no target
    assert "nowhere" in err.getvalue()
    time.sleep(0.5)  # a walk left behind would have ended by now, without late.txt
    (repo / "late.txt").write_text("made after the refused launch\n")
    assert ("late.txt", True) in snapshot.changes(Repo.discover(repo)).entries
