"""Issue 5 goal, measured on a generated 20,000-file repo: relaunch after a one-line change
sends <= 64 KiB to the store (the seed zipped the whole directory on every deploy).

For each store kind (file://, and gs:// on a local gcp-storage-emulator when installed):
bytes and seconds of the first deploy, then of the relaunch after a one-line edit, beside
the size and time of zipping the work tree.

    python benchmarks/bench_transport.py [--files 20000] [--dir /tmp/gitexp-bench]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from _common import make_big_repo

from gitexp.git import Repo, snapshot
from gitexp.stores import Store, open_store, transport

GOAL = 64 * 1024


def take(repo: Repo) -> str:
    snap = snapshot.take(repo)
    return repo.commit_tree(snap.tree, [snap.base] if snap.base else [], "bench snapshot")


def zip_tree(root: Path, dest: Path) -> tuple[int, float]:
    started = time.perf_counter()
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(root.rglob("*")):
            if ".git" not in path.relative_to(root).parts and path.is_file():
                zf.write(path, path.relative_to(root))
    return dest.stat().st_size, time.perf_counter() - started


@contextmanager
def gcs_emulator() -> Iterator[str | None]:
    exe = Path(sys.executable).parent / "gcp-storage-emulator"
    if not exe.exists():
        yield None
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([str(exe), "start", "--host", "127.0.0.1", "--port", str(port),
                             "--in-memory", "-q"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    endpoint = f"http://127.0.0.1:{port}"
    os.environ["STORAGE_EMULATOR_HOST"] = endpoint
    try:
        for _ in range(100):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        from gitexp.stores.gcs import _client

        _client(endpoint).create_bucket("bench")
        yield "gs://bench/store"
    finally:
        proc.terminate()
        proc.wait()


def deploy(repo: Repo, store: Store, commit: str) -> tuple[int, float]:
    started = time.perf_counter()
    sent = transport.push_code(repo, store, commit)
    return sent, time.perf_counter() - started


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--files", type=int, default=20_000)
    p.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "gitexp-bench")
    a = p.parse_args()
    root = make_big_repo(a.dir / f"repo{a.files}", a.files)
    repo = Repo.discover(root)
    work = Path(tempfile.mkdtemp(prefix="bench-transport-"))
    try:
        zipped, zip_secs = zip_tree(root, work / "tree.zip")
        print(f"repo: {a.files} files; zip of the directory: {zipped / 1e6:.1f} MB "
              f"in {zip_secs:.2f}s (the seed's deploy, every time)")
        with gcs_emulator() as gs_url:
            urls = [(work / "store").as_uri()] + ([gs_url] if gs_url else [])
            target = root / "pkg100" / "mod00100.py"
            original = target.read_text()
            for url in urls:
                store = open_store(url)
                target.write_text(original)
                first, first_secs = deploy(repo, store, take(repo))
                target.write_text(original.replace("VALUE = 100", "VALUE = 101"))
                again, again_secs = deploy(repo, store, take(repo))
                verdict = "ok" if again <= GOAL else "OVER GOAL"
                print(f"{url.split(':')[0]}:// store: first deploy {first / 1e6:.2f} MB in "
                      f"{first_secs:.2f}s; relaunch after a one-line change {again} bytes in "
                      f"{again_secs:.2f}s (goal <= {GOAL} bytes) {verdict}; "
                      f"{zipped / max(again, 1):,.0f}x less than the zip")
            target.write_text(original)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
