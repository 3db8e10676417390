"""gitexp's git hooks, exercised with real `git commit` / `git push` in real repositories:
tags and trailers for commits of what ran, coexistence with other hooks (the user's own,
pre-commit's), core.hooksPath, linked worktrees, and never breaking the user's git."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from gitexp.hooks.install import HOOKS, LEGACY_SUFFIX, MARKER
from tests.helpers import assert_user_error, exp, exp_json, git, wait_done

LOG_METRICS = "import gitexp; gitexp.log(step=1, loss=0.25, acc=0.5)"


def launch(repo: Path, code: str = LOG_METRICS) -> str:
    """A real run on the local target, finished; returns its id."""
    # A fresh comment each time: an identical command on identical code is not rerun.
    code += f"  # {uuid.uuid4().hex[:8]}"
    run_id = exp("run", "-d", "--", sys.executable, "-c", code, cwd=repo).stdout.strip()
    assert wait_done(run_id, repo)["status"] == "succeeded"
    return run_id


def commit(repo: Path, message: str = "work", *extra: str) -> subprocess.CompletedProcess[str]:
    """`git add -A && git commit`, returning git's output (the hooks write to stderr)."""
    git("add", "-A", cwd=repo)
    proc = subprocess.run(["git", "commit", "-m", message, *extra], cwd=repo,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc


def tag_target(repo: Path, run_id: str) -> str | None:
    out = git("rev-parse", "-q", "--verify", f"refs/tags/exp/{run_id}^{{commit}}", cwd=repo,
              check=False).strip()
    return out or None


def message(repo: Path, rev: str = "HEAD") -> str:
    return git("log", "-1", "--format=%B", rev, cwd=repo)


def user_hook(path: Path, text: str, mode: int = 0o750) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path.read_bytes()


def snapshot_of(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), stat.S_IMODE(p.lstat().st_mode))
            for p in sorted(folder.iterdir()) if p.is_file()}


# -- tags and trailers -------------------------------------------------------------------------
def test_commit_of_what_ran_is_tagged_and_gets_a_trailer(repo: Path):
    exp("hooks", "install", cwd=repo)
    (repo / "train.py").write_text("print('v2')\n")
    run_id = launch(repo)

    proc = commit(repo, "try v2")

    head = git("rev-parse", "HEAD", cwd=repo).strip()
    assert tag_target(repo, run_id) == head
    assert git("cat-file", "-t", f"refs/tags/exp/{run_id}", cwd=repo).strip() == "commit"
    assert f"tag: exp/{run_id}" in git("log", "-1", "--decorate", cwd=repo)
    trailers = git("interpret-trailers", "--parse", input=message(repo).encode(), cwd=repo)
    assert trailers == f"Experiment-Run: {run_id} (succeeded, acc=0.5, loss=0.25)\n"
    assert f"gitexp: tagged {head[:10]} exp/{run_id}" in proc.stderr

    # A commit of anything else is left alone.
    (repo / "train.py").write_text("print('v3')\n")
    commit(repo, "v3, never ran")
    assert "Experiment-Run" not in message(repo)
    assert git("tag", "--points-at", "HEAD", cwd=repo) == ""


def test_annotated_tag_carries_the_final_metrics(repo: Path):
    exp("hooks", "install", cwd=repo)
    git("config", "exp.hooks.annotate", "true", cwd=repo)
    (repo / "a.txt").write_text("a\n")
    run_id = launch(repo)
    commit(repo)
    assert git("cat-file", "-t", f"refs/tags/exp/{run_id}", cwd=repo).strip() == "tag"
    body = git("tag", "-l", "--format=%(contents)", f"exp/{run_id}", cwd=repo)
    assert f"gitexp run {run_id}: succeeded" in body and "loss = 0.25" in body


def test_trailer_switch_and_metric_choice(repo: Path):
    exp("hooks", "install", cwd=repo)
    (repo / "a.txt").write_text("a\n")
    run_id = launch(repo)
    git("config", "exp.hooks.trailer", "false", cwd=repo)
    commit(repo)
    assert "Experiment-Run" not in message(repo)
    assert tag_target(repo, run_id)  # tagging is independent of the trailer

    git("config", "exp.hooks.trailer", "true", cwd=repo)
    git("config", "exp.hooks.metrics", "loss", cwd=repo)
    git("commit", "--amend", "--no-edit", "-q", cwd=repo)
    assert f"Experiment-Run: {run_id} (succeeded, loss=0.25)" in message(repo)


