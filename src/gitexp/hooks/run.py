"""What gitexp's git hooks do: the stubs from `hooks/` call `main([HOOK, *git's arguments])`.

A commit of exactly what ran (the same tree) names one run, however many ran that tree: the
latest succeeded run of this user's, or the best by `exp.hooks.best` (`loss`/`min:loss`,
`max:acc`); else the latest still running, which may yet succeed. Failed, cancelled and
lost runs are never named. Runs fetched from others never name
themselves on the user's commits.

- prepare-commit-msg: one trailer (`exp.hooks.trailer`, default on),
      Experiment-Run: <id> (<status>, <metric>=<value>...[; +<n> more][, sweep <sweep id>])
  `+<n> more`: the other runs of that tree; `sweep`: the named run's sweep. An amend drops
  the trailers it brings along and writes the one that holds now.
- post-commit: the named run, if it succeeded, tags the commit `exp/<id>` (annotated with
  the final metrics when `exp.hooks.annotate` is on), so `git log --decorate` shows which
  commits have runs: one tag per tree (none if a run of the tree has one already: an amend
  gets its tag from post-rewrite), never for a run that did not succeed.
- post-rewrite: an amend or rebase that keeps the tree takes the `exp/*` tags along.
- pre-push: this user's finished runs and their `exp/*` tags go to the same remote
  (`exp.hooks.pushRuns`); others' runs travel only with an explicit `git exp push`.

Two promises. Never break the user's git: every hook exits 0, and an internal error is one
`gitexp:` warning line. Be fast: only the standard library is imported up front (gitexp's
heavier modules only once a hook has something to do), and finding runs by tree reads a small
cache, `<common dir>/gitexp/hook-trees`: run ref commit -> snapshot tree. While the stamp of
the refs' storage is unchanged the cache is the answer; else one `for-each-ref` over ref names
and, for commits never seen before, two batched git calls. Commits never change, so an entry
is never wrong, only missing.
"""

# os.path rather than pathlib on purpose: importing pathlib costs each hook start-up time.
# ruff: noqa: PTH100, PTH103, PTH105, PTH108, PTH109, PTH110, PTH113, PTH116, PTH118, PTH120, PTH123

from __future__ import annotations

import os
import sys
import time

if __name__ == "__main__" and sys.path and sys.path[0].endswith(os.path.join("gitexp", "hooks")):
    # Run by path, as the stubs do (with `python -S`, which skips site-packages: start-up
    # time). Import gitexp from this very install, and never let a module of the package
    # folder shadow the standard library.
    sys.path[0] = os.path.dirname(os.path.dirname(sys.path[0]))

# Not `typing` (it imports `re`) nor `subprocess` (`re`, `threading`, `locale`...): together
# they would double this module's start-up time. `_spawn` below does the little we need.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any

    from gitexp.git import Repo

RUNS = "refs/experiments/"
TAGS = "refs/tags/exp/"
TRAILER = "Experiment-Run"
PUSH_GUARD = "GITEXP_PUSHING_RUNS"  # set while gitexp pushes runs: that push must not recurse
NO_REF = ""  # update-ref's old value for "must not exist yet", in either object format
RACY_SECONDS = 2.0  # a stamp younger than this may not show a change made in the same tick
TRAILER_METRICS = 3  # the trailer names at most this many metrics unless exp.hooks.metrics
SHORT = 100  # characters of one metric name or value in a trailer or a tag message
SAY_LIMIT = 1000  # characters of one warning line
_RANK = {"succeeded": 2, "running": 1, "queued": 1}  # which run a commit names; others never
# What git exports to a hook would point our own explicit git calls elsewhere.
_SCRUBBED = ("GIT_DIR", "GIT_INDEX_FILE", "GIT_WORK_TREE", "GIT_PREFIX", "GIT_COMMON_DIR")
_BOOLS = {"true": True, "yes": True, "on": True, "1": True,
          "false": False, "no": False, "off": False, "0": False, "": False}


class HookError(Exception):
    pass


