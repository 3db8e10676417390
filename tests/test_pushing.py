"""A push of many refs by globs (git/pushing.py), each change as guarded as a named one.

Real git end to end: a bare remote and a clone; refs made with plain git, pushes read back
with `for-each-ref` on the remote. The globs must take exactly what changes, whatever else
the remote holds or gains meanwhile."""

from __future__ import annotations

import os
import random
import subprocess
from pathlib import Path

import pytest

from gitexp.git import Repo, pushing
from tests.helpers import git

RUNS = "refs/experiments/"


def refs(repo: Path, prefix: str = "refs/") -> dict[str, str]:
    out = git("for-each-ref", "--format=%(refname) %(objectname)", prefix, cwd=repo)
    return dict(line.split(" ") for line in out.splitlines())


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path, list[str]]:
    """A bare remote holding runs a..., and a clone (`origin`) with the same objects; three
    commits to point refs at."""
    remote, clone = tmp_path / "remote.git", tmp_path / "clone"
    git("init", "-q", "--bare", str(remote), cwd=tmp_path)
    git("init", "-q", "-b", "main", str(clone), cwd=tmp_path)
    commits = []
    for n in range(3):
        git("commit", "-q", "--allow-empty", "-m", f"c{n}", cwd=clone)
        commits.append(git("rev-parse", "HEAD", cwd=clone).strip())
    git("remote", "add", "origin", str(remote), cwd=clone)
    git("push", "-q", "origin", "main", cwd=clone)
    return remote, clone, commits


def put(remote: Path, wanted: dict[str, str]) -> None:
    git("update-ref", "--stdin", cwd=remote, input="".join(
        f"update {r} {oid}\n" for r, oid in wanted.items()).encode())


def leased(clone: Path, remote: str, changes: dict[str, tuple[str | None, str | None]],
           listed: list[str], *, atomic: bool) -> subprocess.CompletedProcess[bytes]:
    return pushing.push_leased(Repo.discover(clone), remote, changes, listed, atomic=atomic)


def matches(prefix: str, name: str) -> bool:
    return name.startswith(prefix)


def test_covers_take_every_changed_ref_and_none_of_the_others():
    rng = random.Random(19)
    words = ["a", "ab", "abc", "b", "ba", "run-1", "run-10", "run-1-b", "run-2", "z9"]
    for _ in range(400):
        names = {RUNS + rng.choice(words) + rng.choice(["", "x", "-1", "-12"])
                 for _ in range(rng.randint(1, 12))}
        names |= {f"refs/tags/exp/{rng.choice(words)}" for _ in range(rng.randint(0, 3))}
        changed = {n for n in names if rng.random() < 0.5}
        prefixes, named = pushing.covers(changed, names - changed)
        for name in changed:
            assert name in named or any(matches(p, name) for p in prefixes), (name, prefixes)
        for name in names - changed:
            assert not any(matches(p, name) for p in prefixes), (name, prefixes)
        for name in named:  # named only when a ref left alone extends it
            assert any(o != name and o.startswith(name) for o in names - changed)
        for p in prefixes:  # the glob's `*` stays within the last directory
            assert "/" not in p[p.rfind("/") + 1:]
            assert any(matches(p, n) for n in changed)
        assert len(set(prefixes)) == len(prefixes)
        assert not any(p != q and p.startswith(q) for p in prefixes for q in prefixes)


def test_covers_take_a_month_of_runs_in_a_few_globs():
    # ids sort by launch: an archive's 1,000 runs are one stretch of the remote's names
    names = [f"{RUNS}train-{day:02d}{n:04d}-x" for day in range(1, 29) for n in range(1000)]
    changed = names[3000:4000]
    prefixes, named = pushing.covers(changed, names[:3000] + names[4000:])
    assert named == [] and 1 <= len(prefixes) <= 20, prefixes


def test_a_leased_push_deletes_and_creates_exactly_its_changes(
        pair: tuple[Path, Path, list[str]]):
    remote, clone, (c0, c1, _) = pair
    there = {f"{RUNS}run-{n}": c0 for n in range(1, 13)}  # run-1, run-10, run-11, run-12...
    there[f"{RUNS}run-1-b"] = c0
    put(remote, there)
    gone = [f"{RUNS}run-{n}" for n in (1, 2, 3, 4, 5)]
    changes: dict[str, tuple[str | None, str | None]] = dict.fromkeys(gone, (c0, None))
    changes["refs/exp-archive/run-1"] = (None, c1)
    proc = leased(clone, "origin", changes, list(there), atomic=True)
    assert proc.returncode == 0, proc.stderr
    after = refs(remote)
    assert after["refs/exp-archive/run-1"] == c1
    assert not set(gone) & set(after)
    # run-1 went, not the runs whose names it begins
    assert {r for r in there if r not in gone} <= set(after)
    assert refs(clone, pushing.STAGED) == {}  # its staging gone with it


