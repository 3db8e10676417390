"""The launch path, from `git exp run` to the job's first line, does only what it must: one
walk of the work tree, no look at LFS in a repository that does not use it, one read of
the configuration, no mail modules before the job has started, and the local agent started
while the snapshot is taken (issue 17)."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import platform
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from typer.core import TyperOption
from typer.main import get_command

from gitexp import cli, secrets
from gitexp.backends import local
from gitexp.cli import _ahead, _app, _run
from gitexp.cli._ahead import RunOptions
from gitexp.git import Repo, snapshot
from gitexp.git.config import Config
from gitexp.model.runstate import RunState
from gitexp.notify.settings import SECRET_ENV
from gitexp.service import environment, launch, runs
from gitexp.stores import open_store
from gitexp.worker import guard
from tests.helpers import BIN, exp, exp_json, git, wait_for

SHIM = """#!/bin/sh
# Counts git's invocations: one line per call, the calling process first; then real git.
echo "$PPID $*" >> "{log}"
exec "{git}" "$@"
"""


def _git_calls(tmp_path: Path, repo: Path, *args: str) -> tuple[str, list[str]]:
    """`git exp ARGS` with every git process logged; the run id and the launcher's calls."""
    log, shim = tmp_path / "git-calls.log", tmp_path / "shim"
    shim.mkdir()
    real = shutil.which("git")
    assert real is not None
    (shim / "git").write_text(SHIM.format(log=log, git=real))
    (shim / "git").chmod(0o755)
    # `git-exp` itself: git's dispatch would put its own exec-path first, past the shim.
    path = f"{shim}{os.pathsep}{os.environ['PATH']}"
    run_id = subprocess.run([str(BIN / "git-exp"), *args], cwd=repo, capture_output=True,
                            text=True, check=True, timeout=120,
                            env={**os.environ, "PATH": path}).stdout.strip().splitlines()[-1]
    wait_for(lambda: exp_json("show", run_id, cwd=repo)["status"] not in ("queued", "running"),
             what="the run's end")
    calls = [line.split(" ", 1) for line in log.read_text().splitlines()]
    # The launcher (git-exp) is the process whose first call finds the repository.
    launcher = next(pid for pid, argv in calls if argv.startswith("rev-parse --is-inside"))
    return run_id, [argv for pid, argv in calls if pid == launcher]


def test_a_launch_walks_the_work_tree_once_and_skips_lfs_without_lfs(tmp_path: Path,
                                                                      repo: Path):
    (repo / "README.md").write_text("edited\n")
    (repo / "new.txt").write_text("untracked\n")
    git("config", "exp.notify.on", "none", cwd=repo)
    run_id, calls = _git_calls(tmp_path, repo, "run", "-d", "--", "true")
    walks = [c for c in calls if " ls-files " in f" {c} " and "--others" in c]
    assert len(walks) == 1, calls
    assert not [c for c in calls if c.split("--", 1)[0].split()[-1:] == ["add"]
                or " add " in f" {c} "], calls  # the paths walked are hashed, no `add -A`
    assert not [c for c in calls if "ls-tree" in c], calls  # no .gitattributes names lfs
    assert sum("config --list" in c for c in calls) == 1, calls
    assert not [c for c in calls if c.startswith("uname")], calls
    snap = exp_json("show", run_id, cwd=repo)["snapshot"]
    assert git("show", f"{snap}:README.md", cwd=repo) == "edited\n"
    assert git("show", f"{snap}:new.txt", cwd=repo) == "untracked\n"


def test_a_gitattributes_naming_lfs_still_has_the_launch_look_at_lfs(tmp_path: Path,
                                                                      repo: Path):
    """The LFS check is skipped only when no .gitattributes of the snapshot names the lfs
    filter: one that does (here in a subdirectory, uncommitted) brings it back."""
    (repo / "sub").mkdir()
    (repo / "sub" / ".gitattributes").write_text("*.bin filter=lfs diff=lfs merge=lfs -text\n")
    git("config", "exp.notify.on", "none", cwd=repo)
    _, calls = _git_calls(tmp_path, repo, "run", "-d", "--", "true")
    assert [c for c in calls if "ls-tree" in c], calls