class HookGit:
    """The repository the hook runs in, and git calls aimed at it explicitly."""

    def __init__(self, *revs: str) -> None:
        # Discovered with the environment git gave the hook (GIT_DIR in a linked worktree);
        # `revs` are resolved in the same git call, to save one.
        code, out, _ = _spawn(["git", "rev-parse", "--absolute-git-dir", "--git-common-dir",
                               "--show-toplevel", *revs], dict(os.environ), None)
        lines = out.decode(errors="surrogateescape").splitlines()
        if code != 0 or len(lines) < 3 + len(revs):
            raise HookError("not inside a git work tree")
        self.revs = lines[3:]
        self.git_dir = lines[0]
        self.common_dir = os.path.normpath(os.path.join(os.getcwd(), lines[1]))
        self.root = lines[2]
        index = os.environ.get("GIT_INDEX_FILE")  # the index being committed (maybe a temp one)
        self.index = os.path.abspath(index) if index else None
        self.env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED}
        self._config: dict[str, str] | None = None

    def run(self, *args: str, stdin: str | None = None,
            env: Mapping[str, str] | None = None) -> str:
        code, out, err = self._git(args, stdin, env)
        if code != 0:
            lines = err.decode(errors="replace").strip().splitlines()
            raise HookError(f"git {args[0]}: {lines[-1] if lines else f'exit {code}'}")
        return out.decode(errors="surrogateescape")

    def ok(self, *args: str) -> bool:
        return self._git(args, None, None)[0] == 0

    def _git(self, args: tuple[str, ...], stdin: str | None,
             env: Mapping[str, str] | None) -> tuple[int, bytes, bytes]:
        return _spawn(["git", "-C", self.root, "--git-dir", self.git_dir, *args],
                      {**self.env, **(env or {})},
                      stdin.encode(errors="surrogateescape") if stdin is not None else None)

    # -- settings ------------------------------------------------------------------------
    def config(self, key: str) -> str | None:
        if self._config is None:
            self._config = {}
            shared = os.path.join(self.root, ".gitexp", "config")  # the team's, committed
            if os.path.isfile(shared):
                self._config.update(self._read_config("-f", shared))
            self._config.update(self._read_config())
        return self._config.get(key.lower())

    def flag(self, key: str, default: bool) -> bool:
        raw = self.config(key)
        if raw is None:
            return default
        if raw.strip().lower() in _BOOLS:
            return _BOOLS[raw.strip().lower()]
        # Out of its range: said, and the default taken (a hook never blocks a commit).
        from gitexp import knobs

        say(f"{knobs.knob(key).key} = {raw!r} is not true or false; taken as {default}")
        return default

    def _read_config(self, *where: str) -> dict[str, str]:
        _, out, _ = self._git(("config", *where, "-z", "--get-regexp", r"^exp\.hooks\."), None,
                              None)
        pairs = (item.partition("\n") for item in out.decode(errors="replace").split("\0"))
        return {key: value for key, _, value in pairs if key}

    # -- runs by snapshot tree -------------------------------------------------------------
    def run_refs(self) -> list[tuple[str, str]]:
        """(run id, commit the run's ref points at) for every run."""
        out = self.run("for-each-ref", "--format=%(objectname) %(refname)", RUNS)
        pairs = (line.split(" ", 1) for line in out.splitlines())
        return [(ref[len(RUNS):], oid) for oid, ref in pairs]

    def runs(self) -> list[tuple[str, str, str]]:
        """(run id, commit its ref points at, tree of its snapshot) for every run: the
        snapshot is that commit, or a results commit's first parent.

        From the cache while the refs' storage is unchanged (its stamp); else one
        `for-each-ref`, and only commits never seen before are read."""
        path = os.path.join(self.common_dir, "gitexp", "hook-trees")
        stamp = self._refs_stamp()
        cached_stamp, rows = _read_cache(path)
        if stamp is not None and stamp == cached_stamp:
            return rows
        refs = self.run_refs()
        trees = {commit: tree for _, commit, tree in rows}
        missing = [commit for _, commit in refs if commit not in trees]
        if missing:
            trees.update(self._resolve_trees(missing))
        rows = [(run_id, commit, trees[commit]) for run_id, commit in refs if commit in trees]
        try:  # noqa: SIM105 - contextlib is one more import
            _write_atomic(path, f"stamp {stamp or '-'}\n" + "".join(
                f"{commit} {tree} {run_id}\n" for run_id, commit, tree in rows))
        except OSError:
            pass  # a cache: the next hook lists the refs again
        return rows

    def _refs_stamp(self) -> str | None:
        """Where `refs/experiments/*` are stored, as (mtime, size, inode): git rewrites a ref
        by renaming a lock file over it, so any change moves the directory's mtime. None
        when a change could hide within the timestamp's granularity, or refs are not files."""
        if os.path.exists(os.path.join(self.common_dir, "reftable")):
            return None
        parts = []
        for path in (os.path.join(self.common_dir, "refs", "experiments"),
                     os.path.join(self.common_dir, "packed-refs")):
            try:
                st = os.stat(path)
            except OSError:
                parts.append("-")
                continue
            if time.time() - st.st_mtime < RACY_SECONDS:
                return None
            parts.append(f"{st.st_mtime_ns}:{st.st_size}:{st.st_ino}")
        return ",".join(parts)

    def _resolve_trees(self, commits: list[str]) -> dict[str, str]:
        repo = self.repo()  # commits never seen before: work to do, worth gitexp's import
        from gitexp.git import Commit

        trees: dict[str, str] = {}
        snapshot_of: dict[str, str] = {}  # results commit -> its snapshot
        for obj in repo.read_objects(commits):
            if obj.type != "commit" or obj.data is None:
                continue
            commit = Commit.parse(obj.data)
            subject = commit.message.split(b"\n", 1)[0]
            # A results commit is titled `gitexp run <id>: <status>`; its snapshot is parent 1.
            if subject.startswith(b"gitexp run ") and b": " in subject and commit.parents:
                snapshot_of[obj.oid] = commit.parents[0]
            else:
                trees[obj.oid] = commit.tree
        if snapshot_of:  # their trees by id alone: the content is not wanted
            found = repo.read_objects([f"{p}^{{tree}}" for p in snapshot_of.values()],
                                      max_size=0)
            trees.update((oid, obj.oid) for oid, obj in zip(snapshot_of, found, strict=True)
                         if obj.found)
        return trees

    def runs_with_tree(self, tree: str) -> tuple[list[tuple[str, str]], set[str]]:
        """The runs (id, commit) whose snapshot tree is `tree`, and the ids of all runs."""
        rows = self.runs()
        return [(i, c) for i, c, t in rows if t == tree], {i for i, _, _ in rows}

    def repo(self) -> Repo:
        _site()
        from pathlib import Path

        from gitexp.git import Repo

        return Repo(root=Path(self.root), git_dir=Path(self.git_dir),
                    common_dir=Path(self.common_dir))

    def mine(self, matches: list[tuple[str, str]], tree: str) -> list[tuple[str, Any]]:
        """Of `matches` (runs whose snapshot tree is `tree`), those this user launched here,
        decoded (run id, `DecodedRun`): a fetched run must not put its name on the user's
        commits (nor a forged one)."""
        if not matches:
            return []
        _site()
        from gitexp.errors import GitexpError
        from gitexp.git import Commit
        from gitexp.model.record import decode_run
        from gitexp.service import trust

        repo, out = self.repo(), []
        for (run_id, commit), obj in zip(matches, repo.read_objects(
                [c for _, c in matches], max_size=1 << 21), strict=True):
            try:
                if obj.type != "commit" or obj.data is None:
                    raise GitexpError("not a commit")
                parsed = Commit.parse(obj.data)
                run = decode_run(parsed.message, ref=RUNS + run_id, commit=commit,
                                 parents=parsed.parents)
            except GitexpError:  # one line says so; nothing is named or tagged
                raise HookError(f"run {run_id} has an unreadable record") from None
            if trust.sealed(repo, run, tree):
                out.append((run_id, run))
        return out

    def describe(self, run_id: str, run: Any) -> tuple[str, dict[str, Any], float]:
        """Status, final metrics and when it ended (else launched) of a run (a `DecodedRun`);
        a live one is looked at in its store."""
        if run.result is not None:
            return (run.result.status, dict(run.result.metrics),
                    run.result.ended_at or run.record.launched_at)
        from gitexp.service import runs

        found = runs.find(self.repo(), run_id)  # also writes back a run that just finished
        result = found.result
        return (found.status, dict(result.metrics) if result else {},
                (result.ended_at if result else None) or run.record.launched_at)

    def pick(self, matches: list[tuple[str, Any]]) -> Named | None:
        """Of this user's runs of a tree, the one a commit names (see the module's doc)."""
        direction, metric = _best(self.config("exp.hooks.best"))
        best: tuple[tuple[Any, ...], Named] | None = None
        for run_id, run in matches:
            status, metrics, when = self.describe(run_id, run)
            rank = _RANK.get(status)
            if rank is None:
                continue  # failed, cancelled, lost: never named
            value = _number(metrics.get(metric)) if metric else None
            score = (0, 0.0) if value is None else (1, direction * value)
            key = (rank, score, when, run_id)
            if best is None or key > best[0]:
                best = key, Named(run_id, status, metrics, run.record.sweep, len(matches) - 1)
        return best[1] if best else None


