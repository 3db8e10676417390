"""No orphans: the job never outlives its agent, on every target; `cancel` stops what is left
of a lost run's job (never a recycled or foreign pid); `ls`/`gc` free dead runs' work
directories, never those of live ones.

Real processes throughout, found the way an operator would: through /proc, by a token in
their argv and by the run's mark in their environment (checked here independently of
gitexp's own helpers in worker/guard.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gitexp.model.runstate import RunState
from gitexp.stores.file import FileStore
from tests import faults as f
from tests.conftest import make_repo
from tests.helpers import assert_user_error, exp, exp_json, git, wait_done, wait_for

DIES_WITHIN = 5.0  # s: "within a few seconds" of the agent's SIGKILL


# -- finding processes ----------------------------------------------------------------------
def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError:
        return b""


def _live(pid: str) -> bool:
    stat = _read(f"/proc/{pid}/stat")
    return bool(stat) and stat[stat.rfind(b")") + 2:][:1] not in (b"Z", b"X")


def with_token(token: str) -> list[int]:
    """Live processes whose argv holds `token`."""
    return [int(p) for p in os.listdir("/proc") if p.isdigit() and p != str(os.getpid())
            and token.encode() in _read(f"/proc/{p}/cmdline").split(b"\0") and _live(p)]


def with_mark(run_id: str) -> list[int]:
    """Live processes whose environment carries GITEXP_RUN_ID=<run_id>."""
    mark = f"GITEXP_RUN_ID={run_id}".encode()
    return [int(p) for p in os.listdir("/proc") if p.isdigit()
            and mark in _read(f"/proc/{p}/environ").split(b"\0") and _live(p)]


def kill_all(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def token() -> str:
    """A sleep duration no other test uses: the argv mark of this test's processes."""
    return f"61.{random.randrange(10**6):06d}"


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Path]:
    repo = make_repo(tmp_path / "proj")
    yield repo
    f.kill_under(tmp_path)  # agents and jobs a failed test left behind


def tree_job(tok: str) -> list[str]:
    """A job with a background child, a setsid() child, a double-forked daemon, a child with
    an empty environment (no mark: only the subreaper keeps it) and a foreground sleep."""
    script = (f"sleep {tok} & setsid sleep {tok} & (sleep {tok} &); "
              f"env -i \"$(command -v sleep)\" {tok} & echo ready; sleep {tok}")
    return ["bash", "-c", script]


def start_tree(repo: Path, tok: str, *target: str) -> str:
    run_id = exp("run", "-d", *target, "--", *tree_job(tok), cwd=repo).stdout.strip()
    wait_for(lambda: len(with_token(tok)) == 5, timeout=60, what="the job's 5 sleeps")
    return run_id


def gone_after_kill(agent: int, tok: str, run_id: str) -> float:
    """SIGKILL the agent; seconds until no process of the job is left."""
    t0 = time.monotonic()
    os.kill(agent, signal.SIGKILL)
    wait_for(lambda: not with_token(tok) and not with_mark(run_id), timeout=DIES_WITHIN,
             every=0.05, what="every process of the job to die with its agent")
    return time.monotonic() - t0


def state(repo: Path, run_id: str, name: str) -> dict[str, Any]:
    return wait_for(lambda: f.store_json(repo, run_id, name), what=name)


def status_with_job(repo: Path, run_id: str) -> dict[str, Any]:
    return wait_for(lambda: (s := f.store_json(repo, run_id, "status.json")) and "job" in s
                    and s, what="the job's place in status.json")


# -- local ------------------------------------------------------------------------------------
def test_kill_9_of_the_agent_ends_the_whole_job_and_ls_frees_its_workdir(project: Path):
    tok = token()
    run_id = start_tree(project, tok)
    work = project / ".git/gitexp/work" / run_id
    assert work.is_dir()
    try:
        took = gone_after_kill(state(project, run_id, "handle.json")["pid"], tok, run_id)
        print(f"local: the job's 5 processes gone {took:.2f}s after the agent's SIGKILL")
        assert wait_done(run_id, project, timeout=20)["status"] == "lost"
        exp("ls", cwd=project)
        assert not work.exists()
        assert_user_error(exp("cancel", run_id, cwd=project, check=False), "already ended")
    finally:
        kill_all(with_token(tok))


