"""Replay in-process (service/rerun.py): the `rerun --check` verdict and its recording, the
`rerun --script` text, the "already succeeded" notice and `checkout`, on real repositories
whose run commits are written with plain git.

Fast on purpose, like tests/test_core_inprocess.py: mutation testing relies on the
in-process tests of tests/test_core_*.py to judge a mutant of these functions. Each test
names the behaviour it checks."""

from __future__ import annotations

import json
import math
import shlex
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from gitexp.data import dev as data
from gitexp.data import version
from gitexp.data.version import DataItem
from gitexp.errors import GitexpError
from gitexp.git import Repo
from gitexp.git.writeback import RESULTS_DIR, write_back
from gitexp.model import ids
from gitexp.model.record import Environment, Result, RunRecord, decode_run
from gitexp.service import rerun
from gitexp.service.runs import Run
from tests.helpers import git
from tests.test_core_inprocess import LAUNCHED, commit_run, ok, record


@pytest.fixture
def grepo(repo: Path) -> Repo:
    return Repo.discover(repo)


def bare_run(run_id: str, *, status: str | None = "succeeded",
             metrics: dict[str, Any] | None = None,
             outputs: dict[str, Any] | None = None) -> Run:
    """A run as `check` sees it (no repository needed); status None: never written back."""
    rec = RunRecord(id=run_id, argv=["x"], cwd="", base=None, branch=None, user="u",
                    launched_at=0.0, target="local", backend="local", store="file:///s",
                    env=Environment(python="3", platform="p"))
    result = None if status is None else Result(status=status, metrics=metrics or {},
                                                outputs=outputs or {})
    return Run(record=rec, result=result, commit="c", written_back=result is not None)


def verdict(a: dict[str, Any], b: dict[str, Any], **tol: float) -> dict[str, Any]:
    return rerun.check(bare_run("a-1", metrics=a), bare_run("b-1", metrics=b), **tol)


def same(a: Any, b: Any, **tol: float) -> bool:
    """Whether `rerun --check` calls metric `m` reproduced, a on the original, b on the rerun."""
    got: bool = verdict({"m": a}, {"m": b}, **tol)["metrics"]["m"]["same"]
    return got


# -- rerun --check ------------------------------------------------------------------------------
def test_check_reports_each_metric_of_either_side_with_both_values() -> None:
    before = time.time()
    got = verdict({"loss": 0.5, "acc": 0.9}, {"loss": 0.5, "acc": 0.8, "extra": 1})
    assert before <= got["checked_at"] <= time.time()
    assert got["of"] == "a-1"
    assert (got["rtol"], got["atol"]) == (0.0, 0.0)
    assert got["status"] == {"a": "succeeded", "b": "succeeded", "same": True}
    assert got["metrics"] == {
        "acc": {"a": 0.9, "b": 0.8, "same": False},
        "extra": {"a": None, "b": 1, "same": False},
        "loss": {"a": 0.5, "b": 0.5, "same": True},
    }
    assert list(got["metrics"]) == ["acc", "extra", "loss"]
    assert got["reproduced"] is False
    assert got["outputs"] == {}
    json.dumps(got, allow_nan=False)  # it is recorded: JSON as it is


def test_check_reproduced_needs_every_metric_the_same_status_and_every_output() -> None:
    assert verdict({"loss": 0.5}, {"loss": 0.5})["reproduced"] is True
    assert verdict({}, {})["reproduced"] is True
    assert verdict({"loss": 0.5}, {})["reproduced"] is False  # lost on the rerun
    assert verdict({}, {"loss": 0.5})["reproduced"] is False  # new on the rerun
    # a metric the rerun lacks is not the same even when the original's value is None
    got = verdict({"loss": None}, {})
    assert got["metrics"]["loss"] == {"a": None, "b": None, "same": False}
    assert got["reproduced"] is False
    assert verdict({"loss": None}, {"loss": None})["metrics"]["loss"]["same"] is True
    failed = rerun.check(bare_run("a-1", metrics={"x": 1}),
                         bare_run("b-1", status="failed", metrics={"x": 1}))
    assert failed["metrics"]["x"]["same"] is True
    assert failed["status"] == {"a": "succeeded", "b": "failed", "same": False}
    assert failed["reproduced"] is False
    moved = rerun.check(bare_run("a-1", outputs={"m.pt": {"hash": "h1"}}),
                        bare_run("b-1", outputs={"m.pt": {"hash": "h2"}}))
    assert moved["status"]["same"] and moved["metrics"] == {}
    assert moved["reproduced"] is False