class Named:
    """The run a commit names, and how many others ran the same tree."""

    def __init__(self, run_id: str, status: str, metrics: dict[str, Any], sweep: str | None,
                 others: int) -> None:
        self.run_id, self.status, self.metrics = run_id, status, metrics
        self.sweep, self.others = sweep, others

    def trailer(self, wanted: list[str]) -> str:
        from gitexp.printable import printable

        group = [f"+{self.others} more"] if self.others else []
        if self.sweep:
            group.append(f"sweep {printable(self.sweep, limit=SHORT)}")
        tail = f"; {', '.join(group)}" if group else ""
        return f"{TRAILER}: {self.run_id} ({summary(self.status, self.metrics, wanted)}{tail})"


# -- the hooks -------------------------------------------------------------------------------
def prepare_commit_msg(g: HookGit, args: list[str]) -> None:
    if not args:
        return
    msg_file, source = args[0], (args[1] if len(args) > 1 else "")
    if source == "merge" or os.path.exists(os.path.join(g.git_dir, "MERGE_HEAD")):
        return
    # The tree this commit will have: written from the index being committed (objects only).
    tree = g.run("write-tree", env={"GIT_INDEX_FILE": g.index} if g.index else None).strip()
    matches, known = g.runs_with_tree(tree)
    matches = g.mine(matches, tree)
    with open(msg_file, "rb") as f:
        text = f.read().decode(errors="surrogateescape")
    # An amend brings the old trailers along: drop ours, then add what holds now (one copy).
    kept = "".join(line for line in text.splitlines(keepends=True) if not _is_ours(line, known))
    if (not matches and kept == text) or not g.flag("exp.hooks.trailer", True):
        return  # (the switch is read only now: a git call saved on most commits)
    with open(msg_file, "wb") as f:
        f.write(kept.encode(errors="surrogateescape"))
    named = g.pick(matches)
    if named is not None:
        wanted = [m.strip() for m in (g.config("exp.hooks.metrics") or "").split(",") if m]
        g.run("interpret-trailers", "--in-place", "--if-exists", "addIfDifferent",
              "--trailer", named.trailer(wanted), msg_file)


