"""The kubernetes target, through the real `git exp` and the official `kubernetes` client.

No Kubernetes API server can run on these machines, so the API is MOCKED by `kmock`'s
in-memory emulator (a real HTTP server on 127.0.0.1 that stores objects; no controllers, so
pods never run and Job status only changes when a test patches it). Every rendered manifest
is also validated offline against the Kubernetes OpenAPI schemas with `kubernetes-validate`.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import kmock
import kubernetes_validate
import pytest
from kubernetes import client

from gitexp.backends import Launch
from gitexp.backends.kubernetes import KubernetesBackend
from gitexp.git import Repo
from gitexp.git.config import Target
from gitexp.model.record import Environment, RunRecord
from gitexp.model.runstate import RunState
from gitexp.stores.file import FileStore
from tests.helpers import exp, exp_json, git, wait_for
from tests.test_resume import TRAIN as RESUMABLE

K8S_VERSION = "1.30"
NS = "ml"


@dataclass
class Kube:
    emulator: Any
    url: str
    kubeconfig: Path
    batch: client.BatchV1Api
    core: client.CoreV1Api

    def requests(self, method: str) -> list[Any]:
        return [r for r in list(self.emulator) if str(r.method).upper().endswith(method)]


@pytest.fixture
def kube(tmp_path: Path) -> Iterator[Kube]:
    """kmock's Kubernetes emulator on a free loopback port, served from a thread."""
    ready = threading.Event()
    state: dict[str, Any] = {}

    async def serve() -> None:
        async with kmock.KubernetesEmulator() as emulator, kmock.Server(emulator) as server:
            emulator.resources["batch/v1/jobs"] = kmock.ResourceInfo(
                kind="Job", namespaced=True, subresources={"status"})
            emulator.resources["v1/pods"] = kmock.ResourceInfo(
                kind="Pod", namespaced=True, subresources={"log"})
            state.update(emulator=emulator, url=str(server.url).rstrip("/"),
                         stop=asyncio.Event(), loop=asyncio.get_running_loop())
            ready.set()
            await state["stop"].wait()

    thread = threading.Thread(target=lambda: asyncio.run(serve()), daemon=True)
    thread.start()
    assert ready.wait(10), "kmock did not start"
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps({  # JSON is YAML: a kubeconfig like kubectl writes
        "apiVersion": "v1", "kind": "Config", "current-context": "kmock",
        "clusters": [{"name": "kmock", "cluster": {"server": state["url"]}}],
        "users": [{"name": "tester", "user": {"token": "not-a-secret"}}],
        "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "tester"}}],
    }))
    cfg = client.Configuration()
    cfg.host = state["url"]
    api = client.ApiClient(cfg)
    yield Kube(state["emulator"], state["url"], kubeconfig, client.BatchV1Api(api),
               client.CoreV1Api(api))
    state["loop"].call_soon_threadsafe(state["stop"].set)
    thread.join(10)


FULL = {"image": "registry.example/ml/project:1", "namespace": NS, "cpu": "4",
        "memory": "16Gi", "gpus": "2",
        "nodeselector": "cloud.google.com/gke-accelerator=nvidia-tesla-t4",
        "tolerations": "nvidia.com/gpu=present:NoSchedule, spot:NoExecute",
        "nfs": "nfs-server.default.svc.cluster.local:/exports", "mount": "/data",
        "workerstore": "file:///data/gitexp", "secret": "gitexp-mail",
        "secretenv": "SMTP_PASSWORD=mail/password"}


def configure(repo: Path, kube: Kube, store: Path, **extra: str) -> None:
    settings = {"backend": "kubernetes", "store": store.as_uri(),
                "kubeconfig": str(kube.kubeconfig), **FULL, **extra}
    for key, value in settings.items():
        git("config", f"exp.target.k8s.{key}", value, cwd=repo)


def launch_of(repo: Path, run_id: str = "train-1127-1200-abcd") -> Launch:
    record = RunRecord(
        id=run_id, argv=["python", "train.py"], cwd="", base=None, branch="main", user="t",
        launched_at=0.0, target="k8s", backend="kubernetes", store="file:///s",
        env=Environment(python="3.11", platform="linux"), sweep="sweep-train-1127-1200-wxyz",
        snapshot="a" * 40)
    return Launch(repo=Repo.discover(repo), record=record, store=FileStore(Path("/s")),
                  heartbeat=2.0)


