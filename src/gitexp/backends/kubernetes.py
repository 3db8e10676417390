"""The kubernetes target: the agent runs as a `batch/v1` Job, created with the official client.

    exp.target.k8s.backend     = kubernetes
    exp.target.k8s.image       = registry/project:tag   an image with Python, git and gitexp
                                 (`git exp image build` makes one)
    exp.target.k8s.store       = gs://bucket/gitexp      where code and results travel
    exp.target.k8s.workerstore = file:///data/gitexp     the store as pods see it
                                 (default: `store`), e.g. on the NFS volume below
    exp.target.k8s.namespace   = default
    exp.target.k8s.context / kubeconfig   which cluster (default: the current context)
    exp.target.k8s.cpu / memory / gpus    requests and limits (gpus: nvidia.com/gpu)
    exp.target.k8s.nodeselector = cloud.google.com/gke-accelerator=nvidia-tesla-t4
    exp.target.k8s.tolerations  = nvidia.com/gpu=present:NoSchedule, spot:NoExecute
    exp.target.k8s.nfs         = 10.0.0.2:/export     or  pvc = CLAIM   (mounted at `mount`,
    exp.target.k8s.mount       = /data                default /data)
    exp.target.k8s.secret      = gitexp-mail          a Secret whose keys become env vars
    exp.target.k8s.secretenv   = SMTP_PASSWORD=mail/password   single keys (secretKeyRef)

The manifest is `templates/k8s-job.yaml`. Status comes from the agent's heartbeat and
result in the store; the Job's conditions say whether it is still there and, when the agent
left no result (image pull failure, eviction), how it ended. `cancel` deletes the Job with
foreground propagation (its pod goes first); a pod's log stands in while the store has none.
"""

from __future__ import annotations

import json
import re
from typing import Any

from gitexp.backends import Launch, templates
from gitexp.backends.slurm import local_path, mark_cancelled
from gitexp.errors import BackendError, ConfigError
from gitexp.git import Repo
from gitexp.git.config import Target
from gitexp.model.record import RunRecord
from gitexp.model.runstate import Handle
from gitexp.stores.transport import code_repo
from gitexp.worker import PREEMPTED_EXIT, agent_argv

GPU = "nvidia.com/gpu"
MANAGED = {"app.kubernetes.io/managed-by": "gitexp"}


