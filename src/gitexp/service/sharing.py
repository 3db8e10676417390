"""Sharing runs through ordinary git remotes: `refs/experiments/*` and `refs/tags/exp/*`.

Only finished (written-back) runs travel: a live run's ref still points at its snapshot, and a
clone that fetched it could never see it end (its store is on the launcher's side).

Pushes never force. Fetches land in a private staging namespace first, then each run ref is
created, fast-forwarded (snapshot -> results commit), or left alone when the local one is
ahead or different; nothing local is ever rewound or overwritten.
"""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field

from gitexp.errors import GitexpError
from gitexp.git import Repo, run_git
from gitexp.model import ids

PUSH_GUARD = "GITEXP_PUSHING_RUNS"  # == hooks.run.PUSH_GUARD: our own pre-push does nothing
STAGING = "refs/gitexp-incoming/"
NAMESPACES = (ids.PREFIX, ids.TAG_PREFIX)


@dataclass(frozen=True)
class PushReport:
    remote: str
    pushed: list[str] = field(default_factory=list)  # refs the remote did not have as such
    up_to_date: int = 0
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (ref, why)
    live: list[str] = field(default_factory=list)  # unfinished runs, not pushed


@dataclass(frozen=True)
class FetchReport:
    remote: str
    new: list[str] = field(default_factory=list)  # refs created here
    updated: list[str] = field(default_factory=list)  # fast-forwarded (a run that finished)
    kept: list[tuple[str, str]] = field(default_factory=list)  # (ref, why the local one stays)


def default_remote(repo: Repo, pushing: bool) -> str:
    branch = repo.branch()
    keys = ([f"branch.{branch}.pushRemote"] if branch and pushing else [])
    keys += ["remote.pushDefault"] if pushing else []
    keys += [f"branch.{branch}.remote"] if branch else []
    for key in keys:
        value = repo.git("config", "--get", key, check=False).strip()
        if value and value != ".":
            return value
    remotes = repo.git("remote").split()
    if "origin" in remotes or len(remotes) == 1:
        return "origin" if "origin" in remotes else remotes[0]
    raise GitexpError("which remote? this repository has " +
                      (f"{len(remotes)} remotes" if remotes else "no remote"),
                      hint=f"name one: `git exp {'push' if pushing else 'fetch'} REMOTE` "
                           "(`git remote -v` lists them)")


def is_remote(repo: Repo, word: str) -> bool:
    """A configured remote, or something git would take as a URL or path."""
    return word in repo.git("remote").split() or any(c in word for c in "/:") or word == "."


def push(repo: Repo, remote: str | None = None, run_ids: Sequence[str] = ()) -> PushReport:
    """Push finished runs (all, or `run_ids`) and their `exp/*` tags; never forces."""
    remote = _check_remote(remote or default_remote(repo, pushing=True))
    finished, live = _run_refs(repo)
    if run_ids:
        wanted = [ids.ref_for(i) for i in run_ids]
        unfinished = [r for r in wanted if r in live]
        if unfinished:
            raise GitexpError(f"run {unfinished[0][len(ids.PREFIX):]} has not finished yet",
                              hint="push it once `git exp ls` shows it ended")
        tags = set(repo.git("for-each-ref", "--format=%(refname)", ids.TAG_PREFIX).split())
        wanted += [t for i in run_ids if (t := ids.TAG_PREFIX + i) in tags]
        specs = [f"{r}:{r}" for r in wanted]
    elif live:  # name the finished ones; a glob would take the live ones along
        specs = [f"{r}:{r}" for r in finished] + [f"{ids.TAG_PREFIX}*:{ids.TAG_PREFIX}*"]
    else:
        specs = [f"{ns}*:{ns}*" for ns in NAMESPACES]
    proc = _git(repo, "push", "--porcelain", "--no-verify", remote, *specs)
    out = proc.stdout.decode(errors="replace")
    report = _parse_push(remote, out, live=[r[len(ids.PREFIX):] for r in live])
    if proc.returncode != 0 and not report.rejected:
        raise GitexpError(f"git push to {remote} failed: {_why(proc)}",
                          hint="check the remote with `git remote -v` and `git ls-remote REMOTE`")
    return report


