"""The SQLite index: a cache of run records keyed by ref and commit, rebuilt from the refs.

Deleting or corrupting it loses nothing; refs moved, added or removed behind its back are
picked up; several readers at once agree.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

from tests.helpers import exp, exp_json, git, wait_done, wait_for

SCRIPT = "import json, sys\njson.dump({'loss': float(sys.argv[1])}, open('metrics.json', 'w'))\n"


def index_file(repo: Path) -> Path:
    return repo / ".git" / "gitexp" / "index.sqlite"


def start(repo: Path, *args: str) -> str:
    return exp("run", "-d", "--force", "--", "python", "train.py", *args, cwd=repo).stdout.strip()


def listing(repo: Path) -> list[tuple[str, str, str, object]]:
    return sorted((r["id"], r["status"], r["commit"], r["result"]["metrics"].get("loss"))
                  for r in exp_json("ls", cwd=repo))


def test_ls_builds_the_index_and_deleting_it_loses_nothing(repo: Path) -> None:
    (repo / "train.py").write_text(SCRIPT)
    ids = [start(repo, str(v)) for v in (0.5, 0.25)]
    for run_id in ids:
        wait_done(run_id, repo)
    before = listing(repo)
    assert index_file(repo).exists()
    rows = sqlite3.connect(index_file(repo)).execute("SELECT run_id, commit_id FROM runs")
    refs = git("for-each-ref", "--format=%(refname:strip=2) %(objectname)",
               "refs/experiments/", cwd=repo).split("\n")
    assert sorted(f"{a} {b}" for a, b in rows) == sorted(r for r in refs if r)
    for suffix in ("", "-wal", "-shm"):
        Path(str(index_file(repo)) + suffix).unlink(missing_ok=True)
    assert listing(repo) == before
    assert exp("ls", cwd=repo).stdout.count("succeeded") == 2


def test_a_corrupt_index_is_rebuilt(repo: Path) -> None:
    (repo / "train.py").write_text(SCRIPT)
    wait_done(start(repo, "0.5"), repo)
    before = listing(repo)
    for suffix in ("-wal", "-shm"):
        Path(str(index_file(repo)) + suffix).unlink(missing_ok=True)
    index_file(repo).write_bytes(b"this is not a database" * 100)
    assert listing(repo) == before
    assert listing(repo) == before  # and the second time from the rebuilt file


def test_refs_changed_behind_its_back_are_picked_up(repo: Path, tmp_path: Path) -> None:
    (repo / "train.py").write_text(SCRIPT)
    first = start(repo, "0.5")
    wait_done(first, repo)
    exp("ls", cwd=repo)  # index now holds `first`
    # a run arrives by fetch from a teammate's clone
    other = tmp_path / "other"
    git("clone", "-q", str(repo), str(other), cwd=tmp_path)
    (other / "train.py").write_text(SCRIPT)
    theirs = start(other, "0.125")
    wait_done(theirs, other)
    git("fetch", "-q", str(other), "refs/experiments/*:refs/experiments/*", cwd=repo)
    assert {r["id"] for r in exp_json("ls", cwd=repo)} == {first, theirs}
    # a ref deleted by plain git disappears from ls
    git("update-ref", "-d", f"refs/experiments/{first}", cwd=repo)
    assert [r["id"] for r in exp_json("ls", cwd=repo)] == [theirs]
    # a ref moved to another commit is re-read (keyed by commit, not by ref alone)
    git("update-ref", f"refs/experiments/{theirs}",
        git("rev-parse", f"refs/experiments/{theirs}^", cwd=repo).strip(), cwd=repo)
    (run,) = exp_json("ls", cwd=repo)
    assert run["commit"] == run["snapshot"]  # now the snapshot commit: not written back


def test_a_live_run_is_indexed_then_its_result_replaces_it(repo: Path) -> None:
    go = repo.parent / "go"  # the job waits for it: live for as long as the test needs
    (repo / "train.py").write_text(
        f"import json, os, time\nwhile not os.path.exists({str(go)!r}): time.sleep(0.05)\n"
        "json.dump({'loss': 1.0}, open('metrics.json', 'w'))\n")
    run_id = start(repo)
    live = exp_json("ls", cwd=repo)
    assert live[0]["status"] in ("queued", "running")
    go.touch()
    wait_done(run_id, repo)
    (done,) = exp_json("ls", cwd=repo)
    assert done["status"] == "succeeded" and done["result"]["metrics"] == {"loss": 1.0}
    row = sqlite3.connect(index_file(repo)).execute(
        "SELECT status, commit_id FROM runs WHERE run_id = ?", (run_id,)).fetchone()
    assert row == ("succeeded", done["commit"])


def test_commits_that_are_not_runs_are_skipped(repo: Path) -> None:
    head = git("rev-parse", "HEAD", cwd=repo).strip()
    git("update-ref", "refs/experiments/not-a-run", head, cwd=repo)
    assert exp_json("ls", cwd=repo) == []
    assert "no runs yet" in exp("ls", cwd=repo).stderr


def test_concurrent_readers_agree(repo: Path) -> None:
    (repo / "train.py").write_text(SCRIPT)
    for v in ("0.5", "0.25", "0.125"):
        wait_done(start(repo, v), repo)
    index_file(repo).unlink(missing_ok=True)
    procs = [subprocess.Popen(["git", "exp", "ls", "--json"], cwd=repo, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(6)]
    outs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), [e for _, e in outs]
    ids = {json.dumps(sorted(r["id"] for r in json.loads(o))) for o, _ in outs}
    assert len(ids) == 1 and len(json.loads(outs[0][0])) == 3


def test_ls_falls_back_to_git_when_the_index_cannot_be_opened(repo: Path) -> None:
    (repo / "train.py").write_text(SCRIPT)
    wait_done(start(repo, "0.5"), repo)
    before = listing(repo)
    for suffix in ("", "-wal", "-shm"):
        Path(str(index_file(repo)) + suffix).unlink(missing_ok=True)
    index_file(repo).mkdir()  # something in the way that sqlite cannot open
    assert listing(repo) == before
    assert "succeeded" in exp("ls", "--where", "loss>0.1", cwd=repo).stdout


def test_ls_json_from_the_index_prints_what_the_runs_decoded_print(repo: Path) -> None:
    """Every run (the texts the index keeps) and a selection (runs decoded, then encoded)
    print the same bytes: the `--limit` that takes them all goes the other way."""
    (repo / "train.py").write_text(SCRIPT)
    for v in ("0.5", "0.25"):
        wait_done(start(repo, v), repo)
    live = exp("run", "-d", "--force", "--", "python", "-c", "import time; time.sleep(60)",
               cwd=repo).stdout.strip()
    wait_for(lambda: exp_json("ls", cwd=repo)[0]["status"] == "running",
             what=f"{live} running")  # so its status holds still between two looks
    for _ in range(2):  # the file made, then read
        fast = exp("ls", "--json", cwd=repo).stdout
        assert fast == exp("ls", "--json", "--limit", "99", cwd=repo).stdout
    assert [r["status"] for r in json.loads(fast)][1:] == ["succeeded", "succeeded"]
    exp("cancel", live, cwd=repo)
