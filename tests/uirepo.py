"""The repository the web view's tests look at (tests/test_ui.py, tests/test_ui_api.py):
runs in every status made by the real `git exp run`, many written-back runs with params
made at once with `git fast-import` (benchmarks/bench_ui.py's generator), and a forged run
whose every free text is markup. And `git exp ui` itself, started on a free port."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import bench_ui

from gitexp.model.record import Environment, Result, RunRecord, encode_message
from tests.conftest import make_repo
from tests.helpers import BIN, announced, exp, git, wait_done, wait_for
from tests.test_render_escape import blob, commit, tree

XSS = '<script>window.pwned=1</script><img src=x onerror="window.pwned=2">'
TRAIN = """\
import sys, gitexp
lr = float(sys.argv[1])
for step in range(20):
    gitexp.log(step=step, loss=1.0 / (1 + lr * step), acc=min(1.0, lr * step / 10))
    print("step", step)
gitexp.checkpoint("halfway", loss=0.5)
sys.exit(int(sys.argv[2]) if len(sys.argv) > 2 else 0)
"""
LIVE = """\
import gitexp, pathlib, sys, time
i = 0
while not pathlib.Path(sys.argv[1]).exists():
    print(f"tick {i}", flush=True)
    gitexp.log(step=i, loss=1.0 / (i + 1))
    i += 1
    time.sleep(0.2)
"""
SLEEP = "import time\nprint('sleeping', flush=True)\ntime.sleep(300)\n"
FABRICATED = 40


@dataclass
class Built:
    repo: Path
    ids: dict[str, str] = field(default_factory=dict)  # what it is -> run id
    gate: Path = Path()  # the live run ends once this file exists
    # the home the runs were launched from: their seals' key, so they are the user's own
    env: dict[str, str] = field(default_factory=dict)


def shown(built: Built, run_id: str) -> dict[str, Any]:
    """`git exp show --json RUN` as the user who launched it (a live run is looked at)."""
    data: dict[str, Any] = json.loads(exp("show", run_id, "--json", cwd=built.repo,
                                          env=built.env).stdout)
    return data


def fabricate(repo: Path, n: int, points: int) -> list[str]:
    """`n` written-back runs (`--lr`, `--bs`; 5 metrics of `points` points) in `repo`."""
    base = git("rev-parse", "HEAD", cwd=repo).strip()
    packages = blob(repo, b"numpy==2.1.0\n")
    subprocess.run(["git", "fast-import", "--quiet"], cwd=repo, check=True,
                   input=bench_ui.stream(repo, base, n, points, packages))
    return [bench_ui.run_id(i) for i in range(n)]


def forge_markup(repo: Path) -> str:
    """A written-back run, as fetched from someone else, with markup in its argv, params,
    metric names, error and log."""
    run_id = "markup-1201-0000-xss1"
    record = RunRecord(
        id=run_id, argv=["python", "train.py", f"--opt={XSS}", XSS], cwd="", base=None,
        branch="main", user="u", launched_at=1_700_000_000.0, target="local",
        backend="local", store="file:///nowhere", params={XSS: XSS, "lr": 0.5},
        env=Environment(python="3.11", platform="linux"))
    result = Result(status="failed", exit_code=1, started_at=1.0, ended_at=2.0, host="h",
                    error=XSS, metrics={XSS: 1.0, "loss": 0.25})
    top = git("ls-tree", "HEAD", cwd=repo).splitlines()
    snap = commit(repo, "snapshot\n", tree(repo, top), [])
    points = "".join(json.dumps({"step": i, XSS: float(i), "loss": 1.0 / (i + 1)}) + "\n"
                     for i in range(5))
    log = blob(repo, f"first line\n{XSS}\nlast line\n".encode())
    series = blob(repo, points.encode())
    results = tree(repo, [f"100644 blob {log}\tlog.txt", f"100644 blob {series}\tmetrics.jsonl"])
    done = commit(repo, encode_message(record, result),
                  tree(repo, [*top, f"040000 tree {results}\t.gitexp-results"]), [snap])
    git("update-ref", f"refs/experiments/{run_id}", done, cwd=repo)
    return run_id


def forge_series(repo: Path, run_id: str, series: bytes,
                 code: dict[str, bytes] | None = None) -> None:
    """A written-back run, as fetched from someone else, whose metrics.jsonl is `series`
    and whose snapshot holds `code` besides HEAD's files."""
    record = RunRecord(
        id=run_id, argv=["python", "train.py"], cwd="", base=None, branch="main", user="u",
        launched_at=1_700_000_000.0, target="local", backend="local",
        store="file:///nowhere", params={}, env=Environment(python="3.11", platform="linux"))
    result = Result(status="succeeded", exit_code=0, started_at=1.0, ended_at=2.0, host="h",
                    metrics={"loss": 0.25})
    top = git("ls-tree", "HEAD", cwd=repo).splitlines()
    top += [f"100644 blob {blob(repo, data)}\t{name}" for name, data in (code or {}).items()]
    snap = commit(repo, "snapshot\n", tree(repo, top), [])
    results = tree(repo, [f"100644 blob {blob(repo, series)}\tmetrics.jsonl"])
    done = commit(repo, encode_message(record, result),
                  tree(repo, [*top, f"040000 tree {results}\t.gitexp-results"]), [snap])
    git("update-ref", f"refs/experiments/{run_id}", done, cwd=repo)


