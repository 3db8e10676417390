"""The core loop end to end on the local target: run, follow, write back, ls/show/logs/cancel."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import make_repo
from tests.helpers import exp, exp_json, git, wait_done, wait_for

TRAIN = """\
import json, os, sys, gitexp
for step in range(4):
    gitexp.log(step=step, loss=1.0 / (step + 1), acc=step / 4)
    print(f"step {step} in {os.path.basename(os.getcwd())}", flush=True)
json.dump({"eval": {"f1": 0.75}}, open("metrics.json", "w"))
sys.exit(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "proj", {"src/train.py": TRAIN, "README.md": "x\n"})


def test_run_follows_log_writes_back_and_exits_with_job_code(project: Path):
    proc = exp("run", "--", "python", "train.py", "3", cwd=project / "src", check=False)
    assert proc.returncode == 3
    assert "step 3 in src" in proc.stdout  # ran in the same subdirectory
    runs = exp_json("ls", cwd=project)
    assert len(runs) == 1
    run = runs[0]
    assert run["status"] == "failed"
    assert run["result"]["exit_code"] == 3
    assert run["record"]["argv"] == ["python", "train.py", "3"]
    assert run["record"]["cwd"] == "src"
    assert run["result"]["metrics"] == {"loss": 0.25, "acc": 0.75, "eval.f1": 0.75}
    # The results commit: first parent is the snapshot; the tree is the snapshot's plus results.
    ref = f"refs/experiments/{run['id']}"
    assert git("rev-parse", f"{ref}^1", cwd=project).strip() == run["snapshot"]
    diff = git("diff", "--name-only", run["snapshot"], ref, cwd=project).split()
    assert diff and all(p.startswith(".gitexp-results/") for p in diff)
    log = git("show", f"{ref}:.gitexp-results/log.txt", cwd=project)
    assert "step 0 in src" in log
    series = git("show", f"{ref}:.gitexp-results/metrics.jsonl", cwd=project).splitlines()
    assert [json.loads(x)["step"] for x in series] == [0, 1, 2, 3]
    result = json.loads(git("show", f"{ref}:.gitexp-results/result.json", cwd=project))
    assert result["status"] == "failed" and result["host"]
    assert result["started_at"] <= result["ended_at"]
    record = json.loads(git("show", f"{ref}:.gitexp-results/record.json", cwd=project))
    assert record["schema"] if "schema" in record else record["id"] == run["id"]
    pkgs = git("show", f"{ref}:.gitexp-results/packages.txt", cwd=project)
    assert "gitexp==" in pkgs


def test_detach_prints_id_and_show_logs_work(project: Path):
    run_id = exp("run", "-d", "-n", "exp1", "--", "python", "train.py", cwd=project / "src") \
        .stdout.strip()
    assert run_id.startswith("exp1-")
    shown = wait_done(run_id, project)
    assert shown["status"] == "succeeded"
    assert "step 3" in exp("logs", run_id, cwd=project).stdout
    text = exp("show", run_id[-4:], cwd=project).stdout  # a unique suffix finds it
    assert run_id in text and "succeeded" in text and "loss" in text
    table = exp("ls", cwd=project).stdout
    assert run_id in table and "succeeded" in table and "python train.py" in table


def test_job_sees_the_snapshot_while_the_user_edits_and_commits(project: Path, tmp_path: Path):
    gate = tmp_path / "gate"
    (project / "src" / "job.py").write_text(
        "import pathlib, time\n"
        f"gate = pathlib.Path({str(gate)!r})\n"
        "while not gate.exists(): time.sleep(0.05)\n"
        "print('saw:', int(open('job.py').read().startswith('# EDIT')), open('data.txt').read())\n")
    (project / "src" / "data.txt").write_text("original")
    run_id = exp("run", "-d", "--", "python", "job.py", cwd=project / "src").stdout.strip()
    (project / "src" / "data.txt").write_text("changed")
    (project / "src" / "job.py").write_text("# EDITED\n")
    git("add", "-A", cwd=project)
    git("commit", "-qm", "edit while running", cwd=project)
    git("switch", "-qc", "other", cwd=project)
    gate.touch()
    assert wait_done(run_id, project)["status"] == "succeeded"
    assert "saw: 0 original" in exp("logs", run_id, cwd=project).stdout


def test_cancel_ends_the_job_and_its_children(project: Path, tmp_path: Path):
    pids = tmp_path / "pids"
    script = f"sleep 300 & echo $! > {pids}; echo started; wait"
    run_id = exp("run", "-d", "--", "bash", "-c", script, cwd=project).stdout.strip()
    wait_for(lambda: pids.exists() and pids.read_text().strip(), what="child started")
    child = int(pids.read_text())
    exp("cancel", run_id, cwd=project)
    shown = wait_done(run_id, project, timeout=30)
    assert shown["status"] == "cancelled"
    wait_for(lambda: not _alive(child), timeout=10, what="child process to end")
    assert "started" in exp("logs", run_id, cwd=project).stdout