def test_check_of_a_run_with_no_result_yet_is_queued_and_has_nothing_to_compare() -> None:
    got = rerun.check(bare_run("a-1", status=None), bare_run("b-1", status=None))
    assert got["status"] == {"a": "queued", "b": "queued", "same": True}
    assert got["metrics"] == {} and got["outputs"] == {}
    assert got["reproduced"] is True
    one = rerun.check(bare_run("a-1", metrics={"loss": 1.0}, outputs={"o": {"hash": "h"}}),
                      bare_run("b-1", status=None))
    assert one["metrics"] == {"loss": {"a": 1.0, "b": None, "same": False}}
    assert one["outputs"] == {"o": {"a": "h", "b": None, "same": False}}
    other = rerun.check(bare_run("a-1", status=None),
                        bare_run("b-1", metrics={"loss": 1.0}, outputs={"o": {"hash": "h"}}))
    assert other["metrics"] == {"loss": {"a": None, "b": 1.0, "same": False}}
    assert other["outputs"] == {"o": {"a": None, "b": "h", "same": False}}


def test_check_outputs_compare_their_hash_whatever_form_the_entry_has() -> None:
    got = rerun.check(
        bare_run("a-1", outputs={"d": {"hash": "h1", "size": 1}, "plain": "h2",
                                 "nohash": {"size": 3}, "gone": {"hash": "h4"}}),
        bare_run("b-1", outputs={"d": {"hash": "h1", "size": 2}, "plain": "h2",
                                 "nohash": {"size": 3}, "new": {"hash": "h5"}}))
    assert got["outputs"] == {
        "d": {"a": "h1", "b": "h1", "same": True},  # the size is no part of it
        "gone": {"a": "h4", "b": None, "same": False},
        "new": {"a": None, "b": "h5", "same": False},
        "nohash": {"a": "None", "b": "None", "same": True},
        "plain": {"a": "h2", "b": "h2", "same": True},
    }
    assert list(got["outputs"]) == ["d", "gone", "new", "nohash", "plain"]
    assert rerun.check(bare_run("a-1", outputs={"d": {"hash": "h1"}, "p": "x"}),
                       bare_run("b-1", outputs={"d": {"hash": "h1"}, "p": "x"}))["reproduced"]


def test_check_by_default_wants_the_very_same_numbers() -> None:
    assert same(0.5, 0.5) and same(3, 3) and same(3, 3.0) and same(0, 0)
    assert not same(0.5, 0.5 + 1e-12)
    assert not same(1, 2) and not same(-1.0, 1.0)
    assert same("a", "a") and not same("a", "b") and not same("1", 1)


def test_check_rtol_is_relative_to_the_original_value() -> None:
    assert same(100.0, 110.0, rtol=0.1)  # |Δ| = 10 <= 0.1 * 100: just inside
    assert not same(100.0, 110.5, rtol=0.1)
    # relative to a (100), not b (90 would allow only 9)
    assert same(100.0, 90.0, rtol=0.1)
    assert not same(90.0, 100.0, rtol=0.1)  # |Δ| = 10 > 9
    assert same(-100.0, -110.0, rtol=0.1)  # a negative original: its size counts
    assert not same(0.0, 1e-9, rtol=0.5)  # nothing is relatively close to zero
    got = verdict({"m": 100.0}, {"m": 105.0}, rtol=0.1)
    assert (got["rtol"], got["atol"], got["reproduced"]) == (0.1, 0.0, True)


def test_check_atol_is_an_absolute_allowance_added_to_rtol() -> None:
    assert same(1.0, 1.5, atol=0.5) and same(1.5, 1.0, atol=0.5)  # either way, inclusive
    assert not same(1.0, 1.75, atol=0.5) and not same(1.75, 1.0, atol=0.5)
    assert same(0.0, 0.25, atol=0.5)
    assert same(100.0, 115.0, rtol=0.1, atol=5.0)  # 15 <= 5 + 10
    assert not same(100.0, 116.0, rtol=0.1, atol=5.0)
    got = verdict({"m": 1.0}, {"m": 1.5}, atol=0.5)
    assert (got["rtol"], got["atol"], got["reproduced"]) == (0.0, 0.5, True)


