"""The gce target.

Mocked: ONLY the Compute API client (`gitexp.backends.gce.instances_client`), which cannot be
reached from here; the instance-creation request it receives is asserted field by field.
Real: the store (a GCS emulator), the code transport, gitexp's wheel, the agent, write-back,
and the startup script itself, executed with bash against the emulator. Google's metadata
server, the Compute API's self-delete endpoint and Secret Manager are played by a small
local HTTP server that checks the `Metadata-Flavor` header and records every call.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import subprocess
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from google.api_core import exceptions

from gitexp.backends import templates
from gitexp.backends.gce import GCEBackend, instance_name, label_value, nfs_mount
from gitexp.errors import GitexpError
from gitexp.git import Repo
from gitexp.git.config import Config, Target
from gitexp.model.runstate import RunState
from gitexp.service import launch as launching
from gitexp.service import runs, sweep
from gitexp.stores import open_store
from tests.helpers import git, wait_for
from tests.services import GcsServer
from tests.test_resume import TRAIN as RESUMABLE

PROJECT, ZONE, TOKEN = "proj", "us-central1-a", "ya29.test-token"
TRAIN = """\
import hashlib, os, sys
import gitexp
gitexp.log(step=1, loss=0.25)
print("hello from the VM; gitexp from", gitexp.__file__)
if os.environ.get("API_TOKEN"):
    print("token sha", hashlib.sha256(os.environ["API_TOKEN"].encode()).hexdigest())
