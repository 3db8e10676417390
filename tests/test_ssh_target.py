"""The ssh target, end to end, through a real sshd on 127.0.0.1.

The worker is the dedicated user `gitexp-worker` with its own home: it sees no file of the
dev side (no repository, no venv - its python3 is the system one, with nothing installed),
so the run can only succeed through the store, the shipped wheel and the ssh channel.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_repo
from tests.helpers import AgentCount, agents_of, exp, exp_json, git, wait_done, wait_for

SECRET = "s3cr3t-token-value-42"


def configure(repo: Path, login: Any, workdir: str, **extra: str) -> None:
    settings = {"backend": "ssh", "host": login.alias, "workdir": workdir,
                "sshConfig": login.ssh_config, **extra}
    for key, value in settings.items():
        git("config", f"exp.target.box.{key}", value, cwd=repo)


@pytest.fixture
def box(tmp_path: Path, sshd: Any) -> tuple[Path, str]:
    repo = make_repo(tmp_path / "repo", {"train.py": TRAIN})
    workdir = sshd.mkdtemp("box")
    configure(repo, sshd, workdir, python="/usr/bin/python3")
    return repo, workdir


TRAIN = """\
import os, sys, time
import gitexp  # importable in the job too: the agent's PYTHONPATH holds gitexp's wheel
print("home", os.environ["HOME"], "cwd", os.getcwd(), flush=True)
gitexp.log(step=1, loss=0.5)
if len(sys.argv) > 1:
    print("waiting", flush=True)
    time.sleep(float(sys.argv[1]))