def test_check_nan_is_reproduced_only_by_nan() -> None:
    nan = float("nan")
    assert same(nan, nan)
    assert not same(nan, 1.0) and not same(1.0, nan)
    assert not same(nan, 1.0, atol=math.inf) and not same(1.0, nan, rtol=math.inf)
    assert not same(nan, 0.0) and not same(0.0, nan)


def test_check_a_boolean_metric_equals_only_the_same_boolean() -> None:
    assert same(True, True) and same(False, False)
    assert not same(True, False) and not same(False, True)
    # JSON true is no 1, false no 0, whatever the tolerance
    assert not same(True, 1) and not same(1, True) and not same(False, 0) and not same(0, False)
    assert not same(True, 1.0, atol=1.0) and not same(1, True, atol=1.0)
    assert not same(False, 0.5, atol=1.0) and not same(0.5, False, atol=1.0)
    assert not same(True, "True") and not same(None, False)


def test_check_of_values_that_are_no_numbers_is_plain_equality() -> None:
    assert same([1, 2], [1, 2]) and not same([1, 2], [1, 3])
    assert same({"k": 1}, {"k": 1}) and not same(1.0, "1.0", atol=1.0)
    assert not same(None, 0) and not same(0, None)


# -- the recorded verdict -----------------------------------------------------------------------
def _written(grepo: Repo, run_id: str = "b-1") -> tuple[Run, Run]:
    live = commit_run(grepo, record(run_id, grepo), None)
    written = write_back(grepo, live.record, ok(loss=0.5), None)
    return live, Run(record=live.record, result=ok(loss=0.5), commit=written,
                     written_back=True)


def _reflog(grepo: Repo, ref: str) -> list[str]:
    return grepo.git("reflog", "show", "--format=%gs", ref, "--").splitlines()


def test_record_verdict_writes_check_json_and_the_verdict_into_the_result(
        grepo: Repo) -> None:
    git("config", "core.logAllRefUpdates", "always", cwd=grepo.root)  # to read the reason
    live, run = _written(grepo)
    got = {"of": "a-1", "reproduced": False, "metrics": {"loss": {"a": 1, "b": 2}}}
    checked = rerun.record_verdict(grepo, run, got)
    assert run.result is not None
    assert checked.result == replace(run.result, check=got)
    assert (checked.record, checked.written_back, checked.id) == (run.record, True, "b-1")
    assert grepo.rev_parse(ids.ref_for("b-1")) == checked.commit
    # the file: the verdict, pretty and stable
    text = grepo.git("show", f"{checked.commit}:{RESULTS_DIR}/check.json")
    assert text == json.dumps(got, indent=2, sort_keys=True)
    assert json.loads(text) == got
    mode = grepo.git("ls-tree", checked.commit, f"{RESULTS_DIR}/check.json").split()[0]
    assert mode == "100644"
    # the results commit's files are all still there, unchanged
    before = grepo.git("ls-tree", "-r", run.commit).splitlines()
    after = grepo.git("ls-tree", "-r", checked.commit).splitlines()
    assert [ln for ln in after if ln not in before] == [
        ln for ln in after if ln.endswith(f"\t{RESULTS_DIR}/check.json")]
    assert set(before) < set(after)
    # parents: the snapshot, then the old results commit: the ref only ever fast-forwards
    parents = grepo.git("log", "-1", "--format=%P", checked.commit).split()
    assert parents == [live.record.snapshot, run.commit]
    parsed = decode_run(grepo.git("log", "-1", "--format=%B", checked.commit),
                        ref=ids.ref_for("b-1"), commit=checked.commit, parents=parents)
    assert parsed.record == run.record
    assert parsed.result == checked.result
    assert _reflog(grepo, ids.ref_for("b-1"))[0] == "gitexp: b-1 checked against a-1"


def test_record_verdict_adds_the_results_directory_when_the_commit_has_none(
        grepo: Repo) -> None:
    live = commit_run(grepo, record("b-1", grepo), ok(loss=0.5))  # a results commit of the
    run = live  # snapshot's own tree: no .gitexp-results/ in it
    top_before = grepo.git("ls-tree", run.commit).splitlines()
    assert not any(ln.endswith("\t" + RESULTS_DIR) for ln in top_before)
    checked = rerun.record_verdict(grepo, run, {"of": "a-1", "reproduced": True})
    assert grepo.git("ls-tree", "-r", "--name-only", checked.commit, RESULTS_DIR).split() == \
        [f"{RESULTS_DIR}/check.json"]
    top_after = grepo.git("ls-tree", checked.commit).splitlines()
    assert sorted(top_after) == sorted([*top_before, *[ln for ln in top_after
                                                       if ln.endswith("\t" + RESULTS_DIR)]])
    assert len(top_after) == len(top_before) + 1


