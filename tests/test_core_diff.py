"""`git exp diff` as data, in-process (service/diff.py): two runs, or a run against its base
commit, on real repositories whose run commits are written with plain git.

Fast on purpose, like tests/test_core_inprocess.py: mutation testing relies on the
in-process tests of tests/test_core_*.py to judge a mutant of these functions. Each test
names the behaviour it checks."""

from __future__ import annotations

import stat
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from gitexp.errors import GitexpError
from gitexp.git import Repo
from gitexp.git.writeback import RESULTS_DIR
from gitexp.model.record import Environment, Result
from gitexp.service import diff
from gitexp.service.runs import Run
from tests.helpers import git
from tests.test_core_inprocess import commit_run, ok, record


@pytest.fixture
def grepo(repo: Path) -> Repo:
    return Repo.discover(repo)


def commit_files(repo: Repo, files: dict[str, str | bytes | None], msg: str = "c") -> str:
    """Write (None: delete) the files and commit them all; the new HEAD."""
    for name, content in files.items():
        path = repo.root / name
        if content is None:
            path.unlink()
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    git("add", "-A", cwd=repo.root)
    git("commit", "-qm", msg, cwd=repo.root)
    return repo.git("rev-parse", "HEAD").strip()


def uncommitted_tree(repo: Repo, files: dict[str, str]) -> str:
    """The tree of HEAD plus `files`, as a run's snapshot of uncommitted work; HEAD and
    the work tree are left as they were."""
    for name, content in files.items():
        (repo.root / name).parent.mkdir(parents=True, exist_ok=True)
        (repo.root / name).write_text(content)
    git("add", "-A", cwd=repo.root)
    tree = repo.git("write-tree").strip()
    git("reset", "-q", "--hard", cwd=repo.root)
    git("clean", "-qfd", cwd=repo.root)
    return tree


# -- code ---------------------------------------------------------------------------------------
def test_code_counts_lines_per_file_and_none_for_binary(grepo: Repo) -> None:
    a = commit_files(grepo, {"keep.py": "1\n2\n3\n", "gone.txt": "x\n",
                             "blob.bin": b"\0\1\2"})
    b = commit_files(grepo, {"keep.py": "1\nTWO\n3\n4\n", "gone.txt": None,
                             "blob.bin": b"\0\1\3", "new.md": "a\nb\n"})
    got = diff.code(grepo, a, b, patch=False)
    assert (got.a, got.b, got.patch) == (a, b, None)
    assert got.files == [
        {"path": "blob.bin", "added": None, "deleted": None},
        {"path": "gone.txt", "added": 0, "deleted": 1},
        {"path": "keep.py", "added": 2, "deleted": 1},
        {"path": "new.md", "added": 2, "deleted": 0},
    ]
    assert got.stat == grepo.git("diff", "--stat=100", a, b).rstrip("\n")
    assert got.stat.endswith("4 files changed, 4 insertions(+), 2 deletions(-)")
    assert not got.stat.endswith("\n")
    back = diff.code(grepo, b, a, patch=False)  # neither side is the work tree's
    assert back.stat == grepo.git("diff", "--stat=100", b, a).rstrip("\n")
    assert back.stat.endswith("4 files changed, 2 insertions(+), 4 deletions(-)")


def test_code_stat_lists_a_rename_as_two_files_whatever_the_config(grepo: Repo) -> None:
    git("config", "diff.renames", "true", cwd=grepo.root)
    a = commit_files(grepo, {"old.py": "".join(f"line {i}\n" for i in range(40))})
    git("mv", "old.py", "new.py", cwd=grepo.root)
    git("commit", "-qm", "renamed", cwd=grepo.root)
    got = diff.code(grepo, a, grepo.git("rev-parse", "HEAD").strip(), patch=False)
    assert [ln.split("|")[0].strip() for ln in got.stat.splitlines()[:-1]] == \
        ["new.py", "old.py"]
    assert "=>" not in got.stat