print("done")
"""


def test_run_on_ssh_target_comes_back_into_git(box: tuple[Path, str], sshd: Any) -> None:
    repo, workdir = box
    proc = exp("run", "-t", "box", "--", "python3", "train.py", cwd=repo)
    run_id = json.loads(exp("ls", "--json", cwd=repo).stdout)[0]["id"]
    # followed; in the host's warm checkout (worker.workspace.Pool), kept for the next run
    assert f"home {sshd.home} cwd {workdir}/warm/0/tree\n" in proc.stdout
    assert not Path(workdir, "work", run_id).exists()  # the run's own spool: removed
    shown = wait_done(run_id, repo)
    assert shown["status"] == "succeeded", shown
    # Written back on the dev side: a results commit on the run's ref, with log and metrics.
    ref = f"refs/experiments/{run_id}"
    log = git("cat-file", "blob", f"{ref}:.gitexp-results/log.txt", cwd=repo)
    assert f"home {sshd.home}" in log and "done" in log
    metrics = git("cat-file", "blob", f"{ref}:.gitexp-results/metrics.jsonl", cwd=repo)
    assert '"loss": 0.5' in metrics
    snapshot = git("rev-parse", f"{ref}^1", cwd=repo).strip()
    assert git("rev-parse", f"{ref}^1:train.py", cwd=repo) == \
        git("rev-parse", "HEAD:train.py", cwd=repo)
    assert snapshot == shown.get("snapshot", snapshot)
    assert "done" in exp("logs", run_id, cwd=repo).stdout


def test_a_sweep_on_ssh_keeps_max_parallel_agents_on_the_host(box: tuple[Path, str],
                                                              sshd: Any) -> None:
    """--max-parallel 2 over ssh: two slot agents on the host (their work directory is in
    their argv), never one per run; every run comes back into git."""
    repo, workdir = box
    count = AgentCount(workdir)
    proc = exp("run", "-d", "-t", "box", "--sweep", "x=1,2,3", "--max-parallel", "2", "--",
               "python3", "train.py", "0.{x}", cwd=repo)
    runs = [wait_done(i, repo, timeout=120) for i in proc.stdout.split()]
    wait_for(lambda: not agents_of(workdir), timeout=30, what="the slots to exit")
    # never more than 2 at once; under load one slot may take every run before the
    # other is up, so the peak may be 1 (test_sweep.py, with longer runs, sees 2)
    assert 1 <= count.stop() <= 2
    assert [r["status"] for r in runs] == ["succeeded"] * 3
    sweep_id = runs[0]["record"]["sweep"]
    logs = sorted(p.name for p in Path(workdir, "logs").iterdir())  # one per agent
    assert logs == [f"{sweep_id}-s0.log", f"{sweep_id}-s1.log"]
    for r in runs:
        log = git("cat-file", "blob", f"refs/experiments/{r['id']}:.gitexp-results/log.txt",
                  cwd=repo)
        # each slot's runs in one of the host's warm checkouts, never two at once in one
        assert re.search(rf"cwd {re.escape(workdir)}/warm/[01]/tree\n", log), log
        assert "done" in log


def test_targets_lists_backend_store_and_settings(box: tuple[Path, str], sshd: Any) -> None:
    repo, workdir = box
    git("config", "exp.target.box.secrets", "MY_TOKEN", cwd=repo)
    (repo / ".gitexp").mkdir()
    (repo / ".gitexp" / "config").write_text('[exp "target.team"]\n\tbackend = ssh\n'
                                             "\thost = gpu-box\n")
    listed = {t["name"]: t for t in exp_json("targets", cwd=repo)}
    assert listed["local"]["backend"] == "local" and listed["local"]["default"]
    assert listed["box"]["backend"] == "ssh"
    assert listed["box"]["settings"]["workdir"] == workdir
    assert listed["box"]["store"] == f"ssh://{sshd.alias}{workdir}/store?ssh_config=" \
        f"{sshd.ssh_config}"
    assert listed["box"]["settings"]["secrets"] == "***"  # names only, still masked
    assert listed["team"]["store"] == "ssh://gpu-box/~/.cache/gitexp/store"  # shared config
    table = exp("targets", cwd=repo).stdout
    assert "box" in table and "team" in table and "local *" in table


def test_second_run_reuses_wheel_and_sends_little(box: tuple[Path, str], sshd: Any) -> None:
    repo, workdir = box
    first = exp("run", "-d", "-t", "box", "--", "python3", "train.py", cwd=repo).stdout.strip()
    wait_done(first, repo)
    tools = sshd.run(["ls", f"{workdir}/tools"], check=True).stdout.split()
    (repo / "train.py").write_text(TRAIN.replace("done", "done again"))
    second = exp("run", "-d", "-t", "box", "--", "python3", "train.py", cwd=repo).stdout.strip()
    assert wait_done(second, repo)["status"] == "succeeded"
    assert sshd.run(["ls", f"{workdir}/tools"], check=True).stdout.split() == tools
    assert "done again" in exp("logs", second, cwd=repo).stdout
    # the same warm checkout, moved to the new snapshot (not written whole again)
    for run_id in (first, second):
        assert f"cwd {workdir}/warm/0/tree\n" in exp("logs", run_id, cwd=repo).stdout


def test_logs_follow_and_cancel_over_ssh(box: tuple[Path, str], sshd: Any) -> None:
    repo, _ = box
    run_id = exp("run", "-d", "-t", "box", "--", "python3", "train.py", "120",
                 cwd=repo).stdout.strip()
    wait_for(lambda: "waiting" in exp("logs", run_id, cwd=repo).stdout, timeout=60,
             what="the job to start")
    follower = exp_async("logs", "-f", run_id, cwd=repo)
    exp("cancel", run_id, cwd=repo)
    shown = wait_done(run_id, repo, timeout=60)
    assert shown["status"] == "cancelled", shown
    follower.join(timeout=30)
    assert "waiting" in follower.output  # `logs -f` printed the log and ended with the run
    gone = sshd.run(["pgrep", "-u", sshd.user, "-f", run_id])
    assert gone.returncode == 1, gone.stdout  # no agent, no job left on the worker


def test_secrets_reach_the_job_only_through_ssh_stdin(box: tuple[Path, str], sshd: Any,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    repo, workdir = box
    git("config", "exp.target.box.secrets", "MY_TOKEN", cwd=repo)
    monkeypatch.setenv("MY_TOKEN", SECRET)
    check = ("import hashlib, os; "
             "print('token', hashlib.sha256(os.environ['MY_TOKEN'].encode()).hexdigest())")
    run_id = exp("run", "-d", "-t", "box", "--", "python3", "-c", check, cwd=repo).stdout.strip()
    assert wait_done(run_id, repo)["status"] == "succeeded"
    assert f"token {hashlib.sha256(SECRET.encode()).hexdigest()}" in \
        exp("logs", run_id, cwd=repo).stdout  # the job had it
    # ...and it is nowhere else: not in git (record, results), not on the worker's disk.
    everything = git("log", "-p", "--all", f"refs/experiments/{run_id}", cwd=repo)
    assert SECRET not in everything
    found = sshd.run(["grep", "-rlF", SECRET, workdir])
    assert found.returncode == 1, found.stdout


def test_unreachable_host_fails_the_run_with_one_line(tmp_path: Path, sshd: Any) -> None:
    repo = make_repo(tmp_path / "repo")
    configure(repo, sshd, "/tmp/x", store=(tmp_path / "store").as_uri())
    git("config", "exp.target.box.host", "nobody@127.0.0.1", cwd=repo)
    git("config", "exp.target.box.port", "1", cwd=repo)
    proc = exp("run", "-t", "box", "--", "true", cwd=repo, check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "error: " in proc.stderr and "127.0.0.1" in proc.stderr


@pytest.mark.xdist_group("gcs-restart")
def test_gcs_store_run_survives_an_emulator_restart_mid_upload(
        tmp_path: Path, sshd_root: Any, gcs_env: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """An ssh target whose store is gs:// (the emulator): the emulator dies in the middle of
    the code upload and comes back a second later (empty, it is in memory); the upload is
    retried and the run completes with an intact result. The worker logs in as root here
    only because it needs google-cloud-storage, i.e. this venv's python."""
    from gitexp.cli._common import open_repo
    from gitexp.service import launch
    from gitexp.stores.gcs import GCSStore

    repo = make_repo(tmp_path / "repo", {"train.py": TRAIN, "blob.bin": ""}, commit=False)
    (repo / "blob.bin").write_bytes(os.urandom(1_500_000))  # the upload takes several chunks
    git("add", "-A", cwd=repo)
    git("commit", "-qm", "init", cwd=repo)
    gcs_env.bucket("runs")
    configure(repo, sshd_root, sshd_root.mkdtemp("gcs"), python=sys.executable,
              store="gs://runs/team", env="STORAGE_EMULATOR_HOST")
    monkeypatch.setattr(GCSStore, "chunk_size", 256 * 1024)
    back = threading.Event()
    monkeypatch.setattr(GCSStore, "_sleep",
                        staticmethod(lambda s: (back.wait(30), time.sleep(s))))

    def restart() -> None:
        time.sleep(1.0)
        gcs_env.start()
        gcs_env.bucket("runs")
        back.set()

    def progress(what: str, done: int, total: int) -> None:
        if what == "code" and done < total and gcs_env.running and not back.is_set():
            gcs_env.stop()
            threading.Thread(target=restart, daemon=True).start()

    monkeypatch.chdir(repo)
    dev_repo, config = open_repo()
    started = launch.start(dev_repo, config, launch.LaunchRequest(
        argv=["python3", "train.py"], cwd=repo, target="box", progress=progress))
    assert back.is_set()  # the emulator really went away mid-upload
    shown = wait_done(started.id, repo, timeout=90)
    assert shown["status"] == "succeeded", shown
    result = json.loads(git("cat-file", "blob",
                            f"refs/experiments/{started.id}:.gitexp-results/result.json",
                            cwd=repo))
    assert result["status"] == "succeeded" and result["exit_code"] == 0
    assert "done" in exp("logs", started.id, cwd=repo).stdout