def test_record_verdict_keeps_one_results_directory_with_every_file_in_it(grepo: Repo) -> None:
    _, run = _written(grepo)
    inside = grepo.git("ls-tree", "--name-only", f"{run.commit}:{RESULTS_DIR}").split()
    assert inside  # write-back left files there
    checked = rerun.record_verdict(grepo, run, {"of": "a-1", "reproduced": True})
    top = grepo.git("ls-tree", "--name-only", checked.commit).split()
    assert top.count(RESULTS_DIR) == 1
    assert grepo.git("ls-tree", "--name-only", f"{checked.commit}:{RESULTS_DIR}").split() == \
        sorted([*inside, "check.json"])


def test_record_verdict_refuses_a_run_not_written_back(grepo: Repo) -> None:
    live = commit_run(grepo, record("b-1", grepo), None)
    for run in (live, replace(live, written_back=True),
                replace(live, result=ok(), written_back=False)):
        with pytest.raises(GitexpError) as err:
            rerun.record_verdict(grepo, run, {"of": "a-1"})
        assert err.value.message == "run b-1 has no result in git yet"
        assert err.value.hint is not None and "git exp show b-1" in err.value.hint
    assert grepo.rev_parse(ids.ref_for("b-1")) == live.commit


def test_record_verdict_refuses_a_second_verdict(grepo: Repo) -> None:
    _, run = _written(grepo)
    checked = rerun.record_verdict(grepo, run, {"of": "a-1", "reproduced": True})
    assert checked.result is not None
    for again in (checked, replace(checked, result=replace(checked.result, check={}))):
        with pytest.raises(GitexpError) as err:
            rerun.record_verdict(grepo, again, {"of": "a-2", "reproduced": False})
        assert err.value.message == "run b-1 already has a verdict"
    assert grepo.rev_parse(ids.ref_for("b-1")) == checked.commit


def test_record_verdict_refuses_when_the_ref_moved_meanwhile(grepo: Repo) -> None:
    _, run = _written(grepo)
    moved = commit_run(grepo, record("b-1", grepo), ok(loss=9.0))  # the ref is elsewhere now
    with pytest.raises(GitexpError) as err:
        rerun.record_verdict(grepo, run, {"of": "a-1", "reproduced": True})
    assert err.value.message == "run b-1 changed while its verdict was being recorded"
    assert err.value.hint is not None and "git exp rerun a-1 --check" in err.value.hint
    assert grepo.rev_parse(ids.ref_for("b-1")) == moved.commit


# -- the "already succeeded" notice -------------------------------------------------------------
def test_already_succeeded_shows_floats_to_four_digits_and_other_values_as_they_are(
        grepo: Repo) -> None:
    commit_run(grepo, record("ok-1", grepo), ok(b=2, a=1.23456, c="x", d=True))
    tree = grepo.git("rev-parse", "HEAD^{tree}").strip()
    with pytest.raises(rerun.AlreadySucceededError) as err:
        rerun.refuse_if_succeeded(grepo, tree, ["python", "train.py"], "")
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(LAUNCHED))
    assert err.value.message == (
        "run ok-1 already ran this (same code, command, directory and data) and succeeded "
        f"at {when}: a=1.235, b=2, c=x, d=True")
    assert err.value.hint == ("`git exp show ok-1` shows it; `git exp run --force -- ...` "
                              "runs again")
    assert isinstance(err.value, GitexpError)


def test_already_succeeded_of_a_run_without_result_names_no_metrics(grepo: Repo) -> None:
    made = commit_run(grepo, record("ok-1", grepo), ok())
    err = rerun.AlreadySucceededError(replace(made, result=None))
    assert err.message.endswith(time.strftime("%Y-%m-%d %H:%M", time.localtime(LAUNCHED)))
    assert err.run.id == "ok-1"


