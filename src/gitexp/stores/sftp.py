"""A store on any machine the user can ssh to, spoken to over SFTP (paramiko).

    ssh://[user@]host[:port]/absolute/path
    ssh://host/~/relative/to/home          (what the ssh target uses by default)

The host may be an alias of the user's ssh config (`~/.ssh/config`, or the file named by
`GITEXP_SSH_CONFIG` or by a `?ssh_config=PATH` query): its HostName, Port, User,
IdentityFile, ProxyCommand and host-key settings apply, as they do for `ssh` itself.
One connection per process and host is kept open: following a log reads every 0.2 s.

Code lives in the bare repository `code.git` on the host: packs go in with index-pack and
workers fetch from it, both by git over the user's own ssh (not SFTP).
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import random
import shlex
import stat
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

from gitexp.errors import StoreError
from gitexp.git import run_git
from gitexp.stores import Progress
from gitexp.stores.transport import (
    REF_PREFIX,
    REFS,
    code_repo,
    commit_ids,
    has_commit,
    open_cache,
    receive_argv,
    require,
    send_pack,
)

T = TypeVar("T")
CONFIG_ENV = "GITEXP_SSH_CONFIG"
RETRY_SECONDS = 30.0
_Key = tuple[str, str, int | None, str | None]


class _Channels(threading.local):
    """One SFTP channel per thread over a shared connection: a channel is not safe for
    concurrent requests (the agent's heartbeat thread writes while it streams)."""

    sftp: Any = None


_CONNECTIONS: dict[_Key, tuple[Any, _Channels]] = {}
_LOCK = threading.Lock()


def ssh_config_path(explicit: str | None = None) -> Path | None:
    """The ssh config in force: explicit, else $GITEXP_SSH_CONFIG, else ~/.ssh/config."""
    raw = explicit or os.environ.get(CONFIG_ENV)
    path = Path(raw).expanduser() if raw else Path.home() / ".ssh" / "config"
    return path if path.is_file() else None


def ssh_argv(host: str, *, port: int | None = None, config: str | None = None) -> list[str]:
    """The system ssh to `host`, never prompting (a launch must not hang on a password)."""
    argv = ["ssh", "-o", "BatchMode=yes"]
    cfg = ssh_config_path(config)
    if cfg is not None:
        argv += ["-F", str(cfg)]
    if port:
        argv += ["-p", str(port)]
    return [*argv, host]


class SFTPStore:
    needs = ("paramiko",)  # the extra `ssh` (gitexp.extras)

    def __init__(self, host: str, path: str, *, user: str | None = None,
                 port: int | None = None, config: str | None = None) -> None:
        self.host, self.user, self.port, self.config = host, user, port, config
        self.path = path.rstrip("/") or "/"  # relative: under the login directory (home)
        where = f"/~/{path}" if not path.startswith("/") else path
        netloc = (f"{user}@" if user else "") + host + (f":{port}" if port else "")
        query = f"?ssh_config={config}" if config else ""
        self.url = f"ssh://{netloc}{where.rstrip('/')}{query}"

    @classmethod
    def from_url(cls, url: str) -> SFTPStore:
        parts = urlsplit(url)
        if parts.scheme != "ssh" or not parts.hostname:
            raise StoreError(f"not an ssh store URL: {url!r}", hint="use ssh://host/path")
        path = unquote(parts.path)
        path = path[3:] if path.startswith("/~/") else ("" if path == "/~" else path)
        config = parse_qs(parts.query).get("ssh_config", [None])[0]
        return cls(parts.hostname, path or ".", user=parts.username, port=parts.port,
                   config=config)

    # -- the user's ssh, for git and the ssh target -------------------------------------------
    @property
    def destination(self) -> str:
        return f"{self.user}@{self.host}" if self.user else self.host

    def ssh_argv(self) -> list[str]:
        return ssh_argv(self.destination, port=self.port, config=self.config)

    def join(self, key: str) -> str:
        """The path of `key` on the host (relative paths are relative to the login dir)."""
        return posixpath.normpath(posixpath.join(self.path, key))

    def git_url(self, key: str) -> str:
        path = self.join(key)
        netloc = self.destination + (f":{self.port}" if self.port else "")
        return f"ssh://{netloc}{path if path.startswith('/') else '/~/' + path}"

    # -- the protocol -------------------------------------------------------------------------
    def read(self, key: str, *, offset: int = 0) -> bytes | None:
        def op(sftp: Any) -> bytes | None:
            try:
                with sftp.open(self._path(key), "rb") as f:
                    size = f.stat().st_size
                    if offset >= size:
                        return b""
                    f.seek(offset)
                    f.prefetch(size - offset)
                    return bytes(f.read(size - offset))
            except FileNotFoundError:
                return None
        return self._retry(op)

    def size(self, key: str) -> int | None:
        def op(sftp: Any) -> int | None:
            try:
                return int(sftp.stat(self._path(key)).st_size)
            except FileNotFoundError:
                return None
        return self._retry(op)

    def read_range(self, key: str, offset: int, length: int) -> bytes | None:
        def op(sftp: Any) -> bytes | None:
            try:
                with sftp.open(self._path(key), "rb") as f:
                    end = min(f.stat().st_size, offset + length)
                    if offset >= end:
                        return b""
                    f.seek(offset)
                    f.prefetch(end)  # paramiko's argument is where prefetching stops
                    return bytes(f.read(end - offset))
            except FileNotFoundError:
                return None
        return self._retry(op)

    def write(self, key: str, data: bytes) -> None:
        self._retry(lambda sftp: self._put(sftp, key, lambda f: f.write(data)))

    def put_file(self, key: str, path: Path, progress: Progress | None = None) -> int:
        total = path.stat().st_size

        def copy(f: Any) -> None:
            sent = 0
            with path.open("rb") as src:
                while chunk := src.read(1 << 20):
                    f.write(chunk)
                    sent += len(chunk)
                    if progress:
                        progress(sent, total)
        self._retry(lambda sftp: self._put(sftp, key, copy))
        return total

    def get_file(self, key: str, path: Path) -> bool:
        def op(sftp: Any) -> bool:
            try:
                sftp.get(self._path(key), str(path))  # streamed, prefetched
            except FileNotFoundError:
                path.unlink(missing_ok=True)  # paramiko opened it before asking the host
                return False
            return True
        return self._retry(op)

    def create(self, key: str, data: bytes) -> bool:
        def op(sftp: Any) -> bool:
            target = self._path(key)
            directory, name = posixpath.split(target)
            self._makedirs(sftp, directory)
            tmp = posixpath.join(directory, f".{name}.{uuid.uuid4().hex[:8]}.tmp")
            try:
                with sftp.open(tmp, "wb") as f:
                    f.write(data)
                # Plain SFTP rename, not posix-rename: OpenSSH does it with link(2), which
                # refuses an existing target - create-only and whole at once.
                sftp.rename(tmp, target)
                return True
            except OSError:
                with contextlib.suppress(OSError):
                    sftp.remove(tmp)
                try:
                    with sftp.open(target, "rb") as f:
                        return bool(f.read() == data)  # taken; by our own earlier attempt?
                except FileNotFoundError:
                    raise StoreError(f"cannot create {key} in {self.url}",
                                     hint="is the store writable there?") from None
        return self._retry(op)

    def append(self, key: str, data: bytes) -> None:
        def op(sftp: Any) -> None:
            target = self._path(key)
            self._makedirs(sftp, posixpath.dirname(target))
            with sftp.open(target, "ab") as f:
                f.write(data)
        self._retry(op)

    def list(self, prefix: str) -> list[str]:
        def op(sftp: Any) -> list[str]:
            found: list[str] = []
            stack = [prefix.strip("/")]
            while stack:
                rel = stack.pop()
                try:
                    entries = sftp.listdir_attr(self._path(rel) if rel else self.path)
                except FileNotFoundError:
                    continue
                for e in entries:
                    if e.filename.startswith("."):
                        continue  # temp files of writes in flight
                    child = f"{rel}/{e.filename}" if rel else e.filename
                    (stack if stat.S_ISDIR(e.st_mode or 0) else found).append(child)
            return sorted(found)
        return self._retry(op)

    def delete(self, prefix: str) -> None:
        def remove(sftp: Any, path: str) -> None:
            try:
                mode = sftp.lstat(path).st_mode or 0
            except FileNotFoundError:
                return
            if stat.S_ISDIR(mode):
                for name in sftp.listdir(path):
                    remove(sftp, posixpath.join(path, name))
                sftp.rmdir(path)
            else:
                sftp.remove(path)
        self._retry(lambda sftp: remove(sftp, self._path(prefix)))

    # -- code (CodeStore): git over the user's ssh --------------------------------------------
    def held_commits(self) -> set[str]:
        # loose refs only: nothing but update-ref writes them and nothing packs them
        return commit_ids(key for refs in REFS for key in self.list(refs))

    def receive_pack(self, pack: Path, commit: str, against: Sequence[str],
                     progress: Progress | None = None) -> int:
        remote = shlex.join(receive_argv(self.join(code_repo(commit)), commit))
        return send_pack([*self.ssh_argv(), remote], pack, progress)

    def fetch_code(self, commit: str, cache_dir: Path) -> Path:
        cache = open_cache(cache_dir, commit)
        if not has_commit(cache, commit):
            ref = f"{REF_PREFIX}{commit}"
            # ssh_argv ends with the destination; git adds its own (from the URL)
            run_git(["--git-dir", str(cache), "fetch", "-q", self.git_url(code_repo(commit)),
                     f"{ref}:{ref}"], env={"GIT_SSH_COMMAND": shlex.join(self.ssh_argv()[:-1])},
                    check=False)
        require(cache, commit, self.url)
        return cache

    # -- helpers ------------------------------------------------------------------------------
    def _path(self, key: str) -> str:
        path = self.join(key)
        inside = self.path == "." and not path.startswith(("/", ".."))
        if not inside and not path.startswith(self.path.rstrip("/") + "/"):
            raise StoreError(f"store key escapes the store: {key!r}")
        return path

    def _put(self, sftp: Any, key: str, fill: Callable[[Any], None]) -> None:
        target = self._path(key)
        directory, name = posixpath.split(target)
        self._makedirs(sftp, directory)
        tmp = posixpath.join(directory, f".{name}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            with sftp.open(tmp, "wb") as f:
                f.set_pipelined(True)
                fill(f)
            sftp.posix_rename(tmp, target)  # atomic replace (OpenSSH extension)
        except BaseException:
            with contextlib.suppress(Exception):
                sftp.remove(tmp)
            raise

    @staticmethod
    def _makedirs(sftp: Any, directory: str) -> None:
        missing = []
        while directory not in ("", ".", "/"):
            try:
                sftp.stat(directory)
                break
            except FileNotFoundError:
                missing.append(directory)
                directory = posixpath.dirname(directory)
        for d in reversed(missing):
            with contextlib.suppress(OSError):  # made meanwhile by another writer
                sftp.mkdir(d)

    def _retry(self, op: Callable[[Any], T]) -> T:
        import paramiko

        delay, deadline = 0.2, time.monotonic() + RETRY_SECONDS
        while True:
            try:
                return op(self._sftp())
            except (paramiko.SSHException, EOFError, ConnectionError, TimeoutError) as exc:
                self._drop()
                if time.monotonic() + delay > deadline:
                    raise StoreError(f"cannot reach the store {self.url}: {exc}",
                                     hint=f"does `ssh {self.destination}` work?") from None
                time.sleep(delay * (1 + random.random() / 2))
                delay = min(delay * 2, 5.0)
            except PermissionError as exc:
                raise StoreError(f"permission denied in the store {self.url}: {exc}") from None

    def _key(self) -> _Key:
        return (self.destination, str(ssh_config_path(self.config)), self.port, self.config)

    def _sftp(self) -> Any:
        with _LOCK:
            entry = _CONNECTIONS.get(self._key())
            if entry is None or not entry[0].get_transport() or \
                    not entry[0].get_transport().is_active():
                entry = (_connect(self.host, self.user, self.port, ssh_config_path(self.config)),
                         _Channels())
                _CONNECTIONS[self._key()] = entry
        client, channels = entry
        if channels.sftp is None:
            channels.sftp = self._open_sftp(client)
        return channels.sftp

    def _open_sftp(self, client: Any) -> Any:
        import paramiko

        try:
            return client.open_sftp()
        except paramiko.SSHException as exc:
            transport = client.get_transport()
            if transport is None or not transport.is_active():
                raise  # the connection dropped: retried
            # Logged in, and the server refused the channel: ssh works, SFTP does not, and
            # no retry will change that.
            raise StoreError(f"{self.destination} accepts ssh but offers no SFTP, which the "
                             f"store {self.url} needs ({exc})",
                             hint="enable it in the host's sshd_config (`Subsystem sftp "
                                  "internal-sftp`), or give the target a store it can "
                                  "reach (exp.target.NAME.store)") from None

    def _drop(self) -> None:
        with _LOCK:
            client, _ = _CONNECTIONS.pop(self._key(), (None, None))
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()


def _connect(host: str, user: str | None, port: int | None, config: Path | None) -> Any:
    """An SSHClient set up the way the user's ssh config says."""
    import paramiko

    opts: dict[str, Any] = {"hostname": host}
    if config is not None:
        opts = paramiko.SSHConfig.from_path(str(config)).lookup(host)
    client = paramiko.SSHClient()
    client.load_system_host_keys()
    for known in str(opts.get("userknownhostsfile", "")).split():
        with contextlib.suppress(OSError):
            client.load_host_keys(str(Path(known).expanduser()))
    strict = str(opts.get("stricthostkeychecking", "ask")).lower()
    # "no" and "accept-new" trust a host seen for the first time, as ssh would; else refuse.
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy() if strict in ("no", "accept-new")
                                       else paramiko.RejectPolicy())
    keys = [str(Path(k).expanduser()) for k in opts.get("identityfile", [])]
    proxy = opts.get("proxycommand")
    try:
        client.connect(
            opts.get("hostname", host), port=port or int(opts.get("port", 22)),
            username=user or opts.get("user"), key_filename=keys or None,
            look_for_keys=str(opts.get("identitiesonly", "no")).lower() != "yes",
            allow_agent=str(opts.get("identitiesonly", "no")).lower() != "yes",
            sock=paramiko.ProxyCommand(proxy) if proxy else None, timeout=15,
            banner_timeout=15, auth_timeout=15,
        )
    except (paramiko.SSHException, OSError) as exc:
        client.close()
        raise StoreError(f"cannot connect to {host} over ssh: {exc}",
                         hint=f"check `ssh {shlex.quote(host)}` works without a password") \
            from None
    return client
