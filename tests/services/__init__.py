"""Real services for the tests (sshd, Slurm, GCS emulators, SMTP, podman), started here.

Registered as a pytest plugin (`pytest_plugins = ["tests.services"]` in tests/conftest.py),
so every fixture below is available to every test. Under CI=true a service that cannot start
fails the test; it never skips (see `unavailable`). System packages come from
scripts/install-services.sh (run by `make test`).

Fixtures (details in each module):
- gcs_emulator / fake_gcs (session): `.endpoint`, `.port`, `.client()`, `.bucket(name)`,
  `.env`, `.stop()`, `.start()` (same port; in-memory data is lost). gcs_env / fake_gcs_env
  (function) also put `.env` into os.environ for one test. fake_gcs enforces ifGenerationMatch.
- sshd / sshd_root (session): `.host`, `.port`, `.user`, `.home`, `.key`, `.ssh_config`,
  `.alias` ("gitexp-test" / "gitexp-test-root"), `.run(argv)`, `.url(path)`, `.env`
  (GIT_SSH_COMMAND), `.mkdtemp()`, `.install_client_config(home)`. ssh_home (function) writes
  both aliases into the test's isolated ~/.ssh/config. User: gitexp-worker (non-root).
- slurm (session; mark tests xdist_group("slurm")): `.conf`, `.env`, `.jobcomp`,
  `.node_state()`, `.wait_idle()`, `.stop_slurmd()`, `.start_slurmd()`, `.logs()`.
  slurm_env (function) sets SLURM_CONF in os.environ.
- smtp_server (function): `.host`, `.port`, `.messages`, `.envelopes`, `.wait_for(n)`, `.stop()`.
  smtp_auth_server (function): the same, requiring STARTTLS + AUTH with `.credentials`;
  `.env` (SSL_CERT_FILE trusting its certificate) is set in os.environ; `.logins`.
- podman (session): `.env`, `.run(args)`, `.base_image(name)`.
"""

from tests.services._util import unavailable
from tests.services.gcs import GcsServer, fake_gcs, fake_gcs_env, gcs_emulator, gcs_env
from tests.services.podman import Podman, podman
from tests.services.slurm import SlurmCluster, slurm, slurm_env
from tests.services.smtp import SmtpServer, _smtp_certificate, smtp_auth_server, smtp_server
from tests.services.sshd import SshLogin, _sshd_server, ssh_home, sshd, sshd_root

__all__ = [
    "GcsServer",
    "Podman",
    "SlurmCluster",
    "SmtpServer",
    "SshLogin",
    "_smtp_certificate",
    "_sshd_server",
    "fake_gcs",
    "fake_gcs_env",
    "gcs_emulator",
    "gcs_env",
    "podman",
    "slurm",
    "slurm_env",
    "smtp_auth_server",
    "smtp_server",
    "ssh_home",
    "sshd",
    "sshd_root",
    "unavailable",
]