def test_refuse_if_succeeded_outside_dvc_compares_no_data(grepo: Repo) -> None:
    """Not a DVC project: a run that recorded data still refuses only if it recorded none."""
    tree = grepo.git("rev-parse", "HEAD^{tree}").strip()
    argv = ["python", "train.py"]
    commit_run(grepo, record("d-1", grepo, argv=argv, data={"x": {"hash": "h"}}), ok())
    rerun.refuse_if_succeeded(grepo, tree, argv, "")
    commit_run(grepo, record("e-1", grepo, argv=argv, data={}), ok())  # {} is no data
    with pytest.raises(rerun.AlreadySucceededError) as err:
        rerun.refuse_if_succeeded(grepo, tree, argv, "")
    assert err.value.run.id == "e-1"


def test_refuse_if_succeeded_outside_dvc_ignores_dvc_files_in_the_tree(grepo: Repo) -> None:
    """A `.dvc` file committed, but no `.dvc/` here: not a DVC project, so what the file
    pins is no part of "the same data"."""
    (grepo.root / "data.dvc").write_text("outs:\n- md5: 0123456789abcdef0123456789abcdef\n"
                                         "  size: 3\n  path: data\n")
    git("add", "-A", cwd=grepo.root)
    git("commit", "-qm", "data", cwd=grepo.root)
    tree = grepo.git("rev-parse", "HEAD^{tree}").strip()
    assert data.version_of(grepo, tree)  # the tree does pin a version
    commit_run(grepo, record("plain-1", grepo, data=None), ok())
    with pytest.raises(rerun.AlreadySucceededError) as err:
        rerun.refuse_if_succeeded(grepo, tree, ["python", "train.py"], "")
    assert err.value.run.id == "plain-1"


def test_refuse_if_succeeded_in_a_dvc_project_takes_the_run_of_the_same_data(
        grepo: Repo) -> None:
    (grepo.root / "data.dvc").write_text("outs:\n- md5: 0123456789abcdef0123456789abcdef\n"
                                         "  size: 3\n  path: data\n")
    (grepo.root / ".dvc").mkdir()
    (grepo.root / ".dvc" / "config").write_text("")
    git("add", "-A", cwd=grepo.root)
    git("commit", "-qm", "data", cwd=grepo.root)
    tree = grepo.git("rev-parse", "HEAD^{tree}").strip()
    pinned = data.version_of(grepo, tree)  # what the tree pins (data/, not this module)
    assert pinned is not None and pinned["data"]["hash"] == "0123456789abcdef0123456789abcdef"
    argv = ["python", "train.py"]
    commit_run(grepo, record("none-1", grepo, argv=argv, data=None), ok())
    rerun.refuse_if_succeeded(grepo, tree, argv, "")  # the tree pins data: it differs
    commit_run(grepo, record("same-1", grepo, argv=argv, data=pinned), ok())
    with pytest.raises(rerun.AlreadySucceededError) as err:
        rerun.refuse_if_succeeded(grepo, tree, argv, "")
    assert err.value.run.id == "same-1"


# -- rerun --script -----------------------------------------------------------------------------
def test_default_remote_is_origin_when_there_is_one(grepo: Repo, tmp_path: Path) -> None:
    assert rerun.default_remote(grepo) == str(grepo.root)
    git("remote", "add", "upstream", "https://example.invalid/up.git", cwd=grepo.root)
    assert rerun.default_remote(grepo) == str(grepo.root)  # only origin counts
    git("remote", "add", "origin", "https://example.invalid/r.git", cwd=grepo.root)
    assert rerun.default_remote(grepo) == "https://example.invalid/r.git"


def _script_run(grepo: Repo, **kw: Any) -> Run:
    rec = record("s-1", grepo, snapshot="f" * 40, **kw)
    return Run(record=rec, result=ok(), commit="c", written_back=True)


def _line(text: str, start: str) -> str:
    (found,) = [ln for ln in text.splitlines() if ln.startswith(start)]
    return found


