"""The docker target, with real podman (runc, a local Debian base image: no registry here).

`git exp image build` builds the project image from templates/Dockerfile on the local base
image (python3 + git, no pip, no gitexp); `git exp run -t box` runs the agent in a container
of that image; log, metrics and result come back into git through the bind-mounted store.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from gitexp.backends import Launch
from gitexp.backends.docker import DockerBackend, build_image, engine_for
from gitexp.errors import BackendError
from gitexp.git import Repo
from gitexp.git.config import Config, Target
from gitexp.stores.file import FileStore
from tests.conftest import make_repo
from tests.helpers import (
    AgentCount,
    assert_user_error,
    exp,
    exp_json,
    git,
    own_home,
    wait_done,
    wait_for,
)
from tests.services import Podman

pytestmark = pytest.mark.xdist_group("podman")

TRAIN = """\
import os, socket, sys
import gitexp
for step in range(3):
    gitexp.log(step=step, loss=1.0 / (step + 1))
print("python", sys.executable, "host", socket.gethostname())
print("gitexp from", gitexp.__file__)
print("cwd", os.getcwd())
token = os.environ.get("GITEXP_TEST_TOKEN")
if token:
    import hashlib
    print("token sha", hashlib.sha256(token.encode()).hexdigest())
sys.exit(int(os.environ.get("EXIT", "0")) if len(sys.argv) < 2 else int(sys.argv[1]))
"""


@pytest.fixture(scope="module")
def image_tag(podman: Podman) -> Iterator[str]:
    """A tag for this module's project image, removed at the end."""
    tag = f"localhost/gitexp-test/proj-{uuid.uuid4().hex[:8]}:latest"
    yield tag
    podman.run(["rmi", "-f", tag])


@pytest.fixture(scope="module")
def project_image(podman: Podman, image_tag: str,
                  tmp_path_factory: pytest.TempPathFactory) -> str:
    """The project image, built by `git exp image build` once per module: every test runs
    the same image, and a rebuild from cached layers would only cost a container engine's
    seconds per test."""
    root = tmp_path_factory.mktemp("img")
    with own_home(root):
        repo = make_repo(root / "img", {"train.py": TRAIN})
        for key, value in {"backend": "docker", "engine": "podman", "image": image_tag,
                           "baseImage": podman.base_image()}.items():
            git("config", f"exp.target.img.{key}", value, cwd=repo)
        proc = exp("image", "build", "-t", "img", cwd=repo, env=podman.env, timeout=300)
    assert f"built {image_tag} with podman" in proc.stderr
    return image_tag


