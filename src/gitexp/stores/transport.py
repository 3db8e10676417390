"""Code transport: a snapshot's objects travel to the target's store, and on to its workers.

Only what the store lacks travels: a thin pack against up to MAX_HAVES commits the store
already holds (a one-line change costs a few hundred bytes, not a zip of the tree).

Each store carries code its own way (the `CodeStore` Protocol, in its own module); this
module holds what they share. The layout on the store is fixed: workers of older versions
read it.

- `file://` and `ssh://` stores keep a bare repository `code.git` (SHA-256 snapshots:
  `code-sha256.git`: git never mixes object formats in one repository) with one ref per
  commit, `refs/code/<commit>`; the pack goes straight into it with `git index-pack
  --fix-thin` (the RECEIVE script, run there over the user's ssh for `ssh://`). Workers
  that see the store as a directory use `code.git` as it is; others fetch from it into
  their own cache.
- `gs://` stores (and any store without a transport of its own: bundles need nothing but
  the basic protocol) hold git bundles `code/bundles/<commit>.bundle` (v2; v3 for
  SHA-256), each listing the held commits it was made against as prerequisites, and a
  marker `code/heads/<commit>` written after its bundle. A worker applies the bundles it
  lacks, prerequisites first, to a cache.

We build the pack ourselves rather than `git push`: `--shallow` makes pack-objects mark the
trees of *every* held commit as known (not only ancestors), so the uncommitted files two
sibling snapshots share are not sent twice; and the exact size drives a progress bar.

What a store says is untrusted (a worker may use a store a stranger controls): commit ids
are checked before they name a file, a key or a ref, and git is asked for exact hashes.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO

from gitexp import faults
from gitexp.errors import GitexpError, StoreError
from gitexp.git import Repo, clean_env, format_of, init_options, run_git
from gitexp.stores import CodeStore, Progress, Store, get_file, open_store, put_file

CODE_REPO = "code.git"  # sha1 snapshots: the name older workers read
CODE_REPOS = {"sha1": CODE_REPO, "sha256": "code-sha256.git"}  # one per object format
REF_PREFIX = "refs/code/"
REFS = tuple(f"{repo}/{REF_PREFIX.rstrip('/')}" for repo in CODE_REPOS.values())  # store keys
BUNDLES = "code/bundles"
HEADS = "code/heads"
MAX_HAVES = 32  # the newest held commits a pack is made against: enough for any sibling
BUNDLE_SIGNATURE = b"# v2 git bundle\n"
BUNDLE_SIGNATURES = {"sha1": BUNDLE_SIGNATURE,  # v2 knows sha1 only; v3 names its format
                     "sha256": b"# v3 git bundle\n@object-format=sha256\n"}
_CHUNK = 1 << 20
_OID = re.compile(rb"[0-9a-f]{40}(?:[0-9a-f]{24})?")  # sha1 or sha256


# -- the two ends ----------------------------------------------------------------------------
def code_store(store: Store) -> CodeStore:
    """The store's own code transport; bundles for a store that has none."""
    return store if isinstance(store, CodeStore) else Bundles(store)


def push_code(repo: Repo, store: Store, commit: str, progress: Progress | None = None) -> int:
    """Make `store` hold `commit` with everything it needs; return the bytes sent."""
    code = code_store(store)
    # Commits of the other object format (a store shared by both kinds of repository) are
    # no base for a pack here.
    held = {c for c in code.held_commits() if len(c) == len(commit)}
    if commit in held:
        return 0
    haves = _newest_local(repo, held)
    with tempfile.TemporaryDirectory(prefix="gitexp-pack-") as tmp:
        pack = Path(tmp) / "code.pack"
        _write_pack(repo, commit, haves, pack)
        faults.point("transport.pack")
        return code.receive_pack(pack, commit, haves, progress)


def held_commits(store: Store) -> set[str]:
    return code_store(store).held_commits()


def fetch_code(source: str, commit: str, cache_dir: Path) -> Path:
    """A git directory holding `commit`: the store's own `code.git` when it is a directory
    here, else a cache under `cache_dir` that keeps what earlier runs fetched."""
    if not is_commit_id(commit):  # it names files, store keys and refs below
        raise StoreError(f"not a commit id: {commit[:50]!r}")
    return code_store(open_store(source)).fetch_code(commit, cache_dir)


# -- commit ids ------------------------------------------------------------------------------
def is_commit_id(name: str) -> bool:
    return _OID.fullmatch(name.encode()) is not None


def code_repo(commit: str) -> str:
    """The store's bare repository for `commit`'s object format (`code.git` for sha1)."""
    return CODE_REPOS[format_of(commit)]


def commit_ids(keys: Iterable[str]) -> set[str]:
    """The commits a store's keys name (`.../<commit>`): a key that names anything else
    (`HEAD`, `main`) must not pass for held, or git would resolve it here."""
    return {name for key in keys if is_commit_id(name := key.rsplit("/", 1)[-1])}


# -- dev side: the thin pack -----------------------------------------------------------------
def _newest_local(repo: Repo, held: set[str]) -> list[str]:
    """The newest MAX_HAVES held commits that this repository also has."""
    if not held:
        return []
    present = [o.oid for o in repo.read_objects(sorted(held), max_size=0)
               if o.type == "commit"]
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