def test_code_patch_is_the_plain_git_diff_only_when_asked(grepo: Repo) -> None:
    a = commit_files(grepo, {"train.py": "lr = 1\n"})
    b = commit_files(grepo, {"train.py": "lr = 2\n"})
    got = diff.code(grepo, a, b, patch=True)
    assert got.patch == grepo.git("diff", "--no-color", a, b)
    assert "-lr = 1\n+lr = 2\n" in (got.patch or "")
    assert diff.code(grepo, a, b, patch=False).patch is None
    assert diff.code(grepo, b, b, patch=True).patch is None  # nothing changed: no patch


def test_code_output_ignores_colour_and_external_diff_settings(grepo: Repo) -> None:
    a = commit_files(grepo, {"train.py": "lr = 1\n"})
    b = commit_files(grepo, {"train.py": "lr = 2\n"})
    tool = grepo.root.parent / "ext-diff"
    tool.write_text("#!/bin/sh\necho EXTERNAL\n")
    tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    git("config", "color.ui", "always", cwd=grepo.root)
    git("config", "color.diff", "always", cwd=grepo.root)
    git("config", "diff.external", str(tool), cwd=grepo.root)
    git("config", "diff.renames", "true", cwd=grepo.root)
    got = diff.code(grepo, a, b, patch=True)
    assert got.patch is not None and "\x1b[" not in got.patch and "EXTERNAL" not in got.patch
    assert "+lr = 2" in got.patch
    assert "\x1b[" not in got.stat and "train.py" in got.stat
    assert got.files == [{"path": "train.py", "added": 1, "deleted": 1}]


def test_code_keeps_a_path_with_tabs_and_odd_characters_whole(grepo: Repo) -> None:
    a = grepo.git("rev-parse", "HEAD").strip()
    odd = "tab\there é \"q\".txt"
    b = commit_files(grepo, {odd: "x\ny\n", " lead": "z\n"})
    got = diff.code(grepo, a, b, patch=False)
    assert got.files == [{"path": " lead", "added": 1, "deleted": 0},
                         {"path": odd, "added": 2, "deleted": 0}]


def test_code_stat_is_wide_enough_for_long_paths(grepo: Repo) -> None:
    a = grepo.git("rev-parse", "HEAD").strip()
    long_name = "d/" + "n" * 70 + ".py"
    b = commit_files(grepo, {long_name: "x\n"})
    got = diff.code(grepo, a, b, patch=False)
    assert long_name in got.stat  # not shortened to `.../nnn.py`


def test_code_between_a_tree_and_the_empty_tree_lists_every_file(grepo: Repo) -> None:
    head = commit_files(grepo, {"src/a.py": "1\n"})
    got = diff.code(grepo, grepo.empty_tree, head, patch=True)
    assert [f["path"] for f in got.files] == ["README.md", "src/a.py"]
    assert got.patch is not None and "+hello" in got.patch


# -- command, changed, metrics --------------------------------------------------------------------
def test_command_is_none_when_the_argv_is_the_same() -> None:
    assert diff.command(["python", "t.py"], ["python", "t.py"]) is None
    assert diff.command([], []) is None


@pytest.mark.parametrize(("a", "b", "span"), [
    (["p", "t.py", "--lr", "1"], ["p", "t.py", "--lr", "2"],
     {"at": 3, "a": ["1"], "b": ["2"]}),
    (["p", "--lr", "1", "--seed", "3"], ["p", "--lr", "2", "--seed", "3"],
     {"at": 2, "a": ["1"], "b": ["2"]}),
    (["p", "x"], ["p", "x", "--fast"], {"at": 2, "a": [], "b": ["--fast"]}),
    (["p", "--fast", "x"], ["p", "x"], {"at": 1, "a": ["--fast"], "b": []}),
    (["a"], ["b"], {"at": 0, "a": ["a"], "b": ["b"]}),
    (["x", "1", "y"], ["z", "1", "w"], {"at": 0, "a": ["x", "1", "y"], "b": ["z", "1", "w"]}),
    (["a", "a"], ["a", "a", "a"], {"at": 2, "a": [], "b": ["a"]}),  # head and tail never overlap
    ([], ["p"], {"at": 0, "a": [], "b": ["p"]}),
])
def test_command_span_is_what_lies_between_the_common_head_and_tail(
        a: list[str], b: list[str], span: dict[str, Any]) -> None:
    assert diff.command(a, b) == {"a": a, "b": b, "span": span}


