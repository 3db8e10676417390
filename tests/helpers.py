"""Small helpers shared by the tests: real git, the real `git exp` executable, waiting."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
BIN = Path(sys.executable).parent


@contextmanager
def own_home(root: Path) -> Iterator[None]:
    """HOME, git's global config and PATH as the autouse fixture sets them, for a
    module-scoped fixture (which runs before that fixture is up)."""
    import pytest

    (root / ".gitconfig").write_text("[user]\n\tname = T\n\temail = t@example.com\n"
                                     "[init]\n\tdefaultBranch = main\n")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOME", str(root))
        mp.setenv("GIT_CONFIG_GLOBAL", str(root / ".gitconfig"))
        mp.setenv("GIT_CONFIG_NOSYSTEM", "1")
        mp.setenv("PATH", f"{BIN}{os.pathsep}{os.environ['PATH']}")
        yield


def seal_key(repo: Path) -> Path:
    """The key that seals the runs `repo` launches now (HOME or XDG_CONFIG_HOME's)."""
    from gitexp.git import Repo
    from gitexp.service.trust import key_paths

    return key_paths(Repo.discover(repo))[0]


def copy_repo(template: Path, dest: Path, key: Path) -> Path:
    """A copy of `template`, a repository made once (with runs `key` sealed), for one test:
    the key goes into this test's home, so its runs are the user's own as if launched here,
    and the index is refreshed, as every file of the copy is new to it."""
    shutil.copytree(template, dest, symlinks=True)
    mine = seal_key(dest)
    mine.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(key, mine)
    git("update-index", "-q", "--refresh", cwd=dest, check=False)
    return dest


def git(*args: str, cwd: Path | str, check: bool = True, env: dict[str, str] | None = None,
        input: bytes | None = None) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, check=False,
                          env={**os.environ, **(env or {})}, input=input)
    if check and proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {proc.stderr.decode()}")
    return proc.stdout.decode(errors="surrogateescape")


def exp(*args: str, cwd: Path | str, check: bool = True, timeout: float = 120,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `git exp ARGS` exactly as a user would (through git's own dispatch)."""
    proc = subprocess.run(["git", "exp", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, check=False, env={**os.environ, **(env or {})})
    if check and proc.returncode != 0:
        raise AssertionError(f"git exp {' '.join(args)} -> {proc.returncode}\n"
                             f"stdout: {proc.stdout}\nstderr: {proc.stderr}")
    return proc


def announced(proc: subprocess.CompletedProcess[str]) -> str:
    """The id of the run a `git exp run` (not detached) announced: no `ls` process to find
    it ("gitexp: run ID on TARGET (snapshot ...)")."""
    [run_id] = re.findall(r"^gitexp: run (\S+) on \S+ \(snapshot ", proc.stderr, re.MULTILINE)
    return str(run_id)


def exp_json(*args: str, cwd: Path | str, env: dict[str, str] | None = None) -> Any:
    return json.loads(exp(*args, "--json", cwd=cwd, env=env).stdout)


def wait_for(predicate: Callable[[], T], timeout: float = 30, every: float = 0.1,
             what: str = "condition") -> T:
    """Polls `predicate` until it is truthy, failing the test with what it waited for when
    time runs out. A predicate that starts a process (`git exp logs`, `show`) costs a Python
    start-up each time: the pause after it is at least as long as it took, so polling never
    takes more than half a core from the run it waits for (2 cores run the whole suite)."""
    deadline = time.monotonic() + timeout
    while True:
        start = time.monotonic()
        value = predicate()
        if value:
            return value
        now = time.monotonic()
        if now > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(min(max(every, now - start), max(deadline - now, 0.01)))


def run_status(run_id: str, cwd: Path) -> str:
    return str(exp_json("show", run_id, cwd=cwd)["status"])


def _written_back(run_id: str, cwd: Path) -> bool:
    """The run's ref holds its results: one git process, not a `git exp show`."""
    return subprocess.run(["git", "cat-file", "-e", f"refs/experiments/{run_id}:.gitexp-results"],
                          cwd=cwd, capture_output=True, check=False).returncode == 0


def wait_done(run_id: str, cwd: Path, timeout: float = 60) -> dict[str, Any]:
    """`git exp show --json RUN` once it says the run ended. A local run's agent writes its
    results back itself, which git sees cheaply; `show` is asked then, and otherwise at most
    every second (it observes runs on other targets and judges a silent one lost)."""
    asked = [time.monotonic() - 0.5]

    def done() -> dict[str, Any] | None:
        if not _written_back(run_id, cwd) and time.monotonic() - asked[0] < 1.0:
            return None
        asked[0] = time.monotonic()
        data: dict[str, Any] = exp_json("show", run_id, cwd=cwd)
        return data if data["status"] not in ("queued", "running") else None
    return wait_for(done, timeout=timeout, every=0.1, what=f"run {run_id} to end")


def assert_user_error(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    """One clear line (plus a hint), a non-zero exit, no traceback."""
    assert proc.returncode != 0, proc
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert lines and lines[0].startswith("error: "), proc.stderr
    assert len([ln for ln in lines if not ln.startswith("hint: ")]) == 1, proc.stderr
    for needle in needles:
        assert needle in proc.stderr, (needle, proc.stderr)


class MemoryStore:
    """The store protocol and nothing more, in memory: what the helpers fall back on, and a
    stand-in for a remote store that a stranger controls."""

    def __init__(self, objects: dict[str, bytes] | None = None,
                 url: str = "mem://store") -> None:
        self.url, self.objects = url, objects if objects is not None else {}

    def read(self, key: str, *, offset: int = 0) -> bytes | None:
        data = self.objects.get(key)
        return None if data is None else data[offset:]

    def write(self, key: str, data: bytes) -> None:
        self.objects[key] = data

    def append(self, key: str, data: bytes) -> None:
        self.objects[key] = self.objects.get(key, b"") + data

    def create(self, key: str, data: bytes) -> bool:
        if key in self.objects:
            return self.objects[key] == data
        self.objects[key] = data
        return True

    def list(self, prefix: str) -> list[str]:
        return sorted(k for k in self.objects if k.startswith(prefix + "/"))

    def delete(self, prefix: str) -> None:
        for key in [k for k in self.objects if k == prefix or k.startswith(prefix + "/")]:
            del self.objects[key]



def agents_of(mark: str) -> list[int]:
    """The pids of every live agent process whose command line holds `mark` (a repository's
    .git, a worker's work directory, a sweep's name), read from /proc. A child an agent
    forked (the job, git) shows the agent's command line until it execs: not an agent."""
    found = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmd = (proc / "cmdline").read_bytes()
                ppid = int((proc / "stat").read_text().rpartition(")")[2].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            engine_client = Path(cmd.split(b"\0")[0].decode(errors="replace")).name in (
                "podman", "docker")  # `podman run IMAGE AGENT-ARGV`: the agent is inside
            if b"gitexp.worker.agent" in cmd and mark.encode() in cmd and not engine_client:
                found[int(proc.name)] = ppid
    return [pid for pid, ppid in found.items() if ppid not in found]


class AgentCount:
    """The most agent processes (`agents_of(mark)`) seen at once, sampled as a sweep runs."""

    def __init__(self, mark: str) -> None:
        self.mark, self.peak, self.samples = mark, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, len(agents_of(self.mark)))
            self.samples += 1

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak
