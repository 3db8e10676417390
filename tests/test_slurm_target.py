"""The slurm target against a real single-node Slurm cluster (the `slurm` fixture), through
the real `git exp`: sbatch, job arrays for sweeps, squeue for liveness, scancel, and a
submission over ssh to a loopback "login node" (the `sshd` fixture)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from gitexp.backends import Launch
from gitexp.backends.slurm import SlurmBackend
from gitexp.git import Repo
from gitexp.git.config import Target
from gitexp.model.record import Environment, RunRecord
from gitexp.model.runstate import RunState
from gitexp.stores.file import FileStore
from tests.helpers import exp, exp_json, git, wait_done, wait_for
from tests.test_resume import TRAIN as RESUMABLE

pytestmark = pytest.mark.xdist_group("slurm")

TRAIN = """\
import sys, time
import gitexp
lr = float(sys.argv[1])
time.sleep(float(sys.argv[2]) if len(sys.argv) > 2 else 0)
gitexp.log(loss=lr * 10)
print("trained with lr", lr)
print("cwd", __import__("os").getcwd())
"""


def configure(repo: Path, store: str, **extra: str) -> None:
    # The compute node's system Python: gitexp reaches it as the wheel shipped in the store.
    settings = {"backend": "slurm", "store": store, "partition": "debug", "time": "5",
                "python": "/usr/bin/python3", **extra}
    for key, value in settings.items():
        git("config", f"exp.target.hpc.{key}", value, cwd=repo)
    (repo / "train.py").write_text(TRAIN)


def handle_of(store: Path, run_id: str) -> dict[str, Any]:
    return dict(json.loads((store / "runs" / run_id / "handle.json").read_text()))


def scontrol(job: str, env: dict[str, str] | None = None) -> dict[str, str]:
    out = subprocess.run(["scontrol", "show", "job", "-o", job], capture_output=True,
                         text=True, check=True, env={**os.environ, **(env or {})}).stdout
    return dict(re.findall(r"(\w+)=(\S*)", out.splitlines()[0]))


def jobcomp(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    return [dict(re.findall(r"(\w+)=(\S*)", line)) for line in path.read_text().splitlines()]


def launch_of(repo: Path, n: int) -> list[Launch]:
    records = [RunRecord(
        id=f"train-1127-1200-ab{i}c", argv=["python", "train.py"], cwd="", base=None,
        branch="main", user="t", launched_at=0.0, target="hpc", backend="slurm",
        store="file:///s", env=Environment(python="3.11", platform="linux"),
        sweep="sweep-train-1127-1200-wxyz" if n > 1 else None, snapshot=f"{i}" * 40)
        for i in range(n)]
    return [Launch(repo=Repo.discover(repo), record=r, store=FileStore(Path("/s")),
                   heartbeat=2.0) for r in records]


def test_script_carries_every_option_quoted(repo: Path) -> None:
    """The sbatch script has one #SBATCH line per set target key, values shell-quoted, a
    job array with its throttle for a sweep, and is valid bash."""
    settings = {"store": "file:///shared/gitexp store", "partition": "gpu", "time": "1:00:00",
                "cpus": "8", "mem": "32G", "gpus": "a100:2", "gres": "gpu:a100:2",
                "account": "proj's", "qos": "high", "setup": "module load python/3.11",
                "sbatch": "--constraint=a100; --exclusive"}
    backend = SlurmBackend(target=Target("hpc", "slurm", settings), repo=Repo.discover(repo))
    script = backend.script(launch_of(repo, 4), max_parallel=2, wheel="/shared/w.whl")
    header = [ln for ln in script.splitlines() if ln.startswith("#SBATCH")]
    assert header == [
        "#SBATCH --job-name=sweep-train-1127-1200-wxyz",
        "#SBATCH --array=0-3%2",
        "#SBATCH --output='/shared/gitexp store/slurm/slurm-%A_%a.out'",
        "#SBATCH --partition=gpu", "#SBATCH --time=1:00:00", "#SBATCH --cpus-per-task=8",
        "#SBATCH --mem=32G", "#SBATCH --gpus=a100:2", "#SBATCH --gres=gpu:a100:2",
        "#SBATCH --account='proj'\"'\"'s'", "#SBATCH --qos=high",
        "#SBATCH --signal=B:USR1@60", "#SBATCH --requeue",
        "#SBATCH --constraint=a100", "#SBATCH --exclusive"]
    assert "module load python/3.11" in script
    assert "runs=(train-1127-1200-ab0c train-1127-1200-ab1c train-1127-1200-ab2c" in script
    assert "--store 'file:///shared/gitexp store'" in script
    assert subprocess.run(["bash", "-n"], input=script, text=True, check=False).returncode == 0
    single = backend.script(launch_of(repo, 1), max_parallel=0, wheel="")
    assert "#SBATCH --job-name=train-1127-1200-ab0c" in single
    assert "--array" not in single
    backend = SlurmBackend(target=Target("hpc", "slurm", {**settings, "maxattempts": "1"}),
                           repo=Repo.discover(repo))
    once = backend.script(launch_of(repo, 1), max_parallel=0, wheel="")
    assert "#SBATCH --no-requeue" in once and "--max-attempts 1" in once


def test_run_succeeds_with_log_and_metrics(slurm_env: Any, repo: Path, tmp_path: Path) -> None:
    """A run on the cluster: sbatch'ed with the target's options, written back with its
    metrics and log; the Slurm job is named after the run."""
    store = tmp_path / "store"
    configure(repo, store.as_uri())
    run_id = exp("run", "-t", "hpc", "-d", "--", "python3", "train.py", "0.5",
                 cwd=repo).stdout.strip()
    job = handle_of(store, run_id)["job"]
    info = scontrol(job)
    assert info["JobName"] == run_id
    assert info["Partition"] == "debug" and info["TimeLimit"] == "00:05:00"
    done = wait_done(run_id, repo, timeout=90)
    assert done["status"] == "succeeded", exp("logs", run_id, cwd=repo).stdout
    assert done["result"]["metrics"]["loss"] == 5.0
    log = exp("logs", run_id, cwd=repo).stdout
    assert "trained with lr 0.5" in log
    # in a warm checkout on the node's own disk, kept across jobs (one flock'd user each)
    assert re.search(rf"cwd /tmp/gitexp-warm-{os.getuid()}/\d+/tree\n", log), log
    assert wait_for(lambda: scontrol(job)["JobState"] == "COMPLETED", timeout=20)


def test_sweep_is_a_job_array_with_max_parallel(slurm_env: Any, repo: Path,
                                                tmp_path: Path) -> None:
    """A 4-point sweep with --max-parallel 2: one job array `0-3%2`; 4 runs succeed, each
    written back with its own metrics; never more than 2 ran at once (jobcomp times)."""
    store = tmp_path / "store"
    configure(repo, store.as_uri())
    proc = exp("run", "-d", "-t", "hpc", "--sweep", "lr=1,2,3,4", "--max-parallel", "2", "--",
               "python3", "train.py", "{lr}", "1", cwd=repo)
    ids = proc.stdout.split()
    assert len(ids) == 4
    sweep_id = re.search(r"sweep (\S+):", proc.stderr).group(1)  # type: ignore[union-attr]
    handles = [handle_of(store, run_id) for run_id in ids]
    array = handles[0]["array"]
    assert [h["job"] for h in handles] == [f"{array}_{i}" for i in range(4)]
    assert scontrol(f"{array}_3")["ArrayTaskThrottle"] == "2"
    runs = [wait_done(run_id, repo, timeout=120) for run_id in ids]
    for lr, done in enumerate(runs, start=1):
        assert done["status"] == "succeeded", exp("logs", done["id"], cwd=repo).stdout
        assert done["result"]["metrics"]["loss"] == lr * 10
        assert done["record"]["params"] == {"lr": str(lr)}
        assert done["record"]["argv"] == ["python3", "train.py", str(lr), "1"]
    listed = exp_json("ls", "--sweep", sweep_id, cwd=repo)
    assert sorted(r["id"] for r in listed) == sorted(ids)
    assert len({r["snapshot"] for r in runs}) == 4  # one snapshot commit per run...
    trees = {git("rev-parse", f"{r['snapshot']}^{{tree}}", cwd=repo) for r in runs}
    assert len(trees) == 1  # ...all of the same snapshot of the work tree

    def array_tasks() -> list[dict[str, str]] | None:
        found = [j for j in jobcomp(slurm_env.jobcomp) if j.get("ArrayJobId") == array]
        return found if len(found) == 4 else None

    tasks = wait_for(array_tasks, timeout=20, what="4 array tasks in the jobcomp file")
    assert sorted(t["ArrayTaskId"] for t in tasks) == ["0", "1", "2", "3"]
    assert all(t["JobState"] == "COMPLETED" for t in tasks)
    spans = [(datetime.fromisoformat(t["StartTime"]), datetime.fromisoformat(t["EndTime"]))
             for t in tasks]
    for start, _ in spans:
        running = sum(1 for s, e in spans if s <= start < e)
        assert running <= 2, spans


def test_failed_and_cancelled_jobs(slurm_env: Any, repo: Path, tmp_path: Path) -> None:
    """A command that exits 3 ends `failed` (exit 3); `git exp cancel` of a running job and
    of a job still queued in Slurm both end `cancelled`, and Slurm cancelled the jobs."""
    store = tmp_path / "store"
    configure(repo, store.as_uri())
    bad = exp("run", "-t", "hpc", "-d", "--", "python3", "-c", "import sys; sys.exit(3)",
              cwd=repo).stdout.strip()
    slow = exp("run", "-t", "hpc", "-d", "--", "python3", "train.py", "1", "120",
               cwd=repo).stdout.strip()
    git("config", "exp.target.hpc.sbatch", "--hold", cwd=repo)  # stays PENDING
    held = exp("run", "-t", "hpc", "-d", "--", "python3", "train.py", "1",
               cwd=repo).stdout.strip()

    exp("cancel", held, cwd=repo)
    assert wait_done(held, repo, timeout=20)["status"] == "cancelled"
    failed = wait_done(bad, repo, timeout=90)
    assert (failed["status"], failed["result"]["exit_code"]) == ("failed", 3)
    wait_for(lambda: exp_json("show", slow, cwd=repo)["status"] == "running", timeout=60,
             what="the slow run to start")
    exp("cancel", slow, cwd=repo)
    assert wait_done(slow, repo, timeout=60)["status"] == "cancelled"
    for run_id in (held, slow):
        job = handle_of(store, run_id)["job"]
        assert wait_for(lambda j=job: scontrol(j)["JobState"] == "CANCELLED", timeout=20)


def _kill_tree(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def test_node_crash_ends_lost_never_running(slurm_env: Any, repo: Path,
                                            tmp_path: Path) -> None:
    """slurmd dies with the job (node crash: slurmd, slurmstepd, agent and command are
    killed): the run ends `lost` or `failed` within the heartbeat timeout (3 s in tests),
    although Slurm still says RUNNING - never `running` forever."""
    store = tmp_path / "store"
    configure(repo, store.as_uri())
    run_id = exp("run", "-t", "hpc", "-d", "--", "python3", "train.py", "1", "120",
                 cwd=repo).stdout.strip()
    wait_for(lambda: exp_json("show", run_id, cwd=repo)["status"] == "running", timeout=60,
             what="the run to start")
    job = handle_of(store, run_id)["job"]
    status = json.loads((store / "runs" / run_id / "status.json").read_text())
    steps = subprocess.run(["pgrep", "-f", rf"slurmstepd: \[{job}\."], capture_output=True,
                           text=True, check=False).stdout.split()
    try:
        slurm_env.stop_slurmd(signal.SIGKILL)
        _kill_tree([int(p) for p in steps] + [int(status["agent_pid"])])
        with contextlib.suppress(ProcessLookupError):
            os.killpg(int(status["pid"]), signal.SIGKILL)  # the command's own session
        ended = wait_done(run_id, repo, timeout=30)
        assert ended["status"] in ("lost", "failed")
        assert scontrol(job)["JobState"] == "RUNNING"  # Slurm has not noticed yet
    finally:
        slurm_env.start_slurmd()
        subprocess.run(["scancel", job], check=False, capture_output=True)
        slurm_env.wait_idle(timeout=60)


def test_submit_through_a_login_node(slurm: Any, sshd: Any, repo: Path) -> None:
    """`host` = a login node: sbatch/squeue run there over the user's ssh (as that user);
    the store is reached over SFTP from here and as a directory by the job."""
    remote = sshd.mkdtemp("store")
    configure(repo, sshd.url(remote), host=sshd.alias, sshconfig=sshd.ssh_config,
              workerstore=Path(remote).as_uri())
    env = {**sshd.env, "GITEXP_SSH_CONFIG": sshd.ssh_config}
    os.environ.pop("SLURM_CONF", None)  # only the login node knows where Slurm is
    run_id = exp("run", "-t", "hpc", "-d", "--", "python3", "train.py", "0.25", cwd=repo,
                 env=env).stdout.strip()
    done = wait_done_env(run_id, repo, env)
    assert done["status"] == "succeeded", exp("logs", run_id, cwd=repo, env=env).stdout
    assert done["result"]["metrics"]["loss"] == 2.5
    handle = json.loads(sshd.run(["cat", f"{remote}/runs/{run_id}/handle.json"],
                                 check=True).stdout)
    info = scontrol(handle["job"], env=slurm.env)
    assert info["UserId"].startswith(sshd.user)  # submitted on the login node, as its user
    assert info["JobName"] == run_id


def wait_done_env(run_id: str, repo: Path, env: dict[str, str]) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        data: dict[str, Any] = json.loads(exp("show", run_id, "--json", cwd=repo,
                                              env=env).stdout)
        return data if data["status"] not in ("queued", "running") else None
    return wait_for(done, timeout=90, every=0.5, what=f"run {run_id} to end")


def test_job_whose_agent_cannot_start_ends_failed_with_its_output(slurm_env: Any, repo: Path,
                                                                   tmp_path: Path) -> None:
    """A compute node without the configured Python: Slurm says FAILED, the run ends
    `failed` (not lost), and the job's own stderr is in `git exp logs`."""
    configure(repo, (tmp_path / "store").as_uri(), python="/nonexistent/python3")
    run_id = exp("run", "-t", "hpc", "-d", "--", "python3", "train.py", "1",
                 cwd=repo).stdout.strip()
    done = wait_done(run_id, repo, timeout=60)
    assert done["status"] == "failed"
    assert "FAILED" in done["result"]["error"]
    assert "/nonexistent/python3" in exp("logs", run_id, cwd=repo).stdout