def post_commit(g: HookGit, args: list[str]) -> None:
    matches, _ = g.runs_with_tree(g.revs[0])
    mine = g.mine(matches, g.revs[0])
    named = g.pick(mine)
    if named is None or named.status != "succeeded":
        return  # a live run is not tagged: it may still fail
    if g.run("for-each-ref", "--count=1", *(TAGS + run_id for run_id, _ in mine)).strip():
        return  # a commit of this tree has its tag (an amend: post-rewrite moves it along)
    head = g.run("rev-parse", "HEAD").strip()
    run_id = named.run_id
    if g.flag("exp.hooks.annotate", False):
        lines = "".join(f"{k} = {_value(v)}\n" for k, v in sorted(named.metrics.items()))
        done = g.ok("tag", "--no-sign", "-a", "-m", f"gitexp run {run_id}: {named.status}\n\n"
                    + lines, f"exp/{run_id}", head)
    else:  # create-only: an existing tag stays where it is
        done = g.ok("update-ref", "-m", "gitexp: commit of run", TAGS + run_id, head, NO_REF)
    if done:
        say(f"tagged {head[:10]} exp/{run_id}")


def post_rewrite(g: HookGit, args: list[str]) -> None:
    rewritten = dict(line.split()[:2] for line in sys.stdin.read().splitlines() if " " in line)
    if not rewritten:
        return
    tags = [line.split(" ") for line in g.run(
        "for-each-ref", "--format=%(refname) %(objectname) %(objecttype) %(*objectname)",
        TAGS).splitlines()]
    moving = [(ref, oid, peeled or oid, kind == "tag") for ref, oid, kind, peeled in tags
              if (peeled or oid) in rewritten]
    if not moving:
        return
    tree_of = {run_id: tree for run_id, _, tree in g.runs()}
    for ref, oid, old, annotated in moving:
        new = rewritten[old]
        run_id = ref[len(TAGS):]
        if tree_of.get(run_id) != g.run("rev-parse", f"{new}^{{tree}}").strip():
            continue  # the new commit is not what ran: the tag stays with the one that is
        if annotated:
            message = g.run("for-each-ref", "--format=%(contents)", ref)
            g.ok("tag", "-f", "--no-sign", "-a", "-m", message, f"exp/{run_id}", new)
        else:
            g.ok("update-ref", "-m", "gitexp: commit rewritten", ref, new, oid)