class KubernetesBackend:
    needs = ("kubernetes",)  # the extra `kubernetes` (gitexp.extras)

    def __init__(self, *, target: Target, repo: Repo) -> None:
        self.target = target
        self.repo = repo
        self.namespace = target.get("namespace") or "default"
        self._api: Any = None

    def store_url(self) -> str:
        return self.target.require("store")

    # -- backend protocol --------------------------------------------------------------------
    def submit(self, *, launch: Launch) -> Handle:
        body = self.manifest(launch)  # the code is in the store already (launch.submit)
        self._call("create the Job", lambda: self.batch().create_namespaced_job(
            self.namespace, body))
        return {"job": body["metadata"]["name"], "namespace": self.namespace}

    def alive(self, *, record: RunRecord, handle: Handle) -> bool | None:
        try:
            job = self.job(handle)
        except BackendError:
            return None
        return job is not None and _finished(job) is None

    def ended_as(self, *, record: RunRecord, handle: Handle) -> tuple[str, str] | None:
        """How the Job ended, for a run whose agent left no result in the store."""
        try:
            job = self.job(handle)
        except BackendError:
            return None
        ended = _finished(job) if job is not None else None
        if ended is None:
            return None
        return ("succeeded" if ended == "Complete" else "failed",
                f"Kubernetes Job {handle['job']} {ended.lower()} without the agent's result")

    def cancel(self, *, record: RunRecord, handle: Handle) -> None:
        from kubernetes.client.exceptions import ApiException

        try:  # Foreground: the Job disappears only after its pod has stopped
            self.batch().delete_namespaced_job(str(handle["job"]), self._ns(handle),
                                               propagation_policy="Foreground")
        except ApiException as exc:
            if exc.status != 404:
                raise BackendError(f"cannot delete Job {handle['job']}: {exc.reason}") from None
        # A running agent gets SIGTERM and writes `cancelled` itself before its pod (and so,
        # in the foreground, the Job) goes; an agent that never started cannot.
        mark_cancelled(record, "cancelled before its pod started")

    def logs(self, *, record: RunRecord, handle: Handle) -> bytes | None:
        """The Job's pod's own log (`read_namespaced_pod_log`)."""
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        core: Any = client.CoreV1Api(self.api())
        job = str(handle["job"])
        try:
            pods = core.list_namespaced_pod(self._ns(handle), label_selector=f"job-name={job}")
            names = [p.metadata.name for p in pods.items
                     if p.metadata and (p.metadata.labels or {}).get("job-name") == job]
            if not names:
                return None
            resp = core.read_namespaced_pod_log(names[-1], self._ns(handle),
                                                _preload_content=False)
            return bytes(resp.data)
        except ApiException:
            return None

    # -- the API -----------------------------------------------------------------------------
    def api(self) -> Any:
        from kubernetes import config

        if self._api is not None:
            return self._api
        try:
            self._api = config.new_client_from_config(  # type: ignore[no-untyped-call]
                config_file=self.target.get("kubeconfig"), context=self.target.get("context"))
        except config.ConfigException as exc:
            raise BackendError(f"no Kubernetes cluster configured: {exc}",
                               hint="`kubectl config get-contexts`; or set the target's "
                                    "`kubeconfig` / `context`") from None
        return self._api

    def batch(self) -> Any:
        from kubernetes import client

        return client.BatchV1Api(self.api())

    def job(self, handle: Handle) -> Any:
        """The Job object, or None when it is gone."""
        from kubernetes.client.exceptions import ApiException

        try:
            return self.batch().read_namespaced_job_status(str(handle["job"]), self._ns(handle))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise BackendError(f"cannot read Job {handle['job']}: {exc.reason}") from None
        except OSError as exc:  # urllib3's connection errors
            raise BackendError(f"cannot reach the Kubernetes API: {exc}") from None

    def _call(self, what: str, call: Any) -> Any:
        from kubernetes.client.exceptions import ApiException

        try:
            return call()
        except ApiException as exc:
            detail = _api_message(exc)
            raise BackendError(f"cannot {what}: {detail}",
                               hint=f"`kubectl auth can-i create jobs -n {self.namespace}`") \
                from None
        except OSError as exc:
            raise BackendError(f"cannot reach the Kubernetes API: {exc}") from None

    def _ns(self, handle: Handle) -> str:
        return str(handle.get("namespace") or self.namespace)

    # -- the manifest ------------------------------------------------------------------------
    def manifest(self, launch: Launch) -> dict[str, Any]:
        import yaml  # PyYAML: a dependency of the kubernetes client

        return dict(yaml.safe_load(self.render(launch)))

    def render(self, launch: Launch) -> str:
        rec = launch.record
        worker = self.target.get("workerstore") or launch.store.url
        root = local_path(worker)
        command = agent_argv(self.target.get("python") or "python3", store=worker,
                             code=f"{root}/{code_repo(rec.snapshot)}" if root else worker,
                             workdir=launch.workdir("/tmp/gitexp"),  # noqa: S108 - the pod's
                             heartbeat=launch.heartbeat, **launch.job(),
                             limits=launch.limits(self.target))
        labels = {**MANAGED, **({"gitexp/run": rec.id} if launch.slot is None
                                else {"gitexp/slot": str(launch.slot)}),
                  **({"gitexp/sweep": rec.sweep} if rec.sweep else {})}
        volumes, mounts = self._volumes()
        env, env_from = self._secrets()
        attempts = launch.limits(self.target)[0]
        values: dict[str, Any] = {
            "name": launch.name, "namespace": self.namespace, "labels": labels,
            "backoff_limit": attempts - 1, "pod_failure_policy": _failure_policy(attempts),
            "ttl": int(self.target.duration("ttl", 7 * 86400)),
            "image": self.target.require("image"),
            "command": command, "resources": self._resources(),
            "node_selector": _pairs(self.target.get("nodeselector"), "nodeselector"),
            "tolerations": [_toleration(t) for t in _split(self.target.get("tolerations"))],
            "volumes": volumes, "volume_mounts": mounts, "env": env, "env_from": env_from,
        }
        return templates.render("k8s-job.yaml", {k: _yaml_json(v) for k, v in values.items()},
                                quote=str)  # each value is already JSON, hence valid YAML

    def _resources(self) -> dict[str, Any]:
        amounts = {k: v for k, v in (("cpu", self.target.get("cpu")),
                                     ("memory", self.target.get("memory")),
                                     (GPU, self.target.get("gpus"))) if v}
        # GPUs cannot be overcommitted: Kubernetes wants the same request and limit.
        return {"requests": amounts, "limits": amounts} if amounts else {}

    def _volumes(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        nfs, pvc = self.target.get("nfs"), self.target.get("pvc")
        if nfs and pvc:
            raise ConfigError(f"target {self.target.name!r} has both `nfs` and `pvc`",
                              hint="mount one data volume: unset one of them")
        if not (nfs or pvc):
            return [], []
        if nfs:
            server, _, path = nfs.partition(":")
            if not server or not path.startswith("/"):
                raise ConfigError(f"target {self.target.name!r}: nfs = {nfs!r}",
                                  hint="write nfs = SERVER:/export/path")
            source: dict[str, Any] = {"nfs": {"server": server, "path": path}}
        else:
            source = {"persistentVolumeClaim": {"claimName": pvc}}
        mount = self.target.get("mount") or "/data"
        return [{"name": "data", **source}], [{"name": "data", "mountPath": mount}]

    def _secrets(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        env = []
        for var, ref in _pairs(self.target.get("secretenv"), "secretenv").items():
            secret, _, key = ref.partition("/")
            if not secret or not key:
                raise ConfigError(f"target {self.target.name!r}: secretenv {var}={ref!r}",
                                  hint="write secretenv = VAR=SECRET/KEY, e.g. "
                                       "SMTP_PASSWORD=mail/password")
            env.append({"name": var, "valueFrom": {"secretKeyRef": {"name": secret,
                                                                     "key": key}}})
        whole = self.target.get("secret")
        return env, [{"secretRef": {"name": whole}}] if whole else []


def _failure_policy(attempts: int) -> dict[str, Any]:
    """Which failed pods the Job tries again. An eviction (the pod's DisruptionTarget) does
    not count against backoffLimit: the agent counts the run's attempts itself, and past
    maxAttempts ends the run (exit 1: the next rule). Any exit but the agent's "preempted"
    (143, SIGTERM's) fails the Job at once: the run has its result."""
    rules: list[dict[str, Any]] = [{"action": "FailJob", "onExitCodes": {
        "containerName": "agent", "operator": "NotIn", "values": [PREEMPTED_EXIT]}}]
    if attempts > 1:
        rules.insert(0, {"action": "Ignore", "onPodConditions": [
            {"type": "DisruptionTarget", "status": "True"}]})
    return {"rules": rules}


def _finished(job: Any) -> str | None:
    """"Complete" or "Failed" once the Job has that condition, else None."""
    for cond in (job.status.conditions if job.status else None) or []:
        if cond.type in ("Complete", "Failed") and cond.status == "True":
            return str(cond.type)
    return None


def _api_message(exc: Any) -> str:
    try:
        return str(json.loads(exc.body).get("message") or exc.reason)
    except (TypeError, ValueError):
        return str(exc.reason)


def _split(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def _pairs(value: str | None, key: str) -> dict[str, str]:
    out = {}
    for item in _split(value):
        name, eq, val = item.partition("=")
        if not eq or not name.strip():
            raise ConfigError(f"{key}: {item!r} is not NAME=VALUE",
                              hint=f"write {key} = a=b, c=d")
        out[name.strip()] = val.strip()
    return out


def _toleration(spec: str) -> dict[str, str]:
    """`key=value:NoSchedule`, `key:NoExecute` or `key` (any effect) -> a toleration."""
    pair, _, effect = spec.partition(":")
    key, eq, value = pair.partition("=")
    tol: dict[str, str] = {"key": key.strip(), "operator": "Equal" if eq else "Exists"}
    if eq:
        tol["value"] = value.strip()
    if effect:
        tol["effect"] = effect.strip()
    return tol


# An escaped surrogate pair (`\ud83d\ude00`) whose backslash is not itself escaped.
_PAIR = re.compile(r"(?<!\\)((?:\\\\)*)\\u(d[89ab][0-9a-f]{2})\\u(d[c-f][0-9a-f]{2})")


def _yaml_json(value: Any) -> str:
    """JSON, which is YAML - except that YAML reads an escaped surrogate pair as two broken
    characters: name the code point itself instead (`\\U0001f600`)."""
    def point(m: re.Match[str]) -> str:
        code = 0x10000 + ((int(m[2], 16) - 0xD800) << 10) + int(m[3], 16) - 0xDC00
        return f"{m[1]}\\U{code:08x}"
    return _PAIR.sub(point, json.dumps(value))