# -- into a bare repository (file://, ssh://) ------------------------------------------------
# Receives a pack into the store's bare repository (created on first use) and names the commit.
# Concurrent launches may create that repository at once: `git init` takes config.lock, so
# all but one fail, and a half-made one must not be used. init is idempotent: try again until
# the repository is whole (objects/pack is among the last things init makes).
# Run as: sh -c RECEIVE sh <code.git> <commit> [<object format>], the pack on stdin (the
# format only for sha256: a git older than 2.29 where the store is still takes sha1 code).
RECEIVE = ('set -e; n=0; until [ -d "$1/objects/pack" ] && [ -f "$1/HEAD" ]; do '
           'git init -q --bare ${3:+"--object-format=$3"} "$1" 2>/dev/null && break; '
           'n=$((n + 1)); [ "$n" -lt 100 ] || git init -q --bare ${3:+"--object-format=$3"} '
           '"$1"; sleep 0.1; done; '
           'git --git-dir="$1" index-pack --stdin --fix-thin >/dev/null; '
           'git --git-dir="$1" update-ref "refs/code/$2" "$2"')


def receive_argv(git_dir: str, commit: str) -> list[str]:
    """The command that takes a pack on stdin into `git_dir` and names `commit` held."""
    fmt = format_of(commit)
    return ["sh", "-c", RECEIVE, "sh", git_dir, commit, *([fmt] if fmt != "sha1" else [])]


def send_pack(argv: list[str], pack: Path, progress: Progress | None) -> int:
    """Feed `pack` to the receiving command `argv` (RECEIVE, here or over ssh)."""
    total = pack.stat().st_size
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=clean_env())
    assert proc.stdin is not None
    sent = 0
    with contextlib.suppress(BrokenPipeError), pack.open("rb") as src:
        while chunk := src.read(_CHUNK):
            proc.stdin.write(chunk)
            faults.point("transport.send")
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


# -- as bundles (gs://, and any store without a transport of its own) -------------------------
class Bundles:
    """Code in `store` as thin bundles: `code/bundles/<commit>.bundle`, then the marker
    `code/heads/<commit>` (written after its bundle: a promise that the bundle is whole)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def held_commits(self) -> set[str]:
        return commit_ids(self.store.list(HEADS))

    def receive_pack(self, pack: Path, commit: str, against: Sequence[str],
                     progress: Progress | None = None) -> int:
        with tempfile.TemporaryDirectory(prefix="gitexp-bundle-") as tmp:
            bundle = Path(tmp) / "code.bundle"
            _write_bundle(bundle, pack, commit, against)
            size = put_file(self.store, f"{BUNDLES}/{commit}.bundle", bundle, progress)
        self.store.write(f"{HEADS}/{commit}", commit.encode())
        return size

    def fetch_code(self, commit: str, cache_dir: Path) -> Path:
        cache = open_cache(cache_dir, commit)
        if not has_commit(cache, commit):
            _apply_bundles(self.store, cache, commit)
        require(cache, commit, self.store.url)
        return cache


def _write_bundle(dest: Path, pack: Path, commit: str, prerequisites: Sequence[str]) -> None:
    with dest.open("wb") as out, pack.open("rb") as src:
        out.write(BUNDLE_SIGNATURES[format_of(commit)])
        out.writelines(f"-{p}\n".encode() for p in prerequisites)
        out.write(f"{commit} {REF_PREFIX}{commit}\n\n".encode())
        while chunk := src.read(_CHUNK):
            out.write(chunk)


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
            missing = [p for p in _prerequisites(path)
                       if p not in done and not has_commit(cache, p)]
            if missing:
                todo.extend(missing)
                continue
            ref = f"{REF_PREFIX}{head}"
            proc = run_git(["--git-dir", str(cache), "fetch", "-q", str(path), f"{ref}:{ref}"],
                           check=False)
            if proc.returncode != 0 and not has_commit(cache, head):  # a racing worker won
                raise StoreError(f"cannot apply the code bundle of {head[:12]}: "
                                 f"{proc.stderr.decode(errors='replace').strip()}")
            done.add(head)
            todo.pop()


def _prerequisites(bundle: Path) -> list[str]:
    out = []
    with bundle.open("rb") as f:
        head = f.readline()
        v3 = head == b"# v3 git bundle\n"
        if head != BUNDLE_SIGNATURE and not v3:
            raise StoreError(f"{bundle.name} is not a git bundle")
        for line in f:
            if line == b"\n":
                break
            if v3 and line.startswith(b"@"):  # a capability (@object-format=sha256)
                continue
            if line.startswith(b"-"):
                # A hostile store's bundle must not name a path (`-../../x`): it becomes a
                # file name and a store key below. Object ids are hex, nothing else.
                oid = line[1:].split(b" ", 1)[0].strip()
                if not _OID.fullmatch(oid):
                    raise StoreError(f"{bundle.name} is not a valid git bundle "
                                     f"(prerequisite {oid[:50]!r})")
                out.append(oid.decode())
    return out


# -- worker side: the cache ------------------------------------------------------------------
def open_cache(cache_dir: Path, commit: str) -> Path:
    """The worker's code cache for `commit`'s object format under `cache_dir` (a bare
    repository, made on first use)."""
    cache = cache_dir / code_repo(commit)
    if not (cache / "objects").is_dir():
        _init_bare(cache, format_of(commit))
    return cache


def _init_bare(path: Path, object_format: str) -> None:
    """Create the bare repository `path` whole or not at all: agents sharing a worker may
    race to make it (two `git init`s at once fail on config.lock, or leave it half-made)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        run_git(["init", "-q", "--bare", *init_options(object_format), str(tmp)])
        with contextlib.suppress(OSError):  # another agent's is in place already: use it
            tmp.rename(path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def has_commit(git_dir: Path, commit: str) -> bool:
    proc = run_git(["--git-dir", str(git_dir), "cat-file", "-e", f"{commit}^{{commit}}"],
                   check=False)
    return proc.returncode == 0


def require(git_dir: Path, commit: str, source: str) -> None:
    if not has_commit(git_dir, commit):
        raise StoreError(f"the code of snapshot {commit[:12]} is not in {source}",
                         hint="relaunch the run: the launch uploads the code")