def test_kill_9_of_the_agent_leaves_the_run_lost_with_its_log(project: Path):
    run_id = exp("run", "-d", "--", "bash", "-c", "echo before-kill; sleep 300",
                 cwd=project).stdout.strip()
    handle_file = project / ".git/gitexp/store/runs" / run_id / "handle.json"
    wait_for(handle_file.exists, what="handle")
    wait_for(lambda: "before-kill" in exp("logs", run_id, cwd=project).stdout, what="log")
    status_file = handle_file.with_name("status.json")
    job = wait_for(lambda: json.loads(status_file.read_text()).get("pid"), what="job pid")
    agent = json.loads(handle_file.read_text())["pid"]
    os.kill(agent, signal.SIGKILL)
    try:
        shown = wait_done(run_id, project, timeout=20)
        assert shown["status"] == "lost"
        ref = f"refs/experiments/{run_id}"
        assert "before-kill" in git("show", f"{ref}:.gitexp-results/log.txt", cwd=project)
        wait_for(lambda: not _alive(job), timeout=10, what="the job to die with its agent")
    finally:  # should the guard have failed, the orphan is not ours to keep
        with contextlib.suppress(ProcessLookupError):
            os.killpg(job, signal.SIGKILL)


def test_kill_9_of_git_exp_run_mid_launch_leaves_no_partial_ref(project: Path):
    for i in range(20):
        (project / f"bulk{i}").mkdir()
        for j in range(100):
            (project / f"bulk{i}" / f"f{j}.txt").write_text(f"{i} {j}\n")
    git_index = (project / ".git" / "index").read_bytes()
    for delay in (0.02, 0.05, 0.1, 0.15, 0.2, 0.3):
        proc = subprocess.Popen(["git", "exp", "run", "-d", "--", "true"], cwd=project,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        time.sleep(delay)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert (project / ".git" / "index").read_bytes() == git_index
    fsck = subprocess.run(["git", "fsck", "--no-dangling"], cwd=project, capture_output=True,
                          text=True)
    assert fsck.returncode == 0, fsck.stderr
    for line in git("for-each-ref", "--format=%(refname)", "refs/experiments/",
                    cwd=project).split():
        run_id = line.rsplit("/", 1)[-1]
        assert exp_json("show", run_id, cwd=project)["record"]["argv"] == ["true"]


def test_ten_concurrent_detached_runs_are_distinct_and_all_written_back(project: Path):
    procs = [subprocess.Popen(["git", "exp", "run", "-d", "--", "python", "-c",
                               f"import gitexp; gitexp.log(step=0, k={i})"],
                              cwd=project, stdout=subprocess.PIPE, text=True)
             for i in range(10)]
    ids = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert len(set(ids)) == 10

    def all_done() -> list[dict] | None:
        runs = exp_json("ls", cwd=project)
        return runs if all(r["status"] == "succeeded" for r in runs) else None
    runs = wait_for(all_done, timeout=90, every=0.5, what="10 runs")
    assert sorted(r["result"]["metrics"]["k"] for r in runs) == list(range(10))
    refs = git("for-each-ref", "--format=%(objectname)", "refs/experiments/", cwd=project)
    assert len(refs.split()) == 10


def test_ctrl_c_stops_following_not_the_job(project: Path, tmp_path: Path):
    gate = tmp_path / "go"
    proc = subprocess.Popen(
        ["git", "exp", "run", "--", "python", "-c",
         f"import pathlib,time\nprint('up', flush=True)\n"
         f"while not pathlib.Path({str(gate)!r}).exists(): time.sleep(0.05)\nprint('done')"],
        cwd=project, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "up"
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C does: the whole foreground group
        _, err = proc.communicate(timeout=20)
        assert proc.returncode in (130, -signal.SIGINT)  # git itself may die of the signal
        assert "goes on" in err
    finally:
        gate.touch()  # a failed assert above leaves no job waiting forever
    run_id = exp_json("ls", cwd=project)[0]["id"]
    assert wait_done(run_id, project)["status"] == "succeeded"


def test_ctrl_c_through_git_sigint_and_sigterm_at_once_still_says_goodbye(project: Path,
                                                                          tmp_path: Path):
    """git answers Ctrl-C by also sending its child SIGTERM: both signals land together."""
    gate = tmp_path / "go"
    proc = subprocess.Popen(
        ["git-exp", "run", "--", "python", "-c",
         f"import pathlib,time\nprint('up', flush=True)\n"
         f"while not pathlib.Path({str(gate)!r}).exists(): time.sleep(0.05)"],
        cwd=project, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "up"
        proc.send_signal(signal.SIGINT)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == 130
        assert "goes on" in err
    finally:
        gate.touch()  # a failed assert above leaves no job waiting forever
    assert wait_done(exp_json("ls", cwd=project)[0]["id"], project)["status"] == "succeeded"


def test_gitexp_log_outside_a_run_is_a_cheap_no_op(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = ("import gitexp, time, os\nt=time.perf_counter()\n"
            "for i in range(10000): gitexp.log(step=i, loss=1.0)\n"
            "print(time.perf_counter()-t, os.listdir('.'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={k: v for k, v in os.environ.items()
                                          if k != "GITEXP_METRICS"}).stdout.split(" ", 1)
    assert out[1].strip() == "[]"
    assert float(out[0]) < 1.0  # 10k calls: generous bound, it is ~1 ms in practice


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split()[2] == "Z")


def test_a_run_id_that_exists_is_never_reused_or_overwritten(repo: Path, monkeypatch):
    """Run refs are created create-only: when the id generator hands out an id that is taken
    (a clash, however unlikely), that run's ref stays where it was and another id is used."""
    from gitexp.git import Repo
    from gitexp.git.config import Config
    from gitexp.model import ids
    from gitexp.service.launch import LaunchRequest, record_runs

    def launch(*argv: str) -> str:
        r = Repo.discover(repo)
        rec = record_runs(r, Config.load(r), [LaunchRequest(argv=list(argv), cwd=repo,
                                                            force=True)]).records[0]
        return rec.id

    first = launch("true")
    ref = f"refs/experiments/{first}"
    before = git("rev-parse", ref, cwd=repo).strip()
    fresh, clashes = ids.new_id, [first]
    monkeypatch.setattr(ids, "new_id",
                        lambda name, now=None: clashes.pop() if clashes else fresh(name, now))
    second = launch("echo", "again")
    assert not clashes, "the clashing id was offered"
    assert second != first
    assert git("rev-parse", ref, cwd=repo).strip() == before
    shown = exp_json("show", second, cwd=repo)
    assert shown["record"]["argv"] == ["echo", "again"]
    assert exp_json("show", first, cwd=repo)["record"]["argv"] == ["true"]


def _recorded_never_started(repo: Path) -> tuple[str, Path]:
    """A run recorded (ref and queued status) whose launcher died before starting an agent:
    its store is then what a killed `git exp run` leaves."""
    from gitexp.git import Repo
    from gitexp.git.config import Config
    from gitexp.service.launch import LaunchRequest, record_runs

    r = Repo.discover(repo)
    run_id = record_runs(r, Config.load(r), [LaunchRequest(argv=["true"], cwd=repo,
                                                           force=True)]).records[0].id
    gone = subprocess.Popen(["true"])
    gone.wait()
    store = repo / ".git" / "gitexp" / "store" / "runs" / run_id
    status = json.loads((store / "status.json").read_text())
    status["launcher"]["pid"] = gone.pid
    (store / "status.json").write_text(json.dumps(status))
    return run_id, store


def _status_now(repo: Path, run_id: str) -> tuple[str, str | None]:
    from gitexp.git import Repo
    from gitexp.service import runs

    run = runs.find(Repo.discover(repo), run_id)
    return run.status, run.result.error if run.result else None


def test_a_launch_killed_before_its_agent_started_is_lost_after_exp_lostafter(repo: Path):
    git("config", "exp.lostAfter", "6s", cwd=repo)  # the default would wait 10 s
    run_id, _ = _recorded_never_started(repo)
    launched = exp_json("show", run_id, cwd=repo)["record"]["launched_at"]
    status, _ = _status_now(repo, run_id)
    if time.time() < launched + 6:  # (a machine slow enough may have looked too late)
        assert status == "queued"  # well within lostAfter: it may start yet
    wait_for(lambda: time.time() > launched + 6.3, timeout=10, what="lostAfter to pass")
    status, why = _status_now(repo, run_id)
    assert status == "lost" and why is not None and "before the agent started" in why


def test_a_heartbeat_older_than_exp_lostafter_is_lost_a_fresher_one_is_not(repo: Path):
    run_id, store = _recorded_never_started(repo)  # the fixture's exp.lostAfter is 3 s
    (store / "status.json").write_text(json.dumps({"status": "running", "started": time.time()}))

    def beat(age: float) -> None:
        (store / "heartbeat").write_text(json.dumps({"time": time.time() - age,
                                                     "interval": 0.3}))

    for age in (0.0, 1.5, 2.5):
        beat(age)
        assert _status_now(repo, run_id) == ("running", None), age
    beat(5.0)
    status, why = _status_now(repo, run_id)
    assert status == "lost" and why == "no heartbeat for 5s"


def test_cancelling_a_run_that_never_started_ends_it_cancelled(repo: Path):
    from gitexp.git import Repo
    from gitexp.git.config import Config
    from gitexp.service import runs
    from gitexp.service.launch import LaunchRequest, record_runs

    r = Repo.discover(repo)
    rec = record_runs(r, Config.load(r), [LaunchRequest(argv=["true"], cwd=repo,
                                                        force=True)]).records[0]
    runs.cancel(r, Config.load(r), runs.find(r, rec.id))
    stored = json.loads((repo / ".git/gitexp/store/runs" / rec.id / "result.json").read_text())
    assert stored["run"] == rec.id and stored["snapshot"] == rec.snapshot  # stamped as ours
    shown = exp_json("show", rec.id, cwd=repo)
    assert shown["status"] == "cancelled" and shown["result"]["error"] == "cancelled before start"