def build(root: Path, *, every_status: bool = True) -> Built:
    """The repository: fabricated runs, a forged one, and real runs (with `every_status`:
    succeeded, failed, cancelled, lost, and one left running until `gate` exists)."""
    repo = make_repo(root / "proj", {"train.py": TRAIN, "live.py": LIVE, "sleep.py": SLEEP,
                                     ".gitignore": "gate\n"})
    git("config", "exp.notify.on", "none", cwd=repo)
    built = Built(repo=repo, gate=repo / "gate",
                  env={k: os.environ[k] for k in ("HOME", "GIT_CONFIG_GLOBAL")})
    built.ids["fabricated"] = fabricate(repo, FABRICATED, 50)[-1]
    built.ids["markup"] = forge_markup(repo)
    with (repo / "train.py").open("a") as f:
        f.write("# tuned\n")  # uncommitted: the run's code diff against its base shows it
    if not every_status:
        built.ids["succeeded"] = announced(exp("run", "--", "python", "train.py", "0.1",
                                               cwd=repo))
        built.ids["running"] = live(built)
        return built
    # every launch at once (detached): the set-up waits for the slowest, not for the sum
    launch = [["train.py", "0.1"], ["train.py", "0.4", "2"], ["sleep.py"], ["sleep.py"]]
    started = [exp("run", "-d", "--", "python", *argv, cwd=repo).stdout.strip()
               for argv in launch]
    built.ids.update(zip(("succeeded", "failed", "cancelled", "lost"), started, strict=True))
    store = repo / ".git/gitexp/store/runs"
    doomed = started[2:]
    for run_id in doomed:
        wait_for((store / run_id / "handle.json").exists, what="the agent's handle")
    exp("cancel", doomed[0], cwd=repo)
    agent = json.loads((store / doomed[1] / "handle.json").read_text())["pid"]
    os.kill(agent, signal.SIGKILL)  # its job dies with it; the run is lost
    built.ids["running"] = live(built)
    for run_id in started:
        wait_done(run_id, repo, timeout=30)
    return built


def live(built: Built) -> str:
    """A run that ticks until `built.gate` exists, once its job has started."""
    run_id = exp("run", "-d", "--", "python", "live.py", str(built.gate),
                 cwd=built.repo).stdout.strip()
    log = built.repo / ".git/gitexp/store/runs" / run_id / "log"
    wait_for(lambda: log.exists() and b"tick" in log.read_bytes(), what="the live run's job")
    return run_id


@dataclass
class Server:
    proc: subprocess.Popen[str]
    url: str
    log: Path

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def serve(repo: Path, *args: str) -> Server:
    """`git exp ui --no-open` (git-exp itself: its pid is the server's) on a free port."""
    log = repo.parent / f"ui-{time.monotonic_ns()}.log"
    with log.open("w") as err:
        proc = subprocess.Popen([str(BIN / "git-exp"), "ui", "--no-open", *args], cwd=repo,
                                text=True, stdout=subprocess.PIPE, stderr=err,
                                env={**os.environ, "PATH": f"{BIN}{os.pathsep}"
                                     f"{os.environ['PATH']}"})
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    assert url.startswith("http://127.0.0.1:"), (url, log.read_text())
    return Server(proc=proc, url=url, log=log)


def end_live(built: Built) -> None:
    """Let the live run end (if a test did not cancel it), and wait for it."""
    built.gate.touch()
    if "running" in built.ids:
        wait_for(lambda: shown(built, built.ids["running"])["status"] not in ("queued",
                                                                          "running"),
                 timeout=30, what="the live run to end")

