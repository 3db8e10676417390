"""Fault injection: kill -9 at named points of `git exp run`, of the agent and of the job,
and services (GCS emulator, sshd, slurmctld, SMTP) stopped mid-run. After each fault the
invariants of tests/faults.py hold: git fsck clean, the user's work byte-identical, no
half-written ref or result, every run terminal or `lost` within the heartbeat timeout (make_repo
sets exp.lostAfter=3, exp.heartbeat=0.3), and the log kept up to the fault.

The randomized sweep over the same points is `make soak` (tests/faults.py)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import faults as f
from tests.conftest import make_repo
from tests.helpers import exp, exp_json, git, wait_for
from tests.services._util import pid_alive

# (fault point, what must follow). Every point in src/ appears at least once.
RUN_FAULTS = ["snapshot.add", "launch.commit", "launch.ref", "launch.submit", "launch.handle"]
AGENT_FAULTS = ["agent.prepare", "workspace.update", "agent.heartbeat@3", "agent.append@2",
                "agent.result", "writeback.commit", "agent.finish", "workspace.release"]
TRANSPORT_FAULTS = ["transport.pack", "transport.send@2"]
REMOVE_FAULTS = ["gc.remove"]  # kill -9 here; a pause here: tests/test_rm_failures.py
OTHER_FAULTS = ["writeback.commit (git exp ls)", "kill -9 the job", "GCS emulator stopped",
                "sshd stopped", "slurmctld stopped", "SMTP server stopped"]
ALL_FAULTS = RUN_FAULTS + AGENT_FAULTS + TRANSPORT_FAULTS + REMOVE_FAULTS + OTHER_FAULTS


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Path]:
    repo = make_repo(tmp_path / "proj", {"train.py": f.TRAIN, "README.md": "x\n"})
    f.dirty_project(repo)
    yield repo
    f.kill_under(tmp_path)  # agents and jobs a fault left behind


def test_every_fault_point_is_tried() -> None:
    """The count of fault points this suite tries; every point in src/ is among them."""
    points = {p.split("@")[0]
              for p in RUN_FAULTS + AGENT_FAULTS + TRANSPORT_FAULTS + REMOVE_FAULTS}
    assert f.fault_points() == points
    print(f"fault points tried: {len(ALL_FAULTS)}: {', '.join(ALL_FAULTS)}")
    assert len(ALL_FAULTS) >= 19


# -- kill -9 of `git exp run` ---------------------------------------------------------------------
@pytest.mark.parametrize("point", RUN_FAULTS)
def test_kill_run_mid_launch(project: Path, point: str) -> None:
    before = f.user_state(project)
    proc = f.run_with_fault(project, point, "--", "python", "train.py", "3", "0.01")
    assert proc.returncode in f.KILLED, (proc.returncode, proc.stderr)
    runs = f.after_fault(project, before)
    if point in ("snapshot.add", "launch.commit"):  # before the ref: no run at all
        assert runs == {}
        return
    [run] = runs.values()
    if point == "launch.handle":  # the agent was already started: it finishes the run
        assert run.status == "succeeded"
        assert "done" in f.git_log(project, run)
    else:
        assert run.status == "lost"
    # The repository stays usable: the next run goes through.
    exp("run", "--", "python", "train.py", "1", "0", cwd=project)
    assert sum(r.status == "succeeded" for r in f.runs_in_git(project).values()) >= 1
    assert f.user_state(project) == before


# -- kill -9 of `git exp rm` ----------------------------------------------------------------------
def test_kill_rm_before_the_ref_goes_keeps_the_run_whole(project: Path) -> None:
    exp("run", "-n", "kept", "--", "python", "train.py", "1", "0", cwd=project)
    [run] = f.runs_in_git(project).values()
    proc = exp("rm", run.id, cwd=project, check=False, env={"GITEXP_FAULT": "gc.remove"})
    assert proc.returncode in f.KILLED, (proc.returncode, proc.stderr)
    assert list(f.runs_in_git(project)) == [run.id]
    assert (project / ".git" / "gitexp" / "store" / "runs" / run.id).is_dir()
    assert f"removed {run.id}" in exp("rm", run.id, cwd=project).stdout


# -- kill -9 of the agent -------------------------------------------------------------------------
@pytest.mark.parametrize("point", AGENT_FAULTS)
def test_kill_agent(project: Path, point: str) -> None:
    before = f.user_state(project)
    lines = 6
    run_id = f.run_with_fault(project, point, "--", "python", "train.py", str(lines),
                              "0.15").stdout.strip()
    handle = wait_for(lambda: f.store_json(project, run_id, "handle.json"), what="handle")
    wait_for(lambda: not pid_alive(handle["pid"]), timeout=20, what="the agent to die")
    if point == "writeback.commit":  # died between the results commit and the ref update
        assert f.store_json(project, run_id, "result.json")["status"] == "succeeded"
        assert f.runs_in_git(project)[run_id].status is None
    [run] = f.after_fault(project, before).values()
    log = f.git_log(project, run)
    stored = project / ".git/gitexp/store/runs" / run_id / "log"
    assert log.encode() == (stored.read_bytes() if stored.exists() else b"")
    if point in ("writeback.commit", "agent.finish", "workspace.release"):  # after the result
        assert run.status == "succeeded"
        f.assert_log_prefix(log, at_least=lines)
        assert "done" in log
        assert (project / ".git/gitexp/work" / run_id).exists()  # died before cleaning up
        return
    assert run.status == "lost"
    shown = exp_json("show", run_id, cwd=project)
    assert shown["result"]["error"], shown
    if point in ("agent.prepare", "workspace.update"):  # before the job: no line printed
        assert "line 0" not in log
    elif point == "agent.result":  # the job had ended: the whole log is kept
        f.assert_log_prefix(log, at_least=lines)
        assert "done" in log
    else:  # the log as far as it was streamed before the fault
        f.assert_log_prefix(log, at_least=1)
    assert exp("logs", run_id, cwd=project).stdout == log


def test_kill_writeback_of_ls(project: Path) -> None:
    """`git exp ls` dies between the results commit and the ref update; the next ls
    writes the run back whole."""
    before = f.user_state(project)
    run_id = exp("run", "-d", "--", "python", "train.py", "2", "0", cwd=project,
                 env={"GITEXP_KEEP_WORKDIR": ""}).stdout.strip()
    wait_for(lambda: f.store_json(project, run_id, "result.json"), what="the result")
    # The agent writes back itself; take its ref back to the snapshot so `ls` has work.
    wait_for(lambda: f.runs_in_git(project)[run_id].status, what="agent write-back")
    snapshot = f.runs_in_git(project)[run_id].snapshot
    git("update-ref", f"refs/experiments/{run_id}", snapshot, cwd=project)
    proc = exp("ls", cwd=project, check=False, env={"GITEXP_FAULT": "writeback.commit"})
    assert proc.returncode in f.KILLED
    assert f.runs_in_git(project)[run_id].status is None  # the ref did not move
    [run] = f.after_fault(project, before).values()
    assert run.status == "succeeded"
    assert "done" in f.git_log(project, run)


def test_kill_the_job(project: Path) -> None:
    """The job dies by SIGKILL (the OOM killer's way): the run fails with exit 137 and the
    log keeps every line printed before."""
    before = f.user_state(project)
    run_id = exp("run", "-d", "--", "python", "train.py", "100", "0.05",
                 cwd=project).stdout.strip()
    wait_for(lambda: "line 3" in exp("logs", run_id, cwd=project).stdout, what="line 3")
    job = f.store_json(project, run_id, "status.json")["pid"]
    os.killpg(job, signal.SIGKILL)
    [run] = f.after_fault(project, before).values()
    assert run.status == "failed"
    assert exp_json("show", run_id, cwd=project)["result"]["exit_code"] == 137
    f.assert_log_prefix(f.git_log(project, run), at_least=4)


# -- kill -9 while pushing code to a store --------------------------------------------------------
@pytest.mark.parametrize("point", TRANSPORT_FAULTS)
def test_kill_run_while_pushing_code(project: Path, tmp_path: Path, point: str) -> None:
    """An ssh target with a file:// store: the code push is the first thing that touches
    the store, so the host never needs to answer (it does not exist). A 3 MB file makes the
    pack several chunks long, so `transport.send@2` dies in the middle of the stream."""
    from gitexp.git import Repo
    from gitexp.stores.file import FileStore
    from gitexp.stores.transport import held_commits, push_code

    store = tmp_path / "store"
    for key, value in {"backend": "ssh", "host": "nowhere.invalid",
                       "store": store.as_uri()}.items():
        git("config", f"exp.target.far.{key}", value, cwd=project)
    (project / "big.bin").write_bytes(os.urandom(3 << 20))
    before = f.user_state(project)
    proc = f.run_with_fault(project, point, "-t", "far", "--", "python", "train.py", "1", "0")
    assert proc.returncode in f.KILLED, proc.stderr
    if (store / "code.git").exists():
        f.assert_fsck_clean(store / "code.git")
    assert held_commits(FileStore(store)) == set()  # no half-sent snapshot is named
    [run] = f.after_fault(project, before).values()
    assert run.status == "lost"
    # The store still takes the same snapshot whole.
    push_code(Repo.discover(project), FileStore(store), run.snapshot)
    assert held_commits(FileStore(store)) == {run.snapshot}
    f.assert_fsck_clean(store / "code.git")


# -- services stopped mid-run ---------------------------------------------------------------------
def test_smtp_server_stopped_mid_run(tmp_path: Path, smtp_server: Any) -> None:
    """The mail server goes away after the first checkpoint mail: the run is unharmed, its
    result is in git, and the end mail waits in the outbox."""
    from gitexp.notify.maildir import MaildirOutbox

    repo = make_repo(tmp_path / "proj", {"train.py": CHECKPOINTS, "README.md": "x\n"})
    for key, value in {"sender": "smtp", "to": "me@example.com", "smtp.host": "127.0.0.1",
                       "smtp.port": str(smtp_server.port), "smtp.security": "none",
                       "minInterval": "0"}.items():
        git("config", f"exp.notify.{key}", value, cwd=repo)
    f.dirty_project(repo)
    before = f.user_state(repo)
    run_id = exp("run", "-d", "--", "python", "train.py", cwd=repo).stdout.strip()
    [first] = smtp_server.wait_for(1, timeout=30)
    assert first["X-Gitexp-Event"] == "checkpoint"
    smtp_server.stop()
    [run] = f.after_fault(repo, before, timeout=30).values()
    assert run.status == "succeeded"
    f.assert_log_prefix(f.git_log(repo, run), at_least=3)
    handle = f.store_json(repo, run_id, "handle.json")
    wait_for(lambda: not pid_alive(handle["pid"]), timeout=30, what="the agent to exit")
    kept = MaildirOutbox(repo / ".git/gitexp/outbox").messages()
    assert [m["X-Gitexp-Event"] for m in kept] == ["succeeded"]
    assert "smtp:" in str(kept[0]["X-Gitexp-Undelivered"])
    f.kill_under(tmp_path)


CHECKPOINTS = """\
import time, gitexp
gitexp.log(step=0, loss=1.0)
gitexp.checkpoint("warm", loss=1.0)
for i in range(3):
    print(f"line {i}", flush=True)
time.sleep(4)  # the mail server is stopped meanwhile
print("done", flush=True)
"""


@pytest.mark.xdist_group("slurm")
def test_slurmctld_stopped_mid_run(slurm_env: Any, tmp_path: Path) -> None:
    """slurmctld goes down while the job runs (its state saved, as on a controller
    restart): meanwhile `git exp ls` says `running`, not `lost` (Slurm cannot answer, the
    heartbeat is fresh); the job goes on on its node, and once the controller is back the
    run is written back succeeded with its whole log. The start lock is held during the
    outage, so no other session sharing the cluster mistakes it for a dead one and wipes it."""
    from tests.services._util import file_lock
    from tests.services.slurm import START_LOCK

    repo = make_repo(tmp_path / "proj", {"train.py": f.TRAIN, "README.md": "x\n"})
    store = tmp_path / "store"
    run_id, before = _launch_printing(repo, "hpc", {
        "backend": "slurm", "store": store.as_uri(), "partition": "debug", "time": "5",
        "python": "/usr/bin/python3"}, lines="60")
    with file_lock(START_LOCK):
        pid = int((slurm_env.dir / "slurmctld.pid").read_text())
        subprocess.run(["scontrol", "shutdown", "slurmctld"], check=True, capture_output=True)
        wait_for(lambda: not pid_alive(pid), timeout=20, what="slurmctld to stop")
        try:
            assert exp_json("show", run_id, cwd=repo)["status"] == "running"
            wait_for(lambda: "line 20" in exp("logs", run_id, cwd=repo).stdout, timeout=30,
                     what="the job to go on")
            assert exp_json("ls", cwd=repo)[0]["status"] in ("running", "succeeded")
        finally:
            subprocess.run(["slurmctld", "-f", str(slurm_env.conf)], check=True,
                           capture_output=True)
            slurm_env.wait_responding()
    [run] = f.after_fault(repo, before, timeout=60).values()
    assert run.status == "succeeded"
    log = f.git_log(repo, run)
    f.assert_log_prefix(log, at_least=60)
    assert "done" in log


def test_sshd_stopped_mid_run(tmp_path: Path, _sshd_server: Any) -> None:
    """An ssh target whose worker reaches its store over SFTP (the store is another login
    on the same sshd): sshd goes down while the job runs and comes back 2 s later on the
    same port. The agent's heartbeat and log streaming fail meanwhile and must ride it out:
    the run succeeds with its whole log, in order. During the outage `git exp show` answers
    at once and never says `lost`. (Root login: the worker needs paramiko, this venv's.)"""
    root, other = _sshd_server.root, _sshd_server.worker
    repo = make_repo(tmp_path / "proj", {"train.py": f.TRAIN, "README.md": "x\n"})
    store = f"ssh://{other.alias}{other.mkdtemp('store')}?ssh_config={other.ssh_config}"
    run_id, before = _launch_printing(repo, "box", {
        "backend": "ssh", "host": root.alias, "workdir": root.mkdtemp("fault"),
        "sshConfig": root.ssh_config, "python": sys.executable, "store": store}, lines="120")
    sessions = f.children_of(_sshd_server.server._proc.pid)
    _sshd_server.server.stop()
    for pid in sessions:  # established connections drop too, as in a network outage
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)  # a session's monitor leads its group
    try:
        shown = exp_json("show", run_id, cwd=repo)
        assert shown["status"] in ("queued", "running"), shown
        time.sleep(2)
    finally:
        _sshd_server.server.resume()
    [run] = f.after_fault(repo, before, timeout=60).values()
    assert run.status == "succeeded", exp("logs", run_id, cwd=repo).stdout
    log = f.git_log(repo, run)
    f.assert_log_prefix(log, at_least=50)
    assert "done" in log


@pytest.mark.xdist_group("gcs-restart")
def test_gcs_emulator_stopped_mid_run(tmp_path: Path, sshd_root: Any, gcs_env: Any) -> None:
    """An ssh target whose store is gs:// (the emulator): the emulator goes down while the
    job runs and comes back 2 s later. The agent's heartbeat and log streaming fail
    meanwhile and ride it out; the run succeeds and is written back whole. The emulator
    keeps objects in memory, so what it held before the outage is gone (a real bucket
    keeps it): the log in git is the part streamed after the outage, in order, to the end.
    (Root login: the worker needs google-cloud-storage, this venv's.)"""
    repo = make_repo(tmp_path / "proj", {"train.py": f.TRAIN, "README.md": "x\n"})
    # The emulator forgets the heartbeat, and the agent's next beat waits out the store's
    # retry backoff (up to 10 s): the default lostAfter (15 s) allows for it, make_repo's 3 s
    # would not.
    git("config", "exp.lostAfter", "20", cwd=repo)
    gcs_env.bucket("faults")
    run_id, before = _launch_printing(repo, "box", {
        "backend": "ssh", "host": sshd_root.alias, "python": sys.executable,
        "workdir": sshd_root.mkdtemp("gcs"), "sshConfig": sshd_root.ssh_config,
        "store": "gs://faults/team", "env": "STORAGE_EMULATOR_HOST"}, lines="50")
    gcs_env.stop()
    try:
        time.sleep(2)
    finally:
        gcs_env.start()
        gcs_env.bucket("faults")
    [run] = f.after_fault(repo, before, timeout=60).values()
    assert run.status == "succeeded", exp("logs", run_id, cwd=repo).stdout
    lines = [ln for ln in f.git_log(repo, run).splitlines() if ln.startswith("line ")]
    first = int(lines[0].split()[1])
    assert lines == [f"line {i}" for i in range(first, 50)]
    assert "done" in f.git_log(repo, run)


def _launch_printing(repo: Path, target: str, settings: dict[str, str], *,
                     lines: str) -> tuple[str, dict[str, str]]:
    """Configure `target`, leave uncommitted work, launch train.py printing `lines` lines
    (0.1 s apart) and wait until it has printed two: the moment to inject a fault."""
    for key, value in settings.items():
        git("config", f"exp.target.{target}.{key}", value, cwd=repo)
    f.dirty_project(repo)
    before = f.user_state(repo)
    run_id = exp("run", "-d", "-t", target, "--", "python3", "train.py", lines, "0.1",
                 cwd=repo).stdout.strip()
    wait_for(lambda: "line 2" in exp("logs", run_id, cwd=repo).stdout, timeout=60,
             what="the job to print")
    return run_id, before