def test_a_lease_that_no_longer_holds_stops_an_atomic_push_whole(
        pair: tuple[Path, Path, list[str]]):
    remote, clone, (c0, c1, c2) = pair
    there = {f"{RUNS}run-{n}": c0 for n in range(1, 8)}
    put(remote, there)
    put(remote, {f"{RUNS}run-3": c2})  # moved by someone since the listing
    changes: dict[str, tuple[str | None, str | None]] = {
        f"{RUNS}run-{n}": (c0, None) for n in range(1, 6)}
    changes["refs/exp-archive/run-1"] = (None, c1)
    proc = leased(clone, "origin", changes, list(there), atomic=True)
    assert proc.returncode != 0
    assert b"stale info" in proc.stdout, proc.stdout
    assert refs(remote, RUNS) == {**there, f"{RUNS}run-3": c2}  # nothing deleted
    assert "refs/exp-archive/run-1" not in refs(remote)
    # not atomic: that one stays, the others go
    proc = leased(clone, "origin", {r: ch for r, ch in changes.items() if r.startswith(RUNS)},
                  list(there), atomic=False)
    assert set(refs(remote, RUNS)) == {f"{RUNS}run-{n}" for n in (3, 6, 7)}


def test_a_ref_the_remote_gained_since_its_listing_is_not_deleted_by_a_glob(
        pair: tuple[Path, Path, list[str]]):
    remote, clone, (c0, _, c2) = pair
    there = {f"{RUNS}run-{n}": c0 for n in range(1, 8)}
    put(remote, there)
    changes: dict[str, tuple[str | None, str | None]] = {
        f"{RUNS}run-{n}": (c0, None) for n in range(1, 8)}  # every one: the glob is `run-*`
    prefixes, _ = pushing.covers(changes, [])
    assert prefixes == [RUNS]  # so a ref pushed meanwhile falls under it
    put(remote, {f"{RUNS}run-new": c2, f"{RUNS}run-1x": c2})
    proc = leased(clone, "origin", changes, list(there), atomic=False)
    after = refs(remote, RUNS)
    assert after == {f"{RUNS}run-new": c2, f"{RUNS}run-1x": c2}, proc.stdout
    assert b"refs/experiments/run-new\t[rejected] (stale info)" in proc.stdout


def test_a_leased_push_goes_where_the_remote_pushes_whatever_it_fetches(
        pair: tuple[Path, Path, list[str]], tmp_path: Path):
    """The remote's push URL and its own fetch refspecs (here every ref, to stale tracking
    refs) are its own: the leases go by what the caller says, to where it pushes."""
    remote, clone, (c0, c1, _) = pair
    other = tmp_path / "push-here.git"
    git("clone", "-q", "--bare", str(remote), str(other), cwd=tmp_path)
    there = {f"{RUNS}run-{n}": c0 for n in range(1, 4)}
    put(remote, there)
    put(other, there)
    git("config", "remote.origin.pushurl", str(other), cwd=clone)
    git("config", "--add", "remote.origin.fetch", "+refs/*:refs/remotes/origin/all/*", cwd=clone)
    git("update-ref", "refs/remotes/origin/all/experiments/run-1", c1, cwd=clone)  # stale
    proc = leased(clone, "origin", {f"{RUNS}run-1": (c0, None)}, list(there), atomic=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{RUNS}run-1" not in refs(other, RUNS)
    assert refs(remote, RUNS) == there  # its fetch URL untouched


def test_a_leased_push_keeps_the_callers_own_environment_settings(
        pair: tuple[Path, Path, list[str]], monkeypatch: pytest.MonkeyPatch):
    """Settings given as GIT_CONFIG_* (a URL rewrite here: without it the remote's URL leads
    nowhere) stay in force beside the lease remote's."""
    remote, clone, (c0, _, _) = pair
    put(remote, {f"{RUNS}run-1": c0})
    git("remote", "set-url", "origin", "team:remote.git", cwd=clone)
    monkeypatch.setenv("GIT_CONFIG_COUNT", "1")
    monkeypatch.setenv("GIT_CONFIG_KEY_0", f"url.{remote.parent}/.insteadOf")
    monkeypatch.setenv("GIT_CONFIG_VALUE_0", "team:")
    proc = leased(clone, "origin", {f"{RUNS}run-1": (c0, None)}, [f"{RUNS}run-1"],
                  atomic=False)
    assert proc.returncode == 0, proc.stderr
    assert refs(remote, RUNS) == {}


def test_staging_left_by_a_killed_push_goes_and_a_running_pushs_stays(
        pair: tuple[Path, Path, list[str]]):
    _, clone, (c0, _, _) = pair
    dead = subprocess.Popen(["true"])
    dead.wait()
    mine = f"{pushing.STAGED}{os.getpid()}-feedbeef/new/experiments/run-1"
    left = f"{pushing.STAGED}{dead.pid}-feedbeef/new/experiments/run-1"
    git("update-ref", mine, c0, cwd=clone)
    git("update-ref", left, c0, cwd=clone)
    with pushing.staged(Repo.discover(clone), {f"{RUNS}run-2": c0}) as space:
        assert set(refs(clone, pushing.STAGED)) == {mine, f"{space}new/experiments/run-2"}
    assert set(refs(clone, pushing.STAGED)) == {mine}