@pytest.fixture
def box(repo: Path, podman: Podman, project_image: str,
        monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """`repo` with a docker target `box` on the project image (no network needed)."""
    for key, value in podman.env.items():
        monkeypatch.setenv(key, value)
    (repo / "train.py").write_text(TRAIN)
    git("add", "train.py", cwd=repo)
    git("commit", "-qm", "train", cwd=repo)
    for key, value in {"backend": "docker", "engine": "podman", "image": project_image,
                       "network": "none"}.items():
        git("config", f"exp.target.box.{key}", value, cwd=repo)
    # Under a loaded CI a container's heartbeat may pause for seconds: liveness here comes
    # from the engine (`alive`), which the tests exercise; do not race the heartbeat.
    git("config", "exp.lostAfter", "60", cwd=repo)
    yield repo
    # Never leave a container behind, whatever the test did; only this test's own: root's
    # podman is shared with every other test session on the machine.
    ids = git("for-each-ref", "--format=%(refname:lstrip=2)", "refs/experiments/", cwd=repo)
    names = [f"gitexp-{run_id}" for run_id in ids.split()]
    if names:
        podman.run(["rm", "-f", "--ignore", *names])


def test_image_build_and_run_in_container_writes_results_back(box: Path, podman: Podman):
    (box / "train.py").write_text(TRAIN + "# an uncommitted change travels too\n")
    proc = exp("run", "-t", "box", "--", "python3", "train.py", cwd=box, timeout=120)
    assert "run " in proc.stderr and "succeeded" in proc.stderr, proc.stderr
    run_id = exp_json("ls", cwd=box)[0]["id"]
    result = exp_json("show", run_id, cwd=box)["result"]
    assert result["status"] == "succeeded" and result["exit_code"] == 0
    assert result["metrics"]["loss"] == pytest.approx(1 / 3)
    assert result["host"] != os.uname().nodename  # the container's own host name
    # It ran in the container: Debian's python, a container host name, gitexp from the wheel.
    log = git("show", f"refs/experiments/{run_id}:.gitexp-results/log.txt", cwd=box)
    assert "python /usr/bin/python3" in log
    assert f"host {result['host']}" in log
    assert "gitexp from /gitexp/gitexp.whl/gitexp/__init__.py" in log
    # a warm checkout kept on this host, outliving the container for the next run
    assert "cwd /gitexp/warm/0/tree\n" in log
    assert (box / ".git" / "gitexp" / "warm-podman" / "0" / "ready").exists()
    series = git("show", f"refs/experiments/{run_id}:.gitexp-results/metrics.jsonl", cwd=box)
    assert len(series.splitlines()) == 3
    snapshot = git("rev-parse", f"refs/experiments/{run_id}^1", cwd=box).strip()
    assert "uncommitted change" in git("show", f"{snapshot}:train.py", cwd=box)
    # --rm: the container is gone once the run ended
    assert podman.run(["container", "exists", f"gitexp-{run_id}"]).returncode == 1


def test_a_sweep_runs_in_max_parallel_containers(box: Path, podman: Podman):
    """--max-parallel 2: two slot containers run the sweep's three runs, never a container
    per run; each run's own exit code and result come back into git."""
    name = f"dk{uuid.uuid4().hex[:6]}"  # in the sweep id, so in every slot agent's argv
    count = AgentCount(f"sweep-{name}-")
    try:
        proc = exp("run", "-d", "-n", name, "-t", "box", "--sweep", "x=0,3,0",
                   "--max-parallel", "2", "--", "python3", "train.py", "{x}", cwd=box)
        runs = [wait_done(i, box, timeout=120) for i in proc.stdout.split()]
        sweep_id = runs[0]["record"]["sweep"]
        slots = [f"gitexp-{sweep_id}-s{k}" for k in (0, 1)]
        wait_for(lambda: all(podman.run(["container", "exists", c]).returncode == 1
                             for c in slots), timeout=60, what="the slot containers to go")
        # never more than 2 at once; under load one slot may take every run before the
        # other is up, so the peak may be 1 (test_sweep.py, with longer runs, sees 2)
        assert 1 <= count.stop() <= 2
    finally:
        podman.run(["rm", "-f", "--ignore", *(f"gitexp-sweep-{name}-{t}" for t in ("s0", "s1"))])
    assert [(r["status"], r["result"]["exit_code"]) for r in runs] == [
        ("succeeded", 0), ("failed", 3), ("succeeded", 0)]
    for r in runs:
        assert r["result"]["host"] != os.uname().nodename  # in a container
        assert podman.run(["container", "exists", f"gitexp-{r['id']}"]).returncode == 1
        log = git("show", f"refs/experiments/{r['id']}:.gitexp-results/log.txt", cwd=box)
        assert "gitexp from /gitexp/gitexp.whl/gitexp/__init__.py" in log


def test_failing_job_is_failed_with_its_exit_code(box: Path):
    proc = exp("run", "-t", "box", "--", "python3", "train.py", "3", cwd=box, check=False)
    assert proc.returncode == 3, proc.stderr
    result = exp_json("show", exp_json("ls", cwd=box)[0]["id"], cwd=box)["result"]
    assert result["status"] == "failed" and result["exit_code"] == 3


def test_cancel_stops_the_container(box: Path, podman: Podman):
    (box / "slow.py").write_text("import time\nprint('started', flush=True)\ntime.sleep(300)\n")
    run_id = exp("run", "-d", "-t", "box", "--", "python3", "slow.py", cwd=box).stdout.strip()
    wait_for(lambda: "started" in exp("logs", run_id, cwd=box).stdout, timeout=60,
             what="the job to start")
    exp("cancel", run_id, cwd=box)
    assert wait_done(run_id, box)["status"] == "cancelled"
    wait_for(lambda: podman.run(["container", "exists", f"gitexp-{run_id}"]).returncode == 1,
             timeout=30, what="the container to go")


def test_keep_leaves_the_container_and_a_gone_container_is_lost(box: Path, podman: Podman):
    run_id = exp("run", "-d", "--keep", "-t", "box", "--", "python3", "train.py",
                 cwd=box).stdout.strip()
    assert wait_done(run_id, box)["status"] == "succeeded"
    # `stopped` is podman's word for a container whose process ended before its cleanup
    # marked it `exited`: either way it is kept, and it no longer runs.
    wait_for(lambda: podman.run(["inspect", "--format", "{{.State.Status}}",
                                 f"gitexp-{run_id}"]).stdout.strip() in ("exited", "stopped"),
             timeout=30, what="the kept container, ended")
    # A container removed behind gitexp's back, before it wrote a result: the run is lost.
    (box / "slow.py").write_text("import time\ntime.sleep(300)\n")
    run_id = exp("run", "-d", "-t", "box", "--", "python3", "slow.py", cwd=box).stdout.strip()
    status = wait_for(lambda: (s := exp_json("show", run_id, cwd=box)["status"]) != "queued"
                      and s, timeout=60, what="the run to start")
    assert status == "running"
    podman.run(["rm", "-f", "-t", "0", f"gitexp-{run_id}"])
    shown = wait_done(run_id, box)
    assert shown["status"] == "lost" and "gone" in shown["result"]["error"]


def test_secret_reaches_the_job_by_name_never_by_value(box: Path, monkeypatch):
    secret = f"s3cr3t-{uuid.uuid4().hex}"
    git("config", "exp.target.box.secrets", "GITEXP_TEST_TOKEN", cwd=box)
    monkeypatch.setenv("GITEXP_TEST_TOKEN", secret)
    repo = Repo.discover(box)
    backend = DockerBackend(target=Config.load(repo).target("box"), repo=repo)
    argv = backend.run_argv(_launch(repo))
    assert "GITEXP_TEST_TOKEN" in argv and not any(secret in a for a in argv)
    run_id = exp("run", "-d", "-t", "box", "--", "python3", "train.py", cwd=box).stdout.strip()
    assert wait_done(run_id, box)["status"] == "succeeded"
    log = git("show", f"refs/experiments/{run_id}:.gitexp-results/log.txt", cwd=box)
    assert f"token sha {hashlib.sha256(secret.encode()).hexdigest()}" in log
    everything = git("log", "-p", f"refs/experiments/{run_id}", cwd=box)
    store = repo.gitexp_dir / "store" / "runs" / run_id
    assert secret not in everything
    assert all(secret not in p.read_text(errors="replace") for p in store.rglob("*")
               if p.is_file())


def test_a_handle_names_an_engine_never_a_program(repo: Path, tmp_path: Path):
    """A store's handle.json is anyone's with write access to the store: its `engine` is
    one of podman/docker, or the target's own engine is asked instead."""
    evil = tmp_path / "evil"
    evil.write_text(f"#!/bin/sh\ntouch {tmp_path / 'ran'}\n")
    evil.chmod(0o755)
    git("config", "exp.target.box.backend", "docker", cwd=repo)
    git("config", "exp.target.box.engine", "podman", cwd=repo)
    r = Repo.discover(repo)
    backend = DockerBackend(target=Config.load(r).target("box"), repo=r)
    rec = _launch(r).record
    backend.alive(record=rec, handle={"engine": str(evil), "container": "gitexp-x"})
    with contextlib.suppress(BackendError):
        backend.cancel(record=rec, handle={"engine": str(evil), "container": "gitexp-x"})
    assert not (tmp_path / "ran").exists()


def test_run_argv_maps_target_keys(repo: Path, monkeypatch):
    """Pure argv construction: volumes, gpus per engine, network, keep, a custom image."""
    monkeypatch.setattr("gitexp.backends.docker.gitexp_wheel", lambda: Path("/w/gitexp.whl"))
    r = Repo.discover(repo)
    target = Target("t", "docker", {"engine": "docker", "image": "me/img:1", "gpus": "0,1",
                                    "volumes": "/data:/data:ro, /s:/s", "keep": "true"})
    argv = DockerBackend(target=target, repo=r).run_argv(_launch(r))
    assert argv[:3] == ["docker", "run", "-d"] and "--rm" not in argv
    assert _after(argv, "--gpus") == ["device=0,1"]
    assert _after(argv, "--network") == ["host"]
    store = r.gitexp_dir / "store"
    assert {"/data:/data:ro", "/s:/s", "/w/gitexp.whl:/gitexp/gitexp.whl:ro",
            f"{store}:/gitexp/store"} <= set(_after(argv, "-v"))
    tail = argv[argv.index("me/img:1"):]
    assert tail[1:4] == ["python3", "-m", "gitexp.worker.agent"]
    assert tail[tail.index("--store") + 1] == "file:///gitexp/store"
    assert tail[tail.index("--code") + 1] == "file:///gitexp/store"
    podman = Target("t", "docker", {"engine": "podman", "gpus": "all"})
    argv = DockerBackend(target=podman, repo=r).run_argv(_launch(r))
    assert _after(argv, "--device") == ["nvidia.com/gpu=all"] and "--rm" in argv
    assert f"gitexp/{repo.name}:latest" in argv  # the project image by default


def test_engine_choice(monkeypatch, tmp_path: Path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for exe in ("podman", "docker"):
        (bin_dir / exe).write_text("#!/bin/sh\n")
        (bin_dir / exe).chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    assert engine_for(Target("t", "docker")) == "podman"
    monkeypatch.setenv("DOCKER_HOST", "unix:///run/docker.sock")
    assert engine_for(Target("t", "docker")) == "docker"
    assert engine_for(Target("t", "docker", {"engine": "podman"})) == "podman"


def test_image_build_errors_are_one_line(repo: Path, podman: Podman):
    git("config", "exp.target.far.backend", "ssh", cwd=repo)
    assert_user_error(exp("image", "build", "-t", "far", cwd=repo, check=False),
                      "not docker")
    # The project's own .gitexp/Dockerfile wins over the template; its failure is one line.
    (repo / ".gitexp").mkdir()
    (repo / ".gitexp" / "Dockerfile").write_text(
        "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nRUN echo custom-dockerfile-ran && false\n")
    git("config", "exp.target.bad.backend", "docker", cwd=repo)
    git("config", "exp.target.bad.engine", "podman", cwd=repo)
    git("config", "exp.target.bad.baseImage", podman.base_image(), cwd=repo)
    proc = exp("image", "build", "-t", "bad", cwd=repo, check=False, env=podman.env)
    assert proc.returncode == 1 and "custom-dockerfile-ran" in proc.stdout + proc.stderr
    assert "error: podman build failed" in proc.stderr and "Traceback" not in proc.stderr
    with pytest.raises(Exception, match=r"engine = 'lxc' is not one of its choices"):
        build_image(Repo.discover(repo), Target("x", "docker", {"engine": "lxc"}))


def _launch(repo: Repo) -> Launch:
    from gitexp.model.record import Environment, RunRecord

    record = RunRecord(id="t-abc", argv=["python3", "x.py"], cwd="", base=None, branch=None,
                       user="u", launched_at=0.0, target="t", backend="docker", store="",
                       env=Environment(python="3", platform="linux"), snapshot="0" * 40)
    store = FileStore(repo.gitexp_dir / "store")
    return Launch(repo=repo, record=record, store=store, heartbeat=0.3)


def _after(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == flag]

