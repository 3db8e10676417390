"""The one gateway to git: every git call goes through `Repo.git`, with explicit paths."""

from __future__ import annotations

import contextlib
import itertools
import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import IO

from gitexp import disk
from gitexp.errors import GitError, GitexpError, NotARepoError

# update-ref's old value that means "the ref must not exist yet", in either object format
# (forty zeros would be a wrong-length id in a SHA-256 repository).
NO_REF = ""
# The empty tree and the length of an object id in hex, by the repository's object format.
EMPTY_TREES = {"sha1": "4b825dc642cb6eb9a060e54bf8d69288fbee4904",
               "sha256": "6ef19b41225c5369f1c104d45d8d85efa9b057b53b14b4b9b939dd74decc5321"}
OID_HEX = {"sha1": 40, "sha256": 64}


def format_of(oid: str) -> str:
    """The object format an object id belongs to, by its length (a worker knows the
    snapshot's id before it has a repository to ask)."""
    for name, hex_len in OID_HEX.items():
        if len(oid) == hex_len:
            return name
    raise GitexpError(f"{oid[:80]!r} is no object id", hint="is the run record intact?")


def is_object_id(text: str) -> bool:
    """A full object id of either format, in lower-case hex (a worker checks what it is told
    before it has a repository to ask; `Repo.is_oid` knows the one format of its own)."""
    return len(text) in OID_HEX.values() and not text.strip("0123456789abcdef")


def init_options(object_format: str) -> list[str]:
    """`git init`'s options for a repository of this format: none for sha1, so a worker's
    git older than 2.29 (no --object-format) still takes sha1 code."""
    return [] if object_format == "sha1" else [f"--object-format={object_format}"]


# A `git gc` running meanwhile (the user's, or an auto gc after a commit) removes empty
# object directories; git writing a loose object can lose that race and fail with this.
# Writing an object is idempotent, and the failed command wrote nothing else: try again.
_GC_RACE = b"unable to create temporary file"
OBJECT_WRITE_ATTEMPTS = 4

# Variables git exports to hooks (and to `git-exp`, for `git --git-dir/--work-tree`); left in
# place they would point our own git calls, or a job's, at that repository or index instead of
# the one named explicitly. `Repo.discover` reads the user's GIT_DIR/GIT_WORK_TREE once.
GIT_LOCATION = ("GIT_DIR", "GIT_INDEX_FILE", "GIT_WORK_TREE", "GIT_PREFIX", "GIT_COMMON_DIR")
_USER_LOCATION = ("GIT_DIR", "GIT_WORK_TREE")


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in GIT_LOCATION}
    env.setdefault("GIT_TERMINAL_PROMPT", "0")
    if extra:
        env.update(extra)
    return env


