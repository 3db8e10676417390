"""`sshd` / `sshd_root`: a real OpenSSH server on 127.0.0.1 (one per pytest session, i.e.
per xdist worker, on a free port).

`sshd` logs in as the dedicated Unix user `gitexp-worker` (created here, idempotently, with
its own home /home/gitexp-worker), so remote-side files never mix with the tests' own.
`sshd_root` is the same server logging in as root (home /root): use it only when the remote
side really needs root. Run as non-root (a developer's machine), both log in as the current
user, the only one an unprivileged sshd can serve.

Remote sessions get `SLURM_CONF` pointing at the `slurm` fixture's config, so
`ssh gitexp-test sbatch ...` works as the worker user (a login-node set-up).
"""

from __future__ import annotations

import getpass
import os
import pwd
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.services._util import (
    file_lock,
    free_port,
    is_root,
    port_open,
    require_binaries,
    spawn,
    started,
    stop_process,
    tail,
    unavailable,
)
from tests.services.slurm import SLURM_CONF

WORKER_USER = "gitexp-worker"
LOCKS = Path(tempfile.gettempdir()) / "gitexp-locks"


def ensure_worker_user() -> str:
    """Creates `gitexp-worker` once per machine (under a lock: xdist workers race here)."""
    if not is_root():
        return getpass.getuser()
    with file_lock(LOCKS / "worker-user.lock"):
        try:
            pwd.getpwnam(WORKER_USER)
        except KeyError:
            subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash",
                            "--user-group", WORKER_USER], check=True, capture_output=True)
        # useradd leaves the password "!" (locked); without PAM, sshd refuses locked
        # accounts even for key logins. "*" means: no password, not locked.
        subprocess.run(["usermod", "-p", "*", WORKER_USER], check=True, capture_output=True)
    return WORKER_USER


@dataclass(frozen=True)
class SshLogin:
    """One user's view of the server: everything a client needs to log in as that user."""

    host: str
    port: int
    user: str
    home: str
    key: str
    ssh_config: str
    alias: str
    scratch: str  # this session's own directory for mkdtemp (xdist workers share the home)

    @property
    def env(self) -> dict[str, str]:
        """Lets `git` (and anything using GIT_SSH_COMMAND) reach `ssh://<alias>/...`."""
        return {"GIT_SSH_COMMAND": f"ssh -F {shlex.quote(self.ssh_config)}"}

    def url(self, path: str) -> str:
        return f"ssh://{self.alias}/{path.lstrip('/')}"

    def argv(self, cmd: list[str]) -> list[str]:
        """The local argv running `cmd` remotely; quoted, since the remote shell re-splits."""
        return ["ssh", "-F", self.ssh_config, self.alias, "--", shlex.join(cmd)]

    def run(self, cmd: list[str], *, input: str | None = None, timeout: float = 60,
            check: bool = False) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(cmd), input=input, capture_output=True, text=True,
                              timeout=timeout, check=check)

    def mkdtemp(self, prefix: str = "t") -> str:
        """A fresh directory in the user's home (removed when the session ends)."""
        proc = self.run(["sh", "-c", 'mkdir -p "$1" && mktemp -d "$1/$2.XXXXXX"', "sh",
                         self.scratch, prefix], check=True)
        return proc.stdout.strip()

    def client_config(self) -> str:
        """The ssh_config block for this login (e.g. to put in an isolated ~/.ssh/config)."""
        return host_block(self)

    def install_client_config(self, home: Path) -> Path:
        """Writes `home/.ssh/config` so plain `ssh <alias>` and paramiko find this server."""
        ssh_dir = home / ".ssh"
        ssh_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        config = ssh_dir / "config"
        with config.open("a") as out:
            out.write(self.client_config())
        config.chmod(0o600)
        return config


def host_block(login: SshLogin) -> str:
    return (f"Host {login.alias}\n"
            f"    HostName {login.host}\n"
            f"    Port {login.port}\n"
            f"    User {login.user}\n"
            f"    IdentityFile {login.key}\n"
            "    IdentitiesOnly yes\n"
            "    StrictHostKeyChecking no\n"
            "    UserKnownHostsFile /dev/null\n"
            "    LogLevel ERROR\n"
            "    BatchMode yes\n")


SSHD_CONFIG = """\
Port {port}
ListenAddress 127.0.0.1
HostKey {dir}/host_key
PidFile {dir}/sshd.pid
AuthorizedKeysFile {dir}/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PrintMotd no
MaxStartups 100:30:200
MaxSessions 100
SetEnv SLURM_CONF={slurm_conf}
Subsystem sftp internal-sftp
"""


