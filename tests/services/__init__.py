"""Real services for the tests (sshd, Slurm, GCS emulators, SMTP, podman), started here.

Under CI=true a service that cannot start fails the test; it never skips.
"""