def test_changed_lists_only_keys_that_differ_or_exist_on_one_side() -> None:
    got = diff.changed({"lr": 1, "same": "x", "gone": 2, "none_a": None, "f": 1.0},
                       {"lr": 2, "same": "x", "new": 3, "f": 1})
    assert got == {"gone": {"a": 2, "b": None}, "lr": {"a": 1, "b": 2},
                   "new": {"a": None, "b": 3}, "none_a": {"a": None, "b": None}}
    assert list(got) == ["gone", "lr", "new", "none_a"]
    assert diff.changed({}, {}) == {} and diff.changed({"k": None}, {"k": None}) == {}


def test_changed_tells_a_flag_from_the_number_one() -> None:
    assert diff.changed({"fast": True}, {"fast": 1}) == {"fast": {"a": True, "b": 1}}
    assert diff.changed({"fast": 0}, {"fast": False}) == {"fast": {"a": 0, "b": False}}
    assert diff.changed({"fast": True}, {"fast": True}) == {}
    assert diff.changed({"fast": True}, {"fast": False}) == {"fast": {"a": True, "b": False}}


def test_metrics_gives_the_change_and_percent_change_of_numbers() -> None:
    got = diff.metrics({"loss": 0.5, "acc": 80, "steps": 100},
                       {"loss": 0.25, "acc": 90, "steps": 100})
    assert got == {
        "acc": {"a": 80, "b": 90, "delta": 10, "pct": 12.5},
        "loss": {"a": 0.5, "b": 0.25, "delta": -0.25, "pct": -50.0},
        "steps": {"a": 100, "b": 100, "delta": 0, "pct": 0.0},
    }
    assert list(got) == ["acc", "loss", "steps"]


def test_metrics_percent_of_a_negative_baseline_has_the_sign_of_the_change() -> None:
    got = diff.metrics({"reward": -200.0, "r2": -4}, {"reward": -100.0, "r2": -5})
    assert got["reward"] == {"a": -200.0, "b": -100.0, "delta": 100.0, "pct": 50.0}
    assert got["r2"] == {"a": -4, "b": -5, "delta": -1, "pct": -25.0}


def test_metrics_without_a_number_on_both_sides_has_no_change() -> None:
    got = diff.metrics({"zero": 0, "z": 0.0, "name": "a", "flag": True, "gone": 1.0, "n": 1},
                       {"zero": 5, "z": -1.0, "name": "b", "flag": False, "new": 2, "n": True})
    assert got["zero"] == {"a": 0, "b": 5, "delta": 5, "pct": None}  # no percent of zero
    assert got["z"] == {"a": 0.0, "b": -1.0, "delta": -1.0, "pct": None}
    assert got["name"] == {"a": "a", "b": "b", "delta": None, "pct": None}
    assert got["flag"] == {"a": True, "b": False, "delta": None, "pct": None}
    assert got["n"] == {"a": 1, "b": True, "delta": None, "pct": None}
    assert got["gone"] == {"a": 1.0, "b": None, "delta": None, "pct": None}
    assert got["new"] == {"a": None, "b": 2, "delta": None, "pct": None}
    assert diff.metrics({}, {}) == {}