sys.exit(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
"""


# -- the mocked Compute API client -----------------------------------------------------------
@dataclass
class FakeInstances:
    """Stands in for compute_v1.InstancesClient: records calls, answers like the API."""

    inserted: list[dict[str, Any]] = field(default_factory=list)
    deleted: list[dict[str, Any]] = field(default_factory=list)
    status: str | Exception = "RUNNING"
    insert_error: Exception | None = None

    def insert(self, **kwargs: Any) -> Any:
        self.inserted.append(kwargs)
        error = self.insert_error

        class Operation:
            def result(self, timeout: float | None = None) -> None:
                if error is not None:
                    raise error
        return Operation()

    def get(self, **kwargs: Any) -> Any:
        if isinstance(self.status, Exception):
            raise self.status
        return type("Instance", (), {"status": self.status})()

    def delete(self, **kwargs: Any) -> Any:
        self.deleted.append(kwargs)
        return None


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch) -> FakeInstances:
    fake = FakeInstances()
    monkeypatch.setattr("gitexp.backends.gce.instances_client", lambda: fake)
    return fake


@pytest.fixture
def gce_repo(repo: Path, gcs_env: GcsServer) -> Path:
    """`repo` with a gce target `gpu` whose store is a fresh bucket in the GCS emulator."""
    bucket = f"b-{uuid.uuid4().hex[:10]}"
    gcs_env.bucket(bucket)
    (repo / "train.py").write_text(TRAIN)
    for key, value in {"backend": "gce", "project": PROJECT, "zone": ZONE,
                       "store": f"gs://{bucket}/exp"}.items():
        git("config", f"exp.target.gpu.{key}", value, cwd=repo)
    return repo


def launch(repo: Path, *argv: str) -> runs.Run:
    r = Repo.discover(repo)
    return launching.start(r, Config.load(r), launching.LaunchRequest(
        argv=["python3", "train.py", *argv], cwd=repo, target="gpu"))


def items_of(request: dict[str, Any]) -> dict[str, str]:
    return {i.key: i.value for i in request["instance_resource"].metadata.items}


# -- the creation request, field by field ------------------------------------------------------
def test_instance_creation_request_field_by_field(gce_repo: Path, client: FakeInstances,
                                                  monkeypatch: pytest.MonkeyPatch):
    secret = f"tok-{uuid.uuid4().hex}"
    monkeypatch.setenv("API_TOKEN", secret)  # on the dev machine: must not travel
    for key, value in {
        "machineType": "n1-standard-8", "gpus": "nvidia-tesla-t4:2", "spot": "true",
        "image": "projects/deeplearning-platform-release/global/images/family/common-cu121",
        "diskSize": "120", "serviceAccount": "runner@proj.iam.gserviceaccount.com",
        "labels": "team=ML, Owner=alice", "secretEnv": "API_TOKEN=api-token",
        "subnetwork": "regions/us-central1/subnetworks/default", "secrets": "API_TOKEN",
    }.items():
        git("config", f"exp.target.gpu.{key}", value, cwd=gce_repo)
    run = launch(gce_repo)
    [request] = client.inserted
    assert (request["project"], request["zone"]) == (PROJECT, ZONE)
    vm = request["instance_resource"]
    assert vm.name == f"gitexp-{run.id}"
    assert vm.machine_type == f"zones/{ZONE}/machineTypes/n1-standard-8"
    [disk] = vm.disks
    assert disk.boot and disk.auto_delete and disk.type_ == "PERSISTENT"
    assert disk.initialize_params.source_image.endswith("family/common-cu121")
    assert disk.initialize_params.disk_size_gb == 120
    assert disk.initialize_params.disk_type == f"zones/{ZONE}/diskTypes/pd-balanced"
    [gpu] = vm.guest_accelerators
    assert gpu.accelerator_type == f"zones/{ZONE}/acceleratorTypes/nvidia-tesla-t4"
    assert gpu.accelerator_count == 2
    s = vm.scheduling
    assert s.provisioning_model == "SPOT" and s.instance_termination_action == "DELETE"
    assert s.on_host_maintenance == "TERMINATE" and s.automatic_restart is False
    [sa] = vm.service_accounts
    assert sa.email == "runner@proj.iam.gserviceaccount.com"
    assert list(sa.scopes) == ["https://www.googleapis.com/auth/cloud-platform"]
    [nic] = vm.network_interfaces
    assert nic.network == "global/networks/default"
    assert nic.subnetwork == "regions/us-central1/subnetworks/default"
    assert [(a.name, a.type_) for a in nic.access_configs] == [("External NAT", "ONE_TO_ONE_NAT")]
    assert dict(vm.labels) == {"gitexp-run": run.id, "gitexp-target": "gpu", "team": "ml",
                               "owner": "alice"}
    items = items_of(request)
    store_url = git("config", "exp.target.gpu.store", cwd=gce_repo).strip()
    assert items["startup-script"] == templates.read("gce-startup.sh")
    assert items["gitexp-store"] == store_url
    assert items["gitexp-run"] == run.id
    assert items["gitexp-snapshot"] == run.record.snapshot
    agent = json.loads(items["gitexp-agent"])
    assert agent[:3] == ["python3", "-m", "gitexp.worker.agent"]
    assert agent[agent.index("--heartbeat") + 1] == "0.3"
    assert agent[agent.index("--run") + 1] == run.id
    assert items["gitexp-on-exit"] == "delete"
    assert items["gitexp-secrets"] == \
        f"API_TOKEN=projects/{PROJECT}/secrets/api-token/versions/latest"
    assert items["install-nvidia-driver"] == "True"
    assert set(items) == {"startup-script", "gitexp-store", "gitexp-run", "gitexp-snapshot",
                          "gitexp-agent", "gitexp-on-exit", "gitexp-secrets",
                          "gitexp-wheel", "install-nvidia-driver"}
    # What the VM will fetch is in the store: the wheel and the snapshot's code.
    store = open_store(store_url)
    assert items["gitexp-wheel"].startswith("tools/gitexp-")
    assert store.read(items["gitexp-wheel"])[:2] == b"PK"
    assert store.read(f"code/heads/{run.record.snapshot}") is not None
    handle = json.loads(store.read(f"runs/{run.id}/handle.json") or b"{}")
    assert handle == {"target": "gpu", "instance": vm.name, "project": PROJECT, "zone": ZONE}
    # The secret's value never left this machine: not in the request, not in the store.
    assert secret not in str(vm)
    assert all(secret.encode() not in (store.read(k) or b"") for k in store.list(""))


def test_a_sweep_under_max_parallel_creates_one_vm_per_slot(gce_repo: Path,
                                                             client: FakeInstances):
    """--max-parallel 2 of 5 runs: two VMs, each a slot running the sweep's runs one after
    another (its agent named by sweep and slot); every run's handle names its slot's VM."""
    r = Repo.discover(gce_repo)
    swept = sweep.launch(r, Config.load(r), launching.LaunchRequest(
        argv=["python3", "train.py", "{x}"], cwd=gce_repo, target="gpu"),
        {"x": ["1", "2", "3", "4", "5"]}, max_parallel=2)
    assert len(client.inserted) == 2
    for k, request in enumerate(client.inserted):
        vm, items = request["instance_resource"], items_of(request)
        assert vm.name == f"gitexp-{swept.id}-s{k}"
        assert dict(vm.labels)["gitexp-sweep"] == swept.id
        agent = json.loads(items["gitexp-agent"])
        assert agent[agent.index("--sweep") + 1:agent.index("--slot") + 2] == [
            swept.id, "--slot", str(k)]
        assert "--run" not in agent and agent[agent.index("--workdir") + 1] == "work"
        assert (items["gitexp-slot"], items["gitexp-log"]) == (
            str(k), f"sweeps/{swept.id}/slot-{k}.log")
    store = open_store(git("config", "exp.target.gpu.store", cwd=gce_repo).strip())
    for i, run in enumerate(swept.runs):
        handle = json.loads(store.read(f"runs/{run.id}/handle.json") or b"{}")
        assert handle["instance"] == f"gitexp-{swept.id}-s{i % 2}"
        assert (handle["slot"], handle["slots"]) == (i % 2, 2)


def test_defaults_keep_and_plain_scheduling(gce_repo: Path, client: FakeInstances):
    git("config", "exp.target.gpu.keep", "true", cwd=gce_repo)
    launch(gce_repo)
    [request] = client.inserted
    vm = request["instance_resource"]
    assert vm.machine_type == f"zones/{ZONE}/machineTypes/e2-standard-4"
    assert vm.disks[0].initialize_params.source_image == \
        "projects/debian-cloud/global/images/family/debian-12"
    assert vm.disks[0].initialize_params.disk_size_gb == 50
    assert not vm.guest_accelerators and "provisioning_model" not in vm.scheduling
    assert vm.service_accounts[0].email == "default"
    assert items_of(request)["gitexp-on-exit"] == "keep"


def test_names_and_labels_follow_gce_rules():
    long_id = "a" * 63
    name = instance_name(long_id)
    assert len(name) <= 63 and name.startswith("gitexp-a") and name != instance_name("a" * 62)
    assert label_value("Run.ID/with:odd chars") == "run-id-with-odd-chars"
    assert len(label_value("x" * 100)) == 63


def test_api_failure_is_one_line_and_the_run_is_failed(gce_repo: Path, client: FakeInstances):
    client.insert_error = exceptions.Forbidden("Quota 'GPUS_ALL_REGIONS' exceeded. Limit: 0.0")
    with pytest.raises(GitexpError) as info:
        launch(gce_repo)
    assert info.value.message.startswith("GCE failed creating the VM: ")
    assert "GPUS_ALL_REGIONS" in info.value.message and "\n" not in info.value.message
    r = Repo.discover(gce_repo)
    [run] = runs.list_runs(r, refresh=False)
    assert run.written_back and run.status == "failed"


def test_alive_and_cancel(gce_repo: Path, client: FakeInstances):
    run = launch(gce_repo)
    r = Repo.discover(gce_repo)
    backend = GCEBackend(target=Config.load(r).target("gpu"), repo=r)
    handle = {"instance": instance_name(run.id), "project": PROJECT, "zone": ZONE}
    assert backend.alive(record=run.record, handle=handle) is True
    client.status = "TERMINATED"
    assert backend.alive(record=run.record, handle=handle) is False
    client.status = exceptions.NotFound("gone")
    assert backend.alive(record=run.record, handle=handle) is False
    client.status = exceptions.ServiceUnavailable("try later")
    assert backend.alive(record=run.record, handle=handle) is None
    backend.cancel_grace = 0.0  # no agent is running here to answer the cancel marker
    backend.cancel(record=run.record, handle=handle)
    assert client.deleted == [handle]
    result = json.loads(open_store(run.record.store).read(f"runs/{run.id}/result.json") or b"")
    assert result["status"] == "cancelled"


# -- the startup script, executed --------------------------------------------------------------
class StandIn(ThreadingHTTPServer):
    """Google's metadata server + the Compute API's instance endpoints + Secret Manager."""

    def __init__(self, attributes: dict[str, str], instance: str,
                 secrets: dict[str, str]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.attributes, self.instance, self.secrets = attributes, instance, secrets
        self.calls: list[tuple[str, str, str]] = []  # (method, path, authorization)
        self.preempted = False  # what instance/preempted says

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: StandIn

    def do_GET(self) -> None:
        self._answer("GET")

    def do_POST(self) -> None:
        self._answer("POST")

    def do_DELETE(self) -> None:
        self._answer("DELETE")

    def _answer(self, method: str) -> None:  # noqa: PLR0911 - one return per endpoint
        srv, path = self.server, urlsplit(self.path).path
        srv.calls.append((method, path, self.headers.get("Authorization", "")))
        if path.startswith("/computeMetadata/v1/"):
            if self.headers.get("Metadata-Flavor") != "Google":
                return self._send(403, "Missing Metadata-Flavor:Google header")
            key = path.removeprefix("/computeMetadata/v1/")
            token = json.dumps({"access_token": TOKEN, "expires_in": 3599,
                                "token_type": "Bearer"})
            value = {"instance/service-accounts/default/token": token,
                     "project/project-id": PROJECT, "instance/name": srv.instance,
                     "instance/zone": f"projects/123456/zones/{ZONE}",
                     "instance/preempted": "TRUE" if srv.preempted else "FALSE"}.get(key)
            if key.startswith("instance/attributes/"):
                value = srv.attributes.get(key.removeprefix("instance/attributes/"))
            return self._send(200, value) if value is not None else self._send(404, "not found")
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self._send(401, "no token")
        if path.startswith("/secretmanager/v1/") and path.endswith(":access"):
            ref = path.removeprefix("/secretmanager/v1/").removesuffix(":access")
            if ref not in srv.secrets:
                return self._send(404, "no such secret")
            data = base64.b64encode(srv.secrets[ref].encode()).decode()
            return self._send(200, json.dumps({"name": ref, "payload": {"data": data}}))
        if path.startswith("/compute/v1/projects/"):
            return self._send(200, json.dumps({"kind": "compute#operation", "status": "DONE"}))
        return self._send(404, "unknown endpoint")

    def _send(self, code: int, body: str) -> None:
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def stand_in() -> Iterator[list[StandIn]]:
    servers: list[StandIn] = []
    yield servers
    for server in servers:
        server.shutdown()
        server.server_close()


def boot_vm(request: dict[str, Any], stand_in: list[StandIn], root: Path,
            secrets: dict[str, str] | None = None, **overrides: str
            ) -> tuple[subprocess.CompletedProcess[str], StandIn]:
    """Run the instance's startup script as the VM would, against the stand-in server."""
    argv, env, server = vm_of(request, stand_in, root, secrets, **overrides)
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120,
                          check=False)
    return proc, server