def test_a_stalled_agent_keeps_its_workdir_and_cancel_stops_its_lost_job(project: Path):
    """An agent stopped (SIGSTOP) reads `lost`, but it lives: its work directory stays
    through `ls` and `gc`; `cancel` stops the job it left running and says so."""
    tok = token()
    run_id = exp("run", "-d", "--", "sleep", tok, cwd=project).stdout.strip()
    work = project / ".git/gitexp/work" / run_id
    agent = state(project, run_id, "handle.json")["pid"]
    job = status_with_job(project, run_id)["job"]["pid"]
    wait_for(lambda: with_token(tok), what="the job")
    os.kill(agent, signal.SIGSTOP)
    try:
        assert wait_done(run_id, project, timeout=20)["status"] == "lost"
        exp("ls", cwd=project)
        exp("gc", "--older-than", "3650d", cwd=project)
        assert work.is_dir() and with_token(tok) == [job]
        out = exp("cancel", run_id[-6:], cwd=project).stdout
        assert out.strip() == (f"cancelled: run {run_id} was lost but its job (pid {job}) "
                               "still ran; stopped it")
        assert not with_token(tok)
        os.kill(agent, signal.SIGKILL)
        wait_for(lambda: not _live(str(agent)), what="the agent to go")
        assert work.is_dir()  # `ls` looks only at runs that just turned lost
        proc = exp("gc", "--older-than", "3650d", cwd=project)
        assert "freed the work directories of 1 ended run(s)" in proc.stderr
        assert not work.exists()
    finally:
        kill_all(with_token(tok))
        with contextlib.suppress(OSError):
            os.kill(agent, signal.SIGKILL)


def test_cancel_stops_a_job_whose_agent_and_guard_were_both_killed(project: Path):
    """The guard killed first, then the agent: nothing is left to bind the job, which lives
    on; `cancel` finds all of it (its setsid child too) and stops it."""
    tok = token()
    run_id = start_tree(project, tok)
    agent = state(project, run_id, "handle.json")["pid"]
    job = status_with_job(project, run_id)["job"]["pid"]
    [guard] = [p for p in f.children_of(agent) if b"import guard" in
               _read(f"/proc/{p}/cmdline")]
    try:
        os.kill(guard, signal.SIGKILL)
        os.kill(agent, signal.SIGKILL)
        assert wait_done(run_id, project, timeout=20)["status"] == "lost"
        assert len(with_token(tok)) == 5  # orphans: the very thing a guard prevents
        out = exp("cancel", run_id, cwd=project).stdout
        assert f"run {run_id} was lost but its job (pid {job}) still ran; stopped it" in out
        assert not with_token(tok) and not with_mark(run_id)
    finally:
        kill_all(with_token(tok))


def test_cancel_never_kills_a_recycled_or_foreign_pid(project: Path, tmp_path: Path):
    """status.json is store data: a job place naming another process - a recycled pid with
    a matching start time but no mark, or a marked one from another boot - stops nothing."""
    run_id = exp("run", "-d", "--", "true", cwd=project).stdout.strip()
    assert wait_done(run_id, project)["status"] == "succeeded"
    status_file = project / ".git/gitexp/store/runs" / run_id / "status.json"
    status = json.loads(status_file.read_text())
    boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    tok = token()
    decoys = []
    try:
        for mark, forged_boot in (({}, boot), ({"GITEXP_RUN_ID": run_id}, "0" * 8 + boot[8:])):
            decoy = subprocess.Popen(["sleep", tok], env={"PATH": os.environ["PATH"], **mark},
                                     start_new_session=True)
            decoys.append(decoy)
            wait_for(lambda: with_token(tok), what="the decoy")
            start = int(_read(f"/proc/{decoy.pid}/stat").rsplit(b")", 1)[1].split()[19])
            status.update(host=socket.gethostname(), job={
                "pid": decoy.pid, "group": decoy.pid, "start": start, "boot": forged_boot})
            status_file.write_text(json.dumps(status))
            assert_user_error(exp("cancel", run_id, cwd=project, check=False),
                              f"run {run_id} already ended (succeeded)")
            assert decoy.poll() is None
    finally:
        for decoy in decoys:
            decoy.kill()
            decoy.wait()


@pytest.mark.parametrize("job", [
    {"pid": -5, "group": 2, "start": 1, "boot": "ab"},
    {"pid": 1, "group": 1, "start": 1, "boot": "ab"},  # init: never a job
    {"pid": 7, "group": 7, "start": 1.5, "boot": "ab"},
    {"pid": 7, "group": 7, "start": 1, "boot": "../x"},
    {"pid": True, "group": 7, "start": 1, "boot": "ab"},
    {"pid": 7, "group": 7, "start": 1},
    "7",
])
def test_a_damaged_job_place_reads_as_none(tmp_path: Path, job: Any):
    store = FileStore(tmp_path)
    store.write("runs/r-1/status.json", json.dumps({"status": "running", "pid": 7,
                                                    "job": job}).encode())
    read = RunState(store, "r-1").status()
    assert read is not None and read.pid == 7 and read.job is None


def test_job_exit_codes_signals_and_start_errors_pass_through_the_guard(project: Path):
    exp("run", "--", "sh", "-c", "kill -KILL $$", cwd=project, check=False)
    exp("run", "--", "sh", "-c", "exit 7", cwd=project, check=False)
    # Ignored, so not in the snapshot: it passes the launch's check, not the worker's exec.
    (project / ".gitignore").write_text("ignored.sh\n")
    (project / "ignored.sh").write_text("#!/bin/sh\n")
    (project / "ignored.sh").chmod(0o755)
    assert exp("run", "--", "./ignored.sh", cwd=project, check=False).returncode != 0
    runs = {tuple(r["record"]["argv"]): r for r in exp_json("ls", cwd=project)}
    assert runs["sh", "-c", "kill -KILL $$"]["result"]["exit_code"] == 137
    assert runs["sh", "-c", "exit 7"]["result"]["exit_code"] == 7
    failed = runs["./ignored.sh",]
    assert failed["status"] == "failed"
    assert failed["result"]["error"] == \
        "cannot start './ignored.sh': No such file or directory"