# -- two runs -----------------------------------------------------------------------------------
def two_runs(grepo: Repo) -> tuple[Run, Run]:
    commit_files(grepo, {"params.yaml": "lr: 0.1\nepochs: 3\n", "train.py": "v1\n",
                         "sub/params.yaml": "depth: 2\n"})
    pkgs_a = grepo.hash_object(b"numpy==1.0\ntorch==2.0\nold==1\n\n")
    env_a = Environment(python="3.11", platform="linux", packages=pkgs_a,
                        variables={"SEED": "1", "SAME": "s", "ONLY_A": "a"})
    a = commit_run(grepo, record("a-1", grepo, argv=["python", "train.py", "--bs", "32"],
                                 env=env_a, params={"extra": 1},
                                 data={"d": {"hash": "h1", "size": 1}, "e": {"hash": "x"}}),
                   Result(status="succeeded", host="h1", metrics={"loss": 0.5, "acc": 0.8}))
    base_a = grepo.head()
    commit_files(grepo, {"params.yaml": "lr: 0.2\nepochs: 3\n", "train.py": "v2\nmore\n"})
    pkgs_b = grepo.hash_object(b"numpy==1.1\ntorch==2.0\nnew==2\n")
    env_b = Environment(python="3.12", platform="darwin", packages=pkgs_b,
                        variables={"SEED": "2", "SAME": "s", "ONLY_B": "b"})
    b = commit_run(grepo, record("b-1", grepo, argv=["python", "train.py", "--bs", "64"],
                                 cwd="sub", env=env_b, target="gpu", backend="ssh",
                                 data={"d": {"hash": "h2", "size": 1}, "e": {"hash": "x"}}),
                   Result(status="succeeded", host="h2", metrics={"loss": 0.25, "acc": 0.8}))
    assert a.record.base == base_a != b.record.base
    return a, b


def test_runs_reports_every_section_that_differs(grepo: Repo) -> None:
    a, b = two_runs(grepo)
    report = diff.runs(grepo, a, b)
    assert (report.a, report.b, report.against_base) == ("a-1", "b-1", False)
    assert (report.code.a, report.code.b) == (a.record.snapshot, b.record.snapshot)
    assert [f["path"] for f in report.code.files] == ["params.yaml", "train.py"]
    assert report.code.patch is None
    # params: the files at each snapshot (b's subdirectory first), argv flags, the record's own
    assert report.params == {"bs": {"a": 32, "b": 64}, "depth": {"a": None, "b": 2},
                             "epochs": {"a": 3, "b": None}, "extra": {"a": 1, "b": None},
                             "lr": {"a": 0.1, "b": None}}
    assert report.data == {"d": {"a": "h1", "b": "h2"}}
    assert report.command == {"a": a.record.argv, "b": b.record.argv,
                              "span": {"at": 3, "a": ["32"], "b": ["64"]}}
    assert report.cwd == {"a": "", "b": "sub"}
    assert report.metrics == {
        "acc": {"a": 0.8, "b": 0.8, "delta": 0.0, "pct": 0.0},
        "loss": {"a": 0.5, "b": 0.25, "delta": -0.25, "pct": -50.0}}
    assert report.environment == {
        "backend": {"a": "local", "b": "ssh"},
        "host": {"a": "h1", "b": "h2"},
        "packages.new": {"a": None, "b": "2"},
        "packages.numpy": {"a": "1.0", "b": "1.1"},
        "packages.old": {"a": "1", "b": None},
        "platform": {"a": "linux", "b": "darwin"},
        "python": {"a": "3.11", "b": "3.12"},
        "target": {"a": "local", "b": "gpu"},
        "variables.ONLY_A": {"a": "a", "b": None},
        "variables.ONLY_B": {"a": None, "b": "b"},
        "variables.SEED": {"a": "1", "b": "2"},
    }
    assert report.bases == {"a": a.record.base, "b": b.record.base}
    assert report.to_dict()["environment"] == report.environment
    assert report.to_dict()["code"]["files"] == report.code.files


