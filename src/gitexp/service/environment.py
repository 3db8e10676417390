"""The environment a run is launched with: Python, platform and installed packages."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path

from gitexp.git import Repo
from gitexp.model.record import RECORDED_VARIABLES, Environment

_PROBE = (
    "import importlib.metadata as m, json, platform, sys;"
    "print(json.dumps([platform.python_version(), sorted({f\"{d.metadata['Name']}=={d.version}\""
    " for d in m.distributions() if d.metadata['Name']})]))"
)


def job_python(argv: list[str]) -> str:
    """The interpreter the job will use: `python …` on PATH, else ours."""
    if argv and re.fullmatch(r"python[0-9.]*", Path(argv[0]).name):
        found = shutil.which(argv[0])
        if found:
            return found
    return sys.executable


def _site_dirs(python: str) -> list[Path]:
    if Path(python).resolve() == Path(sys.executable).resolve():
        return [Path(p) for p in sys.path if p and Path(p).is_dir()]
    prefix = Path(python).resolve().parent.parent
    return [*sorted(prefix.glob("lib/python*/site-packages")), Path(python).resolve()]


def _cache_key(python: str) -> str:
    # Installing or removing a package adds or removes a *.dist-info directory, which changes
    # its site directory's mtime: the key changes exactly when the set of packages can.
    parts = [str(Path(python).resolve())]
    for d in _site_dirs(python):
        with contextlib.suppress(OSError):
            parts.append(f"{d}:{d.stat().st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:24]


def packages_cached(python: str, cache_dir: Path) -> tuple[str, list[str]]:
    """`packages_of`, remembered per interpreter and state of its site directories (reading
    the metadata of hundreds of packages costs most of a second)."""
    path = cache_dir / f"packages-{_cache_key(python)}.json"
    with contextlib.suppress(OSError, ValueError):
        version, pkgs = json.loads(path.read_text())
        return str(version), [str(p) for p in pkgs]
    version, pkgs = packages_of(python)
    with contextlib.suppress(OSError):
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps([version, pkgs]))
        tmp.replace(path)
    return version, pkgs


def packages_of(python: str) -> tuple[str, list[str]]:
    if Path(python).resolve() == Path(sys.executable).resolve():
        import importlib.metadata as md

        names = {f"{d.metadata['Name']}=={d.version}" for d in md.distributions()
                 if d.metadata["Name"]}
        return platform.python_version(), sorted(names)
    try:
        out = subprocess.run([python, "-c", _PROBE], capture_output=True, timeout=20, check=True)
        version, pkgs = json.loads(out.stdout)
        return str(version), [str(p) for p in pkgs]
    except (OSError, subprocess.SubprocessError, ValueError):
        return "unknown", []


def platform_cached(cache_dir: Path) -> str:
    """`platform.platform()`, remembered per kernel and interpreter: it runs `uname -p` in a
    subprocess (a fork of this process: tens of milliseconds of every launch), and its
    answer depends only on what the key holds (uname's fields, the interpreter's libc)."""
    key = hashlib.sha256(f"{os.uname()}\n{Path(sys.executable).resolve()}".encode())
    path = cache_dir / f"platform-{key.hexdigest()[:24]}.txt"
    with contextlib.suppress(OSError, UnicodeDecodeError):
        text = path.read_text()
        if text.isprintable() and 0 < len(text) < 200:
            return text
    found = platform.platform()
    with contextlib.suppress(OSError):
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(found)
        tmp.replace(path)
    return found


def capture(repo: Repo, argv: list[str]) -> Environment:
    cache = repo.gitexp_dir / "cache"
    version, packages = packages_cached(job_python(argv), cache)
    # Content-addressed: the same set of packages is one blob, however many runs share it.
    blob = repo.hash_object(("\n".join(packages) + "\n").encode()) if packages else None
    variables = {k: os.environ[k] for k in RECORDED_VARIABLES if k in os.environ}
    return Environment(python=version, platform=platform_cached(cache), packages=blob,
                       variables=variables)