def test_script_fills_in_the_run_its_snapshot_remote_and_directory(grepo: Repo) -> None:
    text = rerun.script(grepo, _script_run(grepo, cwd="sub dir"), "https://h.invalid/r x.git")
    assert text.startswith("#!/bin/sh\n# Replays gitexp run s-1 by hand")
    assert _line(text, "RUN_ID=") == "RUN_ID=s-1"
    assert _line(text, "SNAPSHOT=") == "SNAPSHOT=" + "f" * 40
    assert _line(text, "SUBDIR=") == "SUBDIR='sub dir'"
    assert _line(text, "DEFAULT_REMOTE=") == "DEFAULT_REMOTE='https://h.invalid/r x.git'"
    assert _line(text, "exec ") == "exec python train.py"
    assert "{{" not in text and "}}" not in text
    here = rerun.script(grepo, _script_run(grepo))
    assert _line(here, "DEFAULT_REMOTE=") == "DEFAULT_REMOTE=" + shlex.quote(str(grepo.root))
    assert _line(here, "SUBDIR=") == "SUBDIR=."
    git("remote", "add", "origin", "https://example.invalid/r.git", cwd=grepo.root)
    assert _line(rerun.script(grepo, _script_run(grepo)), "DEFAULT_REMOTE=") == \
        "DEFAULT_REMOTE=https://example.invalid/r.git"


def test_script_runs_the_argv_quoted_and_shows_it_on_one_comment_line(grepo: Repo) -> None:
    argv = ["python", "train.py", "--msg", "two words\nand a line", "$HOME", "a'b"]
    text = rerun.script(grepo, _script_run(grepo, argv=argv))
    command = text.split("\nexec ", 1)[1]
    assert command == shlex.join(argv) + "\n"
    assert shlex.split(command) == argv
    shown = _line(text, "#   the run:")
    assert shown == "#   the run:    " + shlex.join(argv).replace("\n", " ")
    assert "and a line" in shown


def test_script_pulls_only_dvc_cached_outputs(grepo: Repo) -> None:
    items = {
        "z/out": DataItem(path="z/out", hash="a" * 32, algo="md5", size=1, nfiles=None,
                          source="z.dvc", is_out=True),
        "m.json": DataItem(path="m.json", hash="b" * 32, algo="md5", size=1, nfiles=None,
                           source="dvc.yaml", is_out=True, in_git=True),
        "dep": DataItem(path="dep", hash="c" * 32, algo="md5", size=1, nfiles=None,
                        source="dvc.yaml", is_out=False),
        "a b/out": DataItem(path="a b/out", hash="d" * 32, algo="md5", size=1, nfiles=None,
                            source="ab.dvc", is_out=True),
    }
    text = rerun.script(grepo, _script_run(grepo, data=version.to_record(items)))
    assert _line(text, "dvc pull") == "dvc pull -- 'a b/out' z/out"
    assert "the run used no DVC-tracked data" not in text
    only_git = {k: v for k, v in items.items() if not v.cached}
    none = rerun.script(grepo, _script_run(grepo, data=version.to_record(only_git)))
    assert "dvc pull" not in none
    assert ": # the run used no DVC-tracked data\n" in none


def test_script_exports_the_recorded_variables_that_are_shell_names(grepo: Repo) -> None:
    env = Environment(python="3", platform="p", variables={
        "SEED": "1", "A_B2": "two words", "_X": "$HOME", "lower": "ok",
        "2BAD": "x", "É": "x", "A-B": "x", "A B": "x", "": "x", "X\n": "x", "Z;rm": "x"})
    text = rerun.script(grepo, _script_run(grepo, env=env))
    exports = [ln for ln in text.splitlines() if ln.startswith("export ")]
    assert exports == ["export A_B2='two words'", "export SEED=1", "export _X='$HOME'",
                       "export lower=ok"]
    assert "no recorded environment variables" not in text
    block = text.split("# The environment variables the run recorded.\n")[1]
    assert block.startswith("export A_B2='two words'\nexport SEED=1\nexport _X='$HOME'\n"
                            "export lower=ok\n\n# The command")
    for env_vars in ({}, {"1X": "y", "É": "z"}):
        none = rerun.script(grepo, _script_run(grepo, env=replace(env, variables=env_vars)))
        assert "export " not in none
        after = none.split("# The environment variables the run recorded.\n")[1]
        assert after.startswith(": # no recorded environment variables\n\n# The command")


def test_script_refuses_a_forged_run_id(grepo: Repo) -> None:
    for bad in ("x\nrm -rf ~", "../up", "A-1"):
        with pytest.raises(GitexpError):
            rerun.script(grepo, _script_run(grepo, id=bad))


