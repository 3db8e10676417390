"""`git exp tag` and `git exp note`: labels and remarks on runs after launch, kept in git notes
(`refs/notes/experiments`), shared by `git exp push` / `fetch` and merged line by line. What a
remote's notes say is data: forged lines are dropped, never printed raw."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tests.conftest import make_repo
from tests.helpers import assert_user_error, exp, exp_json, git, wait_done

NOTES = "refs/notes/experiments"


def launch(repo: Path) -> str:
    run_id = exp("run", "-d", "--", sys.executable, "-c", "print(1)", cwd=repo).stdout.strip()
    assert wait_done(run_id, repo)["status"] == "succeeded"
    return run_id


def test_tags_and_notes_are_added_listed_removed_and_shown(repo: Path):
    run_id = launch(repo)
    assert exp("tag", run_id, "baseline", "paper-fig3", cwd=repo).stdout == \
        f"{run_id}  tags: baseline, paper-fig3\n"
    assert exp("tag", run_id[-4:], "-d", "paper-fig3", cwd=repo).stdout == \
        f"{run_id}  tags: baseline\n"
    out = exp("note", run_id, "lr too high,\ndiverged", "at epoch 3", cwd=repo).stdout
    assert out.splitlines()[1].endswith("  lr too high, diverged at epoch 3")  # one line
    assert exp("tag", run_id, cwd=repo).stdout.startswith(f"{run_id}  tags: baseline\n")

    shown = exp("show", run_id, cwd=repo).stdout
    assert "  tags       baseline\n" in shown
    assert "lr too high, diverged at epoch 3" in shown
    data = exp_json("show", run_id, cwd=repo)
    assert data["tags"] == ["baseline"]
    assert [n["text"] for n in data["notes"]] == ["lr too high, diverged at epoch 3"]
    # kept on the run's snapshot: the branch, HEAD and the run's own ref never moved for it
    assert git("notes", "--ref", NOTES, "list", cwd=repo).split()[1] == data["snapshot"]


def test_bad_tags_and_notes_are_one_line_with_a_hint(repo: Path):
    run_id = launch(repo)
    assert_user_error(exp("tag", run_id, "two words", cwd=repo, check=False),
                      "invalid tag 'two words'")
    assert_user_error(exp("note", run_id, "  ", cwd=repo, check=False), "an empty note")
    assert_user_error(exp("note", run_id, "red \x1b[31m", cwd=repo, check=False),
                      "control characters")
    assert git("notes", "--ref", NOTES, "list", cwd=repo, check=False) == ""


def team(tmp_path: Path) -> tuple[Path, Path, str]:
    remote = tmp_path / "remote.git"
    git("init", "-q", "--bare", "-b", "main", str(remote), cwd=tmp_path)
    alice = make_repo(tmp_path / "alice")
    git("remote", "add", "origin", str(remote), cwd=alice)
    git("push", "-q", "origin", "main", cwd=alice)
    run_id = launch(alice)
    exp("push", cwd=alice)
    git("clone", "-q", str(remote), str(tmp_path / "bob"), cwd=tmp_path)
    bob = tmp_path / "bob"
    exp("fetch", cwd=bob)
    return alice, bob, run_id


def test_two_people_tag_one_run_and_both_keep_theirs(tmp_path: Path):
    alice, bob, run_id = team(tmp_path)
    exp("tag", run_id, "alice-pick", cwd=alice)
    exp("note", run_id, "from alice", cwd=alice)
    exp("tag", run_id, "bob-pick", cwd=bob)
    exp("push", cwd=alice)

    refused = exp("push", cwd=bob, check=False)  # the remote's notes moved on
    assert refused.returncode == 1
    assert "`git exp fetch` merges them" in refused.stderr
    assert "tags and notes merged from origin" in exp("fetch", cwd=bob).stdout
    exp("push", cwd=bob)
    exp("fetch", cwd=alice)

    for clone in (alice, bob):
        shown = exp_json("show", run_id, cwd=clone)
        assert shown["tags"] == ["alice-pick", "bob-pick"]
        assert [n["text"] for n in shown["notes"]] == ["from alice"]


def test_forged_notes_from_a_remote_show_only_well_formed_lines(tmp_path: Path):
    alice, bob, run_id = team(tmp_path)
    snapshot = exp_json("show", run_id, cwd=bob)["snapshot"]
    forged = "\n".join([
        "0000000001 tag \x1b[31mred",  # escape sequence in a tag
        "0000000002 note \x1b]8;;https://evil.invalid\x07click\x1b]8;;\x07",
        "0000000003 tag ../../etc",
        "0000000004 note " + "x" * 5000,  # longer than a note may be
        "not a line at all",
        "0000000005 tag fine",
        "0000000006 note plain words",
    ])
    git("notes", "--ref", NOTES, "add", "-f", "-m", forged, snapshot, cwd=bob)
    git("push", "-q", "origin", f"{NOTES}:{NOTES}", cwd=bob)  # plain git: no gitexp rule

    assert "tags and notes merged from origin" in exp("fetch", cwd=alice).stdout
    shown = exp("show", run_id, cwd=alice).stdout
    assert "\x1b" not in shown and "evil" not in shown and "etc" not in shown
    assert "  tags       fine\n" in shown and "plain words" in shown
    data = json.loads(exp("show", run_id, "--json", cwd=alice).stdout)
    assert data["tags"] == ["fine"] and [n["text"] for n in data["notes"]] == ["plain words"]


def test_a_remote_notes_ref_that_is_no_commit_is_refused(tmp_path: Path):
    alice, bob, _ = team(tmp_path)
    blob = git("hash-object", "-w", "--stdin", cwd=bob, input=b"junk").strip()
    git("push", "-q", "origin", f"{blob}:{NOTES}", cwd=bob)
    proc = exp("fetch", cwd=alice)
    assert "tags and notes of origin refused" in proc.stderr
    assert git("for-each-ref", NOTES, cwd=alice) == ""