def test_amend_keeps_one_trailer_and_takes_the_tag_along(repo: Path):
    exp("hooks", "install", cwd=repo)
    (repo / "a.txt").write_text("a\n")
    run_id = launch(repo)
    commit(repo, "first try")
    first = git("rev-parse", "HEAD", cwd=repo).strip()

    git("commit", "--amend", "--no-edit", "-q", cwd=repo)
    git("commit", "--amend", "-q", "-m", message(repo).replace("first try", "better words"),
        cwd=repo)

    amended = git("rev-parse", "HEAD", cwd=repo).strip()
    assert amended != first
    assert message(repo).count("Experiment-Run:") == 1 and "better words" in message(repo)
    assert tag_target(repo, run_id) == amended

    # An amend that changes the tree: the trailer goes, the tag stays with what ran.
    (repo / "a.txt").write_text("changed after the run\n")
    git("add", "-A", cwd=repo)
    git("commit", "--amend", "--no-edit", "-q", cwd=repo)
    assert "Experiment-Run" not in message(repo)
    assert tag_target(repo, run_id) == amended


def test_merge_commit_gets_no_trailer_but_is_tagged(repo: Path):
    exp("hooks", "install", cwd=repo)
    git("checkout", "-qb", "side", cwd=repo)
    (repo / "side.txt").write_text("side\n")
    commit(repo, "side")
    git("checkout", "-q", "main", cwd=repo)
    (repo / "main.txt").write_text("main\n")
    commit(repo, "main")
    git("merge", "--no-ff", "--no-commit", "side", cwd=repo)
    run_id = launch(repo)  # runs exactly the merge result

    git("commit", "--no-edit", "-q", cwd=repo)

    assert len(git("rev-list", "--parents", "-1", "HEAD", cwd=repo).split()) == 3
    assert "Experiment-Run" not in message(repo)
    assert tag_target(repo, run_id) == git("rev-parse", "HEAD", cwd=repo).strip()


def test_the_run_cache_sees_runs_added_after_it_was_written(repo: Path):
    exp("hooks", "install", cwd=repo)
    refs_dir = repo / ".git" / "refs" / "experiments"
    cache = repo / ".git" / "gitexp" / "hook-trees"
    launch(repo)
    long_ago = time.time() - 600
    os.utime(refs_dir, (long_ago, long_ago))  # old enough for the cache to trust its stamp
    commit(repo, "warm the cache", "--allow-empty")
    assert cache.read_text().splitlines()[0] != "stamp -"

    (repo / "a.txt").write_text("a\n")
    run_id = launch(repo)
    # The new run looks old too: only the changed stamp (not the racy-time rule) shows it.
    os.utime(refs_dir, (long_ago + 1, long_ago + 1))
    commit(repo)
    assert tag_target(repo, run_id)
    assert f" {run_id}\n" in cache.read_text()


