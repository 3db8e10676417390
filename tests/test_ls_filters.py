"""`git exp ls --status/--target/--where/--sort/--limit/--columns`, and the --where parser."""

from __future__ import annotations

from pathlib import Path

import pytest

from gitexp.errors import GitexpError
from gitexp.model.params import from_argv
from gitexp.service.where import Query, compile_where, select
from tests.helpers import assert_user_error, exp, exp_json, git, own_home

# One worker builds the module's fixture, not each of them.
pytestmark = pytest.mark.xdist_group("ls_filters")

TRAIN = ("import json, sys\nlr = float(sys.argv[sys.argv.index('--lr') + 1])\n"
         "json.dump({'loss': round(lr * 10, 6), 'acc': round(1 - lr, 6)}, "
         "open('metrics.json', 'w'))\nsys.exit(1 if lr > 0.5 else 0)\n")


@pytest.fixture(scope="module")
def runs_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four runs: lr 0.001/0.01/0.1 succeed on `local`, lr 0.9 fails on target `other`; the
    repo also has a params.yaml (batch: 32) that the runs' snapshots carry."""
    from tests.conftest import make_repo

    root = tmp_path_factory.mktemp("ls")
    with own_home(root):  # module scope: the autouse HOME fixture is not up
        repo = make_repo(root / "repo", {"train.py": TRAIN,
                                         "params.yaml": "model:\n  batch: 32\n  depth: 4\n"})
        git("config", "exp.target.other.backend", "local", cwd=repo)
        for lr in ("0.001", "0.01", "0.1"):
            exp("run", "--", "python", "train.py", "--lr", lr, cwd=repo)
        (repo / "params.yaml").write_text("model:\n  batch: 64\n  depth: 4\n")
        exp("run", "-t", "other", "--", "python", "train.py", "--lr", "0.9", cwd=repo,
            check=False)
    return repo


def ids_for(repo: Path, *args: str) -> list[float]:
    return [r["record"]["argv"][-1] for r in exp_json("ls", *args, cwd=repo)]


def test_status_and_target_filters(runs_repo: Path) -> None:
    assert ids_for(runs_repo, "--status", "failed") == ["0.9"]
    assert sorted(ids_for(runs_repo, "--status", "succeeded,failed")) == [
        "0.001", "0.01", "0.1", "0.9"]
    assert ids_for(runs_repo, "--target", "other") == ["0.9"]
    assert len(ids_for(runs_repo, "--target", "local")) == 3


def test_where_over_metrics_argv_params_and_fields(runs_repo: Path) -> None:
    assert sorted(ids_for(runs_repo, "--where", "lr<0.05")) == ["0.001", "0.01"]
    assert ids_for(runs_repo, "--where", "loss >= 1 and status == succeeded") == ["0.1"]
    assert ids_for(runs_repo, "--where", "not (status=succeeded) or acc<0.5") == ["0.9"]
    # params.yaml at each run's snapshot, nested keys by full or leaf name
    assert ids_for(runs_repo, "--where", "model.batch == 64") == ["0.9"]
    assert len(ids_for(runs_repo, "--where", "batch==32 and depth=4")) == 3
    assert ids_for(runs_repo, "--where", "params.batch > 40") == ["0.9"]
    assert ids_for(runs_repo, "--where", "target=='other'") == ["0.9"]
    # a name no run has is refused (a typo), not matched against nothing
    assert_user_error(exp("ls", "--where", "nosuchthing > 1", cwd=runs_repo, check=False),
                      "no field 'nosuchthing' in any run")


def test_sort_limit_and_columns(runs_repo: Path) -> None:
    assert ids_for(runs_repo, "--sort", "-loss") == ["0.9", "0.1", "0.01", "0.001"]
    assert ids_for(runs_repo, "--sort", "acc", "--limit", "2") == ["0.9", "0.1"]
    assert ids_for(runs_repo, "--sort", "lr", "--status", "succeeded", "--limit", "1") == [
        "0.001"]
    out = exp("ls", "--columns", "run,status,lr,batch,loss", "--sort", "loss", cwd=runs_repo)
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["run", "status", "lr", "batch", "loss"]
    assert lines[1].split()[1:] == ["succeeded", "0.001", "32", "0.01"]
    assert lines[-1].split()[1:] == ["failed", "0.9", "64", "9"]
    assert "command" not in lines[0]


def test_default_table_shows_metrics(runs_repo: Path) -> None:
    header = exp("ls", cwd=runs_repo).stdout.splitlines()[0].split()
    assert header[:6] == ["run", "status", "target", "started", "duration", "command"]
    assert {"loss", "acc"} <= set(header)


def test_no_match_is_not_an_error(runs_repo: Path) -> None:
    proc = exp("ls", "--status", "lost", cwd=runs_repo)
    assert proc.stdout == "" and "no runs match" in proc.stderr


@pytest.mark.parametrize("bad", [
    "lr <", "lr 0.1", "(lr < 1", "lr < 1 and", "lr ~ 1", "__import__('os')", "lr < 1)",
    "and < 1",
])
def test_bad_where_is_one_clear_error(runs_repo: Path, bad: str) -> None:
    assert_user_error(exp("ls", "--where", bad, cwd=runs_repo, check=False),
                      "bad --where expression")


