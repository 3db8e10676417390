"""One scan of every artifact gitexp writes, hunting for every configured secret.

Secrets are set in every channel at once: gitexp's own (GITEXP_SMTP_PASSWORD - the real
password of an SMTP server that requires STARTTLS + AUTH -, GITEXP_MAILGUN_KEY), a name in
`exp.secrets`, a name in `exp.target.N.secrets`, and a cloud-like credential nobody
configured. Runs go to the local target and to an ssh target (a real sshd), each job
printing its whole environment and every secret (split across writes) and logging one as a
metric; a gce launch goes to the GCS emulator with the Compute API client mocked (it cannot
be reached from here: the request it receives is scanned); docker, Slurm and Kubernetes
jobs are rendered (argv, sbatch script, manifest) without an engine; `rerun --script` renders
run.sh. Mail goes through the SMTP server. Then the scan: every git object (decompressed),
every ref and reflog, every file under .git (store, outbox, index.sqlite, caches) and the
home directory, the ssh worker's directory, every rendered script and manifest, every mail
(raw and each part decoded) and every command's output - for each secret as is, in hex, in
base64 at each alignment, url-safe base64, and JSON-escaped.
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from gitexp.backends import Launch
from gitexp.backends.docker import DockerBackend
from gitexp.backends.kubernetes import KubernetesBackend
from gitexp.backends.slurm import SlurmBackend
from gitexp.git import Repo
from gitexp.git.config import Config
from gitexp.service import launch as launching
from gitexp.service import rerun, runs
from gitexp.stores import open_store
from gitexp.stores.file import FileStore
from tests.conftest import make_repo
from tests.helpers import exp, git, wait_done, wait_for
from tests.services import GcsServer
from tests.services.smtp import SmtpServer
from tests.test_gce_target import FakeInstances

JOB = """\
import hashlib, json, os, sys, time
import gitexp
names = sys.argv[1:]
print(dict(os.environ), flush=True)        # a job that dumps its whole environment
for name in names:                         # ... and prints each secret in two writes
    value = os.environ.get(name, "")
    sys.stdout.write(f"{name}=" + value[:9]); sys.stdout.flush(); time.sleep(0.3)
    print(value[9:], "sha", hashlib.sha256(value.encode()).hexdigest(), flush=True)
    with open(os.environ["GITEXP_METRICS"], "a") as f:   # ... and as a metric's value
        f.write(json.dumps({"step": 1, "note": value, "loss": 0.5}) + "\\n")
with open("leak.txt", "w") as f:           # a file in its checkout (never shipped back)
    f.write(repr(dict(os.environ)))
