"""Code transport: a snapshot's objects travel to the target's store, and on to its workers.

Only what the store lacks travels: a thin pack against up to MAX_HAVES commits the store
already holds (a one-line change costs a few hundred bytes, not a zip of the tree).

- `file://` and `ssh://` stores keep a bare repository `code.git` with one ref per commit,
  `refs/code/<commit>`; the pack goes straight into it with `git index-pack --fix-thin`
  (over the user's ssh for `ssh://`). Workers that see the store as a directory use
  `code.git` as it is; others fetch from it into their own cache.
- `gs://` stores hold git bundles `code/bundles/<commit>.bundle`, each listing the held
  commits it was made against as prerequisites, and a marker `code/heads/<commit>` written
  after its bundle. A worker applies the bundles it lacks, prerequisites first, to a cache.

We build the pack ourselves rather than `git push`: `--shallow` makes pack-objects mark the
trees of *every* held commit as known (not only ancestors), so the uncommitted files two
sibling snapshots share are not sent twice; and the exact size drives a progress bar.
"""

from __future__ import annotations

import contextlib
import shlex
import subprocess
import tempfile
from pathlib import Path
from typing import IO
from urllib.parse import unquote, urlsplit

from gitexp.errors import GitexpError, StoreError
from gitexp.git import Repo, clean_env, run_git
from gitexp.stores import Progress, Store, get_file, open_store, put_file

CODE_REPO = "code.git"
REF_PREFIX = "refs/code/"
BUNDLES = "code/bundles"
HEADS = "code/heads"
MAX_HAVES = 32  # the newest held commits a pack is made against: enough for any sibling
BUNDLE_SIGNATURE = b"# v2 git bundle\n"
_CHUNK = 1 << 20


# -- dev side --------------------------------------------------------------------------------
def push_code(repo: Repo, store: Store, commit: str, progress: Progress | None = None) -> int:
    """Make `store` hold `commit` with everything it needs; return the bytes sent."""
    scheme = urlsplit(store.url).scheme or "file"
    held = held_commits(store)
    if commit in held:
        return 0
    haves = _newest_local(repo, held)
    with tempfile.TemporaryDirectory(prefix="gitexp-pack-") as tmp:
        pack = Path(tmp) / "code.pack"
        _write_pack(repo, commit, haves, pack)
        if scheme == "gs":
            bundle = Path(tmp) / "code.bundle"
            _write_bundle(bundle, pack, commit, haves)
            size = put_file(store, f"{BUNDLES}/{commit}.bundle", bundle, progress)
            store.write(f"{HEADS}/{commit}", commit.encode())  # after the bundle: a promise
            return size
        if scheme == "file":
            root = Path(getattr(store, "root", unquote(urlsplit(store.url).path)))
            return _index_pack(["sh", "-c", _RECEIVE, "sh", str(root / CODE_REPO), commit],
                               pack, progress)
        if scheme == "ssh":
            from gitexp.stores.sftp import SFTPStore

            assert isinstance(store, SFTPStore)
            remote = shlex.join(["sh", "-c", _RECEIVE, "sh", store.join(CODE_REPO), commit])
            return _index_pack([*store.ssh_argv(), remote], pack, progress)
    raise StoreError(f"cannot send code to {store.url}",
                     hint="use a file://, ssh:// or gs:// store")


def held_commits(store: Store) -> set[str]:
    scheme = urlsplit(store.url).scheme or "file"
    if scheme == "gs":
        keys = store.list(HEADS)
    else:  # loose refs only: nothing but update-ref writes them and nothing packs them
        keys = store.list(f"{CODE_REPO}/{REF_PREFIX.rstrip('/')}")
    return {k.rsplit("/", 1)[-1] for k in keys}


# Receives a pack into the store's bare repository (created on first use) and names the commit.
_RECEIVE = ('set -e; [ -d "$1/objects" ] || git init -q --bare "$1"; '
            'git --git-dir="$1" index-pack --stdin --fix-thin >/dev/null; '
            'git --git-dir="$1" update-ref "refs/code/$2" "$2"')


def _newest_local(repo: Repo, held: set[str]) -> list[str]:
    """The newest MAX_HAVES held commits that this repository also has."""
    if not held:
        return []
    batch = "".join(f"{c}\n" for c in sorted(held)).encode()
    out = run_git(["--git-dir", str(repo.git_dir), "cat-file", "--batch-check"], input=batch)
    present = [ln.split()[0] for ln in out.stdout.decode().splitlines() if " commit " in ln]
    if not present:
        return []
    dated = run_git(["--git-dir", str(repo.git_dir), "rev-list", "--no-walk", "--date-order",
                     "--stdin"], input="".join(f"{c}\n" for c in present).encode())
    return dated.stdout.decode().split()[:MAX_HAVES]