class SshServer:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.log = directory / "sshd.log"
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        keygen = ["ssh-keygen", "-q", "-t", "ed25519", "-N", ""]
        subprocess.run([*keygen, "-f", str(directory / "host_key")], check=True)
        subprocess.run([*keygen, "-f", str(directory / "client_key")], check=True)
        shutil.copy(directory / "client_key.pub", directory / "authorized_keys")
        # sshd reads authorized_keys as the logging-in user: the dir must be traversable.
        directory.chmod(0o755)
        (directory / "authorized_keys").chmod(0o644)

    def start(self) -> None:
        for _ in range(3):  # a picked free port may be raced for by another process
            self.port = free_port()
            config = self.dir / "sshd_config"
            config.write_text(SSHD_CONFIG.format(port=self.port, dir=self.dir,
                                                 slurm_conf=SLURM_CONF))
            proc = self._proc = spawn(
                ["/usr/sbin/sshd", "-D", "-f", str(config), "-E", str(self.log)], self.log)
            if started(proc, lambda: port_open(self.port), 10):
                return
            stop_process(proc)
        raise RuntimeError(f"sshd did not start:\n{tail(self.log)}")

    def stop(self) -> None:
        if self._proc is not None:
            stop_process(self._proc)
            self._proc = None

    def resume(self) -> None:
        """Starts a stopped server again on the same port (a fault test's outage ends)."""
        if self._proc is None:
            self._proc = spawn(["/usr/sbin/sshd", "-D", "-f", str(self.dir / "sshd_config"),
                                "-E", str(self.log)], self.log)
            if not started(self._proc, lambda: port_open(self.port), 10):
                raise RuntimeError(f"sshd did not restart:\n{tail(self.log)}")

    def login(self, user: str, alias: str) -> SshLogin:
        home = pwd.getpwnam(user).pw_dir
        return SshLogin(host="127.0.0.1", port=self.port, user=user, home=home,
                        key=str(self.dir / "client_key"), ssh_config=str(self.dir / "ssh_config"),
                        alias=alias, scratch=f"{home}/gitexp-tests/{self.dir.name}")

    def write_client_config(self, *logins: SshLogin) -> None:
        (self.dir / "ssh_config").write_text("".join(host_block(x) for x in logins))


@dataclass(frozen=True)
class _Sshd:
    worker: SshLogin
    root: SshLogin
    server: SshServer  # for outages: .stop() and .resume()


@pytest.fixture(scope="session")
def _sshd_server() -> Iterator[_Sshd]:
    require_binaries("sshd", "/usr/sbin/sshd", "ssh", "ssh-keygen")
    if is_root():
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation dir
    directory = Path(tempfile.mkdtemp(prefix="gitexp-sshd-"))
    server: SshServer | None = None
    try:
        user = ensure_worker_user()
        server = SshServer(directory)
        server.start()
        worker = server.login(user, "gitexp-test")
        root = server.login("root" if is_root() else user, "gitexp-test-root")
        server.write_client_config(worker, root)
        probe = worker.run(["true"], timeout=20)
        if probe.returncode != 0:
            raise RuntimeError(f"ssh login failed: {probe.stderr}\n{tail(server.log)}")
    except (RuntimeError, OSError, subprocess.CalledProcessError) as exc:
        if server is not None:
            server.stop()
        shutil.rmtree(directory, ignore_errors=True)
        unavailable("sshd", str(exc))
    try:
        yield _Sshd(worker=worker, root=root, server=server)
    finally:
        for login in (worker, root):
            login.run(["rm", "-rf", login.scratch], timeout=30)
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def sshd(_sshd_server: _Sshd) -> SshLogin:
    """OpenSSH on 127.0.0.1 logging in as `gitexp-worker` (alias `gitexp-test`)."""
    return _sshd_server.worker


@pytest.fixture(scope="session")
def sshd_root(_sshd_server: _Sshd) -> SshLogin:
    """The same server logging in as root (alias `gitexp-test-root`, home /root)."""
    probe = _sshd_server.root.run(["true"], timeout=20)
    if probe.returncode != 0:  # e.g. root's password field is "!" (locked) on this machine
        unavailable("sshd (root login)", probe.stderr.strip())
    return _sshd_server.root


@pytest.fixture
def ssh_home(_sshd_server: _Sshd) -> Path:
    """Writes both aliases into this test's isolated ~/.ssh/config; returns that file."""
    home = Path(os.environ["HOME"])
    _sshd_server.worker.install_client_config(home)
    return _sshd_server.root.install_client_config(home)
