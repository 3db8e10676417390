"""A fetch brings runs through a view (git/fetching.py): a bare repository that borrows every
object of the clone but sees only its branches, tags and the runs the incoming ones extend,
so that git's negotiation and connectivity check cost what arrives, not every run held.

Real git end to end: a bare remote, Alice's clone launching runs, Bob's fetching them."""

from __future__ import annotations

import os
import time
from pathlib import Path

from tests.helpers import exp, exp_json, git
from tests.test_sharing import alice_and_remote, clone, launch


def packs(repo: Path) -> set[Path]:
    return set((repo / ".git/objects/pack").glob("*.idx"))


def objects_in(idx: Path, repo: Path) -> set[str]:
    out = git("show-index", cwd=repo, input=idx.read_bytes())
    return {line.split()[1] for line in out.splitlines()}


def verbs(trace: Path, verb: str) -> int:
    return sum(f"built-in: git {verb} " in line for line in trace.read_text().splitlines())


def test_a_finished_run_arrives_through_a_view_that_knew_its_snapshot(tmp_path: Path):
    alice, remote = alice_and_remote(tmp_path)
    run_id = launch(alice)
    snapshot = exp_json("show", run_id, cwd=alice)["snapshot"]
    git("push", "-q", "origin", f"{snapshot}:refs/experiments/{run_id}", cwd=alice)
    bob = clone(remote, tmp_path / "bob")
    exp("fetch", cwd=bob)  # the snapshot, as a raw push sent it while the run went on
    exp("push", cwd=alice)  # now its results commit, extending the snapshot
    before = packs(bob)
    trace = tmp_path / "trace"
    killed, live = bob / ".git/gitexp/fetch-killed", bob / ".git/gitexp/fetch-live"
    for view in (killed, live):  # what a fetch killed two days ago left, and one under way
        (view / "objects").mkdir(parents=True)
    os.utime(killed, (time.time() - 2 * 86400,) * 2)

    out = exp("fetch", cwd=bob, env={"GIT_TRACE": str(trace)}).stdout

    assert "1 run(s) updated" in out, out
    results = git("rev-parse", f"refs/experiments/{run_id}", cwd=alice).strip()
    assert git("rev-parse", f"refs/experiments/{run_id}", cwd=bob).strip() == results
    assert verbs(trace, "init") == 1 and verbs(trace, "fetch") == 1  # a view, no second try
    assert verbs(trace, "maintenance") == 1  # the clone's housekeeping, as a fetch's
    [received] = packs(bob) - before  # moved in from the view
    got = objects_in(received, bob)
    assert results in got and snapshot not in got  # the view had it: not sent again
    assert not list((bob / ".git/objects/pack").glob("*.keep"))
    assert list((bob / ".git/gitexp").glob("fetch-*")) == [live]  # this one's view is gone
    git("fsck", "--connectivity-only", "--no-dangling", cwd=bob)


def test_the_view_reads_the_clones_own_config_and_a_fetch_it_fails_goes_plainly(
        tmp_path: Path):
    """A remote reached through a URL rewrite in the clone's config fetches in the view (it
    includes that config). One the view cannot reach (the rewrite applies only to the clone's
    own git directory, by `includeIf`) is fetched again plainly, and the runs arrive."""
    alice, remote = alice_and_remote(tmp_path)
    made = [launch(alice), launch(alice)]
    exp("push", cwd=alice)
    bob = tmp_path / "bob"
    git("clone", "-q", "--no-local", str(remote), str(bob), cwd=tmp_path)
    git("config", f"url.{remote.parent}/.insteadOf", "team:", cwd=bob)
    git("remote", "set-url", "origin", f"team:{remote.name}", cwd=bob)
    trace = tmp_path / "trace"

    assert "2 new run(s)" in exp("fetch", cwd=bob, env={"GIT_TRACE": str(trace)}).stdout
    assert verbs(trace, "fetch") == 1

    carol = tmp_path / "carol"  # by the transport: a local clone would have every object
    git("clone", "-q", "--no-local", str(remote), str(carol), cwd=tmp_path)
    (carol / ".git/rewrite.cfg").write_text(f'[url "{remote.parent}/"]\n\tinsteadOf = team:\n')
    git("config", f"includeIf.gitdir:{carol / '.git'}.path", "rewrite.cfg", cwd=carol)
    git("remote", "set-url", "origin", f"team:{remote.name}", cwd=carol)
    trace.unlink()

    assert "2 new run(s)" in exp("fetch", cwd=carol, env={"GIT_TRACE": str(trace)}).stdout
    assert verbs(trace, "fetch") == 2  # the view's, refused; then the plain one
    assert {exp_json("show", i, cwd=carol)["status"] for i in made} == {"succeeded"}
    assert not list((carol / ".git/gitexp").glob("fetch-*"))
