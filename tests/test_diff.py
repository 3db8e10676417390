"""`git exp diff A B` and `git exp diff A`: every section, on real repositories."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.helpers import announced, exp, exp_json, git

TRAIN = ("import json, os, sys\n"
         "json.dump({'loss': float(sys.argv[sys.argv.index('--lr') + 1]) * 10, 'acc': 0.5,"
         " 'only_' + os.environ.get('WHICH', 'x'): 1}, open('metrics.json', 'w'))\n")


def run(repo: Path, *argv: str, env: dict[str, str] | None = None) -> str:
    return announced(exp("run", "--force", "--", *argv, cwd=repo, env=env))


def diff_json(repo: Path, *args: str) -> dict[str, Any]:
    data: dict[str, Any] = exp_json("diff", *args, cwd=repo)
    return data


def test_every_section_between_runs_on_different_base_commits(repo: Path) -> None:
    (repo / "train.py").write_text(TRAIN)
    (repo / "params.yaml").write_text("model:\n  depth: 4\n  width: 8\n")
    git("add", "-A", cwd=repo)
    git("commit", "-qm", "train", cwd=repo)
    a = run(repo, "python", "train.py", "--lr", "0.1", "--seed", "1",
            env={"WHICH": "a", "OMP_NUM_THREADS": "1"})
    # B: a new base commit, an uncommitted code change, other params, argv and env
    (repo / "params.yaml").write_text("model:\n  depth: 6\n  width: 8\n")
    git("commit", "-qam", "deeper", cwd=repo)
    (repo / "train.py").write_text(TRAIN + "# tuned\n")
    (repo / "notes.txt").write_text("untracked, so in the snapshot\n")
    b = run(repo, "python", "train.py", "--lr", "0.2", "--seed", "1",
            env={"WHICH": "b", "OMP_NUM_THREADS": "2"})
    d = diff_json(repo, a, b)
    ra, rb = (exp_json("show", x, cwd=repo) for x in (a, b))
    assert d["command"] == {"a": ra["record"]["argv"], "b": rb["record"]["argv"],
                            "span": {"at": 3, "a": ["0.1"], "b": ["0.2"]}}
    assert d["params"] == {"lr": {"a": 0.1, "b": 0.2}, "model.depth": {"a": 4, "b": 6}}
    assert d["bases"] == {"a": ra["record"]["base"], "b": rb["record"]["base"]}
    assert d["data"] == {}
    paths = {f["path"]: f for f in d["code"]["files"]}
    assert set(paths) == {"params.yaml", "train.py", "notes.txt"}
    assert paths["train.py"] == {"path": "train.py", "added": 1, "deleted": 0}
    assert d["code"]["a"] == ra["snapshot"] and d["code"]["b"] == rb["snapshot"]
    assert "3 files changed" in d["code"]["stat"] and d["code"]["patch"] is None
    m = d["metrics"]
    assert m["loss"] == {"a": 1.0, "b": 2.0, "delta": 1.0, "pct": 100.0}
    assert m["acc"] == {"a": 0.5, "b": 0.5, "delta": 0.0, "pct": 0.0}
    assert m["only_a"] == {"a": 1, "b": None, "delta": None, "pct": None}
    assert m["only_b"]["b"] == 1
    assert d["environment"] == {"variables.OMP_NUM_THREADS": {"a": "1", "b": "2"}}
    # the text report has the same sections
    text = exp("diff", a, b, cwd=repo).stdout
    for needle in ("command", "--lr 0.1", "--lr 0.2", "from argument 3: 0.1 -> 0.2",
                   "params", "lr: 0.1 -> 0.2", "model.depth: 4 -> 6", "no inputs", "code (",
                   "train.py", "notes.txt",
                   "metrics", "loss: 1 -> 2  (+1, +100.00%)", "environment",
                   "variables.OMP_NUM_THREADS: 1 -> 2", "base commit"):
        assert needle in text, (needle, text)


def test_patch_shows_code_and_never_result_files(repo: Path) -> None:
    (repo / "train.py").write_text(TRAIN)
    a = run(repo, "python", "train.py", "--lr", "0.1")
    (repo / "train.py").write_text(TRAIN.replace("0.5", "0.75"))
    b = run(repo, "python", "train.py", "--lr", "0.1")
    for run_id in (a, b):  # both written back: their refs point at results commits
        assert git("ls-tree", "--name-only", f"refs/experiments/{run_id}", ".gitexp-results",
                   cwd=repo).strip() == ".gitexp-results"
    patch = exp("diff", a, b, "--patch", cwd=repo).stdout
    assert "-json.dump({'loss'" in patch and "'acc': 0.75" in patch
    assert ".gitexp-results" not in patch
    stat = exp("diff", a, b, cwd=repo).stdout
    assert "train.py | 2 +-" in stat and ".gitexp-results" not in stat and "@@" not in stat
    d = diff_json(repo, a, b, "--patch")
    assert d["command"] is None and d["params"] == {}
    assert "'acc': 0.75" in d["code"]["patch"] and ".gitexp-results" not in d["code"]["patch"]


def test_diff_against_the_base_commit_shows_what_was_uncommitted(repo: Path) -> None:
    (repo / "train.py").write_text(TRAIN)
    (repo / "params.yaml").write_text("lr_decay: 0.9\n")
    git("add", "-A", cwd=repo)
    git("commit", "-qm", "train", cwd=repo)
    (repo / "params.yaml").write_text("lr_decay: 0.5\n")  # same size, same second: racy git
    (repo / "extra.py").write_text("print('new')\n")
    a = run(repo, "python", "train.py", "--lr", "0.1")
    base = git("rev-parse", "HEAD", cwd=repo).strip()
    d = diff_json(repo, a)
    assert d["against_base"] is True and d["a"] == base and d["b"] == a
    assert {f["path"] for f in d["code"]["files"]} == {"params.yaml", "extra.py"}
    assert d["params"] == {"lr_decay": {"a": 0.9, "b": 0.5}}
    assert d["metrics"] == {} and d["environment"] == {} and d["command"] is None
    text = exp("diff", a, "--patch", cwd=repo).stdout
    assert "+print('new')" in text and "-lr_decay: 0.9" in text
    # nothing uncommitted: the same code
    git("add", "-A", cwd=repo)
    git("commit", "-qm", "all", cwd=repo)
    clean = run(repo, "python", "train.py", "--lr", "0.1")
    assert diff_json(repo, clean)["code"]["files"] == []
    assert "(same code)" in exp("diff", clean, cwd=repo).stdout


def test_diff_of_an_unknown_run(repo: Path) -> None:
    from tests.helpers import assert_user_error

    assert_user_error(exp("diff", "nope", cwd=repo, check=False), "no run matches")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_runs_that_differ_only_in_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Real DVC: the same code and command, two versions of a DVC-tracked file."""
    from tests.test_data import dvc_add, make_dvc_repo, md5

    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")
    show = "import json\njson.dump({'rows': len(open('data.csv').read().splitlines())}, " \
           "open('metrics.json', 'w'))\n"
    proj = make_dvc_repo(tmp_path / "proj", {"data.csv": "a\n1\n", "count.py": show},
                         ["data.csv"])
    a = run(proj, "python", "count.py")
    (proj / "data.csv").write_text("a\n1\n2\n3\n")
    dvc_add(proj, "data.csv")
    b = run(proj, "python", "count.py")
    old, new = md5(b"a\n1\n"), md5(b"a\n1\n2\n3\n")
    d = diff_json(proj, a, b)
    assert d["data"] == {"data.csv": {"a": old, "b": new}}
    assert d["command"] is None and d["params"] == {}
    assert [f["path"] for f in d["code"]["files"]] == ["data.csv.dvc"]  # the pointer only
    assert d["metrics"]["rows"] == {"a": 2, "b": 4, "delta": 2, "pct": 100.0}
    text = exp("diff", a, b, cwd=proj).stdout
    assert f"data.csv: {old} -> {new}" in text
    # against its base: B's data differs from what the base commit pins
    base = diff_json(proj, b)
    assert base["data"] == {"data.csv": {"a": old, "b": new}}


def test_percent_change_is_relative_to_the_size_of_a_negative_baseline(repo: Path) -> None:
    """-2 -> -1 went up by half the baseline's size: +50%, not -50% (the sign is delta's)."""
    (repo / "train.py").write_text(
        "import json, sys\njson.dump({'score': float(sys.argv[1])}, open('metrics.json', 'w'))\n")
    a, b, c = (run(repo, "python", "train.py", v) for v in ("-2", "-1", "-3"))
    assert diff_json(repo, a, b)["metrics"]["score"] == {"a": -2.0, "b": -1.0, "delta": 1.0,
                                                         "pct": 50.0}
    assert diff_json(repo, a, c)["metrics"]["score"]["pct"] == -50.0
    assert "score: -2 -> -1  (+1, +50.00%)" in exp("diff", a, b, cwd=repo).stdout
    assert "score: -2 -> -3  (-1, -50.00%)" in exp("diff", a, c, cwd=repo).stdout