def _final_model(store: Path, run_id: str) -> bytes:
    """The model file of the run's last checkpoint (TRAIN saves it as `final`)."""
    latest = RunState(FileStore(store), run_id).checkpoint()
    assert latest is not None and latest.label == "final", latest
    return (store / "runs" / run_id / "checkpoints" / str(latest.n) / "model.txt").read_bytes()


def test_a_requeued_run_resumes_and_a_time_limit_ends_timeout(slurm_env: Any, repo: Path,
                                                              tmp_path: Path) -> None:
    """`scontrol requeue` mid-run: Slurm runs the agent again, which goes on as attempt 2
    from the last checkpoint; the run ends `succeeded` with the final metrics and model file
    of an uninterrupted run of the same snapshot. A run past its time limit (`--signal`'s
    USR1 ahead of it) ends `timeout`, never requeued."""
    store = tmp_path / "store"
    configure(repo, store.as_uri())
    (repo / "train.py").write_text(RESUMABLE)
    pause = tmp_path / "pid"
    cut = exp("run", "-t", "hpc", "-d", "--", "python3", "train.py", str(pause),
              cwd=repo).stdout.strip()
    whole = exp("run", "-t", "hpc", "-d", "--force", "--", "python3", "train.py",
                cwd=repo).stdout.strip()
    git("config", "exp.target.hpc.time", "1", cwd=repo)  # its warning comes within ~30 s
    late = exp("run", "-t", "hpc", "-d", "--force", "--", "python3", "-c",
               "import time; print('training', flush=True); time.sleep(300)",
               cwd=repo).stdout.strip()
    job = handle_of(store, cut)["job"]
    state = RunState(FileStore(store), cut)
    # `whole` ends first and `late` takes its CPU: the one the requeue frees is then cut's.
    a = wait_done(whole, repo, timeout=60)
    late_job = handle_of(store, late)["job"]
    wait_for(lambda: scontrol(late_job)["JobState"] == "RUNNING"
             and scontrol(handle_of(store, whole)["job"])["JobState"] == "COMPLETED",
             timeout=60, what="`whole`'s job to leave its CPU to `late`")
    wait_for(lambda: pause.exists() and (c := state.checkpoint()) is not None and c.step == 4,
             timeout=60, what="checkpoint 'step 4' in the store")
    subprocess.run(["scontrol", "requeue", job], check=True)
    # A requeued job waits ~2 minutes to be eligible again (its old credential's lifetime):
    # 2 s here, for the test. Not `now`: started within the second of its requeue, slurmd
    # takes the new credential for the revoked one (it compares whole seconds) and the job
    # ends "non-startable: Job credential revoked", never running the second attempt.
    wait_for(lambda: scontrol(job)["JobState"] == "PENDING", timeout=30, what="the requeue")
    subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now+2"], check=True)
    try:
        wait_for(lambda: re.search(rf"^{cut} +running \(attempt 2\)", exp("ls", cwd=repo).stdout,
                                   re.MULTILINE), timeout=60, what="ls to show the second attempt")
    except AssertionError as exc:
        queue = subprocess.run(["squeue", "-h", "-o", "%i %T %r %S"], capture_output=True,
                               text=True).stdout
        log = exp("logs", cut, cwd=repo, check=False).stdout[-2000:]
        raise AssertionError(f"{exc}\nqueue:\n{queue}\nls:\n{exp('ls', cwd=repo).stdout}\n"
                             f"logs:\n{log}") from None
    Path(f"{pause}.go").write_text("")

    b = wait_done(cut, repo, timeout=60)
    assert a["status"] == b["status"] == "succeeded", exp("logs", cut, cwd=repo).stdout
    assert a["result"]["metrics"] == b["result"]["metrics"] and "loss" in a["result"]["metrics"]
    assert _final_model(store, whole) == _final_model(store, cut)
    assert [(x["n"], x["reason"], x["resumed_from"]) for x in b["result"]["attempts"]] == [
        (1, "preempted", None), (2, "succeeded", "step 4")]
    log = exp("logs", cut, cwd=repo).stdout
    assert "resuming from checkpoint 'step 4' (step 4)" in log and "resumed at step 5" in log
    assert scontrol(job)["Restarts"] == "1"

    ended = wait_done(late, repo, timeout=90)
    assert ended["status"] == "timeout", exp("logs", late, cwd=repo).stdout
    assert "attempts" not in ended["result"]
    assert scontrol(late_job)["Restarts"] == "0"