def test_the_platform_is_captured_once_per_kernel_and_interpreter(tmp_path: Path, repo: Path):
    cache = tmp_path / "cache"
    assert environment.platform_cached(cache) == platform.platform()
    (kept,) = cache.glob("platform-*.txt")
    kept.write_text("remembered")  # the cache answers: no `uname -p` process this time
    assert environment.platform_cached(cache) == "remembered"
    kept.write_text("garbled\x1b[31m")  # not printable: asked again, and rewritten
    assert environment.platform_cached(cache) == platform.platform()
    assert kept.read_text() == platform.platform()
    env = environment.capture(Repo.discover(repo), ["true"])
    assert env.platform == platform.platform()


def test_the_agent_starts_without_the_mail_modules(tmp_path: Path):
    """Mail loads once the job runs (`agent._mailer_for`); the job's environment still
    drops every variable of the mail's secrets."""
    out = subprocess.run([sys.executable, "-c", "import sys, gitexp.worker.agent; "
                          "print(sorted(m for m in sys.modules if m.split('.')[0] in "
                          "('email', 'mailbox', 'smtplib') or m.startswith('gitexp.notify')))"],
                         capture_output=True, text=True, check=True, cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")})
    assert out.stdout.strip() == "[]"
    assert set(SECRET_ENV) <= set(secrets.OWN)


def test_the_progress_bar_loads_rich_only_when_data_moves(tmp_path: Path):
    script = ("import sys\nfrom gitexp.cli import _render as r\n"
              "with r.data_progress():\n    pass\n"
              "assert 'rich.progress' not in sys.modules\n"
              "with r.data_progress() as update:\n    update('data', 1, 2)\n"
              "    update('data', 2, 2)\n    update('code', 0, 0)\n"
              "assert 'rich.progress' in sys.modules\n")
    subprocess.run([sys.executable, "-c", script], check=True, cwd=tmp_path, timeout=60,
                   env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")})


def test_the_local_agent_is_started_while_the_snapshot_is_taken(
        repo: Path, monkeypatch: pytest.MonkeyPatch):
    """The agent's start-up (an interpreter, its imports) is off the way to the job's first
    line: it is running, waiting for its snapshot, when the snapshot is taken, and it is
    the very process that then runs the job."""
    seen: dict[str, Any] = {}
    take = snapshot.take

    def spied(*args: Any, **kwargs: Any) -> Any:
        [agent] = [p for p in Path("/proc").iterdir() if p.name.isdigit() and all(
            mark in _read(p / "cmdline") for mark in (b"gitexp.worker.agent", b"\0-\0",
                                                      str(repo).encode()))]
        seen["agent"] = int(agent.name)
        return take(*args, **kwargs)

    monkeypatch.setattr(snapshot, "take", spied)
    monkeypatch.chdir(repo)
    found = Repo.discover(repo)
    config = Config.load(found)
    run = launch.start(found, config, launch.LaunchRequest(argv=["echo", "hi"], cwd=repo))
    handle = RunState(open_store(run.record.store), run.record.id).handle()
    assert handle is not None and handle["pid"] == seen["agent"]
    wait_for(lambda: runs.observe(found, config, runs.find(found, run.record.id, config))
             .status == "succeeded", what="the run's end")
    assert "hi" in exp("logs", run.record.id, cwd=repo).stdout

def test_a_refused_launch_leaves_no_agent_and_nothing_in_the_store(repo: Path):
    """The agent started ahead of a launch that stops (here: refused as already run) ends
    at once, having written nothing."""
    exp("run", "--", "true", cwd=repo)
    runs_dir = repo / ".git" / "gitexp" / "store" / "runs"
    before = sorted(p.name for p in runs_dir.iterdir())
    refused = subprocess.run([str(BIN / "git-exp"), "run", "--", "true"], cwd=repo,
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0 and "already ran this" in refused.stderr
    wait_for(lambda: not [p for p in Path("/proc").iterdir() if p.name.isdigit() and
                          str(repo).encode() in _read(p / "cmdline") and
                          b"gitexp.worker.agent" in _read(p / "cmdline")],
             timeout=20, what="the agent started ahead to end")
    # Its job's guard, started ahead too (in the agent's directory, the git dir), ends with it.
    wait_for(lambda: not [p for p in Path("/proc").iterdir() if p.name.isdigit() and
                          b"import guard" in _read(p / "cmdline") and
                          _cwd(p) == repo / ".git"],
             timeout=20, what="the guard started ahead to end")
    assert sorted(p.name for p in runs_dir.iterdir()) == before


def _cwd(proc: Path) -> Path | None:
    try:
        return Path(os.readlink(proc / "cwd"))
    except OSError:
        return None


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


@pytest.mark.parametrize(("args", "plain"), [
    (["--", "python", "train.py"], RunOptions(command=["python", "train.py"])),
    (["python", "train.py", "--lr", "3"], RunOptions(command=["python", "train.py", "--lr", "3"])),
    (["-n", "lr", "-t", "gpu", "-d", "--force", "--", "x"],
     RunOptions(command=["x"], name="lr", target="gpu", detach=True, force=True)),
    (["--name=lr", "--target=gpu", "--out", "m.pt", "--out=b", "--keep", "x", "-n", "y"],
     RunOptions(command=["x", "-n", "y"], name="lr", target="gpu", outs=("m.pt", "b"),
                keep=True)),
    (["--detach", "--commit-data", "--allow-large", "-n", "a", "--name", "b", "--", "x"],
     RunOptions(command=["x"], name="b", detach=True, commit_data=True, allow_large=True)),
    (["--", "-x"], None), (["-d", "--", "--", "x"], None),  # typer's to refuse, or not
    (["--sweep", "lr=1,2", "--", "x"], None),  # a sweep: typer reads it
    (["-dn", "lr", "--", "x"], None),  # bundled: typer's form
    (["-n", "", "--", "x"], None), (["--target= ", "x"], None),  # blank: typer says so
    (["--force=1", "x"], None), (["--bogus=1", "x"], None), (["-t=gpu", "x"], None),
    (["-h"], None), (["--"], None), (["-n"], None), ([], None), (["--bogus", "x"], None),
])
def test_runs_plain_forms_are_read_without_typer(args: list[str], plain: Any):
    assert _ahead.plain(args) == plain


@pytest.mark.parametrize("args", [
    ["--", "python", "train.py"], ["python", "train.py", "--lr", "3"],
    ["-n", "lr", "-t", "gpu", "-d", "--force", "--", "x"],
    ["--name=lr", "--target=gpu", "--out", "m.pt", "--out=b", "--keep", "x", "-n", "y"],
    ["--detach", "--commit-data", "--allow-large", "-n", "a", "--name", "b", "--", "x"],
    ["-n", "-d", "x"], ["--out", "--force", "x"], ["--name", "--", "x"],
])
def test_a_plain_read_is_typers_read(args: list[str], monkeypatch: pytest.MonkeyPatch):
    """What `plain` reads is what typer would: the same options, the same command."""
    read: list[RunOptions] = []
    monkeypatch.setattr(_run, "run", lambda options: read.append(options) or 0)
    assert _app.main(["run", *args]) == 0
    assert _ahead.plain(args) == read[0]


def test_the_plain_read_knows_every_option_run_declares():
    """An option added to `run` is added to the plain read too (else a launch using it would
    go through typer, ~50 ms later, and no test would say so)."""
    _app.load(["run"])
    command = get_command(_app.app)
    declared = {(name, bool(param.is_flag)) for param in command.commands["run"].params
                if isinstance(param, TyperOption) for name in param.opts}
    known = {*((name, True) for name in _ahead._FLAGS),
             *((name, False) for name in [*_ahead._VALUED, *_ahead.SWEEP_OPTIONS])}
    assert declared == known
    fields = {f.name for f in dataclasses.fields(RunOptions)}
    assert set(_ahead._FLAGS.values()) | set(_ahead._VALUED.values()) <= fields


def test_a_plain_run_never_imports_typer(repo: Path):
    """`git exp run` in its plain forms launches without typer (its import alone is tens of
    ms); help still comes from typer."""
    script = ("import sys\nfrom gitexp import cli\n"
              "assert cli.main(['run', '-d', '--', 'true']) == 0\n"
              "assert 'typer' not in sys.modules, 'typer imported'\n")
    out = subprocess.run([sys.executable, "-c", script], cwd=repo, capture_output=True,
                         text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")})
    assert out.returncode == 0, out.stderr
    helped = exp("run", "-h", cwd=repo)
    assert "--max-parallel" in helped.stdout


def _spawns(monkeypatch: pytest.MonkeyPatch,
            events: list[str] | None = None) -> list[subprocess.Popen[bytes]]:
    """The agents started ahead, as they are; `events` gets "spawn" and "launch" (the
    launch's own start: `record_runs`) in the order they come."""
    spawned: list[subprocess.Popen[bytes]] = []
    log = events if events is not None else []
    spawn, record_runs = local.LocalBackend._spawn_ahead, launch.record_runs

    def spied(self: local.LocalBackend, *args: Any) -> subprocess.Popen[bytes]:
        log.append("spawn")
        spawned.append(spawn(self, *args))
        return spawned[-1]

    def launching(*args: Any, **kwargs: Any) -> Any:
        log.append("launch")
        return record_runs(*args, **kwargs)

    monkeypatch.setattr(local.LocalBackend, "_spawn_ahead", spied)
    monkeypatch.setattr(launch, "record_runs", launching)
    return spawned


def test_run_starts_its_agent_before_its_verb_and_the_launch_takes_that_one(
        repo: Path, monkeypatch: pytest.MonkeyPatch):
    """`git exp run` starts the local agent before the verb's imports and parse (cli/_ahead):
    the launch takes that very agent (one started, and it runs the job), and the verb uses
    the repository and settings opened for it (no second read)."""
    events: list[str] = []
    spawned = _spawns(monkeypatch, events)
    monkeypatch.chdir(repo)
    loads = []
    load = Config.load
    monkeypatch.setattr(Config, "load", lambda r: loads.append(r) or load(r))
    with contextlib.redirect_stdout(io.StringIO()) as out:
        assert cli.main(["run", "-d", "-n", "early", "--", "echo", "hi"]) == 0
    run_id = out.getvalue().strip()
    assert run_id.startswith("early-") and events == ["spawn", "launch"] and len(loads) == 1
    handle = RunState(open_store(runs.find(Repo.discover(repo), run_id,
                                           Config.load(Repo.discover(repo))).record.store),
                      run_id).handle()
    assert handle is not None and handle["pid"] == spawned[0].pid
    wait_for(lambda: "hi" in exp("logs", run_id, cwd=repo).stdout, what="the job's line")


def test_an_early_agent_the_launch_would_not_start_is_dropped(
        repo: Path, monkeypatch: pytest.MonkeyPatch):
    """An agent started early that is not the one the launch would start (here: another
    name) is not the run's: the launch starts its own, and the early one ends without
    running anything."""
    spawned = _spawns(monkeypatch)
    monkeypatch.chdir(repo)
    early = _ahead._agent
    monkeypatch.setattr(_ahead, "_agent", lambda repo, config, options: early(
        repo, config, dataclasses.replace(options, name="guessed")))
    with contextlib.redirect_stdout(io.StringIO()) as out:
        assert cli.main(["run", "-d", "--", "echo", "hi"]) == 0
    run_id = out.getvalue().strip()
    assert run_id.startswith("echo-") and len(spawned) == 2
    assert spawned[0].wait(timeout=20) is not None  # ended: its stdin closed, no snapshot
    assert not (repo / ".git/gitexp/store/runs" / f"guessed-{run_id[5:]}").exists()
    wait_for(lambda: "hi" in exp("logs", run_id, cwd=repo).stdout, what="the job's line")
    assert not [p for p in Path("/proc").iterdir() if p.name.isdigit()
                and b"guessed-" in _read(p / "cmdline")]


def test_a_dropped_early_agent_is_never_taken_later(repo: Path, monkeypatch: pytest.MonkeyPatch):
    """In one process (an API user, the tests): an early agent dropped by a launch that
    stopped is not taken by a later launch that would start the same agent."""
    spawned = _spawns(monkeypatch)
    found = Repo.discover(repo)
    config = Config.load(found)
    backend = local.LocalBackend(target=config.target(None), repo=found)
    drop = backend.start_early(name="same", heartbeat=2.0, max_checkpoint=1 << 20)
    drop()
    run_id, drop_again = backend.start_ahead(name="same", heartbeat=2.0, max_checkpoint=1 << 20)
    drop_again()
    assert len(spawned) == 2 and run_id in " ".join(spawned[1].args)
    for proc in spawned:
        assert proc.wait(timeout=20) is not None  # both end: their stdin closed


def test_a_local_agent_is_known_by_its_pid_start_and_boot(repo: Path):
    """A local run's handle names its agent for good: pid, start time and boot. `alive`
    asks whether that very process lives: one that took the pid later (another start) is
    not it; after a cancel, it is gone."""
    run_id = exp("run", "-d", "--", "sleep", "30", cwd=repo).stdout.strip()
    found = Repo.discover(repo)
    config = Config.load(found)
    run = runs.find(found, run_id, config)
    handle = RunState(open_store(run.record.store), run_id).handle()
    assert handle is not None and {"pid", "started", "boot"} <= set(handle)
    backend = local.LocalBackend(target=config.target(None), repo=found)
    assert backend.alive(record=run.record, handle=handle) is True
    assert guard.agent_running(run_id) and not runs.drop_workdir(found, run_id)
    assert backend.alive(record=run.record, handle={**handle, "started": 1}) is False
    assert backend.alive(record=run.record, handle={**handle, "boot": "0-0"}) is False
    exp("cancel", run_id, cwd=repo)
    wait_for(lambda: exp_json("show", run_id, cwd=repo)["status"] == "cancelled",
             what="the cancel")
    wait_for(lambda: backend.alive(record=run.record, handle=handle) is False,
             what="the agent's end")


def test_an_older_handle_is_still_known_by_its_agents_command_line(repo: Path):
    """A handle written by an older gitexp (pid and host only) is alive while a process with
    that pid names its run on its command line."""
    found = Repo.discover(repo)
    config = Config.load(found)
    run_id = exp("run", "-d", "--", "true", cwd=repo).stdout.strip()
    record = runs.find(found, run_id, config).record
    backend = local.LocalBackend(target=config.target(None), repo=found)
    named = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", run_id])
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        host = platform.node()
        assert backend.alive(record=record, handle={"pid": named.pid, "host": host}) is True
        assert backend.alive(record=record, handle={"pid": other.pid, "host": host}) is False
    finally:
        for proc in (named, other):
            proc.kill()
            proc.wait()


def test_the_snapshot_started_ahead_is_the_launchs_one(repo: Path,
                                                       monkeypatch: pytest.MonkeyPatch):
    """`git exp run` in a plain form takes the snapshot in the thread it started before the
    launch's imports (`preflight.take_ahead`), once, and the launch records that one."""
    made: list[str] = []
    take = snapshot.take
    monkeypatch.setattr(snapshot, "take", lambda *a, **k: made.append(
        threading.current_thread().name) or take(*a, **k))
    monkeypatch.chdir(repo)
    (repo / "new.txt").write_text("taken ahead\n")
    with contextlib.redirect_stdout(io.StringIO()) as out:
        assert cli.main(["run", "-d", "--", "true"]) == 0
    assert made == ["gitexp-snapshot"]
    snap = exp_json("show", out.getvalue().strip(), cwd=repo)["snapshot"]
    assert git("show", f"{snap}:new.txt", cwd=repo) == "taken ahead\n"
