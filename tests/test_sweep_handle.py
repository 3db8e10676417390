"""Sweeps as one handle (`ls/cancel/plot/report/rm --sweep ID`, a prefix or suffix of the
id), `run --sweep` following every run, names that no run knows refused with the closest
ones, `show` with params and sweep, stable columns, and the exit codes of a run's ending."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from gitexp.errors import (
    EXIT_ALREADY_SUCCEEDED,
    EXIT_CANCELLED,
    EXIT_FAILED,
    EXIT_LOST,
    GitexpError,
    exit_for,
)
from gitexp.model import ids
from gitexp.service import where
from tests.helpers import assert_user_error, exp, exp_json, git, own_home, wait_done

# One worker builds the module's fixture, not each of them.
pytestmark = pytest.mark.xdist_group("sweep_handle")

TRAIN = """\
import sys, gitexp
x = int(sys.argv[1])
for step in range(2):
    print(f"x{x} step {step}", flush=True)
    gitexp.log(step=step, zeta=x, loss=x / 10 + step, acc=1 - x / 10)
print(f"x{x} no newline at the end", end="")
sys.exit(7 if x == 3 else 0)
"""
SLEEP = "import sys, time\nprint('start', sys.argv[1], flush=True)\ntime.sleep(60)\n"


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str, subprocess.
                                                             CompletedProcess[str]]:
    """A followed sweep x=1,2,3 (x=3 fails with 7), and a detached one x=4,5 of the same
    name: (repo, first sweep id, second sweep id, the followed `run`)."""
    from tests.conftest import make_repo

    root = tmp_path_factory.mktemp("swh")
    with own_home(root):  # module scope: the autouse HOME fixture is not up
        repo = make_repo(root / "repo", {"train.py": TRAIN})
        followed = exp("run", "-n", "grid", "--sweep", "x=1,2,3", "--", "python3", "train.py",
                       "{x}", cwd=repo, check=False)
        detached = exp("run", "-d", "-n", "grid", "--sweep", "x=4,5", "--", "python3",
                       "train.py", "{x}", cwd=repo)
        second = [wait_done(i, repo) for i in detached.stdout.split()]
        first = {r["record"]["sweep"] for r in exp_json("ls", cwd=repo)} - {
            second[0]["record"]["sweep"]}
    return repo, first.pop(), second[0]["record"]["sweep"], followed


def test_run_sweep_follows_every_run_and_exits_as_the_first_that_failed(swept) -> None:
    repo, first, _, proc = swept
    assert proc.returncode == 7, proc.stderr  # x=3's own exit code
    out = proc.stdout.splitlines()
    for x in (1, 2, 3):  # every line behind its point, the unterminated last one too
        assert f"x={x} | x{x} step 0" in out and f"x={x} | x{x} step 1" in out, out
        assert f"x={x} | x{x} no newline at the end" in out, out
    assert f"gitexp: sweep {first}: 2 succeeded, 1 failed" in proc.stderr
    assert "(x=3) failed (exit 7)" in proc.stderr
    statuses = {r["record"]["params"]["x"]: r["status"]
                for r in exp_json("ls", "--sweep", first, cwd=repo)}
    assert statuses == {"1": "succeeded", "2": "succeeded", "3": "failed"}


def test_a_sweep_is_named_by_any_unique_prefix_or_suffix(swept) -> None:
    repo, first, second, _ = swept
    # the shortest prefix the other sweep does not share (ids made in one minute differ
    # only in their random tail, which may begin alike)
    shared = next((n for n, (a, b) in enumerate(zip(first, second, strict=False))
                   if a != b), len(first))
    prefix = first[:shared + 1]
    for spec in (first[-4:], prefix, first):
        assert len(exp_json("ls", "--sweep", spec, cwd=repo)) == 3, spec
    assert len(exp_json("ls", "--sweep", second[-4:], cwd=repo)) == 2
    proc = exp("ls", "--sweep", "sweep-grid", cwd=repo, check=False)
    assert_user_error(proc, "'sweep-grid' matches 2 sweeps", first, second)
    assert_user_error(exp("ls", "--sweep", "nope", cwd=repo, check=False),
                      "no sweep matches 'nope'", "--columns run,sweep")
    # a sweep given where a run goes: said so
    assert_user_error(exp("show", first[-4:], cwd=repo, check=False),
                      f"no run matches '{first[-4:]}'", f"{first} is a sweep: give it with "
                      f"--sweep {first[-4:]}")


def test_rm_plot_and_report_take_a_sweep_and_where(swept, tmp_path: Path) -> None:
    repo, first, _, _ = swept
    proc = exp("rm", "--sweep", first[-4:], "--dry-run", cwd=repo)
    assert proc.stdout.count("would remove grid-") == 3, proc.stdout
    png = tmp_path / "p.png"
    proc = exp("plot", "--sweep", first[-4:], "--where", "x<3", "-m", "loss", "-o", str(png),
               cwd=repo)
    assert png.read_bytes().startswith(b"\x89PNG") and "of 2 run(s)" in proc.stderr
    page = tmp_path / "r.html"
    proc = exp("report", "--sweep", first[-4:], "--where", "status==succeeded", "-o",
               str(page), cwd=repo)
    assert "2 run(s)" in proc.stderr and page.read_text().count("grid-") >= 2
    proc = exp("report", "--where", "x>=4", "-o", str(page), cwd=repo)
    assert "2 run(s)" in proc.stderr  # --where alone: over every run
    assert_user_error(exp("report", "--sweep", first, "--where", "loss>99", "-o", str(page),
                          cwd=repo, check=False), "no run matches", "git exp ls --sweep")
    assert_user_error(exp("plot", "--where", "losss<1", cwd=repo, check=False),
                      "no field 'losss' in any run", "did you mean loss")
    assert_user_error(exp("plot", cwd=repo, check=False), "name the runs to plot", "--sweep")
    assert not list(repo.glob("*.png")) and not (repo / "runs.html").exists()


def test_unknown_names_are_refused_with_the_closest_known(swept) -> None:
    repo = swept[0]
    cases = [
        (("--where", "losss<1"), "no field 'losss' in any run", "did you mean loss?"),
        (("--sort", "-acx"), "no field 'acx'", "did you mean acc?"),
        (("--columns", "run,zetta"), "no field 'zetta'", "did you mean zeta?"),
        (("--where", "metrics.x<1"), "no field 'metrics.x'", "known: metrics acc, loss"),
        (("--where", "params.loss>1"), "no field 'params.loss'", "params x"),
        (("--where", "statsu==failed"), "no field 'statsu'", "did you mean status"),
    ]
    for args, *needles in cases:
        assert_user_error(exp("ls", *args, cwd=repo, check=False), *needles)
    # known: a field, a metric, a param (by bare or qualified name), an ls column
    assert len(exp_json("ls", "--where", "x>=2 and params.x<5 and metrics.loss<2 and "
                        "exit_code==0", cwd=repo)) == 2  # x=2, x=4
    exp("ls", "--sort", "-acc", "--columns", "run,by,rerun,sweep,zeta", cwd=repo)
    # a filter that matches nothing, with known names, is no error
    assert exp("ls", "--where", "loss>99", cwd=repo).stderr.strip() == "no runs match"


def test_show_prints_params_and_sweep_and_ls_columns_are_sorted(swept) -> None:
    repo, first, _, _ = swept
    (one,) = [r for r in exp_json("ls", "--sweep", first, cwd=repo)
              if r["record"]["params"]["x"] == "2"]
    out = exp("show", one["id"], cwd=repo).stdout
    assert f"sweep      {first}" in out
    params = out[out.index("\nparams\n"):]
    assert "  x = 2\n" in params, out
    assert exp_json("show", one["id"], cwd=repo)["params"] == {"x": "2"}
    headers = {exp("ls", cwd=repo).stdout.splitlines()[0] for _ in range(2)}
    assert len(headers) == 1 and headers.pop().split()[-3:] == ["acc", "loss", "zeta"]


def test_logs_follow_and_a_refused_duplicate_exit_with_their_codes(swept) -> None:
    repo, first, _, _ = swept
    by_x = {r["record"]["params"]["x"]: r["id"] for r in exp_json("ls", "--sweep", first,
                                                                   cwd=repo)}
    assert exp("logs", "-f", by_x["3"], cwd=repo, check=False).returncode == 7
    assert exp("logs", "-f", by_x["1"], cwd=repo).returncode == 0
    proc = exp("run", "--", "python3", "train.py", "1", cwd=repo, check=False)
    assert proc.returncode == EXIT_ALREADY_SUCCEEDED == 4
    assert_user_error(proc, f"run {by_x['1']} already ran this")


def test_cancel_a_sweep_stops_its_live_runs(repo: Path) -> None:
    (repo / "sleep.py").write_text(SLEEP)
    git("add", "sleep.py", cwd=repo)
    git("commit", "-qm", "sleep", cwd=repo)
    proc = exp("run", "-d", "--sweep", "x=1,2", "--", "python3", "sleep.py", "{x}", cwd=repo)
    run_ids = proc.stdout.split()
    sweep_id = exp_json("show", run_ids[0], cwd=repo)["record"]["sweep"]
    table = exp("ls", "--sweep", sweep_id, cwd=repo).stdout  # live and ours: not "elsewhere"
    assert "elsewhere" not in table and table.split("\n")[0].split()[-1] == "command", table
    proc = exp("cancel", "--sweep", sweep_id[-4:], cwd=repo)
    assert sorted(proc.stdout.split()) == sorted(["cancelling"] * 2 + run_ids), proc.stdout
    assert [wait_done(i, repo)["status"] for i in run_ids] == ["cancelled"] * 2
    assert exp("logs", "-f", run_ids[0], cwd=repo, check=False).returncode == EXIT_CANCELLED
    again = exp("cancel", "--sweep", sweep_id, cwd=repo)  # nothing live: said, no error
    assert "2 run(s) of the sweep already ended" in again.stderr and not again.stdout
    assert_user_error(exp("cancel", cwd=repo, check=False), "name the runs to stop")
    assert exp("rm", "--sweep", sweep_id, cwd=repo).stdout.count("removed") == 2
    assert exp_json("ls", cwd=repo) == []


def test_one_resolver_for_run_and_sweep_ids() -> None:
    known = ["train-1201-1344-k7qx", "train-1201-1345-abcd", "eval-1201-1346-k7qy"]
    assert ids.match("train-1201-1344-k7qx", known) == "train-1201-1344-k7qx"
    assert ids.match("k7qx", known) == "train-1201-1344-k7qx"  # suffix
    assert ids.match("eval", known) == "eval-1201-1346-k7qy"  # prefix
    assert ids.match("nope", known) is None and ids.match("", known) is None
    with pytest.raises(GitexpError, match=r"'train' matches 2 sweeps: train-1201-1344-k7qx, "
                                          r"train-1201-1345-abcd$"):
        ids.match("train", known, "sweep")


def test_exit_codes_of_a_runs_ending() -> None:
    assert exit_for("succeeded", 0) == 0
    assert exit_for("failed", 7) == 7
    assert exit_for("failed", None) == exit_for("failed", 0) == EXIT_FAILED
    assert exit_for("failed", -9) == 137  # killed by a signal: as a shell says it
    assert exit_for("failed", 300) == EXIT_FAILED
    assert exit_for("cancelled", -15) == EXIT_CANCELLED
    assert exit_for("lost", None) == EXIT_LOST
    assert len({0, EXIT_FAILED, 2, 3, EXIT_ALREADY_SUCCEEDED, EXIT_CANCELLED, EXIT_LOST}) == 7


def test_known_names_and_export_values() -> None:
    rows = [{"id": "a", "user": "u", "rerun_of": None, "metrics": {"loss": 0.123456789},
             "params": {"train.lr": 0.1}},
            {"id": "b", "user": "v", "rerun_of": "a", "metrics": {}, "params": {}}]
    where.check_names(["loss", "lr", "train.lr", "params.lr", "metrics.loss", "run", "by",
                       "status"], rows)
    with pytest.raises(GitexpError, match=r"no field 'metrics\.lr'"):
        where.check_names(["metrics.lr"], rows)
    where.check_names(["anything"], [])  # no run yet: nothing to be a typo of
    assert where.values(rows, ["run", "by", "rerun", "loss", "lr"]) == [
        ["a", "u", None, 0.123456789, 0.1], ["b", "v", "a", None, None]]