def fetch(repo: Repo, remote: str | None = None) -> FetchReport:
    """Fetch runs and `exp/*` tags; new ones appear, finished ones fast-forward."""
    remote = _check_remote(remote or default_remote(repo, pushing=False))
    stage = f"{STAGING}{secrets.token_hex(4)}/"
    specs = [f"+{ns}*:{stage}{i}/*" for i, ns in enumerate(NAMESPACES)]
    try:
        proc = _git(repo, "fetch", "--quiet", "--no-tags", "--no-write-fetch-head",
                             "--no-recurse-submodules", remote, *specs)
        if proc.returncode != 0:
            raise GitexpError(
                f"git fetch from {remote} failed: {_why(proc)}",
                hint="check the remote with `git remote -v` and `git ls-remote REMOTE`")
        incoming = _refs(repo, stage)
        return _merge(repo, remote, {
            NAMESPACES[int(name.split("/", 1)[0])] + name.split("/", 1)[1]: oid
            for name, oid in incoming.items()})
    finally:
        staged = _refs(repo, stage)
        if staged:
            repo.git("update-ref", "--stdin", input="".join(
                f"delete {stage}{name} {oid}\n" for name, oid in staged.items()).encode())


def _merge(repo: Repo, remote: str, incoming: dict[str, str]) -> FetchReport:
    local = {**_refs(repo, ids.PREFIX, full=True), **_refs(repo, ids.TAG_PREFIX, full=True)}
    report = FetchReport(remote)
    commands = []
    for ref, new in sorted(incoming.items()):
        old = local.get(ref)
        if old == new:
            continue
        if old is None:
            commands.append(f"create {ref} {new}\n")
            report.new.append(ref)
        elif ref.startswith(ids.PREFIX) and repo.ok("merge-base", "--is-ancestor", old, new):
            commands.append(f"update {ref} {new} {old}\n")
            report.updated.append(ref)
        elif ref.startswith(ids.PREFIX) and repo.ok("merge-base", "--is-ancestor", new, old):
            report.kept.append((ref, "the local run is further along"))
        else:
            report.kept.append((ref, f"differs from {remote}'s; the local one stays"))
    if commands:  # one transaction: all or nothing, each guarded by its old value
        repo.git("update-ref", "--stdin", input="".join(commands).encode())
    return report


def _run_refs(repo: Repo) -> tuple[list[str], list[str]]:
    """(finished, live) run refs: a results commit is titled `gitexp run <id>: <status>`."""
    finished: list[str] = []
    live: list[str] = []
    for line in repo.for_each_ref(ids.PREFIX, "%(refname) %(contents:subject)"):
        ref, _, subject = line.partition(" ")
        (finished if ": " in subject else live).append(ref)
    return finished, live


def _refs(repo: Repo, prefix: str, full: bool = False) -> dict[str, str]:
    out = repo.git("for-each-ref", "--format=%(objectname) %(refname)", prefix)
    pairs = (line.split(" ", 1) for line in out.splitlines())
    return {ref if full else ref[len(prefix):]: oid for oid, ref in pairs}


def _parse_push(remote: str, out: str, live: list[str]) -> PushReport:
    report = PushReport(remote, live=live)
    up_to_date = 0
    for line in out.splitlines():
        parts = line.split("\t")
        if len(parts) < 3 or len(parts[0]) != 1:
            continue
        flag, ref, summary = parts[0], parts[1].split(":")[-1], parts[2]
        if flag == "=":
            up_to_date += 1
        elif flag == "!":
            report.rejected.append((ref, summary.strip("[] ").replace("] (", ": ").rstrip(")")))
        else:
            report.pushed.append(ref)
    return PushReport(remote, report.pushed, up_to_date, report.rejected, live)


def _git(repo: Repo, *args: str) -> subprocess.CompletedProcess[bytes]:
    # The guard keeps a pre-push hook (ours, `--no-verify` aside) from pushing runs again.
    return run_git(["--git-dir", str(repo.git_dir), *args], cwd=repo.root,
                   env={PUSH_GUARD: "1"}, check=False)


def _why(proc: subprocess.CompletedProcess[bytes]) -> str:
    """git's own reason: its first `fatal:`/`error:` line (the last line is often only the
    tail of a wrapped sentence, like "and the repository exists.")."""
    lines = proc.stderr.decode(errors="replace").strip().splitlines()
    said = [ln for ln in lines if ln.startswith(("fatal: ", "error: "))]
    return (said or lines or [f"exit {proc.returncode}"])[0]


def _check_remote(remote: str) -> str:
    if remote.startswith("-"):
        raise GitexpError(f"invalid remote {remote!r}", hint="`git remote -v` lists remotes")
    return remote
