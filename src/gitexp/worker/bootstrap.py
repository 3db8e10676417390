"""Workers need nothing installed but Python and git: gitexp ships itself as a wheel.

Dev side: `build_wheel()` zips the running gitexp package into a pure-Python wheel, named by
a hash of its contents and cached under ~/.cache/gitexp/wheels, and `ensure_wheel(store)`
puts it in a store as `tools/<name>` once. A pure-Python wheel is a zip that Python imports
from directly, so the worker runs

    PYTHONPATH=gitexp-….whl python3 -m gitexp.worker.agent …

with no pip and no install. Worker side: `python3 -m gitexp.worker.bootstrap` reads a launch spec
(JSON) from stdin - stdin, because it carries the run's secrets - starts the agent detached
in its own session, and prints `{"pid": …, "host": …}`.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import socket
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

from gitexp import __version__
from gitexp.stores import Progress, Store, put_file
from gitexp.worker import agent_argv

TOOLS = "tools"
_EPOCH = (2020, 1, 1, 0, 0, 0)  # fixed zip timestamps: the same code makes the same wheel


# -- dev side --------------------------------------------------------------------------------
def package_files() -> list[tuple[str, bytes]]:
    """(path in the wheel, content) of every file of the running gitexp package."""
    root = Path(__file__).resolve().parents[1]  # the gitexp package
    out = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root.parent)
        if path.is_file() and "__pycache__" not in rel.parts and path.suffix != ".pyc":
            out.append((rel.as_posix(), path.read_bytes()))
    return out


def wheel_name(files: list[tuple[str, bytes]] | None = None) -> str:
    digest = hashlib.sha256()
    for name, data in files if files is not None else package_files():
        digest.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    # A local version label keeps the name a valid wheel name (pip could install it too).
    return f"gitexp-{__version__}+h{digest.hexdigest()[:12]}-py3-none-any.whl"


def build_wheel(cache_dir: Path | None = None) -> Path:
    """The wheel of the running gitexp, built once per distinct content."""
    files = package_files()
    name = wheel_name(files)
    cache = cache_dir or _cache_home() / "gitexp" / "wheels"
    path = cache / name
    if path.is_file():
        return path
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{name}.{os.getpid()}")
    tmp.write_bytes(_wheel_bytes(files, name.split("-")[1]))
    tmp.replace(path)
    return path


def ensure_wheel(store: Store, progress: Progress | None = None) -> str:
    """The key of gitexp's wheel in `store`, uploaded first if the store lacks it."""
    wheel = build_wheel()
    key = f"{TOOLS}/{wheel.name}"
    if key not in store.list(TOOLS):
        put_file(store, key, wheel, progress)
    return key


def _wheel_bytes(files: list[tuple[str, bytes]], version: str) -> bytes:
    info = f"gitexp-{version}.dist-info"
    meta = [("METADATA", f"Metadata-Version: 2.1\nName: gitexp\nVersion: {version}\n"
                         + "".join(f"Requires-Dist: {r}\n" for r in _requirements())),
            ("WHEEL", "Wheel-Version: 1.0\nGenerator: gitexp.worker.bootstrap\n"
                      "Root-Is-Purelib: true\nTag: py3-none-any\n")]
    entries = [*files, *((f"{info}/{n}", text.encode()) for n, text in meta)]
    record = "".join(f"{n},sha256={_b64(hashlib.sha256(d).digest())},{len(d)}\n"
                     for n, d in entries) + f"{info}/RECORD,,\n"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in [*entries, (f"{info}/RECORD", record.encode())]:
            item = zipfile.ZipInfo(name, _EPOCH)
            item.external_attr = 0o644 << 16
            item.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(item, data)
    return buf.getvalue()


def _requirements() -> list[str]:
    from importlib import metadata

    try:
        return [r for r in metadata.requires("gitexp") or [] if "extra ==" not in r]
    except metadata.PackageNotFoundError:
        return []


def _b64(digest: bytes) -> str:
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _cache_home() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")


# -- worker side -----------------------------------------------------------------------------
def launch_agent(spec: dict[str, Any]) -> dict[str, Any]:
    """Start the agent detached: its own session, no terminal, output to a log file.

    Paths in `spec` may be relative to the login directory (where ssh starts us)."""
    wheel = _absolute(spec["wheel"])
    store = spec["store"] if "://" in spec["store"] else Path(_absolute(spec["store"])).as_uri()
    code = spec["code"] if "://" in spec["code"] else _absolute(spec["code"])
    workdir = Path(_absolute(spec["workdir"]))
    log = workdir / "logs" / f"{spec.get('name') or spec['run']}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    if spec.get("sweep"):  # a sweep's slot: one work directory per run under work/
        job: dict[str, Any] = {"slot": (spec["sweep"], int(spec["slot"])),
                               "workdir": str(workdir / "work")}
    else:
        job = {"run_id": spec["run"], "snapshot": spec["snapshot"],
               "workdir": str(workdir / "work" / spec["run"])}
    argv = agent_argv(sys.executable, store=store, code=code,
                      heartbeat=spec.get("heartbeat", 2.0),
                      warm=(int(spec.get("warm", 0)), str(workdir / "warm")), **job,
                      limits=(int(spec["limits"][0]), int(spec["limits"][1]))
                      if spec.get("limits") else None)
    path = os.pathsep.join(p for p in (wheel, os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, **spec.get("env", {}), "PYTHONPATH": path}
    with log.open("ab") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                env=env, cwd=workdir, start_new_session=True, close_fds=True)
    return {"pid": proc.pid, "host": socket.gethostname(), "log": str(log)}


def _absolute(path: str) -> str:
    return str(Path(path).expanduser().absolute())


def main() -> int:
    spec = json.loads(sys.stdin.read())
    print(json.dumps(launch_agent(spec)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