def test_runs_with_patch_carries_the_code_patch(grepo: Repo) -> None:
    a, b = two_runs(grepo)
    report = diff.runs(grepo, a, b, patch=True)
    assert report.code.patch == grepo.git("diff", a.record.snapshot, b.record.snapshot)


def test_runs_of_the_same_launch_report_nothing_changed(grepo: Repo) -> None:
    a, _ = two_runs(grepo)
    report = diff.runs(grepo, a, a)
    assert (report.a, report.b) == ("a-1", "a-1")
    assert report.code.files == [] and report.params == {} and report.data == {}
    assert report.command is None and report.cwd is None and report.bases is None
    assert report.environment == {}
    assert report.metrics == {
        "acc": {"a": 0.8, "b": 0.8, "delta": 0.0, "pct": 0.0},
        "loss": {"a": 0.5, "b": 0.5, "delta": 0.0, "pct": 0.0}}


def test_runs_without_results_compare_no_metrics_and_no_host(grepo: Repo) -> None:
    a = commit_run(grepo, record("a-1", grepo), None)
    b = commit_run(grepo, record("b-1", grepo), ok(loss=1.0))
    report = diff.runs(grepo, a, b)
    assert report.metrics == {"loss": {"a": None, "b": 1.0, "delta": None, "pct": None}}
    assert report.environment == {"host": {"a": None, "b": "h"}}
    back = diff.runs(grepo, b, a)
    assert back.metrics == {"loss": {"a": 1.0, "b": None, "delta": None, "pct": None}}
    assert back.environment == {"host": {"a": "h", "b": None}}


def test_packages_are_compared_only_when_their_lists_differ(grepo: Repo) -> None:
    pkgs = grepo.hash_object(b"numpy==1.0\n")
    env = Environment(python="3", platform="p", packages=pkgs)
    a = commit_run(grepo, record("a-1", grepo, env=env), ok())
    b = commit_run(grepo, record("b-1", grepo, env=replace(env, packages=None)), ok())
    assert diff.runs(grepo, a, b).environment == {"packages.numpy": {"a": "1.0", "b": None}}
    assert diff.runs(grepo, b, a).environment == {"packages.numpy": {"a": None, "b": "1.0"}}
    c = commit_run(grepo, record("c-1", grepo, env=env), ok())
    assert diff.runs(grepo, a, c).environment == {}


def with_packages(run: Run, packages: str | None) -> Run:
    """The run as if it had recorded this package list (diff reads only the record)."""
    return replace(run, record=replace(run.record, env=replace(run.record.env,
                                                               packages=packages)))


def test_a_package_list_that_is_no_blob_id_or_no_blob_reads_as_empty(grepo: Repo) -> None:
    pkgs = grepo.hash_object(b"numpy==1.0\nodd line\n")
    tree = grepo.git("rev-parse", "HEAD^{tree}").strip()
    a = commit_run(grepo, record("a-1", grepo), ok())
    a = with_packages(a, pkgs)
    for forged in ("--output=/tmp/x", "HEAD", pkgs[:20], pkgs.upper(), pkgs + "0", tree,
                   "0" * 40, ""):
        assert diff.runs(grepo, a, with_packages(a, forged)).environment == {
            "packages.numpy": {"a": "1.0", "b": None},
            "packages.odd line": {"a": "", "b": None}}, forged


def test_a_package_list_that_is_not_utf8_is_read_with_replacement_characters(
        grepo: Repo) -> None:
    a = commit_run(grepo, record("a-1", grepo), ok())
    latin1 = with_packages(a, grepo.hash_object(b"caf\xe9==1.0\nnumpy==1.0\n"))
    assert diff.runs(grepo, latin1, a).environment == {
        "packages.caf\ufffd": {"a": "1.0", "b": None},
        "packages.numpy": {"a": "1.0", "b": None}}