@pytest.mark.parametrize("settings", [
    {"image": "python:3.11"},
    FULL,
    {**{k: v for k, v in FULL.items() if k != "nfs"}, "pvc": "training-data"},
    {"image": "img", "tolerations": "dedicated", "cpu": "500m"},
    {"image": "img", "maxattempts": "1"},
], ids=["minimal", "gpu-nfs-secrets", "pvc", "toleration-exists", "one-attempt"])
def test_every_rendered_manifest_validates_offline(repo: Path, settings: dict[str, str]) -> None:
    """Each shape of the Job manifest passes `kubernetes-validate` in strict mode."""
    backend = KubernetesBackend(target=Target("k8s", "kubernetes", dict(settings)),
                                repo=Repo.discover(repo))
    manifest = backend.manifest(launch_of(repo))
    kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)
    assert manifest["kind"] == "Job" and manifest["apiVersion"] == "batch/v1"
    assert manifest["metadata"]["labels"]["gitexp/run"] == "train-1127-1200-abcd"


def test_a_sweeps_slot_is_one_job_running_the_sweeps_runs(repo: Path) -> None:
    """--max-parallel: slot k of a sweep is one Job named by sweep and slot, whose agent
    runs the sweep's runs one after another (one work directory per run under its root)."""
    backend = KubernetesBackend(target=Target("k8s", "kubernetes", dict(FULL)),
                                repo=Repo.discover(repo))
    manifest = backend.manifest(replace(launch_of(repo), slot=1))
    kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)
    assert manifest["metadata"]["name"] == "sweep-train-1127-1200-wxyz-s1"
    labels = manifest["metadata"]["labels"]
    assert labels["gitexp/sweep"] == "sweep-train-1127-1200-wxyz" and "gitexp/run" not in labels
    assert labels["gitexp/slot"] == "1"
    command = manifest["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[command.index("--sweep") + 1:command.index("--slot") + 2] == [
        "sweep-train-1127-1200-wxyz", "--slot", "1"]
    assert "--run" not in command and command[command.index("--workdir") + 1] == "/tmp/gitexp"