class exp_async:
    """`git exp ARGS` in a thread, for commands that run until something else happens."""

    def __init__(self, *args: str, cwd: Path) -> None:
        self.output = ""
        self._thread = threading.Thread(target=self._run, args=(args, cwd), daemon=True)
        self._thread.start()

    def _run(self, args: tuple[str, ...], cwd: Path) -> None:
        self.output = exp(*args, cwd=cwd, check=False, timeout=90).stdout

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_ssh_run_pulls_its_dvc_data_version_from_a_remote(tmp_path: Path,
                                                          sshd_root: Any) -> None:
    """The worker's checkout has no DVC cache: the agent pulls exactly the recorded data
    version from the DVC remote and verifies it before the command. (Root login: the worker
    needs DVC, i.e. this venv's python; the remote is a directory both sides can read.)"""
    from tests.test_data import make_dvc_repo, seen_files

    remote = tmp_path / "dvc-remote"
    files = {"data/train.csv": "x,y\n1,2\n" * 20, "labels.csv": "a\nb\n"}
    repo = make_dvc_repo(tmp_path / "proj", files, ["data", "labels.csv"],
                         config=f"['remote \"shared\"']\n    url = {remote}\n")
    configure(repo, sshd_root, sshd_root.mkdtemp("dvc"), python=sys.executable,
              dvcRemote="shared")
    run_id = exp("run", "-d", "-t", "box", "--", "python3", "show_data.py", ".",
                 cwd=repo).stdout.strip().splitlines()[-1]
    shown = wait_done(run_id, repo, timeout=120)
    log = exp("logs", run_id, cwd=repo).stdout
    assert shown["status"] == "succeeded", log
    assert "from DVC remote shared" in log and "hashes verified" in log
    seen = seen_files(log)
    for rel, text in files.items():
        assert seen[rel][0] == hashlib.sha256(text.encode()).hexdigest()