def pre_push(g: HookGit, args: list[str]) -> None:
    if os.environ.get(PUSH_GUARD) or not args or not g.flag("exp.hooks.pushruns", True):
        return
    _site()
    from gitexp.service import sharing

    remote = args[0]
    report = sharing.push(g.repo(), remote, own_only=True)  # never others' runs, unasked
    if report.rejected:
        ref, why = report.rejected[0]
        say(f"{len(report.rejected)} run ref(s) not pushed to {remote} ({ref}: {why}); "
            f"your push goes on")
    elif report.pushed or report.folded:
        folded = (f"; {report.folded} older run(s) folded into {len(report.archived)} "
                  "archive(s)") if report.folded else ""
        say(f"pushed {len(report.pushed)} run ref(s) to {remote}{folded}")
    if report.unfolded:  # a remote in the old layout: too long a wait for a branch push
        say(f"{remote} holds {report.unfolded} older run(s) one ref each: `git exp push "
            f"{remote}` folds them into archives (a long push, once)")


HOOKS: dict[str, tuple[Callable[[HookGit, list[str]], None], tuple[str, ...]]] = {
    # hook: (handler, revisions to resolve while finding the repository)
    "prepare-commit-msg": (prepare_commit_msg, ()),
    "post-commit": (post_commit, ("HEAD^{tree}",)),
    "post-rewrite": (post_rewrite, ()),
    "pre-push": (pre_push, ()),
}


def main(argv: list[str]) -> int:
    hook = argv[0] if argv else "(none)"
    try:
        if hook not in HOOKS:
            raise HookError("gitexp has no such hook")
        handler, revs = HOOKS[hook]
        handler(HookGit(*revs), argv[1:])
    except Exception as exc:  # a hook must never break the user's git
        text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        say(f"{hook} hook skipped: {' '.join(str(text).split())}")
    return 0


# -- helpers ---------------------------------------------------------------------------------
_SITE_DONE: list[bool] = []


def _site() -> None:
    """Before gitexp's heavier modules: the site-packages that `python -S` left out."""
    if sys.flags.no_site and not _SITE_DONE:
        import site

        site.main()
        _SITE_DONE.append(True)


def say(line: str) -> None:
    # A line may quote a ref, a remote's words or an error about a run: all data. (The
    # import only when needed: most commits that print say `tagged ...`, all printable.)
    if not line.isprintable() or len(line) > SAY_LIMIT:
        from gitexp.printable import printable

        line = printable(line, limit=SAY_LIMIT)
    sys.stderr.write(f"gitexp: {line}\n")
    sys.stderr.flush()