def test_hostile_values_stay_values(repo: Path) -> None:
    """A setting with YAML syntax in it cannot add keys to the manifest."""
    evil = 'img"\n    privileged: true\n  x: {'
    backend = KubernetesBackend(target=Target("k8s", "kubernetes", {"image": evil}),
                                repo=Repo.discover(repo))
    manifest = backend.manifest(launch_of(repo))
    container = manifest["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == evil
    assert set(container) == {"name", "image", "command", "resources", "env", "envFrom",
                              "volumeMounts"}
    assert set(manifest) == {"apiVersion", "kind", "metadata", "spec"}


def test_job_fields_and_status_follow_the_job(repo: Path, tmp_path: Path, kube: Kube) -> None:
    """`git exp run -t k8s` creates the Job (read back field by field); patching the Job's
    status to Complete / Failed makes the run succeeded / failed."""
    store = tmp_path / "store"
    configure(repo, kube, store)
    (repo / "train.py").write_text("print('hi')\n")
    ok = exp("run", "-t", "k8s", "-d", "--", "python3", "train.py", cwd=repo).stdout.strip()
    bad = exp("run", "-t", "k8s", "-d", "--", "python3", "train.py", cwd=repo).stdout.strip()

    job = kube.batch.read_namespaced_job(ok, NS)
    assert job.metadata.labels == {"app.kubernetes.io/managed-by": "gitexp", "gitexp/run": ok}
    # evictions retried up to maxAttempts (3), a run the agent ended never
    assert job.spec.backoff_limit == 2
    assert [r.to_dict() for r in job.spec.pod_failure_policy.rules] == [
        {"action": "Ignore", "on_exit_codes": None, "on_pod_conditions": [
            {"status": "True", "type": "DisruptionTarget"}]},
        {"action": "FailJob", "on_pod_conditions": None, "on_exit_codes": {
            "container_name": "agent", "operator": "NotIn", "values": [143]}}]
    pod = job.spec.template.spec
    assert pod.restart_policy == "Never"
    assert job.spec.template.metadata.labels["gitexp/run"] == ok
    assert pod.node_selector == {"cloud.google.com/gke-accelerator": "nvidia-tesla-t4"}
    assert [(t.key, t.operator, t.value, t.effect) for t in pod.tolerations] == [
        ("nvidia.com/gpu", "Equal", "present", "NoSchedule"), ("spot", "Exists", None,
                                                               "NoExecute")]
    assert pod.volumes[0].nfs.server == "nfs-server.default.svc.cluster.local"
    assert pod.volumes[0].nfs.path == "/exports"
    (container,) = pod.containers
    assert container.image == FULL["image"]
    assert container.volume_mounts[0].mount_path == "/data"
    assert container.resources.limits == {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "2"}
    assert container.resources.requests == container.resources.limits
    assert container.env_from[0].secret_ref.name == "gitexp-mail"
    assert container.env[0].name == "SMTP_PASSWORD"
    assert container.env[0].value is None  # never a literal secret
    assert container.env[0].value_from.secret_key_ref.to_dict() == {
        "name": "mail", "key": "password", "optional": None}
    snapshot = exp_json("show", ok, cwd=repo)["snapshot"]
    cmd = container.command
    assert cmd[:3] == ["python3", "-m", "gitexp.worker.agent"]
    args = dict(zip(cmd[3::2], cmd[4::2], strict=True))
    assert args == {"--store": "file:///data/gitexp", "--run": ok, "--snapshot": snapshot,
                    "--code": "/data/gitexp/code.git", "--workdir": f"/tmp/gitexp/{ok}",
                    "--heartbeat": "0.3"}
    # The code went to the store: the pod's checkout will find the snapshot there.
    assert git("cat-file", "-t", snapshot, cwd=store / "code.git").strip() == "commit"

    assert exp_json("show", ok, cwd=repo)["status"] == "queued"
    for name, condition in ((ok, "Complete"), (bad, "Failed")):
        kube.batch.patch_namespaced_job_status(name, NS, {"status": {"conditions": [
            {"type": condition, "status": "True"}]}})
    assert exp_json("show", ok, cwd=repo)["status"] == "succeeded"
    failed = exp_json("show", bad, cwd=repo)
    assert failed["status"] == "failed"
    assert failed["result"]["error"] == f"Kubernetes Job {bad} failed without the agent's result"


def test_cancel_deletes_the_job_in_the_foreground(repo: Path, tmp_path: Path,
                                                  kube: Kube) -> None:
    """`git exp cancel` deletes the Job with propagationPolicy=Foreground; the run ends
    `cancelled` (its pod never started, so no agent could say so)."""
    configure(repo, kube, tmp_path / "store")
    (repo / "train.py").write_text("print('hi')\n")
    run_id = exp("run", "-t", "k8s", "-d", "--", "python3", "train.py", cwd=repo).stdout.strip()
    exp("cancel", run_id, cwd=repo)
    deletes = kube.requests("DELETE")
    assert len(deletes) == 1
    assert deletes[0].params["propagationPolicy"] == "Foreground"
    assert deletes[0].url.path == f"/apis/batch/v1/namespaces/{NS}/jobs/{run_id}"
    with pytest.raises(client.ApiException) as gone:
        kube.batch.read_namespaced_job(run_id, NS)
    assert gone.value.status == 404
    assert exp_json("show", run_id, cwd=repo)["status"] == "cancelled"


def test_logs_come_from_the_pod_while_the_store_has_none(repo: Path, tmp_path: Path,
                                                         kube: Kube) -> None:
    """Before the agent reaches the store (e.g. a crash at start), `git exp logs` shows the
    pod's own log, read with read_namespaced_pod_log."""
    configure(repo, kube, tmp_path / "store")
    (repo / "train.py").write_text("print('hi')\n")
    run_id = exp("run", "-t", "k8s", "-d", "--", "python3", "train.py", cwd=repo).stdout.strip()
    pod = f"{run_id}-x7k2p"
    kube.core.create_namespaced_pod(NS, {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": pod, "namespace": NS, "labels": {"job-name": run_id}},
        "spec": {"containers": [{"name": "agent", "image": "img"}]}})
    kube.emulator[f"get /api/v1/namespaces/{NS}/pods/{pod}/log"] << \
        b"python3: No module named gitexp\n"
    assert exp("logs", run_id, cwd=repo).stdout == "python3: No module named gitexp\n"


def test_one_attempt_fails_the_job_on_any_exit(repo: Path) -> None:
    """maxAttempts = 1: no retry at all, an eviction's neither."""
    target = Target("k8s", "kubernetes", {"image": "img", "maxattempts": "1"})
    spec = KubernetesBackend(target=target, repo=Repo.discover(repo)).manifest(
        launch_of(repo))["spec"]
    assert spec["backoffLimit"] == 0
    assert [r["action"] for r in spec["podFailurePolicy"]["rules"]] == ["FailJob"]


def test_an_evicted_pods_retry_resumes_as_attempt_2(repo: Path, tmp_path: Path,
                                                    kube: Kube) -> None:
    """The Job's pod is evicted mid-run (the kubelet's SIGTERM to the agent, its PID 1): the
    agent leaves the run to the Job's retry (exit 143, which the failure policy retries); the
    next pod runs the same command, goes on as attempt 2 from the last checkpoint, and the run
    ends `succeeded` with an uninterrupted run's metrics and model. kmock runs no pods: the
    test runs the Job's container command itself, here, against the store's directory."""
    store = tmp_path / "store"
    configure(repo, kube, store, workerstore=store.as_uri())
    (repo / "train.py").write_text(RESUMABLE)
    pause = tmp_path / "pid"
    run_id = exp("run", "-t", "k8s", "-d", "--", "python3", "train.py", str(pause),
                 cwd=repo).stdout.strip()
    command = kube.batch.read_namespaced_job(run_id, NS).spec.template.spec.containers[0].command
    command[command.index("--workdir") + 1] = str(tmp_path / "pod")  # the pod's own disk

    first = subprocess.Popen(command)
    state = RunState(FileStore(store), run_id)
    wait_for(lambda: pause.exists() and (c := state.checkpoint()) is not None and c.step == 4,
             what="checkpoint 'step 4' in the store")
    first.send_signal(signal.SIGTERM)  # eviction
    assert first.wait(timeout=30) == 143  # the exit the Job retries
    assert exp_json("show", run_id, cwd=repo)["status"] == "running"  # the Job is still there
    second = subprocess.Popen(command)  # the Job's next pod
    try:
        wait_for(lambda: re.search(rf"^{run_id} +running \(attempt 2\)",
                                   exp("ls", cwd=repo).stdout, re.MULTILINE),
                 what="ls to show the second attempt")
        Path(f"{pause}.go").write_text("")
        assert second.wait(timeout=60) == 0
    finally:
        second.kill()
    kube.batch.patch_namespaced_job_status(run_id, NS, {"status": {"conditions": [
        {"type": "Complete", "status": "True"}]}})
    done = exp_json("show", run_id, cwd=repo)
    w = 0.0
    for step in range(8):  # what an uninterrupted run of RESUMABLE computes
        w = w * 0.9 + step
    assert done["status"] == "succeeded" and done["result"]["metrics"]["loss"] == 1 / (1 + w)
    assert [(a["n"], a["reason"], a["resumed_from"]) for a in done["result"]["attempts"]] == [
        (1, "preempted", None), (2, "succeeded", "step 4")]
    latest = state.checkpoint()
    assert latest is not None and latest.label == "final"
    assert (store / "runs" / run_id / "checkpoints" / str(latest.n) / "model.txt"
            ).read_text() == repr(w)
    assert "resumed at step 5" in exp("logs", run_id, cwd=repo).stdout
    # the series goes on across the pods: each step once, gitexp.log's and dvclive's
    points = [json.loads(line) for line in
              (store / "runs" / run_id / "metrics.jsonl").read_text().splitlines()]
    assert [p["step"] for p in points if "loss" in p] == [*range(8)]
    assert [p["step"] for p in points if "acc" in p] == [*range(8)]