# -- git exp checkout ---------------------------------------------------------------------------
def test_checkout_on_a_new_branch_puts_it_at_the_snapshot(grepo: Repo) -> None:
    made = commit_run(grepo, record("a-1", grepo), ok())
    rerun.restore_code(grepo, made, "try-1")
    assert grepo.git("symbolic-ref", "HEAD").strip() == "refs/heads/try-1"
    assert grepo.git("rev-parse", "refs/heads/try-1").strip() == made.record.snapshot
    assert grepo.git("status", "--porcelain") == ""


def test_checkout_detached_leaves_the_branches_alone(grepo: Repo) -> None:
    (grepo.root / "new.txt").write_text("in the run\n")
    git("add", "-A", cwd=grepo.root)
    tree = grepo.git("write-tree").strip()
    git("reset", "-q", "--hard", cwd=grepo.root)
    (grepo.root / "new.txt").unlink(missing_ok=True)
    main = grepo.head()
    made = commit_run(grepo, record("a-1", grepo), ok(), tree=tree)
    rerun.restore_code(grepo, made)
    assert grepo.git("rev-parse", "HEAD").strip() == made.record.snapshot
    assert grepo.git("symbolic-ref", "-q", "HEAD", check=False) == ""
    assert grepo.git("rev-parse", "refs/heads/main").strip() == main
    assert (grepo.root / "new.txt").read_text() == "in the run\n"  # the run's files


def test_checkout_refuses_an_existing_branch_having_touched_nothing(grepo: Repo) -> None:
    made = commit_run(grepo, record("a-1", grepo), ok())
    git("branch", "taken", cwd=grepo.root)
    head = grepo.head()
    for name in ("taken", "main"):
        with pytest.raises(GitexpError) as err:
            rerun.restore_code(grepo, made, name)
        assert err.value.message == f"a branch named {name!r} already exists"
    assert grepo.head() == head
    assert grepo.git("symbolic-ref", "HEAD").strip() == "refs/heads/main"


def test_checkout_refuses_a_dirty_work_tree_and_counts_the_changes(grepo: Repo) -> None:
    made = commit_run(grepo, record("a-1", grepo), ok())
    head = grepo.head()
    (grepo.root / "README.md").write_text("edited\n")
    (grepo.root / "deep" / "er").mkdir(parents=True)
    (grepo.root / "deep" / "er" / "new.txt").write_text("untracked\n")  # each file counts
    (grepo.root / "deep" / "er" / "two.txt").write_text("untracked\n")
    for branch in (None, "fresh"):
        with pytest.raises(GitexpError) as err:
            rerun.restore_code(grepo, made, branch)
        assert err.value.message == ("the work tree has 3 uncommitted change(s); checking out "
                                     "run a-1 could overwrite them")
        assert err.value.hint is not None and "git stash -u" in err.value.hint
    assert grepo.head() == head
    assert grepo.git("symbolic-ref", "HEAD").strip() == "refs/heads/main"
    assert not grepo.rev_parse("refs/heads/fresh")


def test_checkout_with_outputs_refuses_a_run_that_recorded_none(grepo: Repo) -> None:
    made = commit_run(grepo, record("a-1", grepo), ok())
    for run in (made, replace(made, result=None)):
        with pytest.raises(GitexpError) as err:
            rerun.restore_code(grepo, run, outputs=True)
        assert "a-1" in err.value.message
    assert grepo.git("symbolic-ref", "HEAD").strip() == "refs/heads/main"
    rerun.restore_code(grepo, made, outputs=False)
    assert grepo.git("rev-parse", "HEAD").strip() == made.record.snapshot


def test_checkout_with_outputs_refuses_an_output_through_a_symlink_of_the_snapshot(
        grepo: Repo) -> None:
    link = grepo.hash_object(b"/tmp")
    top = grepo.git("ls-tree", "HEAD").splitlines()
    tree = grepo.mktree([*top, f"120000 blob {link}\tmodels"])
    made = commit_run(grepo, record("a-1", grepo), replace(
        ok(), outputs={"models/m.pt": {"hash": "e" * 32, "size": 1}}), tree=tree)
    with pytest.raises(GitexpError) as err:
        rerun.restore_code(grepo, made, "b", outputs=True)
    assert err.value.message == ("run a-1 declares an output through 'models', which is a "
                                 "symlink in its snapshot")
    assert grepo.git("symbolic-ref", "HEAD").strip() == "refs/heads/main"
    assert not grepo.rev_parse("refs/heads/b")