gitexp.checkpoint("half way", loss=0.5)
"""


def forms(secret: str) -> list[bytes]:
    raw = secret.encode()
    out = [raw, raw.hex().encode(), raw.hex().upper().encode(),
           json.dumps(secret).encode()[1:-1]]
    for pad in range(3):  # base64 at every alignment: the stable middle of the encoding
        for enc in (base64.b64encode, base64.urlsafe_b64encode):
            text = enc(b"\0" * pad + raw)
            out.append(text[4 if pad else 0:-4])
    return out


@pytest.fixture
def secrets(monkeypatch: pytest.MonkeyPatch, smtp_auth_server: SmtpServer) -> dict[str, str]:
    def fake(prefix: str) -> str:
        return f"{prefix}-{uuid.uuid4().hex[:20]}"
    values = {
        "GITEXP_SMTP_PASSWORD": (smtp_auth_server.credentials or ("", ""))[1],
        "GITEXP_MAILGUN_KEY": fake("key-mailgun"),
        "WANDB_API_KEY": fake("wandb"),  # exp.secrets
        "TEAM_DB_PW": fake("teamdb"),  # exp.target.box.secrets / exp.target.gpu.secrets
        "AWS_SECRET_ACCESS_KEY": fake("aws"),  # configured nowhere, but named like a secret
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


def configure(repo: Path, sshd: Any, workdir: str, smtp: SmtpServer, bucket: str) -> None:
    settings = {
        "exp.secrets": "WANDB_API_KEY",
        "exp.notify.sender": "smtp", "exp.notify.to": "me@example.com",
        "exp.notify.smtp.host": "127.0.0.1", "exp.notify.smtp.port": str(smtp.port),
        "exp.notify.smtp.security": "starttls", "exp.notify.smtp.user": "gitexp",
        "exp.notify.on": "checkpoint,succeeded,failed",
        "exp.target.box.backend": "ssh", "exp.target.box.host": sshd.alias,
        "exp.target.box.workdir": workdir, "exp.target.box.sshConfig": sshd.ssh_config,
        "exp.target.box.python": "/usr/bin/python3", "exp.target.box.secrets": "TEAM_DB_PW",
        "exp.target.gpu.backend": "gce", "exp.target.gpu.project": "proj",
        "exp.target.gpu.zone": "us-central1-a", "exp.target.gpu.store": f"gs://{bucket}/exp",
        "exp.target.gpu.secrets": "TEAM_DB_PW",
        "exp.target.gpu.secretEnv": "TEAM_DB_PW=team-db",
        "exp.target.dock.backend": "docker", "exp.target.dock.engine": "podman",
        "exp.target.dock.image": "example/img", "exp.target.dock.secrets": "TEAM_DB_PW",
        "exp.target.hpc.backend": "slurm", "exp.target.hpc.store": "file:///shared/s",
        "exp.target.k8s.backend": "kubernetes", "exp.target.k8s.image": "example/img",
        "exp.target.k8s.store": "file:///shared/s", "exp.target.k8s.secret": "gitexp-mail",
        "exp.target.k8s.secretenv": "TEAM_DB_PW=team/db",
    }
    for key, value in settings.items():
        git("config", key, value, cwd=repo)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_no_artifact_holds_a_configured_secret(
        tmp_path: Path, secrets: dict[str, str], smtp_auth_server: SmtpServer, sshd: Any, *,
        gcs_env: GcsServer, monkeypatch: pytest.MonkeyPatch, isolated_home: Path) -> None:
    bucket = f"b-{uuid.uuid4().hex[:10]}"
    gcs_env.bucket(bucket)
    repo = make_repo(tmp_path / "repo", {"job.py": JOB})
    workdir = sshd.mkdtemp("scan")
    configure(repo, sshd, workdir, smtp_auth_server, bucket)
    names = sorted(secrets)
    outputs: dict[str, str] = {}

    # -- real runs: local (with mail) and ssh --------------------------------------------
    local = exp("run", "--", "python3", "job.py", *names, cwd=repo)  # followed to its end
    remote = exp("run", "--force", "-t", "box", "--", "python3", "job.py", *names, cwd=repo)
    outputs |= {"local run": local.stdout + local.stderr, "ssh run": remote.stdout + remote.stderr}
    ids = [r["id"] for r in json.loads(exp("ls", "--json", cwd=repo).stdout)]
    assert len(ids) == 2
    for run_id in ids:
        done = wait_done(run_id, repo)
        assert done["status"] == "succeeded", exp("logs", run_id, cwd=repo).stdout
        log = exp("logs", run_id, cwd=repo).stdout
        outputs[f"logs {run_id}"] = log
        masked = 0
        for name in names:
            sha = hashlib.sha256(secrets[name].encode()).hexdigest()
            if f"sha {sha}" in log:  # the job had the value; the log shows only the mask
                assert f"{name}=*** sha {sha}" in log, log
                masked += 1
        assert masked >= 2  # every run had (and printed) some
        outputs[f"show {run_id}"] = exp("show", run_id, cwd=repo).stdout
        outputs[f"rerun --script {run_id}"] = exp("rerun", "--script", run_id, cwd=repo).stdout
    mails = wait_for(lambda: smtp_auth_server.messages if len(smtp_auth_server.messages) >= 1
                     else None, timeout=30, what="the checkpoint and end mails")
    assert mails and smtp_auth_server.logins  # mail went out through an authenticated login

    # -- a gce launch (Compute API mocked) and rendered docker / slurm / k8s jobs ---------
    fake = FakeInstances()
    monkeypatch.setattr("gitexp.backends.gce.instances_client", lambda: fake)
    r = Repo.discover(repo)
    launching.start(r, Config.load(r), launching.LaunchRequest(argv=["python3", "job.py"], cwd=repo,
                                                      target="gpu", force=True))
    outputs["gce request"] = repr(fake.inserted)
    record = runs.find(r, ids[-1]).record
    launch = Launch(repo=r, record=record, store=FileStore(tmp_path / "s"), heartbeat=2.0)
    targets = Config.load(r).targets()
    outputs["docker argv"] = json.dumps(DockerBackend(target=targets["dock"], repo=r)
                                        .run_argv(launch))
    outputs["sbatch.sh"] = SlurmBackend(target=targets["hpc"], repo=r).script(
        [launch], max_parallel=0, wheel="")
    outputs["k8s manifest"] = KubernetesBackend(target=targets["k8s"], repo=r).render(launch)
    outputs["run.sh"] = rerun.script(r, runs.find(r, ids[-1]))
    outputs["targets"] = exp("targets", "--json", cwd=repo).stdout

    # -- the haystacks --------------------------------------------------------------------
    hay: dict[str, bytes] = {k: v.encode() for k, v in outputs.items()}
    hay["objects"] = subprocess.run(["git", "cat-file", "--batch-all-objects", "--batch"],
                                    cwd=repo, capture_output=True, check=True).stdout
    hay["refs"] = git("for-each-ref", "--format=%(refname) %(objectname) %(contents)",
                      cwd=repo).encode()
    for root in (repo, isolated_home):  # .git/gitexp: store, outbox, index, caches, logs
        for path in root.rglob("*"):
            if path.is_file() and ".git/objects/" not in str(path):
                hay[str(path)] = path.read_bytes()
    gcs = open_store(f"gs://{bucket}/exp")
    for key in gcs.list(""):
        hay[f"gs {key}"] = gcs.read(key) or b""
    assert any(k.startswith("gs code/bundles/") for k in hay)
    assert any("index.sqlite" in k for k in hay) and any("/store/runs/" in k for k in hay)
    for n, msg in enumerate(mails):
        hay[f"mail {n}"] = msg.as_bytes()
        for i, part in enumerate(msg.walk()):
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                hay[f"mail {n} part {i}"] = payload
    assert len(hay) > 60
    assert any(b"***" in v for k, v in hay.items() if k.startswith("mail"))  # masked, sent

    leaks = [(name, where) for name, value in secrets.items() for needle in forms(value)
             for where, data in hay.items() if needle in data]
    assert not leaks, leaks
    needles = [n.decode() for value in secrets.values() for n in forms(value)]
    # What the job wrote into its checkout is its own business while it runs; the agent
    # removes the checkout and spools once it has written the result and sent its mail.
    wait_for(lambda: sshd.run(["sh", "-c", f"ls {workdir}/work | grep -q job"]).returncode,
             timeout=30, what="the ssh agent to clean up")
    found = sshd.run(["grep", "-rlF", *(arg for n in needles for arg in ("-e", n)), workdir])
    assert found.returncode == 1, found.stdout  # the ssh worker's disk holds none either
    assert (repo / "job.py").exists() and not (repo / "leak.txt").exists()
