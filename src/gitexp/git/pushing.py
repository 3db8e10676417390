"""Pushing many refs to a remote that holds many, at the cost of what changes.

git's push matches each refspec and each `--force-with-lease=<ref>:<oid>` named on its
command line against every ref the remote advertises, formatting six candidate names a pair
(`refname_match`, git 2.39). Against 100,000 remote refs, a push deleting 999 runs under
leases took 157 s of the client's CPU (the remote's part of it under a second), and 100
named refs 15 s. A glob refspec costs a string compare or two a ref. So a push of many refs
goes by globs, each change as guarded as if it were named:

- what it creates or moves is staged as local refs under this push's own namespace
  (`staged`) and pushed by globs mapping them to their names;
- what it deletes is pushed by globs with `--prune`: a remote ref that a glob covers and that
  has no staged counterpart is deleted. Each glob is a prefix that takes none of the other
  refs the remote listed (`covers`): a handful for a month of runs;
- each change holds only while the remote's ref is what the caller expects (`push_leased`):
  a bare `--force-with-lease` expects every ref it pushes at its "remote-tracking ref", which
  the fetch refspec of a remote defined for this push alone maps under the namespace, where
  the expected values are staged; a ref with none staged must not exist. So a ref that
  appeared after the caller's listing and falls under a glob is refused, not deleted.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
from collections.abc import Iterable, Iterator, Mapping

from gitexp.git import Repo, run_git

STAGED = "refs/gitexp-push/"  # <pid>-<random>/new/...: what a push sends; .../old/...: leases
LEASE_REMOTE = "gitexp-lease"  # the remote a leased push goes through, defined in its env
# What of the caller's remote that remote takes: where to push to and how to get there, not
# what to fetch or push by default
_CARRIED = ("url", "pushurl", "receivepack", "proxy", "proxyauthmethod", "vcs")


@contextlib.contextmanager
def staged(repo: Repo, new: Mapping[str, str], old: Mapping[str, str] | None = None,
           ) -> Iterator[str]:
    """`new` and `old` (ref -> commit) copied as refs under `<namespace>new/` and
    `<namespace>old/` for as long as a push takes; yields the namespace. Each push has its
    own, so two at once in one clone never see each other's (one deleting the other's
    staged ref would have it deleted on the remote); one left by a push that was killed is
    removed by the next."""
    space = f"{STAGED}{os.getpid()}-{secrets.token_hex(4)}/"
    wanted = {f"{space}new/{r[len('refs/'):]}": oid for r, oid in new.items()}
    wanted.update({f"{space}old/{r[len('refs/'):]}": oid for r, oid in (old or {}).items()})
    if not wanted:
        yield space
        return
    repo.git("update-ref", "--stdin", input="".join(
        [f"delete {r} {oid}\n" for r, oid in _stale(repo).items()] +
        [f"create {r} {oid}\n" for r, oid in wanted.items()]).encode())
    try:
        yield space
    finally:  # a push moves the leases of what it pushed (they are remote-tracking refs)
        left = repo.git("for-each-ref", "--format=delete %(refname)", space)
        if left:
            repo.git("update-ref", "--stdin", input=left.encode())


def _stale(repo: Repo) -> dict[str, str]:
    """The staged refs of pushes whose process is gone (ref -> commit)."""
    out = repo.git("for-each-ref", "--format=%(objectname) %(refname)", STAGED)
    found = {}
    for line in out.splitlines():
        oid, ref = line.split(" ", 1)
        pid = ref[len(STAGED):].split("-", 1)[0]
        if not pid.isdigit() or not _alive(int(pid)):
            found[ref] = oid
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's
        return True
    return True


def globs(space: str, prefixes: Iterable[str]) -> list[str]:
    """Refspecs pushing what is staged in `space` under each of `prefixes` to its name."""
    return [f"{space}new/{p[len('refs/'):]}*:{p}*" for p in prefixes]


def covers(changed: Iterable[str], others: Iterable[str]) -> tuple[list[str], list[str]]:
    """Prefixes that, as globs, match every ref of `changed` and none of `others`, each
    within one directory; and the refs no glob can take alone (one of `others` starts with
    their whole name), to be named. A changed ref takes its name up to one character past
    the longest it shares with a nearest unchanged neighbour in sorted order: every ref with
    that prefix sorts between those neighbours."""
    marked = set(changed)
    names = sorted(marked.union(others))
    shared = dict.fromkeys(marked, 0)
    for order in (names, names[::-1]):
        near = ""
        for name in order:
            if name in marked:
                shared[name] = max(shared[name], _common(name, near))
            else:
                near = name
    found, named = set(), []
    for name, n in shared.items():
        if n >= len(name):
            named.append(name)
        else:
            found.add(name[:max(n + 1, name.rfind("/") + 1)])
    kept: list[str] = []
    for prefix in sorted(found):  # sorted, a prefix comes first and its extensions after it
        if not kept or not prefix.startswith(kept[-1]):
            kept.append(prefix)
    return kept, sorted(named)


def _common(a: str, b: str) -> int:
    return len(os.path.commonprefix((a, b)))  # noqa: RUF071 (names, not paths)


def push_leased(repo: Repo, remote: str, changes: Mapping[str, tuple[str | None, str | None]],
                listed: Iterable[str], *, atomic: bool,
                env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    """`git push --porcelain` of `changes` (ref -> (the commit the remote's ref must still
    be, None: it must not exist; the commit it becomes, None: deleted)), by globs that take
    nothing else of what the remote `listed`; `atomic`: all or none."""
    news = {r: new for r, (_, new) in changes.items() if new is not None}
    olds = {r: old for r, (old, _) in changes.items() if old is not None}
    prefixes, named = covers(changes, listed)
    with staged(repo, news, olds) as space:
        specs = globs(space, prefixes) + [
            f"{space}new/{r[len('refs/'):]}:{r}" if r in news else f":{r}" for r in named]
        return run_git(
            ["--git-dir", str(repo.git_dir), "push", "--porcelain", "--no-verify", "--prune",
             "--force-with-lease", "--no-force-if-includes", *(["--atomic"] if atomic else []),
             LEASE_REMOTE, *specs],
            cwd=repo.root, env={**(env or {}), **_lease_remote(repo, remote, space)},
            check=False)


def _lease_remote(repo: Repo, remote: str, space: str) -> dict[str, str]:
    """The environment defining LEASE_REMOTE: `remote`'s way there (or `remote` itself, a
    URL or path), and one fetch refspec mapping every ref to its lease under `space`. In the
    environment, not on the command line: a URL may hold a token."""
    out = repo.git("config", "-z", "--get-regexp", r"^remote\.", check=False) \
        if remote in repo.git("remote").split() else ""
    carried = []
    for entry in filter(None, out.split("\0")):
        key, _, value = entry.partition("\n")
        section, _, name = key.rpartition(".")
        if section == f"remote.{remote}" and name in _CARRIED:
            carried.append((name, value))
    settings = [(f"remote.{LEASE_REMOTE}.{k}", v) for k, v in carried or [("url", remote)]]
    settings.append((f"remote.{LEASE_REMOTE}.fetch", f"+refs/*:{space}old/*"))
    base = int(os.environ.get("GIT_CONFIG_COUNT", "0") or 0)  # the caller's own, kept
    env = {"GIT_CONFIG_COUNT": str(base + len(settings))}
    for n, (key, value) in enumerate(settings, base):
        env[f"GIT_CONFIG_KEY_{n}"], env[f"GIT_CONFIG_VALUE_{n}"] = key, value
    return env
