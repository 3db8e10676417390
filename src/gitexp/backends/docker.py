"""The docker target: the agent runs inside a container image - dev = prod.

    exp.target.box.backend = docker
    exp.target.box.image   = IMAGE      default: the project image (`git exp image build`)
    exp.target.box.engine  = podman | docker    default: podman unless DOCKER_HOST is set
    exp.target.box.network = host | none | ...  default: host
    exp.target.box.gpus    = all | 0,1          (docker --gpus, podman CDI devices)
    exp.target.box.volumes = /data:/data:ro, /scratch:/scratch
    exp.target.box.store   = URL        default: the local store, bind-mounted
    exp.target.box.keep    = true       keep the exited container (`git exp run --keep`)
    exp.target.box.secrets = WANDB_API_KEY HF_TOKEN    (see gitexp.secrets; `env` for plain ones)
    exp.target.box.baseImage, .buildNetwork, .requirements    for `git exp image build`

The docker CLI and podman take the same commands. The snapshot travels through the store
like for every remote target (only the objects it lacks). A `file://` store is bind-mounted:
the agent reads the code from it and writes status, log and result into it, from where
`git exp ls` writes them back into git. A `gs://` or `ssh://` store the container reaches
itself (network and credentials are the image's business).
gitexp's own wheel is mounted and put first on PYTHONPATH, so the agent is the dev machine's
version even in an image without gitexp. Secrets travel as `-e NAME` (the engine copies the
value from its own environment): never a value in argv, the store or the record.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlsplit

from gitexp import secrets
from gitexp.backends import Launch, templates, warm_count
from gitexp.errors import BackendError
from gitexp.git import Repo
from gitexp.git.config import Config, Target
from gitexp.model.record import RunRecord
from gitexp.model.runstate import Handle
from gitexp.worker import agent_argv, bootstrap

MOUNT = "/gitexp"  # everything gitexp mounts lives under this one path in the container
ENGINES = ("podman", "docker")
CLI_TIMEOUT = 60.0
STOP_GRACE = 15  # seconds between SIGTERM and SIGKILL: the agent needs ~5 to stop the job


class DockerBackend:
    def __init__(self, *, target: Target, repo: Repo) -> None:
        self.target = target
        self.repo = repo

    # -- settings ----------------------------------------------------------------------------
    def engine(self) -> str:
        return engine_for(self.target)

    def image(self) -> str:
        return self.target.get("image") or project_image(self.repo)

    def store_url(self) -> str:
        return self.target.get("store") or (self.repo.gitexp_dir / "store").as_uri()

    def keep(self) -> bool:
        return self.target.boolean("keep")

    # -- backend protocol --------------------------------------------------------------------
    def submit(self, *, launch: Launch) -> Handle:
        argv = self.run_argv(launch)
        proc = self._engine(argv[1:])
        if proc.returncode != 0:
            raise BackendError(f"{self.engine()} run failed: {_last_line(proc)}",
                               hint=f"does the image exist? `{self.engine()} images`; "
                                    "`git exp image build` builds the project image")
        return {"container": container_name(launch.name), "engine": self.engine(),
                "id": proc.stdout.strip()[:64]}

    def alive(self, *, record: RunRecord, handle: Handle) -> bool | None:
        name = str(handle.get("container") or container_name(record.id))
        try:
            proc = self._engine(["inspect", "--format", "{{.State.Running}}", name],
                                engine=handle.get("engine"))
        except BackendError:
            return None  # no engine here: we cannot tell
        if proc.returncode != 0:
            # Gone (removed with --rm) is the answer; an engine that cannot answer is not.
            return False if "no such" in proc.stderr.lower() else None
        return proc.stdout.strip().lower() == "true"

    def cancel(self, *, record: RunRecord, handle: Handle) -> None:
        # The store's cancel marker is already written: the agent stops the job and writes
        # `cancelled`; stop's SIGTERM reaches the agent (PID 1) too, SIGKILL only after grace.
        name = str(handle.get("container") or container_name(record.id))
        self._engine(["stop", "-t", str(STOP_GRACE), name], engine=handle.get("engine"),
                     timeout=STOP_GRACE + CLI_TIMEOUT)

    # -- the container -----------------------------------------------------------------------
    def run_argv(self, launch: Launch) -> list[str]:
        rec = launch.record
        store = urlsplit(launch.store.url)
        label = f"gitexp.run={rec.id}" if launch.slot is None else f"gitexp.sweep={rec.sweep}"
        argv = [self.engine(), "run", "-d", "--name", container_name(launch.name),
                "--label", label, "--network", self.target.get("network", "host") or "host"]
        if not self.keep():
            argv.append("--rm")
        if self.engine() == "docker" and os.getuid() != 0:
            # Rootful docker would leave root-owned files in the user's store.
            argv += ["--user", f"{os.getuid()}:{os.getgid()}", "-e", "HOME=/tmp"]
        argv += _gpu_args(self.engine(), self.target.get("gpus"))
        for volume in _split(self.target.get("volumes")):
            argv += ["-v", volume]
        if store.scheme == "file":  # the store (with the code launch.submit pushed) mounted
            store_dir = Path(unquote(store.path))
            store_dir.mkdir(parents=True, exist_ok=True)
            argv += ["-v", f"{store_dir}:{MOUNT}/store"]
            store_arg = f"file://{MOUNT}/store"
        else:  # the container reaches the store itself (network, credentials)
            store_arg = launch.store.url
        warm = None
        if warm_count(self.target):  # kept on the host: a container's own files die with it
            warm_dir = self.repo.gitexp_dir / f"warm-{self.engine()}"
            warm_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            argv += ["-v", f"{warm_dir}:{MOUNT}/warm"]
            warm = (warm_count(self.target), f"{MOUNT}/warm")
        wheel = gitexp_wheel()
        argv += ["-v", f"{wheel}:{MOUNT}/gitexp.whl:ro", "-e", f"PYTHONPATH={MOUNT}/gitexp.whl"]
        hidden, plain = secrets.forwarded(Config.load(self.repo), self.target, os.environ)
        for name in sorted({*hidden, *plain}):
            argv += ["-e", name]  # the name only: the engine takes the value from its env
        argv += [self.image(), *agent_argv(
            "python3", store=store_arg, code=store_arg, workdir=launch.workdir(f"{MOUNT}/work"),
            heartbeat=launch.heartbeat, **launch.job(), warm=warm,
            limits=launch.limits(self.target))]
        return argv

    def _engine(self, args: list[str], *, engine: object = None,
                timeout: float = CLI_TIMEOUT) -> subprocess.CompletedProcess[str]:
        # `engine` comes from the run's handle in its store: a name, never a program to run
        exe = engine if engine in ENGINES else self.engine()
        try:
            return subprocess.run([exe, *args], capture_output=True, text=True,
                                  timeout=timeout, check=False)
        except FileNotFoundError:
            raise BackendError(f"{exe} is not installed",
                               hint="install podman or docker, or set the target's `engine`")\
                from None
        except subprocess.TimeoutExpired:
            raise BackendError(f"{exe} {args[0]} did not answer in {timeout:.0f}s",
                               hint=f"is the {exe} service running? `{exe} info` checks") \
                from None


# -- shared with `git exp image build` ----------------------------------------------------------
def engine_for(target: Target) -> str:
    if target.get("engine"):
        return target.choice("engine", "")  # checked against ENGINES' range (gitexp.knobs)
    # A DOCKER_HOST says the user runs a docker daemon (or podman's docker-compatible socket).
    order = ("docker", "podman") if os.environ.get("DOCKER_HOST") else ENGINES
    for exe in order:
        if shutil.which(exe):
            return exe
    raise BackendError("neither podman nor docker is installed",
                       hint="install one (`apt-get install podman`) or set the target's engine")


def project_image(repo: Repo) -> str:
    name = "".join(c if c.isalnum() or c in "._-" else "-" for c in repo.root.name.lower())
    return f"gitexp/{name.strip('._-') or 'project'}:latest"


def container_name(run_id: str) -> str:
    return f"gitexp-{run_id}"


def build_image(repo: Repo, target: Target, *, tag: str | None = None,
                base: str | None = None) -> list[str]:
    """Build the project image (templates/Dockerfile, or the project's .gitexp/Dockerfile).

    Returns the engine's argv; the engine's own output goes to this process's terminal."""
    engine = engine_for(target)
    tag = tag or target.get("image") or project_image(repo)
    base = base or target.get("baseImage") or \
        f"python:{sys.version_info.major}.{sys.version_info.minor}-slim"
    custom = repo.root / ".gitexp" / "Dockerfile"
    dockerfile = custom if custom.is_file() else templates.path("Dockerfile")
    requirements = repo.root / (target.get("requirements") or "requirements.txt")
    with tempfile.TemporaryDirectory(prefix="gitexp-image-") as tmp:
        ctx = Path(tmp)
        shutil.copyfile(dockerfile, ctx / "Dockerfile")
        (ctx / "wheels").mkdir()
        wheel = gitexp_wheel()
        shutil.copyfile(wheel, ctx / "wheels" / wheel.name)
        req = requirements.read_bytes() if requirements.is_file() else b""
        (ctx / "requirements.txt").write_bytes(req)
        argv = [engine, "build", "-t", tag, "--network", target.get("buildNetwork") or "host",
                "--build-arg", f"BASE_IMAGE={base}", str(ctx)]
        try:
            code = subprocess.run(argv, check=False).returncode
        except FileNotFoundError:
            raise BackendError(f"{engine} is not installed") from None
    if code != 0:
        raise BackendError(f"{engine} build failed (exit {code})",
                           hint=f"the base image {base} must have python3; see the output above")
    return argv


def gitexp_wheel() -> Path:
    """gitexp's own wheel, the same version as this process (built once, then cached)."""
    return bootstrap.build_wheel()


def _gpu_args(engine: str, gpus: str | None) -> list[str]:
    if not gpus:
        return []
    ids = [g for g in _split(gpus) if g != "all"]
    if engine == "docker":
        return ["--gpus", "all" if not ids else f"device={','.join(ids)}"]
    # podman: NVIDIA's Container Device Interface names (nvidia-ctk cdi generate)
    return [arg for gpu in (ids or ["all"]) for arg in ("--device", f"nvidia.com/gpu={gpu}")]


def _split(value: str | None) -> list[str]:
    return [part for chunk in (value or "").split(",") for part in chunk.split() if part]


def _last_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    return lines[-1].strip() if lines else f"exit {proc.returncode}"
