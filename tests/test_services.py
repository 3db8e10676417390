"""One quick proof per service fixture that the service really works."""

from __future__ import annotations

import os
import re
import smtplib
import subprocess
import time
from email.message import EmailMessage
from pathlib import Path

import pytest

from tests.helpers import wait_for
from tests.services import GcsServer, Podman, SlurmCluster, SmtpServer, SshLogin


@pytest.mark.parametrize("server_name", ["gcs_emulator", "fake_gcs"])
def test_gcs_round_trip_and_restart_on_same_port(server_name: str,
                                                 request: pytest.FixtureRequest) -> None:
    server: GcsServer = request.getfixturevalue(server_name)
    blob = server.bucket("round-trip").blob("a/b.txt")
    blob.upload_from_string(b"hello")
    assert server.client().bucket("round-trip").blob("a/b.txt").download_as_bytes() == b"hello"
    assert server.env["STORAGE_EMULATOR_HOST"] == server.endpoint

    port = server.port
    server.stop()
    server.start()
    assert server.port == port
    assert server.bucket("round-trip").exists()  # recreated: data is in memory only


def test_fake_gcs_enforces_generation_match(fake_gcs: GcsServer) -> None:
    from google.api_core.exceptions import PreconditionFailed

    blob = fake_gcs.bucket("preconditions").blob("key")
    blob.upload_from_string(b"one", if_generation_match=0)
    with pytest.raises(PreconditionFailed):
        blob.upload_from_string(b"two", if_generation_match=0)


def test_gcs_env_sets_environment_for_one_test(gcs_env: GcsServer) -> None:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    assert os.environ["STORAGE_EMULATOR_HOST"] == gcs_env.endpoint
    gcs_env.bucket("via-env")
    client = storage.Client(project="test",
                            credentials=AnonymousCredentials())  # type: ignore[no-untyped-call]
    assert "via-env" in [b.name for b in client.list_buckets()]


def test_sshd_runs_commands_as_the_worker_user(sshd: SshLogin) -> None:
    proc = sshd.run(["sh", "-c", 'echo "$(id -un) $HOME $1"; python3 --version; git --version',
                     "sh", "two words"])
    assert proc.returncode == 0, proc.stderr
    first, python, gitv = proc.stdout.splitlines()
    assert first == f"{sshd.user} {sshd.home} two words"
    assert python.startswith("Python 3.11")
    assert gitv.startswith("git version")
    assert sshd.url("x/y") == "ssh://gitexp-test/x/y"


def test_sshd_config_alias_works_with_plain_ssh_and_git(sshd: SshLogin) -> None:
    remote = sshd.mkdtemp("repo")
    assert sshd.run(["git", "init", "-q", "--bare", remote]).returncode == 0
    proc = subprocess.run(["git", "ls-remote", sshd.url(remote)], capture_output=True,
                          text=True, env={**os.environ, **sshd.env}, check=False)
    assert proc.returncode == 0, proc.stderr
    plain = subprocess.run(["ssh", "-F", sshd.ssh_config, sshd.alias, "echo", "ok"],
                           capture_output=True, text=True, check=False)
    assert plain.stdout == "ok\n"


def test_sshd_root_login(sshd_root: SshLogin) -> None:
    assert sshd_root.run(["id", "-u"]).stdout.strip() in {"0", str(os.getuid())}


def test_ssh_home_lets_paramiko_connect(ssh_home: Path, sshd: SshLogin) -> None:
    import paramiko

    config = paramiko.SSHConfig.from_path(str(ssh_home)).lookup(sshd.alias)
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    client.connect(config["hostname"], port=int(config["port"]), username=config["user"],
                   key_filename=config["identityfile"][0], look_for_keys=False)
    try:
        _, out, _ = client.exec_command("whoami")
        assert out.read().decode().strip() == sshd.user
    finally:
        client.close()


@pytest.mark.xdist_group("slurm")
def test_slurm_runs_a_job_to_completion(slurm: SlurmCluster, tmp_path: Path) -> None:
    env = {**os.environ, **slurm.env}
    out = tmp_path / "job.out"
    submit = subprocess.run(["sbatch", "--parsable", "-o", str(out), "--wrap", "echo hi"],
                            capture_output=True, text=True, env=env, check=True)
    job = submit.stdout.strip().split(";")[0]

    def state() -> str:
        show = subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True,
                              env=env, check=False)
        match = re.search(r"JobState=(\S+)", show.stdout)
        return match.group(1) if match else ""

    assert wait_for(lambda: state() in {"COMPLETED", "FAILED"}, timeout=30) is True
    assert state() == "COMPLETED"
    assert out.read_text() == "hi\n"
    wait_for(lambda: f"JobId={job} " in slurm.jobcomp.read_text(), timeout=10,
             what="jobcomp entry")


@pytest.mark.xdist_group("slurm")
def test_slurm_survives_slurmd_restart(slurm: SlurmCluster) -> None:
    try:
        slurm.stop_slurmd()
        assert slurm.slurmd_pid() is None
    finally:
        slurm.start_slurmd()
    assert slurm.slurmd_pid() is not None
    slurm.wait_idle()


@pytest.mark.xdist_group("slurm")
def test_slurm_login_over_ssh_as_worker(slurm: SlurmCluster, sshd: SshLogin) -> None:
    proc = sshd.run(["sbatch", "--parsable", "--chdir", "/tmp", "--output", "/dev/null",
                     "--wrap", "true"])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().isdigit()


def test_smtp_receives_mail(smtp_server: SmtpServer) -> None:
    message = EmailMessage()
    message["From"] = "gitexp@example.com"
    message["To"] = "you@example.com"
    message["Subject"] = "run done"
    message.set_content("ok")
    with smtplib.SMTP(smtp_server.host, smtp_server.port, timeout=10) as client:
        client.send_message(message)
    [received] = smtp_server.wait_for(1, timeout=5)
    assert received["Subject"] == "run done"
    assert received.get_content().strip() == "ok"
    assert smtp_server.envelopes == [("gitexp@example.com", ["you@example.com"])]


@pytest.mark.slow
def test_podman_runs_python_in_the_base_image(podman: Podman) -> None:
    started = time.monotonic()
    image = podman.base_image()
    proc = podman.run(["run", "--rm", image, "python3", "-c", "import sys; print(sys.version)"])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("3.11")
    assert podman.run(["run", "--rm", image, "git", "--version"]).returncode == 0
    print(f"podman base image + 2 runs: {time.monotonic() - started:.1f}s")


def test_smtp_auth_server_requires_starttls_and_login(smtp_auth_server: SmtpServer) -> None:
    import ssl

    user, password = smtp_auth_server.credentials or ("", "")
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "a@example.com", "b@example.com", "x"
    message.set_content("body")
    with smtplib.SMTP(smtp_auth_server.host, smtp_auth_server.port, timeout=10) as client:
        with pytest.raises(smtplib.SMTPException):
            client.login(user, password)  # no AUTH before STARTTLS
        client.starttls(context=ssl.create_default_context())  # trusts it via SSL_CERT_FILE
        with pytest.raises(smtplib.SMTPAuthenticationError):
            client.login(user, "wrong")
        client.login(user, password)
        client.send_message(message)
    smtp_auth_server.wait_for(1)
    assert smtp_auth_server.logins == [user]


def test_unavailable_fails_under_ci_and_skips_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.services import unavailable

    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="service x unavailable: why"):
        unavailable("x", "why")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception):
        unavailable("x", "why")