def test_bad_sort_and_limit(runs_repo: Path) -> None:
    assert_user_error(exp("ls", "--sort", "-", cwd=runs_repo, check=False), "cannot sort")
    assert_user_error(exp("ls", "--limit", "-1", cwd=runs_repo, check=False), "--limit")


# -- the parser, directly --------------------------------------------------------------------
ROWS = [
    {"id": "a", "status": "succeeded", "target": "local", "sweep": None, "launched_at": 3.0,
     "metrics": {"loss": 0.5, "note": "ok"}, "params": {"lr": 0.01, "opt": "adam"}},
    {"id": "b", "status": "failed", "target": "gpu", "sweep": None, "launched_at": 2.0,
     "metrics": {"loss": 2.0}, "params": {"lr": 0.1, "opt": "sgd"}},
    {"id": "c", "status": "succeeded", "target": "gpu", "sweep": None, "launched_at": 1.0,
     "metrics": {}, "params": {"lr": "0.001"}},
]


def pick(expr: str) -> list[str]:
    test = compile_where(expr)
    return [r["id"] for r in ROWS if test(r)]


def test_where_semantics() -> None:
    assert pick("lr < 0.05") == ["a", "c"]  # "0.001" from argv text compares as a number
    assert pick("opt == adam or opt == 'sgd'") == ["a", "b"]
    assert pick("loss > 1") == ["b"]
    assert pick("loss != 2") == ["a", "c"]  # c has no loss: different from 2
    assert pick("loss == null") == ["c"]
    assert pick("note == ok and not status == failed") == ["a"]
    assert pick("metrics.loss <= 0.5 and params.lr >= 0.01") == ["a"]
    assert pick("opt > 1") == []  # a string against a number: never true
    assert pick('id == "a" or (id == "b" and target == gpu)') == ["a", "b"]
    assert pick("lr < 1e-2") == ["c"]


def test_select_sorts_missing_values_last() -> None:
    assert [r["id"] for r in select(ROWS, Query(sort="-loss"))] == ["b", "a", "c"]
    assert [r["id"] for r in select(ROWS, Query(sort="loss"))] == ["a", "b", "c"]
    assert [r["id"] for r in select(ROWS, Query())] == ["a", "b", "c"]  # newest first
    assert [r["id"] for r in select(ROWS, Query(status=("succeeded",), limit=1))] == ["a"]


def test_where_never_evaluates_code() -> None:
    for bad in ("__import__('os').system('true')", "lr < (1)", "lr.__class__ < 1 1"):
        with pytest.raises(GitexpError):
            compile_where(bad)


def test_params_from_argv() -> None:
    argv = ["python", "t.py", "--lr", "3e-4", "--epochs=3", "--fast", "--name", "a b",
            "--shift", "-1", "pos", "--x=", "-v"]
    assert from_argv(argv) == {"lr": 3e-4, "epochs": 3, "fast": True, "name": "a b",
                               "shift": -1, "x": ""}


def test_ls_csv_and_tsv_export_every_digit_under_the_same_filters(runs_repo: Path) -> None:
    import csv
    import io

    out = exp("ls", "--csv", "--where", "status==succeeded", "--sort", "lr",
              "--columns", "run,status,lr,loss,acc,batch,exit_code,started", cwd=runs_repo)
    table = list(csv.reader(io.StringIO(out.stdout)))
    assert table[0] == ["run", "status", "lr", "loss", "acc", "batch", "exit_code", "started"]
    assert [row[1:7] for row in table[1:]] == [
        ["succeeded", "0.001", "0.01", "0.999", "32", "0"],
        ["succeeded", "0.01", "0.1", "0.99", "32", "0"],
        ["succeeded", "0.1", "1.0", "0.9", "32", "0"]]
    assert all(len(row[7]) == 24 and row[7][10] == "T" for row in table[1:])  # ISO 8601
    ids = [r["id"] for r in exp_json("ls", "--where", "status==succeeded", "--sort", "lr",
                                     cwd=runs_repo)]
    assert [row[0] for row in table[1:]] == ids

    tsv = exp("ls", "--tsv", "--status", "failed", "--columns", "lr,command",
              cwd=runs_repo).stdout.splitlines()
    assert tsv == ["lr\tcommand", "0.9\tpython train.py --lr 0.9"]
    assert exp("ls", "--csv", "--status", "queued", "--columns", "run,loss",
               cwd=runs_repo).stdout == "run,loss\n"  # no runs: the header alone


def test_export_cells_never_start_a_formula_or_carry_control_characters() -> None:
    from gitexp.cli._render import _cell

    assert _cell("command", "=HYPERLINK(\"http://x\")") == "'=HYPERLINK(\"http://x\")"
    assert _cell("command", "-m x") == "'-m x" and _cell("lr", -0.5) == "-0.5"
    assert "\x1b" not in _cell("name", "red\x1b[31m") and _cell("x", None) == ""
