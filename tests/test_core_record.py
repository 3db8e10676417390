"""The run decoder and the field rules in-process (model/record.py, model/checks.py): forged
records that must be refused with the field named, valid edge cases that must be accepted,
and messages that go from `encode_message` through a real git commit and back.

Fast on purpose, like tests/test_core_inprocess.py: mutation testing relies on these to
fail when a rule of the decoder is weakened. Each test names the behaviour it checks."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from gitexp.errors import GitexpError
from gitexp.git import Commit, Repo
from gitexp.model import checks
from gitexp.model.record import (
    MAX_DEPTH,
    MAX_MESSAGE,
    DecodedRun,
    Environment,
    Result,
    RunRecord,
    check_types,
    decode_run,
    encode_message,
    format_duration,
)
from gitexp.model.record import _checker as checker_of
from gitexp.model.record import _show as shown_as
from tests.helpers import git

RUN = "train-1127-1342-k7qx"
REF = f"refs/experiments/{RUN}"
SNAP = "a" * 40
RESULTS = "b" * 40
OID40 = "0123456789abcdef0123456789abcdef01234567"
OID64 = "0123456789abcdef" * 4


def record_dict(**changes: Any) -> dict[str, Any]:
    """A record as a writer puts it in JSON, with `changes` applied (None values kept)."""
    d: dict[str, Any] = {
        "id": RUN, "argv": ["python", "train.py"], "cwd": "", "base": OID40, "branch": "main",
        "user": "Ann <ann@example.com>", "launched_at": 1_700_000_000.0, "target": "local",
        "backend": "local", "store": "file:///srv/store",
        "env": {"python": "3.11.4", "platform": "linux", "packages": None, "variables": {}},
        "data": None, "params": {}, "name": None, "rerun_of": None, "sweep": None, "outs": [],
        "launched_from": None, "seal": None}
    d.update(changes)
    return d


def env_dict(**changes: Any) -> dict[str, Any]:
    env: dict[str, Any] = dict(record_dict()["env"])
    env.update(changes)
    return env


def result_dict(**changes: Any) -> dict[str, Any]:
    d: dict[str, Any] = {"status": "succeeded", "exit_code": 0, "started_at": 1.0,
                         "ended_at": 2.0, "host": "h", "metrics": {}, "error": None,
                         "outputs": {}, "check": None}
    d.update(changes)
    return d


def message_of(record: Any, result: Any = None, schema: Any = 1) -> str:
    body: dict[str, Any] = {"schema": schema, "record": record}
    if result is not None:
        body["result"] = result
    return f"gitexp run {RUN}\n\n{json.dumps(body)}\n"


def decode(message: bytes | str, parents: list[str] | None = None) -> DecodedRun:
    return decode_run(message, ref=REF, commit=RESULTS, parents=parents or [])


def refused(message: bytes | str) -> str:
    """The one-line error a forged message is refused with."""
    with pytest.raises(GitexpError) as info:
        decode(message)
    assert info.value.hint and "git exp rm" in info.value.hint
    return info.value.message


def record_refused(**changes: Any) -> str:
    return refused(message_of(record_dict(**changes)))


def result_refused(**changes: Any) -> str:
    return refused(message_of(record_dict(), result_dict(**changes)))


def accepted(**changes: Any) -> RunRecord:
    return decode(message_of(record_dict(**changes))).record


# -- round trips ------------------------------------------------------------------------------
def test_a_run_encoded_and_committed_with_git_decodes_to_the_same_record_and_result(
        repo: Path) -> None:
    rec = RunRecord.from_dict(record_dict(
        params={"lr": 0.1, "layers": [1, 2]}, outs=["model.pt"], name="lr-sweep",
        data={"data/train.csv": {"hash": "d41d8cd98f00b204e9800998ecf8427e", "size": 3}},
        base=None, env=env_dict(packages=None, variables={"PYTHONHASHSEED": "0"})))
    res = Result.from_dict(result_dict(metrics={"loss": 0.25}, outputs={
        "model.pt": {"hash": "abc.dir", "source": "model.pt:1", "remote": "origin"}}))
    tree = git("rev-parse", "HEAD^{tree}", cwd=repo).strip()
    # Ids of the repository's own format (the fixture makes sha1 and sha256 ones).
    rec = replace(rec, base=git("rev-parse", "HEAD", cwd=repo).strip(),
                  env=replace(rec.env, packages=git("hash-object", "-w", "--stdin", cwd=repo,
                                                    input=b"numpy==2.0\n").strip()))
    snap = git("commit-tree", tree, cwd=repo, input=encode_message(rec, None).encode()).strip()
    commit = git("commit-tree", tree, "-p", snap, cwd=repo,
                 input=encode_message(rec, res).encode()).strip()
    (obj,) = Repo.discover(repo).read_objects([commit])
    assert obj.data is not None
    parsed = Commit.parse(obj.data)
    got = decode_run(parsed.message, ref=REF, commit=commit, parents=parsed.parents)
    assert got.record == rec.with_snapshot(snap)
    assert got.record.snapshot == snap
    assert got.result == res
    assert got.message == parsed.message.decode()
    assert isinstance(got.message, str)
    assert got.fields == json.loads(encode_message(rec, res).partition("\n\n")[2])["record"]


def test_encode_message_writes_a_title_and_compact_sorted_json() -> None:
    rec = RunRecord.from_dict(record_dict(params={"b": 1, "a": 2}))
    res = Result.from_dict(result_dict(status="failed", exit_code=3))
    text = encode_message(rec, res)
    title, blank, body = text.partition("\n\n")
    assert (title, blank) == (f"gitexp run {RUN}: failed", "\n\n")
    assert body.endswith("}\n") and body.count("\n") == 1
    assert ", " not in body and '": ' not in body  # compact separators
    orders: list[list[str]] = []

    def keep_order(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        orders.append([k for k, _ in pairs])
        return dict(pairs)

    parsed = json.loads(body, object_pairs_hook=keep_order)
    assert orders and all(keys == sorted(keys) for keys in orders)
    assert parsed["schema"] == 1
    assert parsed["result"]["exit_code"] == 3
    assert "snapshot" not in parsed["record"]
    only = encode_message(rec, None)
    assert only.startswith(f"gitexp run {RUN}\n\n")
    assert "result" not in json.loads(only.partition("\n\n")[2])


def test_to_dict_leaves_out_the_snapshot_and_from_dict_takes_it_apart() -> None:
    rec = RunRecord.from_dict(record_dict(snapshot="ignored"), snapshot=SNAP)
    assert rec.snapshot == SNAP
    assert "snapshot" not in rec.to_dict()
    assert rec.to_dict() == {**record_dict(), "env": env_dict()}
    assert RunRecord.from_dict(rec.to_dict()).snapshot == ""
    assert rec.with_snapshot("c" * 40).snapshot == "c" * 40
    res = Result.from_dict(result_dict())
    assert res.to_dict() == result_dict()


def test_a_snapshot_commit_is_its_own_snapshot_and_a_results_commit_names_its_parent() -> None:
    own = decode_run(message_of(record_dict()), ref=REF, commit=SNAP, parents=["c" * 40])
    assert own.record.snapshot == SNAP and own.result is None
    done = decode(message_of(record_dict(), result_dict()), parents=[SNAP, "c" * 40])
    assert done.record.snapshot == SNAP
    assert done.result == Result.from_dict(result_dict())
    orphan = decode(message_of(record_dict(), result_dict()), parents=[])
    assert orphan.record.snapshot == RESULTS


def test_decoded_run_keeps_the_message_text_and_the_record_object_as_written() -> None:
    text = message_of(record_dict(future_field=[1, 2]))
    got = decode(text.encode())
    assert got.message == text
    assert got.fields["future_field"] == [1, 2]  # what a seal covers, newer fields too
    assert not hasattr(got.record, "future_field")


def test_unknown_keys_are_dropped_from_records_results_and_environments() -> None:
    rec = accepted(newer="x", env=env_dict(gpu="a100"))
    assert rec.env == Environment(python="3.11.4", platform="linux")
    res = decode(message_of(record_dict(), result_dict(newer=1))).result
    assert res == Result.from_dict(result_dict())


def test_only_recorded_variables_are_read_back() -> None:
    rec = accepted(env=env_dict(variables={"LD_PRELOAD": "/x.so", "PATH": "/bin",
                                           "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "4"}))
    assert rec.env.variables == {"PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "4"}
    kept = {"CUDA_VISIBLE_DEVICES": "0", "TF_DETERMINISTIC_OPS": "1"}
    assert accepted(env=env_dict(variables=kept)).env.variables == kept


# -- the message as a whole -------------------------------------------------------------------
def test_a_ref_outside_the_run_namespace_is_refused() -> None:
    for ref in ("refs/heads/main", "refs/experiments/Bad_Id", "refs/experiments/"):
        with pytest.raises(GitexpError, match="is no run ref"):
            decode_run(message_of(record_dict()), ref=ref, commit=SNAP, parents=[])


def test_a_record_under_another_runs_ref_is_refused() -> None:
    assert "the record of run 'someone-else'" in record_refused(id="someone-else")


def test_a_message_of_exactly_one_megabyte_is_read_and_one_byte_more_is_refused() -> None:
    text = message_of(record_dict())
    padded = text + " " * (MAX_MESSAGE - len(text))  # JSON allows trailing blanks
    assert len(padded) == 1 << 20
    assert decode(padded).record.id == RUN
    assert decode(padded.encode()).record.id == RUN
    assert "over 1 MB" in refused(padded + " ")
    assert "over 1 MB" in refused((padded + " ").encode())


def test_undecodable_bytes_and_lone_surrogates_are_refused() -> None:
    good = message_of(record_dict())
    assert "corrupted run record" in refused(good.encode().replace(b"main", b"m\xffin"))
    assert "corrupted run record" in refused(good.replace("main", "m\udcffin"))


def test_non_ascii_text_is_accepted() -> None:
    assert accepted(user="Zoë Ünal <z@example.com>").user == "Zoë Ünal <z@example.com>"
    assert decode(message_of(record_dict(user="Zoë")).encode()).record.user == "Zoë"


def test_a_message_without_a_body_or_with_a_body_that_is_no_object_is_refused() -> None:
    assert "no JSON body" in refused(f"gitexp run {RUN}\n")
    assert "corrupted run record" in refused(f"gitexp run {RUN}\n\n{{not json")
    assert "not a JSON object" in refused(f"gitexp run {RUN}\n\n[]\n")
    assert "not a JSON object" in refused(message_of("a string"))
    assert "not a JSON object" in refused(message_of(None))


def test_the_body_is_what_follows_the_first_blank_line() -> None:
    text = message_of(record_dict())
    title, _, body = text.partition("\n\n")
    assert decode(f"{title}\n\n{body}").record.id == RUN
    assert "corrupted run record" in refused(f"{title}\nmore title\n\nnot json\n\n{body}")


def test_a_schema_must_be_the_integer_one() -> None:
    assert "no schema" in refused(message_of(record_dict(), schema=None))
    assert "schema is bool, not int" in refused(message_of(record_dict(), schema=True))
    assert "schema is str, not int" in refused(message_of(record_dict(), schema="1"))
    assert "schema is float, not int" in refused(message_of(record_dict(), schema=1.0))
    assert "unknown schema 0" in refused(message_of(record_dict(), schema=0))
    with pytest.raises(GitexpError, match="schema 2 is newer than this gitexp") as info:
        decode(message_of(record_dict(), schema=2))
    assert info.value.hint and "pip install -U gitexp" in info.value.hint


def nested(levels: int, dicts: bool = False) -> Any:
    value: Any = {} if dicts else []
    for _ in range(levels - 1):
        value = {"k": value} if dicts else [value]
    return value


def test_json_nested_32_deep_is_read_and_33_deep_is_refused() -> None:
    # The body is depth 1, the record 2, params 3: a param `levels` deep ends at 3 + levels.
    inside = MAX_DEPTH - 3
    assert MAX_DEPTH == 32
    for dicts in (False, True):
        assert accepted(params={"p": nested(inside, dicts)}).params["p"] == nested(inside, dicts)
        assert "nested deeper than 32" in record_refused(params={"p": nested(inside + 1, dicts)})


def test_deep_nesting_of_lists_alone_is_refused() -> None:
    # Only brackets of one kind: the cheap bracket count must still send it to the walk.
    deep_list = message_of(record_dict()).replace('"params": {}', '"params": {"p": '
                                                   + "[" * 40 + "]" * 40 + "}")
    assert "nested deeper than 32" in refused(deep_list)


def test_json_too_deep_for_the_parser_is_refused_as_too_deep() -> None:
    assert "nested deeper than 32" in refused(f"t\n\n{'[' * 100_000}{']' * 100_000}")


# -- types of the fields ----------------------------------------------------------------------
RECORD_TYPES = [
    ("launched_at", True, "launched_at is bool, not float"),
    ("launched_at", "1", "launched_at is str, not float"),
    ("launched_at", None, "launched_at is NoneType, not float"),
    ("argv", "python", "argv is str, not list[str]"),
    ("argv", ["python", 1], "argv is list, not list[str]"),
    ("cwd", None, "cwd is NoneType, not str"),
    ("base", 1, "base is int, not str or null"),
    ("branch", [], "branch is list, not str or null"),
    ("params", [], "params is list, not dict[str, typing.Any]"),
    ("outs", "model.pt", "outs is str, not list[str]"),
    ("outs", [None], "outs is list, not list[str]"),
    ("data", [], "data is list, not dict[str, typing.Any] or null"),
    ("name", 3, "name is int, not str or null"),
]


def test_a_record_field_of_the_wrong_type_is_refused_with_its_type_named() -> None:
    for field, value, why in RECORD_TYPES:
        assert record_refused(**{field: value}) == f"corrupted run record: {why}"


ENV_TYPES = [
    ("python", 3, "python is int, not str"),
    ("packages", 1, "packages is int, not str or null"),
    ("variables", [], "variables is list, not dict[str, str]"),
    ("variables", {"PYTHONHASHSEED": 0}, "variables is dict, not dict[str, str]"),
]


def test_an_environment_field_of_the_wrong_type_is_refused() -> None:
    for field, value, why in ENV_TYPES:
        assert record_refused(env=env_dict(**{field: value})) == f"corrupted run record: {why}"


RESULT_TYPES = [
    ("exit_code", True, "exit_code is bool, not int or null"),
    ("exit_code", 1.0, "exit_code is float, not int or null"),
    ("exit_code", "0", "exit_code is str, not int or null"),
    ("started_at", False, "started_at is bool, not float or null"),
    ("ended_at", "2", "ended_at is str, not float or null"),
    ("metrics", [], "metrics is list, not dict[str, typing.Any]"),
    ("outputs", None, "outputs is NoneType, not dict[str, typing.Any]"),
    ("check", [], "check is list, not dict[str, typing.Any] or null"),
    ("error", 1, "error is int, not str or null"),
]


def test_a_result_field_of_the_wrong_type_is_refused_as_a_corrupted_result() -> None:
    for field, value, why in RESULT_TYPES:
        assert result_refused(**{field: value}) == f"corrupted result: {why}"


def test_integral_and_absent_values_fit_where_the_annotation_allows() -> None:
    rec = accepted(launched_at=1_700_000_000, base=None, branch=None, data={})
    assert rec.launched_at == 1_700_000_000 and rec.base is None and rec.data == {}
    res = decode(message_of(record_dict(), result_dict(
        exit_code=None, started_at=1, ended_at=None, host=None, check={"same": True},
        metrics={"loss": 0.5, "tags": ["a"], "n": None}))).result
    assert res is not None
    assert (res.exit_code, res.started_at, res.ended_at, res.check) == (None, 1, None,
                                                                        {"same": True})
    assert res.duration is None
    assert accepted(argv=["python", "-c", "print(1)"]).argv == ["python", "-c", "print(1)"]


def test_dict_keys_must_be_strings() -> None:
    with pytest.raises(GitexpError, match=r"params is dict, not dict\[str, typing.Any\]"):
        RunRecord.from_dict(record_dict(params={1: "x"}))
    # Unrecorded variables are dropped before the check: a non-str key is no variable.
    rec = RunRecord.from_dict(record_dict(env=env_dict(variables={1: "x"})))
    assert rec.env.variables == {}


def test_a_record_or_result_that_is_no_object_or_lacks_a_field_is_refused() -> None:
    assert record_refused(env=[1]) == "corrupted run record: env is list, not dict"
    missing = record_dict()
    del missing["user"]
    assert "user" in refused(message_of(missing))
    assert "python" in record_refused(env={"platform": "linux"})
    assert "python" in refused(message_of({k: v for k, v in record_dict().items()
                                           if k != "env"}))
    assert result_refused(status=None).startswith("corrupted result: status is NoneType")
    assert "corrupted result" in refused(message_of(record_dict(), "done"))
    nostatus = result_dict()
    del nostatus["status"]
    assert "status" in refused(message_of(record_dict(), nostatus))
    with pytest.raises(GitexpError, match="not a JSON object"):
        Result.from_dict([])
    with pytest.raises(GitexpError, match="not a JSON object"):
        RunRecord.from_dict("x")


def test_an_unknown_status_is_refused_and_every_known_one_is_read() -> None:
    assert "unknown status 'won'" in result_refused(status="won")
    for status in ("queued", "running", "succeeded", "failed", "cancelled", "lost"):
        res = decode(message_of(record_dict(), result_dict(status=status))).result
        assert res is not None and res.status == status


def test_an_invalid_run_id_is_refused_by_from_dict() -> None:
    with pytest.raises(GitexpError, match="invalid run id 'Bad_Id'"):
        RunRecord.from_dict(record_dict(id="Bad_Id"))


def test_check_types_checks_objects_built_in_code_too() -> None:
    rec = RunRecord.from_dict(record_dict())
    check_types(rec)
    bad = RunRecord(**{**rec.__dict__, "env": Environment(python=3, platform="linux")})  # type: ignore[arg-type]
    with pytest.raises(GitexpError, match="corrupted run record: python is int"):
        check_types(bad)
    with pytest.raises(GitexpError, match="corrupted result: exit_code is str"):
        check_types(Result(status="failed", exit_code="1"))  # type: ignore[arg-type]
    check_types(Environment(python="3.12", platform="darwin"))
    with pytest.raises(GitexpError, match="platform is NoneType, not str"):
        check_types(Environment(python="3.12", platform=None))  # type: ignore[arg-type]


# The checks per annotation are compiled once per class and cached for the process: these call
# the compiler itself, as a field added tomorrow would, so each kind of annotation is covered.
HINTS: list[tuple[Any, str, list[Any], list[Any]]] = [
    (float, "float", [1.5, 2, -0.0], [True, "1", None]),
    (int, "int", [0, -3], [False, 1.0, "1", None]),
    (str, "str", ["", "x"], [None, b"x", 1]),
    (str | None, "str or null", ["x", None], [1, b"x"]),
    (int | str, "int or str", [1, "a"], [None, 1.5, True]),
    (int | str | None, "int or str or null", [1, "a", None], [1.5, [], False]),
    (list[str], "list[str]", [[], ["a"]], ["a", ["a", 1], ("a",), None]),
    (list[int | None], "list[int | None]", [[1, None]], [[1.5], [True]]),
    (dict[str, Any], "dict[str, typing.Any]", [{}, {"a": object()}], [[], {1: "a"}, None]),
    (dict[str, str], "dict[str, str]", [{}, {"a": "b"}], [{"a": 1}, {1: "b"}, [("a", "b")]]),
    (dict[str, Any] | None, "dict[str, typing.Any] or null", [None, {"a": 1}], [[], "x"]),
    (type(None), "null", [None], [0, "", False]),
]


def test_each_kind_of_annotation_admits_its_values_and_refuses_others() -> None:
    for hint, _, good, bad in HINTS:
        fits = checker_of(hint)
        assert [v for v in good if not fits(v)] == [], hint
        assert [v for v in bad if fits(v)] == [], hint


def test_each_kind_of_annotation_is_named_as_written() -> None:
    for hint, name, _, _ in HINTS:
        assert shown_as(hint) == name


def test_a_new_kind_of_record_is_checked_by_its_own_annotations() -> None:
    @dataclass(frozen=True)
    class Later:  # a class never checked before in this process: its checks are compiled
        n: int | None
        tags: list[str]

    check_types(Later(n=None, tags=["a"]))  # type: ignore[arg-type]
    with pytest.raises(GitexpError, match=r"^corrupted run record: n is str, not int or null$"):
        check_types(Later(n="1", tags=[]))  # type: ignore[arg-type]
    with pytest.raises(GitexpError, match=r"^corrupted run record: tags is list, not list\[str\]$"):
        check_types(Later(n=1, tags=[1]))  # type: ignore[arg-type, list-item]


def test_any_and_nested_records_admit_anything_at_this_level() -> None:
    # A nested dataclass (env) is checked field by field by check_types, not here.
    for hint in (Any, Environment):
        assert checker_of(hint)(None) and checker_of(hint)(object())


# -- what the record's fields may say ---------------------------------------------------------
def test_argv_must_be_non_empty_and_free_of_nul() -> None:
    assert record_refused(argv=[]) == "corrupted run record: argv is empty or has a NUL"
    assert "argv is empty or has a NUL" in record_refused(argv=["python", "a\0b"])
    assert "argv is empty or has a NUL" in record_refused(argv=["\0"])
    weird = ["python", "-c", "print('\\x1b[31m')", "a\nb", "\u202e"]
    assert accepted(argv=weird).argv == weird  # free text: escaped where shown


def test_cwd_may_be_the_root_or_a_subdirectory_but_never_leave_the_repository() -> None:
    assert accepted(cwd="").cwd == ""
    assert accepted(cwd="src/app").cwd == "src/app"
    assert record_refused(cwd="../x") == (
        "corrupted run record: cwd '../x' is not a normalised path inside the repository")
    assert record_refused(cwd="/tmp") == "corrupted run record: cwd '/tmp' is not relative"
    assert "cwd '.git' points into .git" in record_refused(cwd=".git")


def test_outs_are_paths_in_the_repository_named_by_their_place() -> None:
    assert accepted(outs=["model.pt", "out/log.txt"]).outs == ["model.pt", "out/log.txt"]
    assert record_refused(outs=["model.pt", ".git/hooks/x"]) == (
        "corrupted run record: outs[1] '.git/hooks/x' points into .git")
    assert "outs[0] '' is empty" in record_refused(outs=[""])


def test_data_entries_are_checked_like_outputs() -> None:
    assert accepted(data=None).data is None
    assert record_refused(data={"../x": {"hash": "abc"}}) == (
        "corrupted run record: data path '../x' is not a normalised path inside the "
        "repository")
    assert "data entry 'x' has a bad hash" in record_refused(data={"x": {"hash": "../y"}})


def test_base_and_packages_are_object_ids_of_the_hash_of_the_runs_commit() -> None:
    for oid, commit in ((OID40, RESULTS), (OID64, "b" * 64)):
        msg = message_of(record_dict(base=oid, env=env_dict(packages=oid)))
        rec = decode_run(msg, ref=REF, commit=commit, parents=[]).record
        assert (rec.base, rec.env.packages) == (oid, oid)


def test_a_base_or_packages_of_the_other_hash_than_the_commit_is_refused() -> None:
    """A sha1 id in a SHA-256 repository (or the reverse) names nothing there, or by its
    prefix the wrong object: the record is refused with the format it should have."""
    for oid, commit, want in ((OID64, RESULTS, "sha1"), (OID40, "b" * 64, "sha256")):
        for rec in (record_dict(base=oid), record_dict(env=env_dict(packages=oid))):
            with pytest.raises(GitexpError, match=f"is not a {want} object id like its commit"):
                decode_run(message_of(rec), ref=REF, commit=commit, parents=[])


def test_a_base_or_packages_that_is_no_object_id_is_refused_by_name() -> None:
    for bad in ("HEAD", OID40[:-1], OID40.upper(), OID40 + "0", OID64 + "0", ""):
        assert record_refused(base=bad) == "corrupted run record: base is not an object id"
        assert record_refused(env=env_dict(packages=bad)) == (
            "corrupted run record: packages is not an object id")


def test_a_seal_is_64_hex_digits() -> None:
    assert accepted(seal=OID64).seal == OID64
    assert accepted(seal=None).seal is None
    for bad in (OID40, OID64.upper(), OID64 + "a", ""):
        assert record_refused(seal=bad) == "corrupted run record: seal is not a seal"


def test_rerun_of_sweep_and_name_must_be_run_ids_and_names() -> None:
    rec = accepted(rerun_of="old-run-1", sweep="sweep-1", name="lr-sweep")
    assert (rec.rerun_of, rec.sweep, rec.name) == ("old-run-1", "sweep-1", "lr-sweep")
    assert record_refused(rerun_of="../x") == (
        "corrupted run record: rerun_of '../x' is not a run id")
    assert record_refused(sweep="Sweep") == "corrupted run record: sweep 'Sweep' is not a run id"
    assert record_refused(name="a" * 41) == (
        f"corrupted run record: name {'a' * 41!r} is not a run name")


def test_every_known_backend_is_read_and_another_is_refused() -> None:
    for backend in ("local", "ssh", "docker", "gce", "slurm", "kubernetes"):
        assert accepted(backend=backend).backend == backend
    assert record_refused(backend="lambda") == (
        "corrupted run record: backend 'lambda' is not a backend this gitexp knows")


def test_a_store_must_be_a_url() -> None:
    assert accepted(store="s3://bucket/runs").store == "s3://bucket/runs"
    assert record_refused(store="/srv/store") == (
        "corrupted run record: store '/srv/store' is not a URL")


def test_words_of_the_record_refuse_control_characters_by_name() -> None:
    for field in ("target", "user", "branch", "launched_from"):
        assert record_refused(**{field: "a\x1bb"}) == (
            f"corrupted run record: {field} 'a\\x1bb' has control characters")
        assert getattr(accepted(**{field: "gpu-box 1"}), field) == "gpu-box 1"


def test_a_long_word_is_refused_and_shown_cut_to_40_characters() -> None:
    assert accepted(target="t" * 256).target == "t" * 256
    assert record_refused(target="t" * 257) == (
        f"corrupted run record: target {'t' * 40!r} longer than 256 characters")


def test_environment_words_refuse_control_characters_by_name() -> None:
    cases: list[tuple[dict[str, Any], str]] = [
            ({"python": "3.11\n"}, "env.python"), ({"platform": "linux\u202e"}, "env.platform"),
            ({"variables": {"PYTHONHASHSEED": "0\r"}}, "env.variables.PYTHONHASHSEED")]
    for env, name in cases:
        assert record_refused(env=env_dict(**env)).startswith(f"corrupted run record: {name} ")


def test_a_launch_time_must_be_finite() -> None:
    for t in (math.inf, -math.inf, math.nan):
        with pytest.raises(GitexpError, match=r"^corrupted run record: launched_at is not a time$"):
            RunRecord.from_dict(record_dict(launched_at=t))
    assert accepted(launched_at=0.0).launched_at == 0.0


# -- what the result's fields may say ---------------------------------------------------------
def test_result_times_must_be_finite() -> None:
    for field in ("started_at", "ended_at"):
        for t in (math.inf, math.nan):
            with pytest.raises(GitexpError, match=f"corrupted result: {field} is not a time"):
                Result.from_dict(result_dict(**{field: t}))


def test_a_result_host_is_a_word() -> None:
    assert result_refused(host="h\x00") == "corrupted result: host 'h\\x00' has control characters"
    assert result_refused(host="h" * 300).startswith(f"corrupted result: host {'h' * 40!r} ")


def test_result_duration_is_the_time_between_start_and_end() -> None:
    assert Result.from_dict(result_dict(started_at=10.0, ended_at=12.5)).duration == 2.5
    assert Result.from_dict(result_dict(started_at=None)).duration is None
    assert Result.from_dict(result_dict(ended_at=None)).duration is None


# -- DVC entries (record.data, result.outputs) ------------------------------------------------
def outputs_refused(outputs: dict[str, Any]) -> str:
    return result_refused(outputs=outputs)


def test_a_valid_output_entry_is_read() -> None:
    entry = {"hash": "0" * 32 + ".dir", "source": "model.pt:rev", "remote": "my remote",
             "size": 10, "nfiles": None}
    res = decode(message_of(record_dict(), result_dict(outputs={"out/model.pt": entry}))).result
    assert res is not None and res.outputs == {"out/model.pt": entry}
    empty: dict[str, Any] = {"x": {}}
    assert Result.from_dict(result_dict(outputs=empty)).outputs == empty


def test_an_output_must_stay_in_the_work_tree() -> None:
    assert outputs_refused({"/etc/passwd": {}}) == (
        "corrupted result: outputs path '/etc/passwd' is not relative")
    assert outputs_refused({".GIT/config": {}}) == (
        "corrupted result: outputs path '.GIT/config' points into .git")


def test_an_output_entry_must_be_an_object() -> None:
    assert outputs_refused({"x": "abc"}) == "corrupted result: outputs entry 'x' is not an object"
    assert "outputs entry 'y' is not an object" in outputs_refused({"x": {}, "y": []})


def test_an_output_hash_must_be_a_data_version_hash() -> None:
    for bad in ("../../etc/passwd", "", 5, "a/b", "abc.dir.dir"):
        assert outputs_refused({"x": {"hash": bad}}) == (
            "corrupted result: outputs entry 'x' has a bad hash")


def test_an_output_source_must_name_a_path_in_the_repository() -> None:
    for bad in ("../x", "/abs:rev", 5, ".git/config"):
        assert outputs_refused({"x": {"source": bad}}) == (
            "corrupted result: outputs entry 'x' has a bad source")


def test_an_output_source_is_checked_up_to_its_first_colon() -> None:
    # `sub/dvc.lock:train`: the file, then the stage; only the file is a path.
    outputs = {"x": {"source": "sub/dvc.lock:a/../b:c"}}
    assert Result.from_dict(result_dict(outputs=outputs)).outputs == outputs


def test_an_output_remote_must_be_a_word() -> None:
    for bad in ("a\nb", 5, "r" * 257):
        assert outputs_refused({"x": {"remote": bad}}) == (
            "corrupted result: outputs entry 'x' has a bad remote")


# -- model/checks.py --------------------------------------------------------------------------
INSIDE = ["a", "model.pt", "a/b/c", ".gitignore", ".github/workflows",
                                  "a.git", "git", "x/.gitx", "ab:c", "d/e f", "é/ü",
                                  "a" * 4096]


def test_paths_inside_the_repository_are_accepted() -> None:
    for path in INSIDE:
        assert checks.path_problem(path) is None, path


OUTSIDE = [
    ("", "is empty"),
    ("/etc", "is not relative"), ("a\\b", "is not relative"), ("C:x", "is not relative"),
    ("c:", "is not relative"),
    ("..", "is not a normalised path inside the repository"),
    ("a/../b", "is not a normalised path inside the repository"),
    ("a/..", "is not a normalised path inside the repository"),
    (".", "is not a normalised path inside the repository"),
    ("./a", "is not a normalised path inside the repository"),
    ("a//b", "is not a normalised path inside the repository"),
    ("a/", "is not a normalised path inside the repository"),
    (".git", "points into .git"), (".GIT", "points into .git"),
    ("a/.Git/hooks", "points into .git"), (".git.", "points into .git"),
    (".git ", "points into .git"), (".git. .", "points into .git"),
    ("GIT~1/config", "points into .git"), ("x/git~1", "points into .git"),
    ("a\x00", "has control characters"), ("a\tb", "has control characters"),
    ("\u2066a", "has control characters"),
    ("a" * 4097, "longer than 4096 characters"),
]


def test_paths_that_leave_the_repository_or_enter_git_are_refused() -> None:
    for path, why in OUTSIDE:
        assert checks.path_problem(path) == why, path


def test_an_empty_path_is_accepted_only_where_the_root_is_meant() -> None:
    assert checks.path_problem("", empty_ok=True) is None
    assert checks.path_problem("a/../b", empty_ok=True) is not None


def test_words_with_control_or_direction_characters_are_refused() -> None:
    for char in ("\x00", "\x1f", "\x7f", "\x9f", "\u2028", "\u2029", "\u202a", "\u202e",
                 "\u2066", "\u2069", "\n", "\x85"):
        assert checks.text_problem(f"a{char}b") == "has control characters", repr(char)


def test_words_of_printable_characters_are_accepted() -> None:
    for word in ("", " ", "~", "\xa0", "\xa1", "\u2027", "\u202f", "\u2065", "\u206a",
                 "Zoë <z@example.com>", "日本"):
        assert checks.text_problem(word) is None, repr(word)


def test_a_word_may_be_as_long_as_its_limit() -> None:
    assert checks.text_problem("w" * 256) is None
    assert checks.text_problem("w" * 257) == "longer than 256 characters"
    assert checks.text_problem("w" * 10, limit=10) is None
    assert checks.text_problem("w" * 11, limit=10) == "longer than 10 characters"


def test_data_version_hashes_are_accepted() -> None:
    for value in ("d41d8cd98f00b204e9800998ecf8427e", "abc.dir", "A", "0" * 128,
                  "0" * 128 + ".dir", "a_b-c", "Z9"):
        assert checks.hash_problem(value) is None, value


def test_anything_else_is_no_data_version_hash() -> None:
    for value in ("", "-a", "_a", ".dir", "a.b", "a/b", "a b", "0" * 129, "abc.dir\n",
                  "a.DIR"):
        assert checks.hash_problem(value) == "is not a DVC hash", value


def test_only_known_backends_pass() -> None:
    assert checks.BACKENDS == ("local", "ssh", "docker", "gce", "slurm", "kubernetes")
    for b in checks.BACKENDS:
        assert checks.backend_problem(b) is None
    for b in ("", "LOCAL", "loca", "local ", "lambda"):
        assert checks.backend_problem(b) == "is not a backend this gitexp knows"


def test_urls_are_accepted() -> None:
    for url in ("file:///srv/store", "s3://bucket/p", "gs://b", "ssh+git://h/x", "a.b-c://",
                "https://h/" + "p" * 4086):
        assert checks.url_problem(url) is None, url


NO_URLS = [
    ("nowhere", "is not a URL"), ("/srv/store", "is not a URL"), ("1x://h", "is not a URL"),
    ("File://h", "is not a URL"), ("s3:/b", "is not a URL"), ("https://h/a b", "is not a URL"),
    ("x_y://h", "is not a URL"), ("", "is not a URL"),
    ("s3://b\x1b", "has control characters"),
    ("https://h/" + "p" * 4087, "longer than 4096 characters"),
]


def test_anything_else_is_no_url() -> None:
    for url, why in NO_URLS:
        assert checks.url_problem(url) == why, url


# -- durations ----------------------------------------------------------------------------------
DURATIONS: list[tuple[float | None, str]] = [
    (None, "-"), (math.nan, "-"), (math.inf, "-"), (0.0, "0.0s"), (4.2, "4.2s"),
    (59.94, "59.9s"), (60, "1m00s"), (187.5, "3m07s"), (3599, "59m59s"), (3600, "1h00m"),
    (7500, "2h05m"), (90061, "25h01m"),
]


def test_format_duration_shows_seconds_minutes_or_hours() -> None:
    for seconds, shown in DURATIONS:
        assert format_duration(seconds) == shown, seconds