def test_a_host_without_sftp_is_reported_as_such(_sshd_server: Any, tmp_path: Path) -> None:
    """ssh logs in, the SFTP subsystem is off: the store says that, at once, not 'does
    `ssh host` work?' after retrying. A second sshd on the session's keys, without the
    `Subsystem sftp` line."""
    from gitexp.errors import StoreError
    from gitexp.stores import open_store
    from tests.services._util import free_port, port_open, spawn, started, stop_process

    server = _sshd_server.server
    port = free_port()
    text = (server.dir / "sshd_config").read_text()
    config = tmp_path / "sshd_config"
    config.write_text("".join(line + "\n" for line in text.splitlines()
                              if not line.startswith(("Subsystem", "Port", "PidFile")))
                      + f"Port {port}\nPidFile {tmp_path}/sshd.pid\n")
    proc = spawn(["/usr/sbin/sshd", "-D", "-f", str(config), "-E", str(tmp_path / "log")],
                 tmp_path / "log")
    try:
        assert started(proc, lambda: port_open(port), 10)
        client = tmp_path / "ssh_config"
        login = _sshd_server.worker
        client.write_text(f"Host nosftp\n    HostName 127.0.0.1\n    Port {port}\n"
                          f"    User {login.user}\n    IdentityFile {login.key}\n"
                          "    IdentitiesOnly yes\n    StrictHostKeyChecking no\n"
                          "    UserKnownHostsFile /dev/null\n    BatchMode yes\n")
        ssh = subprocess.run(["ssh", "-F", str(client), "nosftp", "true"], capture_output=True,
                             text=True, timeout=30)
        assert ssh.returncode == 0, ssh.stderr  # ssh itself works
        store = open_store(f"ssh://nosftp/tmp/gitexp-nosftp?ssh_config={client}")
        began = time.monotonic()
        with pytest.raises(StoreError) as caught:
            store.read("runs/x/log")
        assert time.monotonic() - began < 10  # not the 30 s of retries of an outage
        assert "offers no SFTP" in caught.value.message
        assert "Subsystem sftp" in (caught.value.hint or "")
        assert "does `ssh" not in caught.value.message + (caught.value.hint or "")
    finally:
        stop_process(proc)