def summary(status: str, metrics: dict[str, Any], wanted: list[str]) -> str:
    """`succeeded, acc=0.9`: what a trailer says of a run. Names and values come from the
    run, and a newline in one would write lines of its own into the commit message."""
    from gitexp.printable import printable

    names = wanted or sorted(metrics)[:TRAILER_METRICS]
    return ", ".join([printable(status, limit=SHORT), *(
        f"{printable(k, limit=SHORT)}={_value(metrics[k])}" for k in names if k in metrics)])


def _value(v: Any) -> str:
    from gitexp.printable import printable

    return f"{v:.4g}" if isinstance(v, float) else printable(str(v), limit=SHORT)


def _best(raw: str | None) -> tuple[int, str | None]:
    """`exp.hooks.best`: `loss` or `min:loss` (lowest wins), `max:acc` (highest wins)."""
    way, _, name = (raw or "").strip().rpartition(":")
    return (1 if way.lower() == "max" else -1), (name.strip() or None)


def _number(v: Any) -> float | None:
    import math  # built in: no start-up cost worth deferring further

    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    return float(v) if ok else None


def _is_ours(line: str, known: set[str]) -> bool:
    words = line.split()
    return len(words) > 1 and words[0] == f"{TRAILER}:" and words[1] in known


def _spawn(argv: list[str], env: dict[str, str], data: bytes | None) -> tuple[int, bytes, bytes]:
    """Run argv; (exit code, stdout, stderr). Feeds `data` and drains both outputs together,
    so neither side can block the other whatever the sizes."""
    in_r, in_w = os.pipe() if data is not None else (os.open(os.devnull, os.O_RDONLY), -1)
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    try:
        pid = os.posix_spawnp(argv[0], argv, env, file_actions=[
            (os.POSIX_SPAWN_DUP2, in_r, 0), (os.POSIX_SPAWN_DUP2, out_w, 1),
            (os.POSIX_SPAWN_DUP2, err_w, 2)])
    except BaseException:
        for fd in (in_w, out_r, err_r):
            if fd >= 0:
                os.close(fd)
        raise
    finally:
        for fd in (in_r, out_w, err_w):
            os.close(fd)
    out, err = _communicate(in_w, out_r, err_r, data or b"")
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), out, err


def _communicate(in_w: int, out_r: int, err_r: int, data: bytes) -> tuple[bytes, bytes]:
    import select

    chunks: dict[int, list[bytes]] = {out_r: [], err_r: []}
    readers, writers = [out_r, err_r], ([in_w] if in_w >= 0 else [])
    pending = memoryview(data)
    if writers:
        os.set_blocking(in_w, False)
    while readers or writers:
        readable, writable, _ = select.select(readers, writers, [])
        for fd in readable:
            chunk = os.read(fd, 1 << 16)
            if chunk:
                chunks[fd].append(chunk)
            else:
                readers.remove(fd)
                os.close(fd)
        if writable:
            try:
                pending = pending[os.write(in_w, pending[:1 << 16]):]
            except BrokenPipeError:  # the child stopped reading: its exit code will say why
                pending = pending[:0]
            if not pending:
                os.close(in_w)
                writers = []
    return b"".join(chunks[out_r]), b"".join(chunks[err_r])


def _read_cache(path: str) -> tuple[str | None, list[tuple[str, str, str]]]:
    try:
        with open(path, encoding="ascii") as f:
            head, *lines = f.read().splitlines()
    except (OSError, ValueError):
        return None, []
    rows = []
    for line in lines:
        commit, _, rest = line.partition(" ")
        tree, _, run_id = rest.partition(" ")
        if run_id:
            rows.append((run_id, commit, tree))
    stamp = head[len("stamp "):] if head.startswith("stamp ") else "-"
    return (None if stamp == "-" else stamp), rows


def _write_atomic(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.{os.getpid()}"
    try:
        with open(tmp, "w", encoding="ascii") as f:
            f.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