def test_a_package_list_over_4_mib_reads_as_empty(grepo: Repo) -> None:
    a = with_packages(commit_run(grepo, record("a-1", grepo), ok()),
                      grepo.hash_object(b"numpy==1.0\n"))
    huge = grepo.hash_object(b"numpy==2.0\n" + b"\n" * ((4 << 20) - 10))  # a byte over
    assert diff.runs(grepo, a, with_packages(a, huge)).environment == {
        "packages.numpy": {"a": "1.0", "b": None}}


def test_data_entries_compare_by_hash_whatever_their_form(grepo: Repo) -> None:
    a = commit_run(grepo, record("a-1", grepo, data={"d": {"hash": "h", "size": 1},
                                                     "plain": "p1", "nohash": {"size": 1}}),
                   ok())
    b = commit_run(grepo, record("b-1", grepo, data={"d": {"hash": "h", "size": 2},
                                                     "plain": "p2", "nohash": {"size": 2}}),
                   ok())
    assert diff.runs(grepo, a, b).data == {"plain": {"a": "p1", "b": "p2"}}
    c = commit_run(grepo, record("c-1", grepo, data=None), ok())
    assert diff.runs(grepo, a, c).data == {"d": {"a": "h", "b": None},
                                           "nohash": {"a": None, "b": None},
                                           "plain": {"a": "p1", "b": None}}


# -- a run against its base ---------------------------------------------------------------------
def test_against_base_shows_what_was_uncommitted_when_the_run_launched(grepo: Repo) -> None:
    commit_files(grepo, {"params.yaml": "lr: 0.1\n", "sub/params.yaml": "depth: 1\n",
                         "train.py": "v1\n"})
    base = grepo.git("rev-parse", "HEAD").strip()
    tree = uncommitted_tree(grepo, {"sub/params.yaml": "depth: 2\n", "train.py": "v2\n"})
    made = commit_run(grepo, record("a-1", grepo, cwd="sub", argv=["p", "--lr", "9"]),
                      ok(loss=1.0), tree=tree)
    report = diff.against_base(grepo, made)
    assert (report.a, report.b, report.against_base) == (base, "a-1", True)
    assert (report.code.a, report.code.b) == (base, made.record.snapshot)
    assert [f["path"] for f in report.code.files] == ["sub/params.yaml", "train.py"]
    assert report.code.patch is None
    assert report.params == {"depth": {"a": 1, "b": 2}}  # files only, in the run's directory
    assert report.data == {}
    # the run-only sections are left out
    assert report.command is None and report.cwd is None and report.bases is None
    assert report.metrics == {} and report.environment == {}
    with_patch = diff.against_base(grepo, made, patch=True)
    assert with_patch.code.patch == grepo.git("diff", base, made.record.snapshot)


def test_against_base_of_a_run_without_commits_compares_with_nothing(grepo: Repo) -> None:
    made = commit_run(grepo, record("a-1", grepo, base=None,
                                    data={"d": {"hash": "h1"}}), ok())
    report = diff.against_base(grepo, made)
    assert (report.a, report.b) == ("(no commits)", "a-1")
    assert report.code.a == grepo.empty_tree
    assert [f["path"] for f in report.code.files] == ["README.md"]
    assert report.data == {"d": {"a": None, "b": "h1"}}
    assert report.params == {}


def test_against_base_of_a_run_without_commits_reads_no_params_whatever_refs_exist(
        grepo: Repo) -> None:
    commit_files(grepo, {"params.yaml": "lr: 0.1\n"})
    git("branch", "None", cwd=grepo.root)  # a ref that "None" could name by accident
    made = commit_run(grepo, record("a-1", grepo, base=None), ok())
    assert diff.against_base(grepo, made).params == {"lr": {"a": None, "b": 0.1}}


