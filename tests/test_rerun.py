"""`git exp rerun`: same snapshot, argv, directory and data; `--check` verdicts; `--script`;
and the "already succeeded" notice before `git exp run`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import announced, assert_user_error, exp, exp_json, git

DETERMINISTIC = ("import json, sys\n"
                 "json.dump({'loss': 0.125, 'words': len(sys.argv) - 1, 'last': sys.argv[-1]},"
                 " open('metrics.json', 'w'))\n")
NOISY = ("import json, os, time\n"
         "json.dump({'loss': 0.125, 'noise': int.from_bytes(os.urandom(4), 'big'),"
         " 'clock': time.time()}, open('metrics.json', 'w'))\n")
# quotes, spaces, `$`, a backslash, a glob and a newline: nothing may be re-split or expanded
NASTY = ["it's", 'say "hi"', "$HOME and ${PATH}", "a\\b", "*", "two\nlines", "", "--lr=1e-3"]


def run_once(repo: Path, *argv: str, cwd: Path | None = None) -> str:
    return announced(exp("run", "--", *argv, cwd=cwd or repo))


def test_rerun_check_reproduces_a_deterministic_run(repo: Path) -> None:
    (repo / "sub").mkdir()
    (repo / "sub" / "train.py").write_text(DETERMINISTIC)
    original = run_once(repo, "python", "train.py", *NASTY, cwd=repo / "sub")
    first = exp_json("show", original, cwd=repo)
    assert first["result"]["metrics"]["last"] == "--lr=1e-3"
    # the work tree moves on: the rerun must not see any of this
    (repo / "sub" / "train.py").write_text("raise SystemExit(3)\n")
    (repo / "junk.txt").write_text("not in the snapshot\n")
    proc = exp("rerun", original, "--check", cwd=repo, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "reproduced" in proc.stdout and "NOT" not in proc.stdout
    assert "same metric loss: 0.125 -> 0.125" in proc.stdout
    (latest,) = exp_json("ls", "--where", f"rerun_of=={original}", cwd=repo)
    rec = latest["record"]
    assert rec["rerun_of"] == original and rec["argv"] == first["record"]["argv"]
    assert rec["cwd"] == "sub" and rec["base"] == first["record"]["base"]
    tree = lambda c: git("rev-parse", f"{c}^{{tree}}", cwd=repo).strip()  # noqa: E731
    parents = lambda c: git("rev-parse", f"{c}^@", cwd=repo).split()  # noqa: E731
    assert tree(latest["snapshot"]) == tree(first["snapshot"])
    assert parents(latest["snapshot"]) == parents(first["snapshot"])
    assert latest["result"]["check"]["reproduced"] is True
    # the verdict is in git (a verdict commit on the results commit, adding check.json), so ls
    # shows it from git alone
    blob = json.loads(git("show", f"{latest['commit']}:.gitexp-results/check.json", cwd=repo))
    assert blob["of"] == original
    assert git("rev-parse", f"{latest['commit']}^1", cwd=repo).strip() == latest["snapshot"]
    shutil.rmtree(repo / ".git" / "gitexp")
    line = next(ln for ln in exp("ls", cwd=repo).stdout.splitlines()
                if ln.startswith(latest["id"]))
    assert f"{original} (reproduced)" in line


def test_rerun_check_names_the_metrics_that_did_not_reproduce(repo: Path) -> None:
    (repo / "train.py").write_text(NOISY)
    original = run_once(repo, "python", "train.py")
    proc = exp("rerun", original, "--check", cwd=repo, check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "NOT reproduced" in proc.stdout
    assert "DIFF metric noise" in proc.stdout and "DIFF metric clock" in proc.stdout
    assert "same metric loss" in proc.stdout
    rerun_id = exp_json("ls", "--limit", "1", cwd=repo)[0]["id"]
    verdict = exp_json("show", rerun_id, cwd=repo)["result"]["check"]
    assert verdict["reproduced"] is False and verdict["metrics"]["clock"]["same"] is False
    assert "not reproduced" in exp("ls", "--where", "verdict=='not reproduced'",
                                   cwd=repo).stdout
    # tolerances are the user's: wide enough, even these agree
    wide = exp("rerun", original, "--check", "--atol", "1e12", cwd=repo, check=False)
    assert wide.returncode == 0, wide.stdout


def test_rerun_without_check_and_on_another_target(repo: Path) -> None:
    (repo / "train.py").write_text(DETERMINISTIC)
    git("config", "exp.target.elsewhere.backend", "local", cwd=repo)
    original = run_once(repo, "python", "train.py", "x")
    rerun_id = exp("rerun", original, "-t", "elsewhere", "-d", cwd=repo).stdout.strip()
    assert rerun_id != original
    from tests.helpers import wait_done

    done = wait_done(rerun_id, repo)
    assert done["record"]["target"] == "elsewhere" and done["status"] == "succeeded"
    assert done["result"]["check"] is None


def _python_without_gitexp(tmp_path: Path) -> dict[str, str]:
    """PATH with git and a plain python (not the venv's, which has gitexp), nothing else."""
    bin_dir = tmp_path / "auditor-bin"
    bin_dir.mkdir()
    base_python = getattr(sys, "_base_executable", sys.executable)
    (bin_dir / "python").symlink_to(base_python)
    (bin_dir / "git").symlink_to(shutil.which("git") or "/usr/bin/git")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHON"))}
    env["PATH"] = f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin"
    probe = subprocess.run(["python", "-c", "import gitexp"], env=env, capture_output=True,
                           check=False)
    assert probe.returncode != 0, "the auditor's python must not have gitexp"
    assert subprocess.run(["git", "exp", "--help"], env=env, capture_output=True,
                          check=False).returncode != 0, "git exp must not be on PATH"
    return env


def test_script_replays_the_run_in_a_fresh_clone_without_gitexp(repo: Path,
                                                                 tmp_path: Path) -> None:
    (repo / "sub").mkdir()
    (repo / "sub" / "train.py").write_text(DETERMINISTIC)
    original = run_once(repo, "python", "train.py", *NASTY, cwd=repo / "sub")
    metrics = exp_json("show", original, cwd=repo)["result"]["metrics"]
    script = exp("rerun", original, "--script", cwd=repo).stdout
    assert script.startswith("#!/bin/sh") and "gitexp run" not in script.split("exec", 1)[1]
    (tmp_path / "run.sh").write_text(script)
    env = _python_without_gitexp(tmp_path)
    clone = tmp_path / "clone"
    git("clone", "-q", str(repo), str(clone), cwd=tmp_path)
    proc = subprocess.run(["sh", str(tmp_path / "run.sh")], cwd=clone, env=env,
                          capture_output=True, text=True, check=False, timeout=60)
    assert proc.returncode == 0, proc.stderr
    replayed = json.loads((clone / "sub" / "metrics.json").read_text())
    assert replayed == metrics
    assert git("rev-parse", "HEAD", cwd=clone).strip() == exp_json(
        "show", original, cwd=repo)["snapshot"]
    # in an empty directory it clones first
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = subprocess.run(["sh", str(tmp_path / "run.sh")], cwd=empty, env=env,
                          capture_output=True, text=True, check=False, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((empty / f"run-{original}" / "sub" / "metrics.json").read_text()) == metrics


def test_already_succeeded_notice_and_force(repo: Path) -> None:
    (repo / "train.py").write_text(DETERMINISTIC)
    original = run_once(repo, "python", "train.py", "a b")
    again = exp("run", "--", "python", "train.py", "a b", cwd=repo, check=False)
    assert_user_error(again, original, "already", "loss=0.125", "--force")
    assert len(exp_json("ls", cwd=repo)) == 1  # nothing was launched
    # a different argv, directory or code is a different run
    exp("run", "--", "python", "train.py", "a", "b", cwd=repo)
    (repo / "train.py").write_text(DETERMINISTIC + "# changed\n")
    exp("run", "--", "python", "train.py", "a b", cwd=repo)
    assert len(exp_json("ls", cwd=repo)) == 3
    exp("run", "--force", "--", "python", "train.py", "a b", cwd=repo)
    assert len(exp_json("ls", cwd=repo)) == 4


def test_failed_runs_do_not_block_a_new_run(repo: Path) -> None:
    (repo / "train.py").write_text("raise SystemExit(2)\n")
    exp("run", "--", "python", "train.py", cwd=repo, check=False)
    exp("run", "--", "python", "train.py", cwd=repo, check=False)
    assert [r["status"] for r in exp_json("ls", cwd=repo)] == ["failed", "failed"]


def test_rerun_of_unknown_run(repo: Path) -> None:
    assert_user_error(exp("rerun", "nope", cwd=repo, check=False), "no run matches")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_check_compares_output_hashes_with_real_dvc(tmp_path: Path) -> None:
    from tests.test_data import make_dvc_repo

    remote = tmp_path / "dvc-remote"
    config = f"[core]\n    remote = store\n['remote \"store\"']\n    url = {remote}\n"
    proj = make_dvc_repo(tmp_path / "proj", {"labels.csv": "a\n"}, ["labels.csv"], config)
    (proj / "same.py").write_text("open('model.bin', 'wb').write(b'weights' * 100)\n")
    (proj / "noisy.py").write_text("import os\nopen('model.bin', 'wb').write(os.urandom(64))\n")
    git("add", "-A", cwd=proj)
    git("commit", "-qm", "scripts", cwd=proj)
    for script, code, word in (("same.py", 0, "same output model.bin"),
                               ("noisy.py", 1, "DIFF output model.bin")):
        exp("run", "--out", "model.bin", "--", "python", script, cwd=proj)
        original = exp_json("ls", "--limit", "1", cwd=proj)[0]["id"]
        proc = exp("rerun", original, "--check", cwd=proj, check=False)
        assert proc.returncode == code, proc.stdout + proc.stderr
        assert word in proc.stdout


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_script_pulls_the_recorded_data_with_dvc(tmp_path: Path) -> None:
    """The data step: a fresh clone has no data; the script `dvc pull`s the recorded version
    (DVC here is the auditor's own install, not gitexp)."""
    from tests.test_data import dvc_push, make_dvc_repo

    remote = tmp_path / "dvc-remote"
    config = f"[core]\n    remote = store\n['remote \"store\"']\n    url = {remote}\n"
    count = ("import json\njson.dump({'rows': len(open('data.csv').read().splitlines())}, "
             "open('metrics.json', 'w'))\n")
    proj = make_dvc_repo(tmp_path / "proj", {"data.csv": "a\n1\n2\n", "count.py": count},
                         ["data.csv"], config)
    dvc_push(proj)
    original = run_once(proj, "python", "count.py")
    assert exp_json("show", original, cwd=proj)["result"]["metrics"] == {"rows": 3}
    script = exp("rerun", original, "--script", cwd=proj).stdout
    assert "dvc pull -- data.csv" in script
    env = {**_python_without_gitexp(tmp_path), "DVC_NO_ANALYTICS": "1"}
    (tmp_path / "auditor-bin" / "dvc").symlink_to(Path(sys.executable).parent / "dvc")
    clone = tmp_path / "clone"
    git("clone", "-q", str(proj), str(clone), cwd=tmp_path)
    assert not (clone / "data.csv").exists()
    (tmp_path / "run.sh").write_text(script)
    proc = subprocess.run(["sh", str(tmp_path / "run.sh")], cwd=clone, env=env,
                          capture_output=True, text=True, check=False, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((clone / "metrics.json").read_text()) == {"rows": 3}


# Each call is the next in a series (a counter file outside the repository, so the snapshot
# is the same): the first run succeeds with loss 100, later ones get loss 100 + k (DRIFT) or
# the same loss but exit 3 (BREAKS).
SERIES = ("import json, pathlib, sys\n"
          "n = pathlib.Path(sys.argv[1])\n"
          "k = int(n.read_text()) if n.exists() else 0\n"
          "n.write_text(str(k + 1))\n"
          "drift = sys.argv[2] == 'drift'\n"
          "json.dump({'loss': 100.0 + k * drift}, open('metrics.json', 'w'))\n"
          "sys.exit(3 if k and not drift else 0)\n")


def test_rtol_is_relative_to_the_original_value(repo: Path, tmp_path: Path) -> None:
    (repo / "train.py").write_text(SERIES)
    original = run_once(repo, "python", "train.py", str(tmp_path / "n"), "drift")
    # loss 101 against 100: 1% off, beyond any absolute tolerance under 1
    proc = exp("rerun", original, "--check", "--rtol", "0.011", "--atol", "0.5", cwd=repo,
               check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "NOT" not in proc.stdout and "same metric loss: 100.0 -> 101.0" in proc.stdout
    # loss 102: 2% off, outside rtol=1.1% and atol=0.5 both
    proc = exp("rerun", original, "--check", "--rtol", "0.011", "--atol", "0.5", cwd=repo,
               check=False)
    assert proc.returncode == 1 and "DIFF metric loss: 100.0 -> 102.0" in proc.stdout, proc.stdout
    # loss 103 with atol alone: 3 > 0.5
    proc = exp("rerun", original, "--check", "--atol", "0.5", cwd=repo, check=False)
    assert proc.returncode == 1 and "NOT reproduced" in proc.stdout, proc.stdout


def test_a_rerun_that_ends_otherwise_is_not_reproduced_even_with_the_same_metrics(
        repo: Path, tmp_path: Path) -> None:
    (repo / "train.py").write_text(SERIES)
    original = run_once(repo, "python", "train.py", str(tmp_path / "n"), "breaks")
    proc = exp("rerun", original, "--check", "--atol", "1e12", cwd=repo, check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "NOT reproduced" in proc.stdout and "same metric loss: 100.0 -> 100.0" in proc.stdout
    assert "DIFF status succeeded -> failed" in proc.stdout
    rerun_id = exp_json("ls", "--limit", "1", cwd=repo)[0]["id"]
    verdict = exp_json("show", rerun_id, cwd=repo)["result"]["check"]
    assert verdict["reproduced"] is False
    assert verdict["status"] == {"a": "succeeded", "b": "failed", "same": False}


def test_the_script_fetches_from_origin_when_there_is_one(repo: Path) -> None:
    from gitexp.git import Repo
    from gitexp.service.rerun import default_remote

    assert default_remote(Repo.discover(repo)) == str(Repo.discover(repo).root)
    git("remote", "add", "origin", "https://example.com/team/project.git", cwd=repo)
    assert default_remote(Repo.discover(repo)) == "https://example.com/team/project.git"
    (repo / "train.py").write_text(DETERMINISTIC)
    run_id = run_once(repo, "python", "train.py")
    script = exp("rerun", run_id, "--script", cwd=repo).stdout
    assert "https://example.com/team/project.git" in script