def _write_pack(repo: Repo, commit: str, haves: list[str], dest: Path) -> None:
    revs = "".join([f"{commit}\n", *(f"^{h}\n" for h in haves)]).encode()
    with dest.open("wb") as out:
        proc = subprocess.run(
            ["git", "--git-dir", str(repo.git_dir), "pack-objects", "--revs", "--thin",
             "--shallow", "--stdout", "--delta-base-offset", "-q"],
            input=revs, stdout=out, stderr=subprocess.PIPE, env=clean_env(), check=False)
    if proc.returncode != 0:
        raise GitexpError(f"cannot pack snapshot {commit[:12]}: "
                          f"{proc.stderr.decode(errors='replace').strip()}")


def _write_bundle(dest: Path, pack: Path, commit: str, prerequisites: list[str]) -> None:
    with dest.open("wb") as out, pack.open("rb") as src:
        out.write(BUNDLE_SIGNATURE)
        out.writelines(f"-{p}\n".encode() for p in prerequisites)
        out.write(f"{commit} {REF_PREFIX}{commit}\n\n".encode())
        while chunk := src.read(_CHUNK):
            out.write(chunk)


def _index_pack(argv: list[str], pack: Path, progress: Progress | None) -> int:
    total = pack.stat().st_size
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=clean_env())
    assert proc.stdin is not None
    sent = 0
    with contextlib.suppress(BrokenPipeError), pack.open("rb") as src:
        while chunk := src.read(_CHUNK):
            proc.stdin.write(chunk)
            sent += len(chunk)
            if progress:
                progress(sent, total)
    _close(proc.stdin)
    err = proc.stderr.read() if proc.stderr else b""
    if proc.wait() != 0:
        last = err.decode(errors="replace").strip().splitlines()
        raise StoreError(f"the store did not take the code: {last[-1] if last else 'failed'}",
                         hint="is git installed where the store is, and the path writable?")
    return total


def _close(stream: IO[bytes]) -> None:
    with contextlib.suppress(BrokenPipeError):
        stream.close()


# -- worker side -----------------------------------------------------------------------------
def fetch_code(source: str, commit: str, cache_dir: Path) -> Path:
    """A git directory holding `commit`: the store's own `code.git` when it is a directory
    here, else a cache under `cache_dir` that keeps what earlier runs fetched."""
    parts = urlsplit(source)
    if parts.scheme in ("", "file"):
        path = Path(unquote(parts.path))
        git_dir = path / CODE_REPO if (path / CODE_REPO).is_dir() else path
        _require(git_dir, commit, source)
        return git_dir
    cache = cache_dir / CODE_REPO
    if not (cache / "objects").is_dir():
        cache.parent.mkdir(parents=True, exist_ok=True)
        run_git(["init", "-q", "--bare", str(cache)])
    if _has(cache, commit):
        return cache
    if parts.scheme == "gs":
        _apply_bundles(open_store(source), cache, commit)
    elif parts.scheme == "ssh":
        from gitexp.stores.sftp import SFTPStore

        store = SFTPStore.from_url(source)
        ref = f"{REF_PREFIX}{commit}"
        run_git(["--git-dir", str(cache), "fetch", "-q", store.git_url(CODE_REPO),
                 f"{ref}:{ref}"], env={"GIT_SSH_COMMAND": shlex.join(store.ssh_argv()[:-1])},
                check=False)
    _require(cache, commit, source)
    return cache


def _apply_bundles(store: Store, cache: Path, commit: str) -> None:
    """Apply the bundle of `commit`, after those of its prerequisites the cache lacks."""
    with tempfile.TemporaryDirectory(prefix="gitexp-bundles-") as tmp:
        todo, done = [commit], set()
        while todo:
            head = todo[-1]
            path = Path(tmp) / f"{head}.bundle"
            if not path.exists() and not get_file(store, f"{BUNDLES}/{head}.bundle", path):
                raise StoreError(f"the store {store.url} holds no code for {head[:12]}",
                                 hint="relaunch the run: the launch uploads the code")
            missing = [p for p in _prerequisites(path) if p not in done and not _has(cache, p)]
            if missing:
                todo.extend(missing)
                continue
            ref = f"{REF_PREFIX}{head}"
            proc = run_git(["--git-dir", str(cache), "fetch", "-q", str(path), f"{ref}:{ref}"],
                           check=False)
            if proc.returncode != 0 and not _has(cache, head):  # a racing worker may have won
                raise StoreError(f"cannot apply the code bundle of {head[:12]}: "
                                 f"{proc.stderr.decode(errors='replace').strip()}")
            done.add(head)
            todo.pop()


def _prerequisites(bundle: Path) -> list[str]:
    out = []
    with bundle.open("rb") as f:
        if f.readline() != BUNDLE_SIGNATURE:
            raise StoreError(f"{bundle.name} is not a git bundle")
        for line in f:
            if line == b"\n":
                break
            if line.startswith(b"-"):
                out.append(line[1:41].decode())
    return out


def _has(git_dir: Path, commit: str) -> bool:
    proc = run_git(["--git-dir", str(git_dir), "cat-file", "-e", f"{commit}^{{commit}}"],
                   check=False)
    return proc.returncode == 0


def _require(git_dir: Path, commit: str, source: str) -> None:
    if not _has(git_dir, commit):
        raise StoreError(f"the code of snapshot {commit[:12]} is not in {source}",
                         hint="relaunch the run: the launch uploads the code")
