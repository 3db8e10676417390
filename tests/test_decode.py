"""The one `git cat-file --batch` reader (`Repo.read_objects`) and the one decoder of a run
(`decode_run`), fed what plain git makes: odd objects, and run records forged by hand with
`git hash-object`, `git commit-tree` and `git update-ref`, as anyone with push access could."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from gitexp.errors import GitError, GitexpError
from gitexp.git import Commit, Repo
from gitexp.model.record import (
    MAX_DEPTH,
    DecodedRun,
    Environment,
    Result,
    RunRecord,
    decode_run,
    encode_message,
)
from gitexp.service import index, runs
from tests.helpers import git

RECORD = RunRecord(id="forged-1", argv=["python", "train.py"], cwd="", base=None, branch=None,
                   user="u", launched_at=1.0, target="local", backend="local",
                   store="file:///nowhere", env=Environment(python="3.11", platform="linux",
                                                            variables={"PYTHONHASHSEED": "1"}))
RESULT = Result(status="succeeded", exit_code=0, started_at=1.0, ended_at=2.0,
                metrics={"loss": 0.5})


# -- the reader ------------------------------------------------------------------------------
def test_answers_keep_their_places_whatever_git_says(repo: Path):
    r = Repo.discover(repo)
    blob = git("hash-object", "-w", "--stdin", cwd=repo, input=b"x\n").strip()
    asked = ["HEAD", "0" * 40, "HEAD:no such file", "bad\nspec", "", blob, "HEAD^{tree}"]
    got = r.read_objects(asked)
    assert [o.spec for o in got] == asked
    assert [o.type for o in got] == ["commit", "", "", "", "", "blob", "tree"]
    assert [o.problem for o in got] == ["", "missing", "missing", "invalid", "invalid", "", ""]
    assert got[0].oid == git("rev-parse", "HEAD", cwd=repo).strip() and got[0].found
    assert got[5].data == b"x\n" and got[5].size == 2 and got[5].oid == blob
    assert not got[1].found and got[1].data is None


def test_an_ambiguous_short_id_is_answered_as_such(repo: Path, tmp_path: Path):
    files = []
    for i in range(1500):  # ~17 pairs of ids expected to share their first 4 hex digits
        files.append(tmp_path / f"b{i}")
        files[-1].write_text(f"{i}\n")
    oids = git("hash-object", "-w", *map(str, files), cwd=repo).split()
    seen: dict[str, str] = {}
    short = next(o[:4] for o in oids if seen.setdefault(o[:4], o) != o)
    got = Repo.discover(repo).read_objects([short, oids[0]])
    assert got[0].problem == "ambiguous" and not got[0].found
    assert got[1].data == b"0\n"  # the answer after it is still its own


def test_content_comes_back_byte_for_byte(repo: Path):
    nasty = b"line\n\nmissing\n\0\0" + bytes(range(256)) + b"\n" * 3
    blob = git("hash-object", "-w", "--stdin", cwd=repo, input=nasty).strip()
    empty = git("hash-object", "-w", "--stdin", cwd=repo, input=b"").strip()
    got = Repo.discover(repo).read_objects([blob, empty, blob, "HEAD"])
    assert [o.data for o in got[:3]] == [nasty, b"", nasty]
    assert got[3].type == "commit"


def test_an_empty_batch_starts_no_git(repo: Path, monkeypatch: pytest.MonkeyPatch):
    def no_git(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("git started")

    r = Repo.discover(repo)
    monkeypatch.setattr("subprocess.Popen", no_git)
    assert r.read_objects([]) == []
    assert [o.problem for o in r.read_objects(["a\nb"])] == ["invalid"]


def test_an_object_over_the_cap_is_streamed_past_never_held(repo: Path):
    big = git("hash-object", "-w", "--stdin", cwd=repo, input=b"{" * (32 << 20)).strip()
    small = git("hash-object", "-w", "--stdin", cwd=repo, input=b"small").strip()
    r = Repo.discover(repo)
    tracemalloc.start()
    try:
        got = r.read_objects([big, small, big], max_size=1 << 20)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, peak
    assert [(o.found, o.size, o.data) for o in got] == [
        (True, 32 << 20, None), (True, 5, b"small"), (True, 32 << 20, None)]
    assert r.read_objects([small], max_size=5)[0].data == b"small"  # the cap is inclusive


def test_a_failing_git_is_one_git_error(tmp_path: Path):
    nowhere = Repo.at_git_dir(tmp_path / "not-a-repo")
    with pytest.raises(GitError, match="git cat-file failed"):
        nowhere.read_objects(["HEAD"])


def test_commit_parse_reads_tree_parents_and_message(repo: Path):
    head = git("rev-parse", "HEAD", cwd=repo).strip()
    tree = git("rev-parse", "HEAD^{tree}", cwd=repo).strip()
    other = git("commit-tree", tree, cwd=repo, input=b"other\n").strip()
    merge = git("commit-tree", tree, "-p", head, "-p", other, cwd=repo,
                input=b"parent fake\n\nbody\n").strip()
    (obj,) = Repo.discover(repo).read_objects([merge])
    assert obj.data is not None
    parsed = Commit.parse(obj.data)
    assert (parsed.tree, parsed.parents) == (tree, [head, other])
    assert parsed.message == b"parent fake\n\nbody\n"


# -- the decoder, on commits forged with plain git ---------------------------------------------
def forge(repo: Path, ref_id: str, message: bytes | str, *, results: bool = True) -> str:
    """A run ref made by hand: a snapshot commit, and on it a results commit carrying
    `message` byte for byte (or `message` on the snapshot itself). The commit object is
    written with `hash-object`: `commit-tree` would re-encode a message that is not UTF-8."""
    tree = git("rev-parse", "HEAD^{tree}", cwd=repo).strip()
    snap = git("commit-tree", tree, cwd=repo, input=b"snapshot\n").strip()
    parents = f"parent {snap}\n" if results else ""
    who = "forger <f@example.com> 1700000000 +0000"
    body = message.encode() if isinstance(message, str) else message
    raw = f"tree {tree}\n{parents}author {who}\ncommitter {who}\n\n".encode() + body
    commit = git("hash-object", "-t", "commit", "-w", "--stdin", cwd=repo, input=raw).strip()
    git("update-ref", f"refs/experiments/{ref_id}", commit, cwd=repo)
    return commit


def read(repo: Path, ref_id: str) -> DecodedRun:
    ref = f"refs/experiments/{ref_id}"
    (obj,) = Repo.discover(repo).read_objects([ref])
    assert obj.data is not None
    parsed = Commit.parse(obj.data)
    return decode_run(parsed.message, ref=ref, commit=obj.oid, parents=parsed.parents)


def body_of(record: RunRecord = RECORD, result: Result | None = RESULT) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(encode_message(record, result).partition("\n\n")[2])
    return body


def message(body: Any) -> str:
    return "gitexp run forged-1: succeeded\n\n" + json.dumps(body) + "\n"


def deep(levels: int) -> str:
    return "[" * levels + "]" * levels


def nested_params(levels: int) -> str:
    """A genuine message but for one param nested `levels` deep (as text: json.dumps
    itself would fail to write it)."""
    text = encode_message(RECORD, RESULT)
    assert '"params":{}' in text
    return text.replace('"params":{}', '"params":{"p":' + deep(levels) + "}")


def changed(where: str, key: str, value: Any) -> dict[str, Any]:
    body = body_of()
    target = {"record": body["record"], "env": body["record"]["env"],
              "result": body["result"], "body": body}[where]
    target[key] = value
    return body


FORGERIES = {
    "wrong id": (message(changed("record", "id", "someone-else")), "of run 'someone-else' under"),
    "schema 99": (message(changed("body", "schema", 99)), "schema 99 is newer"),
    "schema true": (message(changed("body", "schema", True)), "schema is bool"),
    "no schema": (message({k: v for k, v in body_of().items() if k != "schema"}),
                  "no schema"),
    "exit_code true": (message(changed("result", "exit_code", True)), "exit_code is bool"),
    "launched_at true": (message(changed("record", "launched_at", True)),
                         "launched_at is bool"),
    "variables a list": (message(changed("env", "variables", [1, 2])), "variables is list"),
    "variables not str": (message(changed("env", "variables", {"PYTHONHASHSEED": 1})),
                          "variables is dict"),
    "env a list": (message(changed("record", "env", [1])), "env is list"),
    "status unknown": (message(changed("result", "status", "won")), "unknown status"),
    "200 deep": (nested_params(200), f"nested deeper than {MAX_DEPTH}"),
    "1,000 deep": (nested_params(1000), "nested deeper"),
    "100,000 deep": (nested_params(100_000), "nested deeper"),
    "100,000 deep, alone": ("t\n\n" + deep(100_000), "nested deeper"),
    "not JSON": ("gitexp run forged-1\n\n{\"record\": {garb", "corrupted run record"),
    "no body": ("gitexp run forged-1\n", "no JSON body"),
    "not UTF-8": (b"t\n\n" + json.dumps(body_of()).encode()[:-1] + b', "x": "\xff"}',
                  "corrupted run record"),
    "a list": (message([body_of()]), "not a JSON object"),
    "record a string": (message(changed("body", "record", "r")), "not a JSON object"),
    # What the fields say, beyond their types (model/checks.py)
    "cwd escapes": (message(changed("record", "cwd", "../../../../escdir")), "cwd '../"),
    "cwd absolute": (message(changed("record", "cwd", "/tmp")), "is not relative"),
    "cwd dotted": (message(changed("record", "cwd", "a/./b")), "not a normalised path"),
    "out into .git": (message(changed("record", "outs", [".git/hooks/post-checkout"])),
                      "points into .git"),
    "out into .GIT/": (message(changed("record", "outs", ["sub/.GIT"])), "points into .git"),
    "output escapes": (message(changed("result", "outputs", {"../../home/x": {"hash": "0" * 32}})),
                       "outputs path '../../home/x'"),
    "output hash a path": (message(changed("result", "outputs", {"m": {"hash": "../../x"}})),
                           "bad hash"),
    "data a backslash": (message(changed("record", "data", {"a\\b": {"hash": "0" * 32}})),
                         "is not relative"),
    "data source escapes": (message(changed("record", "data", {
        "d": {"hash": "0" * 32, "source": "../dvc.lock:train"}})), "bad source"),
    "target with ESC": (message(changed("record", "target", "gpu\x1b[2J")),
                        "control characters"),
    "host with OSC": (message(changed("result", "host", "h\x1b]52;c;eA==\x07")),
                      "control characters"),
    "user with bidi": (message(changed("record", "user", "evil\u202eexe")), "control characters"),
    "backend a path": (message(changed("record", "backend", "../ssh")), "not a backend this"),
    "store not a URL": (message(changed("record", "store", "/tmp/x")), "is not a URL"),
    "base not an oid": (message(changed("record", "base", "HEAD")), "not an object id"),
    "name a newline": (message(changed("record", "name", "x\n")), "not a run name"),
    "sweep not an id": (message(changed("record", "sweep", "../x")), "not a run id"),
    "argv empty": (message(changed("record", "argv", [])), "argv is empty"),
    "argv NUL": (message(changed("record", "argv", ["a\0b"])), "has a NUL"),
    "time infinite": (message(changed("record", "launched_at", 1e999)), "not a time"),
    "over 1 MB": (message(changed("record", "params", {"p": "x" * (1 << 20)})), "over 1 MB"),
}


@pytest.mark.parametrize("name", sorted(FORGERIES))
def test_a_forged_run_is_refused_with_one_line_saying_why(repo: Path, name: str):
    text, why = FORGERIES[name]
    forge(repo, "forged-1", text)
    with pytest.raises(GitexpError) as caught:
        read(repo, "forged-1")
    assert type(caught.value) is GitexpError  # never RecursionError, KeyError, ...
    assert why in caught.value.message
    assert "\n" not in caught.value.message
    # and everything that reads runs agrees: listed as unreadable, refused by show
    assert index.unreadable(Repo.discover(repo)) == ["refs/experiments/forged-1"]
    assert index.sync(Repo.discover(repo)) == []
    with pytest.raises(GitexpError, match="forged-1 has an unreadable record"):
        runs.find(Repo.discover(repo), "forged-1", refresh=False)


def test_deep_but_reasonable_nesting_is_fine(repo: Path):
    nested: Any = 1
    for _ in range(MAX_DEPTH - 4):  # body, result, metrics, then the value's own levels
        nested = [nested]
    ok = Result(status="succeeded", metrics={"m": nested})
    forge(repo, "forged-1", encode_message(RECORD, ok))
    assert read(repo, "forged-1").result == ok
    # the limit is exact: one level more is the deepest allowed, two more is refused
    for extra, allowed in (([nested], True), ([[nested]], False)):
        text = encode_message(RECORD, Result(status="succeeded", metrics={"m": extra}))
        try:
            decode_run(text, ref="refs/experiments/forged-1", commit="c" * 40,
                       parents=["s" * 40])
        except GitexpError as exc:
            assert not allowed and f"nested deeper than {MAX_DEPTH}" in exc.message
        else:
            assert allowed


@pytest.mark.parametrize("written_back", [True, False])
def test_a_genuine_run_decodes_with_its_snapshot(repo: Path, written_back: bool):
    result = RESULT if written_back else None
    commit = forge(repo, "forged-1", encode_message(RECORD, result), results=written_back)
    run = read(repo, "forged-1")
    snapshot = git("rev-parse", f"{commit}^", cwd=repo).strip() if written_back else commit
    assert run.record == RECORD.with_snapshot(snapshot)
    assert run.result == result
    assert run.message == encode_message(RECORD, result)
    (entry,) = index.sync(Repo.discover(repo))  # the index reads it the same way
    assert (entry.record, entry.result, entry.commit) == (run.record, result, commit)
    found = runs.find(Repo.discover(repo), "forged-1", refresh=False)
    assert (found.record, found.written_back) == (run.record, written_back)


def test_a_ref_that_is_no_run_ref_is_refused():
    with pytest.raises(GitexpError, match="no run ref"):
        decode_run(encode_message(RECORD, None), ref="refs/heads/main", commit="c" * 40,
                   parents=[])


def test_only_the_variables_gitexp_records_are_read_back(repo: Path):
    body = changed("env", "variables", {"LD_PRELOAD": "/tmp/evil.so", "PYTHONHASHSEED": "0",
                                        "BASH_ENV": "/tmp/x"})
    forge(repo, "forged-1", message(body))
    assert read(repo, "forged-1").record.env.variables == {"PYTHONHASHSEED": "0"}


def test_the_backends_a_record_may_name_are_those_gitexp_has():
    from gitexp.backends import REGISTRY
    from gitexp.model.checks import BACKENDS

    assert set(REGISTRY) == set(BACKENDS)