def test_what_a_finished_job_leaves_behind_is_killed(project: Path):
    """A job that exits leaving a daemon (double fork, setsid): it does not outlive the
    run, nor does it hold the run's end back."""
    tok = token()
    exp("run", "--", "bash", "-c", f"(setsid sleep {tok} &); echo bye", cwd=project)
    try:
        assert not with_token(tok)
        [run] = exp_json("ls", cwd=project)
        # The daemon held the job's output open: the agent would have waited 10 s for it.
        assert run["result"]["ended_at"] - run["result"]["started_at"] < 5
    finally:
        kill_all(with_token(tok))


# -- ssh, docker, Slurm -----------------------------------------------------------------------
def test_ssh_target_job_dies_with_its_agent(tmp_path: Path, sshd: Any):
    repo = make_repo(tmp_path / "repo")
    settings = {"backend": "ssh", "host": sshd.alias, "workdir": sshd.mkdtemp("orphans"),
                "sshConfig": sshd.ssh_config, "python": "/usr/bin/python3"}
    for key, value in settings.items():
        git("config", f"exp.target.box.{key}", value, cwd=repo)
    tok = token()
    run_id = start_tree(repo, tok, "-t", "box")
    try:
        took = gone_after_kill(_agent_of(run_id), tok, run_id)
        print(f"ssh: the job's 5 processes gone {took:.2f}s after the agent's SIGKILL")
    finally:
        kill_all(with_token(tok))


def _agent_of(run_id: str) -> int:
    """The agent of `run_id` on this machine, by its command line."""
    [pid] = [int(p) for p in os.listdir("/proc") if p.isdigit()
             and b"gitexp.worker.agent" in (cmd := _read(f"/proc/{p}/cmdline"))
             and run_id.encode() in cmd.split(b"\0")]
    return pid


@pytest.mark.xdist_group("podman")
def test_docker_target_container_dies_with_its_agent(repo: Path, podman: Any,
                                                     monkeypatch: pytest.MonkeyPatch):
    """The agent is the container's main process: when it dies the kernel ends every other
    process of its pid namespace (the guard inside would too)."""
    for key, value in podman.env.items():
        monkeypatch.setenv(key, value)
    for key, value in {"backend": "docker", "engine": "podman",
                       "image": podman.base_image(), "network": "none"}.items():
        git("config", f"exp.target.box.{key}", value, cwd=repo)
    git("config", "exp.lostAfter", "60", cwd=repo)
    tok = token()
    script = ("import os, subprocess, time\n"
              f"subprocess.Popen(['sleep', '{tok}'], start_new_session=True)\n"
              f"subprocess.Popen(['sleep', '{tok}'])\n"
              "print('ready', flush=True)\n"
              f"os.execvp('sleep', ['sleep', '{tok}'])\n")
    run_id = exp("run", "-d", "-t", "box", "--", "python3", "-c", script,
                 cwd=repo).stdout.strip()
    name = f"gitexp-{run_id}"
    try:
        wait_for(lambda: len(with_token(tok)) == 3, timeout=90, what="the job's 3 sleeps")
        agent = int(podman.run(["inspect", "--format", "{{.State.Pid}}", name],
                               check=True).stdout)
        took = gone_after_kill(agent, tok, run_id)
        print(f"docker: the job's 3 processes gone {took:.2f}s after the agent's SIGKILL")
        wait_for(lambda: podman.run(["container", "exists", name]).returncode == 1,
                 timeout=30, what="the container to go")
        assert wait_done(run_id, repo, timeout=30)["status"] == "lost"
    finally:
        kill_all(with_token(tok))
        podman.run(["rm", "-f", "--ignore", name])


@pytest.mark.xdist_group("slurm")
def test_slurm_job_step_ends_with_its_agent(slurm_env: Any, repo: Path, tmp_path: Path):
    store = tmp_path / "store"
    for key, value in {"backend": "slurm", "store": store.as_uri(), "partition": "debug",
                       "time": "5", "python": "/usr/bin/python3"}.items():
        git("config", f"exp.target.hpc.{key}", value, cwd=repo)
    tok = token()
    run_id = start_tree(repo, tok, "-t", "hpc")
    status = wait_for(lambda: json.loads((store / "runs" / run_id / "status.json")
                                         .read_text()), what="status.json")
    try:
        took = gone_after_kill(int(status["agent_pid"]), tok, run_id)
        print(f"slurm: the job's 5 processes gone {took:.2f}s after the agent's SIGKILL")
        assert wait_done(run_id, repo, timeout=60)["status"] in ("lost", "failed")
    finally:
        kill_all(with_token(tok))
        slurm_env.wait_idle(timeout=60)