def test_against_base_reads_the_base_params_of_the_run_directory(grepo: Repo) -> None:
    commit_files(grepo, {"params.yaml": "lr: 0.1\n"})
    tree = uncommitted_tree(grepo, {"params.yaml": "lr: 0.5\nnew: 1\n"})
    made = commit_run(grepo, record("a-1", grepo), ok(), tree=tree)
    report = diff.against_base(grepo, made)
    assert report.params == {"lr": {"a": 0.1, "b": 0.5}, "new": {"a": None, "b": 1}}


def test_against_base_without_dvc_or_recorded_data_reads_no_base_data(grepo: Repo) -> None:
    made = commit_run(grepo, record("a-1", grepo, data=None), ok())
    assert diff.against_base(grepo, made).data == {}


def test_against_base_compares_the_data_the_base_pins_in_a_dvc_project(grepo: Repo) -> None:
    commit_files(grepo, {".dvc/config": "", "data.dvc": (
        "outs:\n- md5: 0123456789abcdef0123456789abcdef\n  size: 3\n  path: data\n")})
    for pinned, recorded in (("0123456789abcdef0123456789abcdef", None),
                             ("0123456789abcdef0123456789abcdef",
                              {"data": {"hash": "ffffffffffffffffffffffffffffffff"}})):
        made = commit_run(grepo, record("a-1", grepo, data=recorded), ok())
        got = diff.against_base(grepo, made).data
        assert got == {"data": {"a": pinned, "b": (recorded or {}).get("data", {}).get(
            "hash")}}
    same = commit_run(grepo, record("a-1", grepo, data={
        "data": {"hash": "0123456789abcdef0123456789abcdef"}}), ok())
    assert diff.against_base(grepo, same).data == {}


def test_against_base_reads_recorded_data_against_the_base_outside_dvc(grepo: Repo) -> None:
    """Not a DVC project now, but the run recorded data: the base's version is read (none)."""
    made = commit_run(grepo, record("a-1", grepo, data={"d": {"hash": "h1"}}), ok())
    assert diff.against_base(grepo, made).data == {"d": {"a": None, "b": "h1"}}


def test_against_base_outside_dvc_reads_the_base_data_only_if_the_run_recorded_data(
        grepo: Repo) -> None:
    """No `.dvc/` here, yet the base has a `.dvc` file: a run that recorded data is compared
    with what the base pins; a run that recorded none is no DVC run, and shows no data."""
    pin = "0123456789abcdef0123456789abcdef"
    commit_files(grepo, {"data.dvc": f"outs:\n- md5: {pin}\n  size: 3\n  path: data\n"})
    recorded = commit_run(grepo, record("a-1", grepo, data={"data": {"hash": "f" * 32}}), ok())
    assert diff.against_base(grepo, recorded).data == {"data": {"a": pin, "b": "f" * 32}}
    plain = commit_run(grepo, record("b-1", grepo, data=None), ok())
    assert diff.against_base(grepo, plain).data == {}


def test_against_base_refuses_a_base_that_is_not_in_the_repository(grepo: Repo) -> None:
    missing = "0123456789ab" + "c" * 28
    made = commit_run(grepo, record("a-1", grepo, base=missing), ok())
    with pytest.raises(GitexpError) as err:
        diff.against_base(grepo, made)
    assert err.value.message == ("the base commit 0123456789ab of run a-1 is not in this "
                                 "repository")
    assert err.value.hint is not None and "git exp diff a-1 OTHER" in err.value.hint
    blob = grepo.hash_object(b"not a commit")
    with pytest.raises(GitexpError):
        diff.against_base(grepo, replace(made, record=replace(made.record, base=blob)))


def test_code_never_shows_the_results_directory_of_either_side(grepo: Repo) -> None:
    a = grepo.git("rev-parse", "HEAD").strip()
    b = commit_files(grepo, {f"{RESULTS_DIR}/result.json": "{}\n", "x.py": "1\n"})
    got = diff.code(grepo, b, a, patch=True)
    assert got.files == [{"path": "x.py", "added": 0, "deleted": 1}]
    assert got.patch is not None and RESULTS_DIR not in got.patch