def test_partial_and_all_commits_use_the_tree_being_committed(repo: Path):
    exp("hooks", "install", cwd=repo)
    (repo / "README.md").write_text("edited\n")
    run_id = launch(repo)
    # `commit -a` commits through a temporary index: the trailer must see that one.
    proc = subprocess.run(["git", "commit", "-qam", "all"], cwd=repo, capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert f"Experiment-Run: {run_id}" in message(repo)
    assert tag_target(repo, run_id) == git("rev-parse", "HEAD", cwd=repo).strip()


# -- coexistence, install and uninstall ----------------------------------------------------------
def test_user_hooks_still_run_and_uninstall_restores_their_bytes(repo: Path, tmp_path: Path):
    hooks = repo / ".git" / "hooks"
    trace = tmp_path / "trace"
    originals = {
        "post-commit": user_hook(hooks / "post-commit",
                                 f"#!/bin/sh\necho user-post-commit >> {trace}\n"),
        "pre-push": user_hook(hooks / "pre-push", textwrap.dedent(f"""\
            #!/bin/sh
            # a user's pre-push that reads what git sends on stdin
            while read local_ref local_sha remote_ref remote_sha; do
                echo "user-pre-push $local_ref" >> {trace}
            done
            """), mode=0o700),
    }
    before = snapshot_of(hooks)

    exp("hooks", "install", cwd=repo)
    assert (hooks / f"post-commit{LEGACY_SUFFIX}").read_bytes() == originals["post-commit"]
    assert all(MARKER in (hooks / h).read_text() for h in HOOKS)
    status = exp("hooks", "status", cwd=repo).stdout
    assert f"post-commit{LEGACY_SUFFIX}" in status

    (repo / "a.txt").write_text("a\n")
    run_id = launch(repo)
    commit(repo)
    remote = tmp_path / "remote.git"
    git("init", "-q", "--bare", str(remote), cwd=tmp_path)
    git("push", "-q", str(remote), "main", cwd=repo)

    assert trace.read_text().splitlines() == ["user-post-commit", "user-pre-push refs/heads/main"]
    assert tag_target(repo, run_id)
    assert git("rev-parse", f"refs/experiments/{run_id}", cwd=remote).strip()

    exp("hooks", "uninstall", cwd=repo)
    assert snapshot_of(hooks) == before
    assert "not installed" in exp("hooks", "status", cwd=repo).stdout


def test_install_twice_is_an_update_not_a_second_wrap(repo: Path):
    hooks = repo / ".git" / "hooks"
    original = user_hook(hooks / "post-commit", "#!/bin/sh\nexit 0\n")
    exp("hooks", "install", cwd=repo)
    exp("hooks", "install", cwd=repo)
    assert (hooks / f"post-commit{LEGACY_SUFFIX}").read_bytes() == original
    exp("hooks", "uninstall", cwd=repo)
    assert (hooks / "post-commit").read_bytes() == original
    assert not (hooks / f"post-commit{LEGACY_SUFFIX}").exists()


def test_a_failing_earlier_hook_still_stops_the_commit(repo: Path):
    user_hook(repo / ".git" / "hooks" / "prepare-commit-msg", "#!/bin/sh\nexit 1\n")
    exp("hooks", "install", cwd=repo)
    (repo / "a.txt").write_text("a\n")
    git("add", "-A", cwd=repo)
    assert subprocess.run(["git", "commit", "-qm", "x"], cwd=repo, capture_output=True,
                          check=False).returncode != 0


PRE_COMMIT_CONFIG = """\
repos:
- repo: local
  hooks:
  - id: trace
    name: trace
    language: system
    entry: sh -c 'echo pre-commit >> {trace}' --
    always_run: true
    pass_filenames: false
    stages: [pre-push, post-commit, prepare-commit-msg]
"""


@pytest.mark.parametrize("order", ["pre-commit first", "gitexp first"])
def test_pre_commit_framework_hooks_run_alongside(repo: Path, tmp_path: Path, order: str):
    """pre-commit's real installed stubs, installed before or after ours."""
    trace = tmp_path / "trace"
    (repo / ".pre-commit-config.yaml").write_text(PRE_COMMIT_CONFIG.format(trace=trace))
    commit(repo, "pre-commit config")
    hooks = repo / ".git" / "hooks"
    pre_commit = [str(Path(sys.executable).parent / "pre-commit"), "install",
                  "-t", "pre-push", "-t", "post-commit", "-t", "prepare-commit-msg"]
    if order == "pre-commit first":
        subprocess.run(pre_commit, cwd=repo, check=True, capture_output=True)
        before = snapshot_of(hooks)
        exp("hooks", "install", cwd=repo)
    else:
        before = snapshot_of(hooks)
        exp("hooks", "install", cwd=repo)
        subprocess.run(pre_commit, cwd=repo, check=True, capture_output=True)
    trace.unlink(missing_ok=True)

    (repo / "a.txt").write_text("a\n")
    run_id = launch(repo)
    commit(repo)
    remote = tmp_path / "remote.git"
    git("init", "-q", "--bare", str(remote), cwd=tmp_path)
    push = subprocess.run(["git", "push", "-q", str(remote), "main"], cwd=repo,
                          capture_output=True, text=True, check=False)
    assert push.returncode == 0, push.stderr

    ran = trace.read_text()
    assert ran.count("pre-commit") == 3, ran  # prepare-commit-msg, post-commit, pre-push
    assert f"Experiment-Run: {run_id}" in message(repo)
    assert tag_target(repo, run_id)
    assert git("rev-parse", f"refs/experiments/{run_id}", cwd=remote).strip()

    exp("hooks", "uninstall", cwd=repo)
    if order == "pre-commit first":
        assert snapshot_of(hooks) == before
    else:
        assert not any(MARKER in p.read_text() for p in hooks.iterdir() if p.is_file())


def test_core_hooks_path_is_honoured(repo: Path, tmp_path: Path):
    shared = tmp_path / "team-hooks"
    trace = tmp_path / "trace"
    original = user_hook(shared / "post-commit", f"#!/bin/sh\necho team >> {trace}\n")
    git("config", "core.hooksPath", str(shared), cwd=repo)

    exp("hooks", "install", cwd=repo)
    assert MARKER in (shared / "post-commit").read_text()
    assert not any(MARKER in p.read_text() for p in (repo / ".git" / "hooks").iterdir())

    (repo / "a.txt").write_text("a\n")
    run_id = launch(repo)
    commit(repo)
    assert trace.read_text() == "team\n" and tag_target(repo, run_id)

    exp("hooks", "uninstall", cwd=repo)
    assert sorted(p.name for p in shared.iterdir()) == ["post-commit"]
    assert (shared / "post-commit").read_bytes() == original


def test_relative_core_hooks_path_is_relative_to_the_work_tree(repo: Path):
    from gitexp.git import Repo
    from gitexp.hooks.install import hooks_dir

    git("config", "core.hooksPath", ".githooks", cwd=repo)
    (repo / "sub").mkdir()
    assert hooks_dir(Repo.discover(repo / "sub")) == (repo / ".githooks").resolve()


def test_linked_worktree_uses_the_common_hooks(repo: Path, tmp_path: Path):
    worktree = tmp_path / "wt"
    git("worktree", "add", "-q", "-b", "feature", str(worktree), cwd=repo)
    hooks = repo / ".git" / "hooks"
    before = snapshot_of(hooks)

    exp("hooks", "install", cwd=worktree)
    assert MARKER in (hooks / "post-commit").read_text()

    (worktree / "feature.txt").write_text("f\n")
    run_id = launch(worktree)
    commit(worktree, "feature")
    assert tag_target(repo, run_id) == git("rev-parse", "feature", cwd=repo).strip()
    assert f"Experiment-Run: {run_id}" in message(repo, "feature")

    exp("hooks", "uninstall", cwd=worktree)
    assert snapshot_of(hooks) == before


# -- never break the user's git --------------------------------------------------------------------
def _throwaway_venv(where: Path) -> tuple[Path, Path]:
    """A venv with its own copy of gitexp in site-packages, as a wheel install leaves it
    (its dependencies come from this venv through a .pth file). Returns (python, package)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True)
    site = next(where.glob("lib/python*/site-packages"))
    package = site / "gitexp"
    shutil.copytree(Path(__file__).resolve().parents[1] / "src" / "gitexp", package,
                    ignore=shutil.ignore_patterns("__pycache__"))
    deps = [p for p in map(Path, sys.path) if p.name == "site-packages" and p.is_dir()]
    (site / "deps.pth").write_text("".join(f"{p}\n" for p in deps))
    return where / "bin" / "python", package


@pytest.mark.parametrize("gone", ["gitexp uninstalled", "venv deleted"])
def test_hook_whose_gitexp_is_gone_says_so_in_one_line(repo: Path, tmp_path: Path, gone: str):
    venv = tmp_path / "venv"
    python, package = _throwaway_venv(venv)
    subprocess.run([str(python), "-m", "gitexp", "hooks", "install"], cwd=repo, check=True,
                   capture_output=True)
    assert str(package) in (repo / ".git" / "hooks" / "post-commit").read_text()
    (repo / "a.txt").write_text("a\n")
    run_id = launch(repo)
    commit(repo, "works while installed")
    assert tag_target(repo, run_id)

    shutil.rmtree(venv if gone == "venv deleted" else package)  # what `pip uninstall` does

    (repo / "a.txt").write_text("b\n")
    proc = commit(repo, "goes on")

    assert message(repo).strip() == "goes on"
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("gitexp:")]
    assert len(lines) == 2, proc.stderr  # prepare-commit-msg and post-commit, one line each
    assert all("git exp hooks install" in ln for ln in lines)
    assert "Traceback" not in proc.stderr
    if gone == "venv deleted":
        assert "gone" in exp("hooks", "status", cwd=repo).stdout


def test_an_internal_error_is_one_warning_and_the_commit_goes_on(repo: Path):
    exp("hooks", "install", cwd=repo)
    (repo / "a.txt").write_text("a\n")
    git("add", "-A", cwd=repo)
    # A run ref whose record cannot be read, for exactly the tree about to be committed.
    tree = git("write-tree", cwd=repo).strip()
    bogus = git("commit-tree", tree, "-m", "gitexp run bogus-1\n\nnot json", cwd=repo).strip()
    git("update-ref", "refs/experiments/bogus-1", bogus, cwd=repo)
    (repo / ".git" / "gitexp" / "hook-trees").mkdir(parents=True)  # nor can the cache be written

    proc = commit(repo, "still commits")

    assert message(repo).strip() == "still commits"
    warnings = [ln for ln in proc.stderr.splitlines() if "skipped" in ln]
    assert warnings == [f"gitexp: {hook} hook skipped: run bogus-1 has an unreadable record"
                        for hook in ("prepare-commit-msg", "post-commit")], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not tag_target(repo, "bogus-1")  # a run not proven the user's is never tagged


def test_a_failing_run_push_warns_and_the_users_push_goes_on(repo: Path, tmp_path: Path):
    remote = tmp_path / "remote.git"
    git("init", "-q", "--bare", str(remote), cwd=tmp_path)
    user_hook(remote / "hooks" / "update",  # the server refuses run refs only
              '#!/bin/sh\ncase "$1" in refs/experiments/*) exit 1;; esac\nexit 0\n', 0o755)
    exp("hooks", "install", cwd=repo)
    launch(repo)

    proc = subprocess.run(["git", "push", str(remote), "main"], cwd=repo, capture_output=True,
                          text=True, check=False)

    assert proc.returncode == 0, proc.stderr
    assert git("rev-parse", "main", cwd=remote) == git("rev-parse", "main", cwd=repo)
    warnings = [ln for ln in proc.stderr.splitlines() if ln.startswith("gitexp:")]
    assert len(warnings) == 1 and "not pushed" in warnings[0], proc.stderr


def test_push_runs_switch_off(repo: Path, tmp_path: Path):
    remote = tmp_path / "remote.git"
    git("init", "-q", "--bare", str(remote), cwd=tmp_path)
    exp("hooks", "install", cwd=repo)
    git("config", "exp.hooks.pushRuns", "false", cwd=repo)
    launch(repo)
    git("push", "-q", str(remote), "main", cwd=repo)
    assert git("for-each-ref", "refs/experiments/", cwd=remote) == ""


def test_hook_callback_imports_nothing_heavy():
    code = ("import sys, gitexp.hooks.run; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('typer', 'rich', 'click', 'pathlib') or m in ('gitexp.service.runs', 'gitexp.git')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    assert out.stdout.strip() == "[]"


def test_install_refuses_to_guess_between_two_foreign_hooks(repo: Path):
    hooks = repo / ".git" / "hooks"
    user_hook(hooks / "post-commit", "#!/bin/sh\necho one\n")
    user_hook(hooks / f"post-commit{LEGACY_SUFFIX}", "#!/bin/sh\necho two\n")
    before = snapshot_of(hooks)
    assert_user_error(exp("hooks", "install", cwd=repo, check=False), "neither is gitexp's")
    assert snapshot_of(hooks) == before


def test_pre_commit_installed_between_two_gitexp_installs(repo: Path, tmp_path: Path):
    """user hook, then gitexp, then pre-commit, then gitexp again: all three still run."""
    trace = tmp_path / "trace"
    hooks = repo / ".git" / "hooks"
    user_hook(hooks / "post-commit", f"#!/bin/sh\necho user >> {trace}\n")
    (repo / ".pre-commit-config.yaml").write_text(PRE_COMMIT_CONFIG.format(trace=trace))
    commit(repo, "pre-commit config")
    exp("hooks", "install", cwd=repo)
    subprocess.run([str(Path(sys.executable).parent / "pre-commit"), "install", "-t",
                    "post-commit"], cwd=repo, check=True, capture_output=True)
    exp("hooks", "install", cwd=repo)
    trace.unlink(missing_ok=True)

    (repo / "a.txt").write_text("a\n")
    run_id = launch(repo)
    commit(repo)
    assert sorted(trace.read_text().split()) == ["pre-commit", "user"]
    assert tag_target(repo, run_id)


# -- one trailer and one tag per commit, however many runs ran its tree -------------------------
def plain_runs(repo: Path, specs: list[tuple[str, str, float, float | None]], *,
               sweep: str | None = None) -> list[str]:
    """Runs of the index's tree written with plain git (as `git exp run` + write-back leave
    them, sealed as this user's): (name, status, ended at, loss)."""
    from dataclasses import replace

    from gitexp.git import Repo
    from gitexp.model.record import Result
    from tests.test_core_inprocess import LAUNCHED, commit_run, record

    grepo = Repo.discover(repo)
    tree = git("write-tree", cwd=repo).strip()
    made = []
    for name, status, ended, loss in specs:
        result = Result(status=status, exit_code=0 if status == "succeeded" else 1,
                        started_at=LAUNCHED, ended_at=LAUNCHED + ended,
                        metrics={} if loss is None else {"loss": loss})
        rec = replace(record(f"{name}-{uuid.uuid4().hex[:6]}", grepo), sweep=sweep)
        made.append(commit_run(grepo, rec, result, tree=tree).id)
    return made


def exp_tags(repo: Path) -> dict[str, str]:
    out = git("for-each-ref", "--format=%(refname:short) %(objectname)", "refs/tags/exp",
              cwd=repo)
    return dict(line.split(" ") for line in out.splitlines())


def test_a_sweep_with_failed_and_cancelled_runs_gives_one_trailer_and_one_tag(repo: Path):
    exp("hooks", "install", cwd=repo)
    (repo / "a.txt").write_text("a\n")
    git("add", "-A", cwd=repo)
    ran = plain_runs(repo, [(f"lr{i}", "succeeded", 10 + i, 1 / (i + 1)) for i in range(10)]
                     + [("late-fail", "failed", 100, 0.001), ("stop", "cancelled", 101, None),
                        ("gone", "lost", 102, None)], sweep="sw-abc123")
    latest = ran[9]  # the latest succeeded: not the later failed, cancelled or lost ones

    proc = commit(repo, "sweep it")

    head = git("rev-parse", "HEAD", cwd=repo).strip()
    trailers = git("interpret-trailers", "--parse", input=message(repo).encode(), cwd=repo)
    assert trailers == \
        f"Experiment-Run: {latest} (succeeded, loss=0.1; +12 more, sweep sw-abc123)\n"
    assert exp_tags(repo) == {f"exp/{latest}": head}
    assert proc.stderr.count("gitexp: tagged") == 1
    assert len(git("log", "-1", "--oneline", "--decorate", cwd=repo)) < 120

    # Amend twice (keeping, then rewording the message): one trailer, no new tag.
    git("commit", "--amend", "--no-edit", "-q", cwd=repo)
    git("commit", "--amend", "-q", "-m", message(repo).replace("sweep it", "swept"), cwd=repo)
    head = git("rev-parse", "HEAD", cwd=repo).strip()
    assert message(repo).count("Experiment-Run:") == 1 and "swept" in message(repo)
    assert exp_tags(repo) == {f"exp/{latest}": head}


def test_runs_that_did_not_succeed_name_and_tag_nothing(repo: Path):
    exp("hooks", "install", cwd=repo)
    (repo / "a.txt").write_text("a\n")
    git("add", "-A", cwd=repo)
    plain_runs(repo, [("f", "failed", 1, 0.5), ("c", "cancelled", 2, None),
                      ("l", "lost", 3, None)])
    commit(repo)
    assert "Experiment-Run" not in message(repo)
    assert exp_tags(repo) == {}


def test_one_run_alone_keeps_the_short_trailer_and_others_runs_are_not_counted(repo: Path):
    from gitexp.git import Repo
    from gitexp.model.record import encode_message
    from tests.test_core_inprocess import ok, record

    exp("hooks", "install", cwd=repo)
    (repo / "a.txt").write_text("a\n")
    git("add", "-A", cwd=repo)
    [mine] = plain_runs(repo, [("mine", "succeeded", 1, 0.25)])
    # A fetched run of the same tree (unsealed: not launched here), ended later.
    grepo = Repo.discover(repo)
    rec = record("theirs-1", grepo).with_snapshot("0" * 40)
    tree = git("write-tree", cwd=repo).strip()
    snap = grepo.commit_tree(tree, [grepo.head() or ""], encode_message(rec, None))
    res = grepo.commit_tree(tree, [snap], encode_message(rec.with_snapshot(snap),
                                                         ok(loss=0.01)))
    git("update-ref", "refs/experiments/theirs-1", res, cwd=repo)

    commit(repo)
    assert git("interpret-trailers", "--parse", input=message(repo).encode(), cwd=repo) \
        == f"Experiment-Run: {mine} (succeeded, loss=0.25)\n"
    assert list(exp_tags(repo)) == [f"exp/{mine}"]


def test_a_real_sweep_names_its_best_finished_member(repo: Path):
    """Through `git exp run --sweep`: one member fails; the commit names the latest that
    succeeded, counts the rest and names the sweep."""
    exp("hooks", "install", cwd=repo)
    (repo / "a.txt").write_text("a\n")
    code = "import gitexp, sys; gitexp.log(step=1, loss={x}); sys.exit({x} == 2)"
    exp("run", "--sweep", "x=1,2", "-d", "--", sys.executable, "-c", code, cwd=repo)
    ids = [r["id"] for r in exp_json("ls", cwd=repo)]
    ended = {i: wait_done(i, repo) for i in ids}
    [good] = [i for i, r in ended.items() if r["status"] == "succeeded"]
    sweep_id = ended[good]["record"]["sweep"]

    commit(repo)
    assert git("interpret-trailers", "--parse", input=message(repo).encode(), cwd=repo) \
        == f"Experiment-Run: {good} (succeeded, loss=1; +1 more, sweep {sweep_id})\n"
    assert list(exp_tags(repo)) == [f"exp/{good}"]


def test_a_commit_while_its_run_is_live_names_it_but_does_not_tag_it(repo: Path):
    exp("hooks", "install", cwd=repo)
    (repo / "a.txt").write_text("a\n")
    run_id = exp("run", "-d", "--", sys.executable, "-c", "import time; time.sleep(60)",
                 cwd=repo).stdout.strip()
    try:
        commit(repo)
        trailer = git("interpret-trailers", "--parse", input=message(repo).encode(), cwd=repo)
        assert re.fullmatch(rf"Experiment-Run: {run_id} \((queued|running)\)\n", trailer)
        assert exp_tags(repo) == {}  # it may yet fail
    finally:
        exp("cancel", run_id, cwd=repo)


def test_exp_hooks_best_picks_by_metric_and_an_amend_adds_no_second_tag(repo: Path):
    exp("hooks", "install", cwd=repo)
    (repo / "a.txt").write_text("a\n")
    git("add", "-A", cwd=repo)
    first, lowest, latest = plain_runs(repo, [("a", "succeeded", 1, 0.3),
                                              ("b", "succeeded", 2, 0.1),
                                              ("c", "succeeded", 3, 0.2)])

    def named() -> str:
        trailers = git("interpret-trailers", "--parse", input=message(repo).encode(), cwd=repo)
        assert trailers.count("Experiment-Run:") == 1, trailers
        return trailers.split()[1]

    commit(repo)
    assert named() == latest  # by default: the latest
    assert list(exp_tags(repo)) == [f"exp/{latest}"]
    for best, expected in (("loss", lowest), ("max:loss", first), ("min:nope", latest)):
        git("config", "exp.hooks.best", best, cwd=repo)
        git("commit", "--amend", "--no-edit", "-q", cwd=repo)
        assert named() == expected, best
    # The trailer follows the choice; the commit keeps its one tag, carried along.
    assert exp_tags(repo) == {f"exp/{latest}": git("rev-parse", "HEAD", cwd=repo).strip()}
