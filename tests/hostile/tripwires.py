"""What a victim's command must leave alone, each able to say afterwards whether it was
touched: a listening socket, a FIFO that notices a reader, and a listing of a directory."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import threading
from pathlib import Path


class Listener:
    """A TCP port on loopback that records every connection (and closes it at once, so a
    client that did connect fails fast instead of waiting for a banner)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port: int = self.sock.getsockname()[1]
        self.connections: list[tuple[str, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, peer = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections.append(peer)
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


class FifoTrap:
    """A named pipe where a store file would be: a writer thread waits on it, so anyone who
    opens it to read is noticed (and reads an empty file rather than blocking)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.mkfifo(path)
        self.path, self.opened, self._closing = path, False, False
        self._thread = threading.Thread(target=self._wait, daemon=True)
        self._thread.start()

    def _wait(self) -> None:
        while not self._closing:  # every open is answered: a second read must not block
            with open(self.path, "wb"):  # blocks until a reader opens the pipe
                if not self._closing:
                    self.opened = True

    def close(self) -> None:
        self._closing = True
        fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)  # lets the writer go
        self._thread.join(2)
        os.close(fd)


Listing = dict[str, tuple[int, int, int]]


def listing(root: Path, skip: tuple[Path, ...] = ()) -> Listing:
    """Every entry under `root` (not following links), minus the trees in `skip`: path ->
    (mode, size, mtime in ns). Two listings differ when anything was written or created."""
    out: Listing = {}
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if here / d not in skip]
        for name in dirnames + filenames:
            st = os.lstat(here / name)
            is_dir = name in dirnames
            out[str((here / name).relative_to(root))] = (
                st.st_mode, 0 if is_dir else st.st_size, 0 if is_dir else st.st_mtime_ns)
    return out


def changes(before: Listing, after: Listing) -> list[str]:
    return sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))


# ESC (CSI, OSC, DCS ...), BEL and the other C0 controls but tab and newline, DEL, and the
# 8-bit C1 controls: what would let a forged field drive the terminal.
TERMINAL_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f\x80-\x9f]")


def check_output(proc: subprocess.CompletedProcess[str], *, warnings: int = 1,
                 what: str = "") -> None:
    """No traceback, no terminal control character, and at most `warnings` lines on stderr
    (hint lines aside) - the one line a forged run may cost."""
    both = proc.stdout + proc.stderr
    assert "Traceback" not in both, (what, proc.stderr[-3000:])
    bad = TERMINAL_CONTROL.search(both)
    assert bad is None, (what, repr(both[max(0, bad.start() - 60):bad.end() + 60]))
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and not ln.startswith("hint:")]
    assert len(lines) <= warnings, (what, lines[:10])
