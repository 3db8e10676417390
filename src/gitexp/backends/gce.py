"""The gce target: one Compute Engine VM per run, which deletes itself when the run ends.

    exp.target.gpu.backend        = gce
    exp.target.gpu.project        = my-project            (required)
    exp.target.gpu.zone           = us-central1-a         (required)
    exp.target.gpu.store          = gs://bucket/prefix    (required: code in, results out)
    exp.target.gpu.machineType    = n1-standard-8         default e2-standard-4
    exp.target.gpu.image          = projects/P/global/images/family/F    default debian-12
    exp.target.gpu.container      = IMAGE     run the agent in this container on the VM
    exp.target.gpu.gpus           = nvidia-tesla-t4:1     (type:count)
    exp.target.gpu.spot           = true      (or preemptible = true)
    exp.target.gpu.diskSize       = 100       GB, default 50 (diskType default pd-balanced)
    exp.target.gpu.serviceAccount = SA@P.iam.gserviceaccount.com    default: the default SA
    exp.target.gpu.labels         = team=ml, owner=alice
    exp.target.gpu.network        = global/networks/default  (subnetwork, externalIp = false)
    exp.target.gpu.secretEnv      = WANDB_API_KEY=wandb-key, AWS_KEY=projects/P/secrets/S
    exp.target.gpu.nfs            = 10.0.0.2:/share:/mnt/data   mounted before the job
    exp.target.gpu.keep           = true      keep the VM after the run (`git exp run --keep`)
    exp.target.gpu.onExit         = delete | stop         what the VM does when the run ends

Submit puts gitexp's wheel in the store (the snapshot is there already), then creates the
VM with the startup script `templates/gce-startup.sh` and its settings (store, run id, snapshot) as
instance metadata; labels carry the run id. Secrets never go into metadata nor leave the
dev machine: `secretEnv` maps environment variables to Secret Manager secrets, which the
VM's service account reads at boot into the agent's environment only (see the script).
The VM's service account is also its credential for the store and for deleting itself.

A preempted VM (spot/preemptible) leaves the run to its next attempt: the agent stops as
`preempted` without a result, and the developer's side, seeing the VM gone (`service.runs`),
creates a new VM for the same snapshot (`retry`), whose agent resumes from the last
checkpoint, up to `maxAttempts`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import time
from collections.abc import Iterator
from typing import Any

from gitexp.backends import Launch, templates
from gitexp.errors import BackendError, ConfigError
from gitexp.git import Repo
from gitexp.git.config import Target
from gitexp.model.record import Result, RunRecord
from gitexp.model.runstate import Handle, RunState
from gitexp.stores import open_store
from gitexp.worker import agent_argv, bootstrap

DEFAULT_IMAGE = "projects/debian-cloud/global/images/family/debian-12"
DEFAULT_MACHINE = "e2-standard-4"
SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]
INSERT_TIMEOUT = 300.0
CANCEL_GRACE = 15.0  # the agent stops the job itself on the cancel marker; then we delete
LIVE_STATES = frozenset({"PROVISIONING", "STAGING", "RUNNING", "REPAIRING"})
_LABEL_BAD = re.compile(r"[^a-z0-9_-]")


class GCEBackend:
    needs = ("google.cloud.compute_v1",)  # the extra `gce` (gitexp.extras)
    cancel_grace = CANCEL_GRACE

    def __init__(self, *, target: Target, repo: Repo) -> None:
        self.target = target
        self.repo = repo

    def store_url(self) -> str:
        url = self.target.require("store")
        if not url.startswith("gs://"):
            raise ConfigError(f"target {self.target.name!r}: the store must be gs://, not {url}",
                              hint=f"git config exp.target.{self.target.name}.store "
                                   "gs://BUCKET/PREFIX")
        return url

    # -- backend protocol --------------------------------------------------------------------
    def submit(self, *, launch: Launch) -> Handle:
        # launch.submit has pushed the snapshot to the store; the VM needs gitexp there too.
        return self._create(launch, attempt=1)

    def retry(self, *, launch: Launch, handle: Handle, attempt: int) -> Handle:
        """A new VM for the run's next attempt (its agent resumes from the last checkpoint),
        named after the attempt; the preempted one is deleted first (one that GCE stopped
        rather than deleted, a `preemptible` VM, would stay behind)."""
        self._delete(handle)
        return self._create(launch, attempt=attempt)

    def _create(self, launch: Launch, *, attempt: int) -> Handle:
        project, zone = self.target.require("project"), self.target.require("zone")
        wheel_key = bootstrap.ensure_wheel(launch.store)
        instance = build_instance(self.target, launch, wheel_key=wheel_key, attempt=attempt)
        client = instances_client()
        with _api_errors("creating the VM"):
            operation = client.insert(project=project, zone=zone, instance_resource=instance)
            operation.result(timeout=INSERT_TIMEOUT)
        return {"instance": instance.name, "project": project, "zone": zone}

    def _delete(self, handle: Handle) -> None:
        """Delete the VM; one already gone is fine."""
        from google.api_core import exceptions

        try:
            with _api_errors("deleting the VM"):
                instances_client().delete(project=handle["project"], zone=handle["zone"],
                                          instance=handle["instance"])
        except BackendError as exc:
            if not isinstance(exc.__cause__, exceptions.NotFound):
                raise

    def alive(self, *, record: RunRecord, handle: Handle) -> bool | None:
        from google.api_core import exceptions

        try:
            vm = instances_client().get(project=handle["project"], zone=handle["zone"],
                                        instance=handle["instance"])
        except exceptions.NotFound:
            return False
        except Exception:  # no credentials or no network: we cannot tell
            return None
        return str(vm.status) in LIVE_STATES

    def cancel(self, *, record: RunRecord, handle: Handle) -> None:
        state = RunState(open_store(record.store), record.id)
        # The cancel marker is in the store: give the agent a moment to stop the job and
        # write `cancelled` with its log, then delete the VM whatever it did.
        deadline = time.monotonic() + self.cancel_grace
        while not state.has_result() and time.monotonic() < deadline:
            time.sleep(1.0)
        self._delete(handle)
        if not state.has_result():
            state.write_result(Result(status="cancelled", ended_at=time.time(),
                                      error="cancelled: the VM was deleted"),
                               snapshot=record.snapshot)


def instances_client() -> Any:
    """The Compute API client (tests replace this function: the API cannot be reached)."""
    from google.cloud import compute_v1

    with _api_errors("connecting to the Compute API"):
        return compute_v1.InstancesClient()


# -- the instance -------------------------------------------------------------------------------
def build_instance(target: Target, launch: Launch, *, wheel_key: str, attempt: int = 1) -> Any:
    from google.cloud import compute_v1 as c

    zone = target.require("zone")
    scheduling = c.Scheduling()
    if target.boolean("spot"):
        scheduling.provisioning_model = "SPOT"
        scheduling.instance_termination_action = "DELETE"
    if target.boolean("preemptible"):
        scheduling.preemptible = True
    accelerators = _accelerators(target, zone)
    if accelerators or target.boolean("spot") or target.boolean("preemptible"):
        # GPUs cannot live-migrate, and spot/preemptible VMs must not restart by themselves.
        scheduling.on_host_maintenance = "TERMINATE"
        scheduling.automatic_restart = False
    disk = c.AttachedDisk(
        boot=True, auto_delete=True, type_="PERSISTENT",
        initialize_params=c.AttachedDiskInitializeParams(
            source_image=target.get("image") or DEFAULT_IMAGE,
            disk_size_gb=target.count("diskSize", 50),
            disk_type=f"zones/{zone}/diskTypes/{target.get('diskType') or 'pd-balanced'}",
        ),
    )
    nic = c.NetworkInterface(network=target.get("network") or "global/networks/default")
    if subnetwork := target.get("subnetwork"):
        nic.subnetwork = subnetwork
    if target.boolean("externalIp", True):
        # GCS and the package index are reached over the internet unless the subnet has
        # Private Google Access; set external_ip = false there.
        nic.access_configs = [c.AccessConfig(name="External NAT", type_="ONE_TO_ONE_NAT")]
    return c.Instance(
        name=instance_name(launch.name + (f"-a{attempt}" if attempt > 1 else "")),
        machine_type=f"zones/{zone}/machineTypes/{target.get('machineType') or DEFAULT_MACHINE}",
        disks=[disk],
        network_interfaces=[nic],
        service_accounts=[c.ServiceAccount(email=target.get("serviceAccount") or "default",
                                           scopes=SCOPES)],
        scheduling=scheduling,
        guest_accelerators=accelerators,
        labels=labels(target, launch),
        metadata=c.Metadata(items=[c.Items(key=k, value=v) for k, v in
                                   metadata(target, launch, wheel_key).items()]),
    )


def metadata(target: Target, launch: Launch, wheel_key: str) -> dict[str, str]:
    """The startup script and its settings. Never a secret: only references to them."""
    record = launch.record
    items = {
        "startup-script": templates.read("gce-startup.sh"),
        "gitexp-store": record.store,
        # A slot's VM names the slot; it writes no run's result when its agent fails (the
        # slot's runs are lost by the lost rule, or taken by the other slots).
        "gitexp-run": launch.name,
        "gitexp-snapshot": record.snapshot,
        # The agent's argv, whole; its work directory is relative to the VM's GITEXP_ROOT.
        "gitexp-agent": json.dumps(agent_argv(
            "python3", store=record.store, code=record.store, workdir=launch.workdir("work"),
            heartbeat=f"{launch.heartbeat:g}", **launch.job(), limits=launch.limits(target))),
        "gitexp-wheel": wheel_key,
        "gitexp-on-exit": "keep" if target.boolean("keep") else target.choice("onExit",
                                                                                "delete"),
    }
    refs = secret_refs(target)
    if refs:
        items["gitexp-secrets"] = "\n".join(f"{k}={v}" for k, v in refs.items())
    if launch.slot is not None:  # its startup log goes beside the sweep's plan
        items["gitexp-slot"], items["gitexp-log"] = str(launch.slot), launch.log_key()
    if target.get("container"):
        items["gitexp-container"] = target.get("container") or ""
    if target.get("nfs"):
        items["gitexp-nfs"] = ":".join(nfs_mount(target))
    if target.get("gpus"):
        items["install-nvidia-driver"] = "True"  # Deep Learning VM images honour this
    return items


def nfs_mount(target: Target) -> tuple[str, str, str]:
    """`nfs = SERVER:/export:/mount/point` -> its three parts, checked: the startup script
    mounts the export there before the agent starts (a Filestore share, the data)."""
    value = target.get("nfs") or ""
    server, _, rest = value.partition(":")
    export, _, mount = rest.rpartition(":")
    plain = re.compile(r"[A-Za-z0-9._\-/]+")  # no option, no space, nothing a shell reads
    if not (server and plain.fullmatch(server) and not server.startswith("-")
            and export.startswith("/") and plain.fullmatch(export)
            and mount.startswith("/") and plain.fullmatch(mount)):
        raise ConfigError(f"target {target.name!r}: nfs = {value!r}",
                          hint="nfs = SERVER:/export:/mount/point, e.g. "
                               "10.0.0.2:/share:/mnt/data")
    return server, export, mount


def secret_refs(target: Target) -> dict[str, str]:
    """`ENV=name` or `ENV=projects/P/secrets/S[/versions/V]` -> full version references."""
    project = target.require("project")
    refs = {}
    for item in _split(target.get("secretEnv")):
        env, sep, ref = item.partition("=")
        if not sep or not env.isidentifier() or not ref:
            raise ConfigError(f"target {target.name!r}: bad secret {item!r}",
                              hint="secretEnv = ENV_NAME=SECRET[, ...] (Secret Manager names)")
        if not ref.startswith("projects/"):
            ref = f"projects/{project}/secrets/{ref}"
        if "/versions/" not in ref:
            ref += "/versions/latest"
        refs[env] = ref
    return refs


def labels(target: Target, launch: Launch) -> dict[str, str]:
    out = {"gitexp-run": label_value(launch.name), "gitexp-target": label_value(target.name)}
    if launch.slot is not None and launch.record.sweep:
        out["gitexp-sweep"] = label_value(launch.record.sweep)
    for item in _split(target.get("labels")):
        key, _, value = item.partition("=")
        key = label_value(key)
        if key and key[0].isalpha():  # GCE label keys start with a letter
            out[key] = label_value(value)
    return out


def label_value(text: str) -> str:
    """GCE labels: at most 63 lower-case letters, digits, `_` and `-`."""
    return _LABEL_BAD.sub("-", text.lower())[:63]


def instance_name(run_id: str) -> str:
    """`[a-z]([-a-z0-9]{0,61}[a-z0-9])?`; a long id keeps its uniqueness through a hash."""
    name = "gitexp-" + re.sub(r"[^a-z0-9-]", "-", run_id.lower())
    if len(name) > 63:
        digest = hashlib.sha256(run_id.encode()).hexdigest()[:8]
        name = f"{name[:54]}-{digest}"
    return name.rstrip("-")


def _accelerators(target: Target, zone: str) -> list[Any]:
    from google.cloud import compute_v1 as c

    out = []
    for item in _split(target.get("gpus")):
        kind, _, count = item.partition(":")
        try:
            n = int(count or "1")
        except ValueError:
            raise ConfigError(f"target {target.name!r}: bad gpus {item!r}",
                              hint="gpus = TYPE:COUNT, e.g. nvidia-tesla-t4:1") from None
        out.append(c.AcceleratorConfig(accelerator_type=f"zones/{zone}/acceleratorTypes/{kind}",
                                       accelerator_count=n))
    return out


@contextlib.contextmanager
def _api_errors(doing: str) -> Iterator[None]:
    """Google API failures -> one clear line, with a hint for the usual cause."""
    try:
        yield
    except BackendError:
        raise
    except Exception as exc:
        from google.auth.exceptions import DefaultCredentialsError

        hint = ("gcloud auth application-default login"
                if isinstance(exc, DefaultCredentialsError)
                else "check the project, zone, quota and permissions of the target")
        message = getattr(exc, "message", None) or (str(exc).splitlines() or [repr(exc)])[0]
        raise BackendError(f"GCE failed {doing}: {message}", hint=hint) from exc


def _split(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]
