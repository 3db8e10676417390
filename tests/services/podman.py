"""`podman`: podman (root, runc, cgroupfs, no network by default) and a local base image with
python3 + git built from a Debian rootfs (no registry can be reached from here).

The rootfs tarball is cached in /var/tmp/gitexp-images: the first build on a machine runs
debootstrap (~40-60 s), every later session only `podman import`s it (~2 s) or finds the image
already there. Containers get `--network none` unless a test asks for `--network host` (the
default bridge uses a private range these machines must not use). Tests should pass `--rm`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.services._util import file_lock, is_root, require_binaries, unavailable

IMAGE_CACHE = Path("/var/tmp/gitexp-images")
MIRROR = "http://deb.debian.org/debian"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

CONTAINERS_CONF = """\
[containers]
# Podman's default ulimits exceed this machine's hard limit (20000), and root here lacks
# CAP_SYS_RESOURCE to raise it.
default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]
netns = "none"

[engine]
# crun fails on these hybrid cgroups; there is no systemd and no journald.
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
"""


class Podman:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.conf = directory / "containers.conf"
        self.conf.write_text(CONTAINERS_CONF)
        self.env = {"CONTAINERS_CONF": str(self.conf)}

    def run(self, args: list[str], *, timeout: float = 120, check: bool = False,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        """`podman ARGS` with this configuration."""
        return subprocess.run(["podman", *args], capture_output=True, text=True, input=input,
                              timeout=timeout, check=check, env={**os.environ, **self.env})

    def base_image(self, name: str = "gitexp-test-python") -> str:
        """A local image with Debian 12's python3 (3.11) and git; returns its full name."""
        image = f"localhost/{name}:latest"
        with file_lock(IMAGE_CACHE / ".lock"):
            if self.run(["image", "exists", image]).returncode == 0:
                return image
            include = ("python3", "git")
            tarball = IMAGE_CACHE / f"bookworm-{'-'.join(include)}.tar"
            try:
                if not tarball.exists():
                    build_rootfs(tarball, include)
                self.run(["import", "--change", f"ENV PATH={DEFAULT_PATH}",
                          "--change", "CMD /bin/bash", str(tarball), image],
                         timeout=300, check=True)
            except subprocess.CalledProcessError as exc:
                unavailable("podman base image", f"{exc}: {exc.stderr}")
        return image


def build_rootfs(tarball: Path, include: tuple[str, ...]) -> None:
    """debootstrap a minimal Debian 12 into a tarball (written atomically: crash-safe cache)."""
    tarball.parent.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="rootfs-", dir=tarball.parent))
    partial = tarball.with_suffix(".partial")
    try:
        subprocess.run(["debootstrap", "--variant=minbase", f"--include={','.join(include)}",
                        "bookworm", str(root), MIRROR],
                       check=True, capture_output=True, timeout=900)
        # Downloaded .debs are not needed in the image.
        shutil.rmtree(root / "var" / "cache" / "apt" / "archives", ignore_errors=True)
        subprocess.run(["tar", "-C", str(root), "--numeric-owner", "-cf", str(partial), "."],
                       check=True, capture_output=True)
        partial.replace(tarball)
    finally:
        shutil.rmtree(root, ignore_errors=True)
        partial.unlink(missing_ok=True)


@pytest.fixture(scope="session")
def podman(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Podman]:
    """Configured podman; `.base_image()` builds/imports the python3+git image on demand."""
    require_binaries("podman", "podman", "runc", "debootstrap")
    if not is_root():
        unavailable("podman", "these tests run root podman (rootless needs subuid set-up)")
    engine = Podman(tmp_path_factory.mktemp("podman"))
    info = engine.run(["info", "--format", "{{.Host.OCIRuntime.Name}}"], timeout=60)
    if info.returncode != 0:
        unavailable("podman", info.stderr.strip())
    yield engine