def vm_of(request: dict[str, Any], stand_in: list[StandIn], root: Path,
          secrets: dict[str, str] | None = None, **overrides: str
          ) -> tuple[list[str], dict[str, str], StandIn]:
    """The startup script's command and environment, and the VM's stand-in server."""
    items = {**items_of(request), **overrides}
    server = StandIn(items, request["instance_resource"].name, secrets or {})
    threading.Thread(target=server.serve_forever, daemon=True).start()
    stand_in.append(server)
    script = root / "startup-script"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(items["startup-script"])
    env = {**os.environ, "GITEXP_METADATA_URL": server.url, "GITEXP_ROOT": str(root / "vm"),
           "GITEXP_COMPUTE_URL": f"{server.url}/compute/v1",
           "GITEXP_SECRETS_URL": f"{server.url}/secretmanager/v1",
           "GITEXP_POWEROFF": "echo POWEROFF-CALLED"}
    return ["bash", str(script)], env, server


def self_deletes(server: StandIn, name: str) -> list[tuple[str, str, str]]:
    path = f"/compute/v1/projects/{PROJECT}/zones/{ZONE}/instances/{name}"
    return [c for c in server.calls if c[0] == "DELETE" and c[1] == path]


def test_startup_script_runs_the_job_uploads_results_and_deletes_the_vm(
        gce_repo: Path, client: FakeInstances, stand_in: list[StandIn], tmp_path: Path):
    (gce_repo / "train.py").write_text(TRAIN + "# not committed\n")
    run = launch(gce_repo)
    [request] = client.inserted
    proc, server = boot_vm(request, stand_in, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert self_deletes(server, request["instance_resource"].name) == \
        [("DELETE", f"/compute/v1/projects/{PROJECT}/zones/{ZONE}/instances/"
          f"gitexp-{run.id}", f"Bearer {TOKEN}")]
    assert "POWEROFF-CALLED" not in proc.stdout
    store = open_store(run.record.store)
    assert json.loads(store.read(f"runs/{run.id}/result.json") or b"")["status"] == "succeeded"
    assert b"agent exited with 0" in (store.read(f"runs/{run.id}/agent.log") or b"")
    # On the dev side the results come home into git, from the GCS store.
    r = Repo.discover(gce_repo)
    done = runs.find(r, run.id, Config.load(r))
    assert done.written_back and done.status == "succeeded"
    assert done.result is not None and done.result.metrics == {"loss": 0.25}
    log = git("show", f"{done.commit}:.gitexp-results/log.txt", cwd=gce_repo)
    assert "hello from the VM; gitexp from" in log
    assert f"{tmp_path}/vm/gitexp.whl/gitexp/__init__.py" in log  # the wheel from the store
    assert "# not committed" in git("show", f"{run.record.snapshot}:train.py", cwd=gce_repo)


def test_startup_script_deletes_the_vm_when_the_job_fails(
        gce_repo: Path, client: FakeInstances, stand_in: list[StandIn], tmp_path: Path):
    run = launch(gce_repo, "3")
    [request] = client.inserted
    proc, server = boot_vm(request, stand_in, tmp_path)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert len(self_deletes(server, f"gitexp-{run.id}")) == 1
    r = Repo.discover(gce_repo)
    done = runs.find(r, run.id, Config.load(r))
    assert done.status == "failed" and done.result and done.result.exit_code == 3


def test_startup_script_failing_before_the_agent_still_reports_and_deletes(
        gce_repo: Path, client: FakeInstances, stand_in: list[StandIn], tmp_path: Path):
    run = launch(gce_repo)
    [request] = client.inserted
    proc, server = boot_vm(request, stand_in, tmp_path, **{"gitexp-wheel": "tools/missing.whl"})
    assert proc.returncode != 0
    assert len(self_deletes(server, f"gitexp-{run.id}")) == 1
    r = Repo.discover(gce_repo)
    done = runs.find(r, run.id, Config.load(r))
    assert done.status == "failed"
    assert done.result and done.result.error == "gce startup: downloading gitexp failed"
    # A reboot of a stopped VM does not run anything again (and does not delete twice).
    again, server2 = boot_vm(request, stand_in, tmp_path)
    assert again.returncode == 0 and "already ran its job" in again.stdout
    assert not self_deletes(server2, f"gitexp-{run.id}")


def test_keep_leaves_the_vm_and_stop_stops_it(
        gce_repo: Path, client: FakeInstances, stand_in: list[StandIn], tmp_path: Path):
    run = launch(gce_repo)
    [request] = client.inserted
    proc, server = boot_vm(request, stand_in, tmp_path / "a", **{"gitexp-on-exit": "keep"})
    assert proc.returncode == 0 and "keeping this instance" in proc.stdout
    assert not [c for c in server.calls if c[1].startswith("/compute/")]
    store = open_store(run.record.store)
    store.delete(f"runs/{run.id}/result.json")
    proc, server = boot_vm(request, stand_in, tmp_path / "b", **{"gitexp-on-exit": "stop"})
    name = request["instance_resource"].name
    assert ("POST", f"/compute/v1/projects/{PROJECT}/zones/{ZONE}/instances/{name}/stop",
            f"Bearer {TOKEN}") in server.calls


def test_secret_manager_secret_reaches_the_job_only(
        gce_repo: Path, client: FakeInstances, stand_in: list[StandIn], tmp_path: Path):
    secret = f"tok-{uuid.uuid4().hex}"
    git("config", "exp.target.gpu.secretEnv", "API_TOKEN=api-token", cwd=gce_repo)
    run = launch(gce_repo)
    [request] = client.inserted
    ref = f"projects/{PROJECT}/secrets/api-token/versions/latest"
    proc, _ = boot_vm(request, stand_in, tmp_path, secrets={ref: secret})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    r = Repo.discover(gce_repo)
    done = runs.find(r, run.id, Config.load(r))
    log = git("show", f"{done.commit}:.gitexp-results/log.txt", cwd=gce_repo)
    assert f"token sha {hashlib.sha256(secret.encode()).hexdigest()}" in log
    assert secret not in proc.stdout + proc.stderr
    assert secret not in git("log", "-p", done.commit, cwd=gce_repo)
    store = open_store(run.record.store)
    assert all(secret.encode() not in (store.read(k) or b"") for k in store.list(""))
    assert not any(secret in v for v in items_of(request).values())


DOCKER_SHIM = """\
#!/usr/bin/env python3
# Stands in for docker on the VM: records its argv, then runs the container's command here.
import json, os, sys
args = sys.argv[1:]
with open(os.environ["SHIM_LOG"], "a") as log:
    log.write(json.dumps(args) + "\\n")
    if args[0] == "login":
        log.write(json.dumps({"password": sys.stdin.read().strip()}) + "\\n")
        sys.exit(0)
env, i = {}, 1
while args[i].startswith("-"):
    flag = args[i]
    if flag == "--rm":
        i += 1
        continue
    if flag == "-e":
        name, eq, value = args[i + 1].partition("=")
        env[name] = value if eq else os.environ[name]
    i += 2
image, command = args[i], args[i + 1:]
keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "SHIM_LOG")}
os.execvpe(command[0], command, {**keep, **env})
"""


def test_startup_script_runs_the_agent_in_a_container(
        gce_repo: Path, client: FakeInstances, stand_in: list[StandIn], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch):
    """The `container` key: docker (a recording stand-in here) runs the agent in the image,
    logged in to the registry with the VM's token on stdin, secrets passed by name only."""
    image = "us-docker.pkg.dev/proj/repo/train:1"
    git("config", "exp.target.gpu.container", image, cwd=gce_repo)
    git("config", "exp.target.gpu.secretEnv", "API_TOKEN=api-token", cwd=gce_repo)
    shim = tmp_path / "bin" / "docker"
    shim.parent.mkdir()
    shim.write_text(DOCKER_SHIM)
    shim.chmod(0o755)
    monkeypatch.setenv("PATH", f"{shim.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("SHIM_LOG", str(tmp_path / "docker.log"))
    run = launch(gce_repo)
    [request] = client.inserted
    assert items_of(request)["gitexp-container"] == image
    secret = f"tok-{uuid.uuid4().hex}"
    ref = f"projects/{PROJECT}/secrets/api-token/versions/latest"
    proc, server = boot_vm(request, stand_in, tmp_path / "root", secrets={ref: secret})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    calls = [json.loads(line) for line in (tmp_path / "docker.log").read_text().splitlines()]
    assert calls[0] == ["login", "-u", "oauth2accesstoken", "--password-stdin",
                        "https://us-docker.pkg.dev"]
    assert calls[1] == {"password": TOKEN}
    argv = calls[2]
    assert argv[:4] == ["run", "--rm", "--network", "host"]
    at = argv.index(image)
    assert argv[at + 1:at + 4] == ["python3", "-m", "gitexp.worker.agent"]
    assert "API_TOKEN" in argv and not any(secret in a for a in argv)
    assert len(self_deletes(server, request["instance_resource"].name)) == 1
    r = Repo.discover(gce_repo)
    done = runs.find(r, run.id, Config.load(r))
    assert done.status == "succeeded"
    log = git("show", f"{done.commit}:.gitexp-results/log.txt", cwd=gce_repo)
    assert f"token sha {hashlib.sha256(secret.encode()).hexdigest()}" in log


def test_templates_render_quotes_every_value():
    text = "run {{ cmd }} in {{dir}}; k: {{cmd}}"
    out = templates.render_text(text, {"cmd": "x; rm -rf /", "dir": "$HOME"})
    assert out == "run 'x; rm -rf /' in '$HOME'; k: 'x; rm -rf /'"
    yaml = templates.render_text("a: {{v}}", {"v": 'say "hi"\n{{v}}'}, quote=templates.json_quote)
    assert yaml == 'a: "say \\"hi\\"\\n{{v}}"'
    with pytest.raises(GitexpError, match="no value for dir"):
        templates.render_text(text, {"cmd": "x"})
    with pytest.raises(GitexpError, match="no placeholder for extra"):
        templates.render_text(text, {"cmd": "x", "dir": "d", "extra": 1})
    assert templates.path("gce-startup.sh").parent == templates.templates_dir()


def test_a_preempted_vm_is_followed_by_a_new_one_that_resumes(
        gce_repo: Path, client: FakeInstances, stand_in: list[StandIn], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch):
    """Preemption mid-run (the metadata says preempted, the VM's shutdown SIGTERMs the
    agent): the VM writes no result and deletes itself; the developer's side, seeing it gone,
    deletes what is left and creates a second VM for the same snapshot, which resumes from
    the last checkpoint, ends `succeeded` as an uninterrupted run would and deletes itself.
    The target's `nfs` is mounted before the agent, on both."""
    git("config", "exp.target.gpu.spot", "true", cwd=gce_repo)
    git("config", "exp.target.gpu.nfs", f"10.0.0.2:/share:{tmp_path}/mnt", cwd=gce_repo)
    monkeypatch.setenv("GITEXP_MOUNT", "echo MOUNT")
    (gce_repo / "train.py").write_text(RESUMABLE)
    pause = tmp_path / "pid"
    run = launch(gce_repo, str(pause))
    [first] = client.inserted
    assert items_of(first)["gitexp-nfs"] == f"10.0.0.2:/share:{tmp_path}/mnt"
    state = RunState(open_store(run.record.store), run.id)
    argv, env, server = vm_of(first, stand_in, tmp_path / "vm1")
    vm = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)
    try:
        wait_for(lambda: pause.exists() and (c := state.checkpoint()) is not None
                 and c.step == 4, what="checkpoint 'step 4' in the store")
        server.preempted = True
        agent = json.loads(state.store.read(f"runs/{run.id}/status.json") or b"")["agent_pid"]
        os.kill(agent, signal.SIGTERM)  # the guest's shutdown
        out, _ = vm.communicate(timeout=60)
    finally:
        vm.kill()
    assert vm.returncode == 143 and "this instance was preempted" in out, out
    assert f"MOUNT -t nfs -o hard,timeo=600,retrans=3 10.0.0.2:/share {tmp_path}/mnt" in out
    assert len(self_deletes(server, f"gitexp-{run.id}")) == 1
    assert not state.has_result()

    client.status = exceptions.NotFound("deleted")  # the dev side sees it gone
    r = Repo.discover(gce_repo)
    seen = runs.find(r, run.id, Config.load(r))
    assert seen.status == "running" and not seen.written_back
    first_vm = {"instance": f"gitexp-{run.id}", "project": PROJECT, "zone": ZONE}
    assert client.deleted == [first_vm]
    [_, second] = client.inserted  # the same snapshot, its own name
    assert second["instance_resource"].name == f"gitexp-{run.id}-a2"
    assert items_of(second)["gitexp-snapshot"] == run.record.snapshot
    client.status = "RUNNING"  # booting: no heartbeat yet
    assert runs.find(r, run.id, Config.load(r)).status == "running"
    assert len(client.inserted) == 2  # one new VM, not one per look
    Path(f"{pause}.go").write_text("")
    proc, server2 = boot_vm(second, stand_in, tmp_path / "vm2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert len(self_deletes(server2, f"gitexp-{run.id}-a2")) == 1
    done = runs.find(r, run.id, Config.load(r))
    assert done.written_back and done.status == "succeeded" and done.result is not None
    w = 0.0
    for step in range(8):  # what an uninterrupted run of RESUMABLE computes
        w = w * 0.9 + step
    assert done.result.metrics["loss"] == 1 / (1 + w)
    assert [(a.n, a.reason, a.resumed_from) for a in done.result.attempts] == [
        (1, "preempted", None), (2, "succeeded", "step 4")]
    latest = state.checkpoint()
    assert latest is not None and latest.label == "final"
    assert state.store.read(f"runs/{run.id}/checkpoints/{latest.n}/model.txt") == \
        repr(w).encode()


@pytest.mark.parametrize("value", ["10.0.0.2:/share", "-o:/a:/b", "h:/a:rel", "h:/a b:/m",
                                   "h:/a:/m;reboot"])
def test_a_bad_nfs_setting_is_one_line(value: str):
    with pytest.raises(GitexpError) as info:
        nfs_mount(Target("gpu", "gce", {"nfs": value, "project": PROJECT}))
    assert "SERVER:/export:/mount/point" in (info.value.hint or "")