def run_git(
    args: list[str],
    *,
    cwd: Path | str | None = None,
    env: Mapping[str, str] | None = None,
    input: bytes | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[bytes]:
    for attempt in range(OBJECT_WRITE_ATTEMPTS):
        try:
            proc = subprocess.run(
                ["git", *args], cwd=cwd, env=clean_env(env), input=input, capture_output=True,
                check=False,
            )
        except FileNotFoundError:
            raise GitexpError("git is not installed",
                              hint="install git and put it on PATH") from None
        if proc.returncode == 0 or _GC_RACE not in proc.stderr:
            break
        time.sleep(0.05 * (attempt + 1))
    if check and proc.returncode != 0:
        text = proc.stderr.decode(errors="replace")
        full = disk.from_git(text, _where(args, cwd), _verb(args))
        if full is not None:  # the disk's fault, not the repository's health
            raise full
        err = text.strip().splitlines()
        raise GitError(
            f"git {_verb(args)} failed: {err[-1] if err else f'exit {proc.returncode}'}",
            hint="is this a healthy git repository? `git fsck` checks",
        )
    return proc


_VALUED = ("--git-dir", "--work-tree", "-C", "-c")  # git's own options that take a value


def _where(args: list[str], cwd: Path | str | None) -> str:
    """The directory a git command writes in: its `--git-dir` or `-C`, else `cwd`."""
    for flag, value in itertools.pairwise(args):
        if flag in ("--git-dir", "-C"):
            return value
    return str(cwd or ".")


def _verb(args: list[str]) -> str:
    """The git command in `args` (`commit-tree`), past git's own options (`--git-dir X`)."""
    skip = False
    for arg in args:
        if skip or arg.startswith("-"):
            skip = not skip and arg in _VALUED
            continue
        return arg
    return args[0] if args else "git"


@dataclass(frozen=True)
class Repo:
    """A git repository with a work tree (`root`) and its git directories."""
    root: Path
    git_dir: Path
    common_dir: Path
    # sha1 or sha256 when known at opening (`discover` asks in the same git call), else ""
    # and asked once on first use.
    known_format: str = field(default="", compare=False, repr=False)

    @classmethod
    def discover(cls, where: Path | str = ".", *, user_env: bool = False) -> Repo:
        """The repository `where` is in; with `user_env`, as git finds it for the user:
        GIT_DIR and GIT_WORK_TREE (what `git --git-dir=X --work-tree=Y exp` sets) win."""
        located = {k: os.environ[k] for k in _USER_LOCATION if k in os.environ} \
            if user_env else None
        proc = run_git(
            ["rev-parse", "--is-inside-git-dir", "--is-bare-repository", "--show-toplevel",
             "--absolute-git-dir", "--git-common-dir", "--show-object-format"],
            cwd=where, env=located, check=False,
        )
        lines = proc.stdout.decode().splitlines()
        # In a bare repository, or inside .git, git answers the first two, then fails on
        # --show-toplevel.
        if len(lines) < 2:
            if located and "GIT_DIR" in located:
                raise GitexpError(f"no git repository at {located['GIT_DIR']}",
                                  hint="check --git-dir (or GIT_DIR)")
            raise NotARepoError(str(Path(where).resolve()))
        if lines[1] == "true":
            raise GitexpError(
                f"{Path(where).resolve()} is a bare repository: runs need a work tree",
                hint="clone it (`git clone REPO`) and run from the clone",
            )
        if lines[0] == "true" or len(lines) < 5:
            raise GitexpError(f"cannot run from inside .git: {Path(where).resolve()}",
                              hint="cd to the work tree")
        root, git_dir, common = Path(lines[2]), Path(lines[3]), Path(lines[4])
        if not common.is_absolute():
            common = (Path(where).resolve() / common).resolve()
        known = lines[5] if len(lines) > 5 and lines[5] in OID_HEX else ""
        return cls(root=root, git_dir=git_dir, common_dir=common, known_format=known)

    @cached_property
    def object_format(self) -> str:
        """`sha1` or `sha256`: how this repository names its objects."""
        if self.known_format:
            return self.known_format
        out = run_git(["--git-dir", str(self.git_dir), "rev-parse", "--show-object-format"])
        found = out.stdout.decode().strip()
        if found not in OID_HEX:
            raise GitexpError(f"unknown object format {found!r} of {self.git_dir}",
                              hint="gitexp knows sha1 and sha256 repositories")
        return found

    @property
    def oid_hex(self) -> int:
        """Hex digits of one object id here: 40 (sha1) or 64 (sha256)."""
        return OID_HEX[self.object_format]

    @property
    def empty_tree(self) -> str:
        return EMPTY_TREES[self.object_format]

    def is_oid(self, value: str) -> bool:
        """A full object id of this repository's format (not merely of some format)."""
        return len(value) == self.oid_hex and all(c in "0123456789abcdef" for c in value)

    # -- plumbing ------------------------------------------------------------------------
    def _located(self, *args: str) -> list[str]:
        """`args` as a git command of this repository (and of its work tree)."""
        tree = [] if self.bare else ["--work-tree", str(self.root)]
        return ["--git-dir", str(self.git_dir), *tree, *args]

    def git(
        self,
        *args: str,
        env: Mapping[str, str] | None = None,
        input: bytes | None = None,
        check: bool = True,
    ) -> str:
        proc = run_git(self._located(*args), cwd=self.root, env=env, input=input, check=check)
        return proc.stdout.decode(errors="surrogateescape")

    def started(self, *args: str, env: Mapping[str, str] | None = None
                ) -> Callable[[], bytes | None]:
        """`git ARGS` started now, in the background; the call returns what it printed, or
        None when it failed or could not start (then `git` again says why). Its output goes
        to a file: git never waits for a reader, and ends on its own if never asked."""
        out = tempfile.TemporaryFile()  # noqa: SIM115 - `result` closes it
        try:
            proc = subprocess.Popen(["git", *self._located(*args)], cwd=self.root,
                                    stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.DEVNULL, env=clean_env(env))
        except OSError:
            out.close()
            return lambda: None

        def result() -> bytes | None:
            with out:
                if proc.wait() != 0:
                    return None
                out.seek(0)
                return out.read()
        return result

    def git_head(self, *args: str, limit: int) -> tuple[str, bool]:
        """The first `limit` bytes of what `git ARGS` prints, and whether it printed more:
        then git is stopped there, so a forged giant costs neither memory nor the rest of
        its time."""
        with tempfile.TemporaryFile() as err:  # a file: git's stderr can never block it
            try:
                proc = subprocess.Popen(
                    ["git", *self._located(*args)], cwd=self.root,
                    stdout=subprocess.PIPE, stderr=err, env=clean_env())
            except FileNotFoundError:
                raise GitexpError("git is not installed",
                                  hint="install git and put it on PATH") from None
            assert proc.stdout  # for the type checker
            with proc:
                data = proc.stdout.read(limit + 1)
                more = len(data) > limit
                if more:
                    proc.kill()
                code = proc.wait()
            if not more and code != 0:
                err.seek(0)
                lines = err.read(1 << 16).decode(errors="replace").strip().splitlines()
                raise GitError(f"git {_verb(list(args))} failed: "
                               f"{lines[-1] if lines else f'exit {code}'}",
                               hint="is this a healthy git repository? `git fsck` checks")
        return data[:limit].decode(errors="surrogateescape"), more

    def ok(self, *args: str) -> bool:
        proc = run_git(["--git-dir", str(self.git_dir), *args], cwd=self.root, check=False)
        return proc.returncode == 0

    @classmethod
    def at_git_dir(cls, git_dir: Path) -> Repo:
        """The repository by its git directory alone (a worker writing results back)."""
        return cls(root=git_dir, git_dir=git_dir, common_dir=git_dir)

    @property
    def bare(self) -> bool:
        return self.root == self.git_dir

    @cached_property
    def gitexp_dir(self) -> Path:
        """Private state, shared by all linked worktrees of this repository."""
        return self.common_dir / "gitexp"

    def head(self) -> str | None:
        out = run_git(["--git-dir", str(self.git_dir), "rev-parse", "-q", "--verify",
                       "HEAD^{commit}"], check=False)
        return out.stdout.decode().strip() or None

    def branch(self) -> str | None:
        out = run_git(["--git-dir", str(self.git_dir), "symbolic-ref", "-q", "--short", "HEAD"],
                      check=False)
        return out.stdout.decode().strip() or None

    def rev_parse(self, rev: str) -> str | None:
        out = run_git(["--git-dir", str(self.git_dir), "rev-parse", "-q", "--verify", rev],
                      check=False)
        return out.stdout.decode().strip() or None

    def hash_object(self, data: bytes) -> str:
        return self.git("hash-object", "-w", "--stdin", input=data).strip()

    def cat(self, rev: str) -> bytes:
        return run_git(["--git-dir", str(self.git_dir), "cat-file", "-p", rev]).stdout

    def commit_tree(self, tree: str, parents: list[str], message: str) -> str:
        args = ["commit-tree", tree]
        for p in parents:
            args += ["-p", p]
        return self.git(*args, input=message.encode(), env=IDENTITY).strip()

    def update_ref(self, ref: str, new: str, old: str, reason: str) -> bool:
        """Compare-and-swap a ref; False when `old` no longer holds (someone else won)."""
        proc = run_git(["--git-dir", str(self.git_dir), "update-ref", "-m", reason, ref, new, old],
                       check=False)
        return proc.returncode == 0 or self._no_space(proc, "update-ref")

    def _no_space(self, proc: subprocess.CompletedProcess[bytes], verb: str) -> bool:
        """False for a ref that did not hold; a full disk is raised (never "someone won")."""
        full = disk.from_git(proc.stderr.decode(errors="replace"), self.git_dir, verb)
        if full is not None:
            raise full
        return False

    def delete_ref(self, ref: str, old: str | None = None) -> bool:
        return self.delete_ref_or_why(ref, old) is None

    def delete_ref_or_why(self, ref: str, old: str | None = None) -> str | None:
        """Delete `ref` if it still points at `old` (when given): None, or git's reason why
        not (the ref moved, a read-only repository, a lock held)."""
        args = ["update-ref", "-d", ref] + ([old] if old else [])
        proc = run_git(["--git-dir", str(self.git_dir), *args], check=False)
        if proc.returncode == 0:
            return None
        lines = proc.stderr.decode(errors="replace").strip().splitlines()
        return (lines[-1].removeprefix("fatal: ").removeprefix("error: ") if lines
                else f"git update-ref exit {proc.returncode}")

    def delete_refs(self, refs: Mapping[str, str]) -> bool:
        """Delete every ref of `refs` (ref -> the commit it must still point at) in one
        transaction: all, or (one moved, a lock held, a read-only disk) none and False: the
        caller then deletes them one by one to say which could not go, and why."""
        proc = run_git(["--git-dir", str(self.git_dir), "update-ref", "--stdin"], input="".join(
            f"delete {ref} {old}\n" for ref, old in refs.items()).encode(), check=False)
        return proc.returncode == 0

    def for_each_ref(self, pattern: str, fmt: str) -> Iterator[str]:
        """Records of `fmt` (NUL-terminated, so message bodies may hold newlines)."""
        out = self.git("for-each-ref", f"--format={fmt}%00", pattern)
        for raw in out.split("\0"):
            rec = raw.lstrip("\n")
            if rec:
                yield rec

    def read_objects(self, specs: Iterable[str], *, max_size: int | None = None) -> list[Object]:
        """What `git cat-file --batch` says of each spec (an object id, `REV:PATH`, a ref),
        in the order asked, from one git process. An object over `max_size` bytes comes back
        without its content, which is streamed past and never held: a forged giant costs
        time in proportion, not memory."""
        asked = list(specs)
        # A line break would split one question in two and shift every answer after it.
        ok = [bool(s) and not any(c in s for c in "\n\r\0") for s in asked]
        if not any(ok):
            return [Object(spec=s, problem="invalid") for s in asked]
        try:
            proc = subprocess.Popen(
                ["git", "--git-dir", str(self.git_dir), "cat-file", "--batch", "--buffer"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                env=clean_env())
        except FileNotFoundError:
            raise GitexpError("git is not installed",
                              hint="install git and put it on PATH") from None
        assert proc.stdin and proc.stdout and proc.stderr  # for the type checker
        # Questions go in, and errors (a few lines per ambiguous name) come out, on threads of
        # their own while the answers are read here: any of the three pipes can block git.
        questions = "".join(s + "\n" for s, good in zip(asked, ok, strict=True) if good)
        errors: list[bytes] = []
        threads = [
            threading.Thread(target=_feed, args=(proc.stdin, questions.encode(
                errors="surrogateescape")), daemon=True),
            threading.Thread(target=_drain, args=(proc.stderr, errors), daemon=True)]
        for t in threads:
            t.start()
        found: list[Object] = []
        cut = False
        try:
            for spec, good in zip(asked, ok, strict=True):
                found.append(_answer(proc.stdout, spec, max_size) if good
                             else Object(spec=spec, problem="invalid"))
        except _CutShort:
            cut = True
        finally:
            if len(found) < len(asked):
                proc.kill()  # answers cut short, or an exception here: git is of no more use
            proc.stdout.close()
            code = proc.wait()
            for t in threads:
                t.join()
        if cut or code != 0:
            lines = b"".join(errors).decode(errors="replace").strip().splitlines()
            raise GitError(f"git cat-file failed: {lines[-1] if lines else f'exit {code}'}",
                           hint="is this a healthy git repository? `git fsck` checks")
        return found

    def tree_entries(self, treeish: str) -> list[str]:
        """Raw `ls-tree -z` entries of one tree level, ready for `mktree -z`."""
        out = self.git("ls-tree", "-z", "--full-tree", treeish)
        return [e for e in out.split("\0") if e]

    def mktree(self, entries: list[str]) -> str:
        data = "".join(e + "\0" for e in entries).encode(errors="surrogateescape")
        return self.git("mktree", "-z", "--missing", input=data).strip()


RACY_SECONDS = 2.0  # a stamp younger than this may not show a change made in the same tick


def refs_stamp(repo: Repo, prefix: str) -> str | None:
    """Where the refs under `prefix` (one directory level of them, like run refs) are
    stored, as (mtime, size, inode) of their loose directory and of packed-refs: git writes
    a ref by renaming a lock file over it and packs by rewriting packed-refs, so any change
    moves one of them. None when a change could hide within the timestamps' granularity,
    or refs are not files (reftable): then the refs must be listed. hooks/run.py keeps its
    own copy (a hook imports nothing of gitexp up front)."""
    if (repo.common_dir / "reftable").exists():
        return None
    parts = []
    now = time.time()
    for path in (repo.common_dir / prefix.rstrip("/"), repo.common_dir / "packed-refs"):
        try:
            st = path.stat()
        except OSError:
            parts.append("-")
            continue
        if now - st.st_mtime < RACY_SECONDS:
            return None
        parts.append(f"{st.st_mtime_ns}:{st.st_size}:{st.st_ino}")
    return ",".join(parts)


def loose_refs(repo: Repo, prefix: str, limit: int) -> dict[str, str] | None:
    """The refs stored as files directly under `prefix` (ref -> object id), read from those
    files: with packed-refs as it was, they are all that may have changed (`refs_stamp`).
    None when a listing must tell: more than `limit`, a directory or a symbolic ref among
    them, a file git is writing, reftable."""
    if (repo.common_dir / "reftable").exists():
        return None
    found = {}
    try:
        with os.scandir(repo.common_dir / prefix.rstrip("/")) as entries:
            for n, entry in enumerate(entries):
                if n >= limit or entry.name.endswith(".lock") or \
                        not entry.is_file(follow_symlinks=False):
                    return None
                with Path(entry.path).open(encoding="ascii", errors="replace") as f:
                    oid = f.read(repo.oid_hex + 2).rstrip("\n")
                if not repo.is_oid(oid):  # `ref: ...`, or not a ref at all
                    return None
                found[prefix + entry.name] = oid
    except FileNotFoundError:
        return {}
    except OSError:
        return None
    return found


@dataclass(frozen=True)
class Object:
    """One answer of `git cat-file --batch`."""
    spec: str  # what was asked
    oid: str = ""  # "" when git found nothing (see `problem`)
    type: str = ""  # commit, tree, blob or tag
    size: int = 0  # the whole object's, even when its content was left out
    data: bytes | None = None  # None: nothing found, or over the caller's max_size
    problem: str = ""  # git's word when nothing was found: missing, ambiguous; or invalid

    @property
    def found(self) -> bool:
        return bool(self.oid)


@dataclass(frozen=True)
class Commit:
    """The parts of a commit object gitexp reads."""
    tree: str
    parents: list[str]
    message: bytes

    @classmethod
    def parse(cls, data: bytes) -> Commit:
        head, _, message = data.partition(b"\n\n")
        tree, parents = "", []
        for line in head.split(b"\n"):  # tree, then parents, come first in a commit
            if line.startswith(b"parent "):
                parents.append(line[7:].decode(errors="replace"))
            elif line.startswith(b"tree "):
                tree = line[5:].decode(errors="replace")
            else:
                break
        return cls(tree=tree, parents=parents, message=message)


def tree_of(data: bytes, oid_bytes: int = 20) -> dict[bytes, tuple[bytes, bytes]]:
    """A raw tree object (`cat-file --batch` content) as name -> (mode, raw object id):
    comparing two trees level by level needs no further git call."""
    entries: dict[bytes, tuple[bytes, bytes]] = {}
    at = 0
    while at < len(data):
        nul = data.index(b"\0", at)
        mode, _, name = data[at:nul].partition(b" ")
        entries[name] = (mode, data[nul + 1:nul + 1 + oid_bytes])
        at = nul + 1 + oid_bytes
    return entries


class _CutShort(Exception):
    """git's answers ended before the questions did."""


def _answer(out: IO[bytes], spec: str, max_size: int | None) -> Object:
    line = out.readline()
    if not line.endswith(b"\n"):
        raise _CutShort
    header = line[:-1].decode(errors="surrogateescape")
    oid, _, rest = header.partition(" ")
    kind, _, size = rest.partition(" ")
    if not size.isdigit():  # "<spec> missing", "<spec> ambiguous" (the spec may hold spaces)
        return Object(spec=spec, problem=header.rpartition(" ")[2])
    length = int(size)
    if max_size is not None and length > max_size:
        left = length + 1
        while left:  # streamed past in pieces: never held whole
            piece = out.read(min(left, 1 << 20))
            if not piece:
                raise _CutShort
            left -= len(piece)
        return Object(spec=spec, oid=oid, type=kind, size=length)
    data = out.read(length)
    if len(data) != length or out.read(1) != b"\n":
        raise _CutShort
    return Object(spec=spec, oid=oid, type=kind, size=length, data=data)


def _feed(pipe: IO[bytes], data: bytes) -> None:
    try:
        pipe.write(data)
    except OSError:
        pass  # git stopped reading (it failed): its exit code says so
    finally:
        with contextlib.suppress(OSError):
            pipe.close()


def _drain(pipe: IO[bytes], into: list[bytes]) -> None:
    while chunk := pipe.read(1 << 16):
        into[:] = [*into[-15:], chunk]  # the last lines say why; a flood is not kept


# Commits gitexp makes itself carry a fixed committer so that results never depend on, or fail
# for lack of, the user's identity settings; the record names who launched the run.
IDENTITY = {
    "GIT_AUTHOR_NAME": "gitexp", "GIT_AUTHOR_EMAIL": "gitexp@localhost",
    "GIT_COMMITTER_NAME": "gitexp", "GIT_COMMITTER_EMAIL": "gitexp@localhost",
}
