"""A store in Google Cloud Storage: `gs://bucket/prefix` (google-cloud-storage).

Credentials are Google's application-default ones; with `STORAGE_EMULATOR_HOST` set (tests,
local emulators) the client goes there anonymously.

- Writes are conditional on the generation they replace (`if_generation_match`, 0 for "must
  not exist"): a retried upload can never clobber a newer object, and when a retry finds
  that its earlier attempt did land (same MD5) it stops there.
- Appends upload the new bytes as a hidden temporary object and compose it onto the end,
  conditional on the generation read; an object near GCS's component limit is rewritten
  whole instead (same precondition), which also works where compose does not.
- Every call retries transient failures (connection lost, 408/429/5xx, a resumable session
  the server forgot) with exponential backoff, up to RETRY_SECONDS.
- Code travels as thin git bundles (`code/bundles/<commit>.bundle`, then the marker
  `code/heads/<commit>`): a bucket runs no git, and a bundle is one object to upload.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import os
import random
import time
import uuid
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import IO, Any, TypeVar
from urllib.parse import urlsplit

from gitexp.errors import StoreError
from gitexp.stores import Progress
from gitexp.stores.transport import Bundles

T = TypeVar("T")
RETRY_SECONDS = 120.0
MAX_COMPONENTS = 1000  # GCS refuses to compose past 1024 components
TMP = ".gitexp-tmp"  # hidden: never listed


class _Conflict(Exception):
    """The object changed between reading its generation and writing: read and try again."""


class GCSStore:
    needs = ("google.cloud.storage",)  # the extra `gcs` (gitexp.extras)
    chunk_size = 8 << 20  # resumable uploads send (and retry) this much at a time
    initial_delay, max_delay = 0.2, 10.0
    compose = True

    def __init__(self, bucket: str, prefix: str = "", *,
                 retry_seconds: float = RETRY_SECONDS) -> None:
        self.bucket_name = bucket
        self.prefix = prefix.strip("/")
        self.retry_seconds = retry_seconds
        self.url = f"gs://{bucket}/{self.prefix}".rstrip("/")

    @classmethod
    def from_url(cls, url: str) -> GCSStore:
        parts = urlsplit(url)
        if parts.scheme != "gs" or not parts.netloc:
            raise StoreError(f"not a GCS store URL: {url!r}", hint="use gs://bucket/prefix")
        return cls(parts.netloc, parts.path)

    # -- the protocol -------------------------------------------------------------------------
    def read(self, key: str, *, offset: int = 0) -> bytes | None:
        from google.api_core import exceptions as gexc

        def op() -> bytes | None:
            blob = self._bucket().blob(self._name(key))
            try:
                data: bytes = blob.download_as_bytes(start=offset or None, retry=None,
                                                     checksum=None if offset else "md5")
            except gexc.NotFound:
                return None
            except gexc.RequestRangeNotSatisfiable:  # offset at or past the end
                return b""
            return data
        return self._retry(f"read {key}", op)

    def size(self, key: str) -> int | None:
        def op() -> int | None:
            blob = self._bucket().get_blob(self._name(key), retry=None)
            return None if blob is None else int(blob.size or 0)
        return self._retry(f"stat {key}", op)

    def read_range(self, key: str, offset: int, length: int) -> bytes | None:
        from google.api_core import exceptions as gexc

        def op() -> bytes | None:
            blob = self._bucket().blob(self._name(key))
            try:  # `end` is inclusive
                data: bytes = blob.download_as_bytes(start=offset, end=offset + length - 1,
                                                     retry=None, checksum=None)
            except gexc.NotFound:
                return None
            except gexc.RequestRangeNotSatisfiable:
                return b""
            return data
        return self._retry(f"read {key}", op)

    def write(self, key: str, data: bytes) -> None:
        self._put(key, lambda: io.BytesIO(data), len(data), _md5(data), None)

    def put_file(self, key: str, path: Path, progress: Progress | None = None) -> int:
        size = path.stat().st_size
        with path.open("rb") as f:
            digest = hashlib.file_digest(f, "md5").digest()
        self._put(key, lambda: _Counting(path.open("rb"), size, progress), size, digest,
                  self.chunk_size)
        return size

    def get_file(self, key: str, path: Path) -> bool:
        from google.api_core import exceptions as gexc

        def op() -> bool:
            try:
                self._bucket().blob(self._name(key)).download_to_filename(str(path), retry=None)
            except gexc.NotFound:
                path.unlink(missing_ok=True)
                return False
            return True
        return self._retry(f"download {key}", op)

    def create(self, key: str, data: bytes) -> bool:
        name = self._name(key)

        def op() -> bool:
            try:
                self._upload(name, io.BytesIO(data), len(data), generation=0)
            except _Conflict:  # there already: someone else's, or our own lost attempt's
                blob = self._bucket().get_blob(name, retry=None)
                return blob is not None and blob.size == len(data) and \
                    blob.download_as_bytes(retry=None) == data
            return True
        return self._retry(f"create {key}", op)

    def append(self, key: str, data: bytes) -> None:
        if not data:
            return
        name = self._name(key)

        def op() -> None:
            current = self._bucket().get_blob(name, retry=None)
            if current is None:
                try:
                    self._upload(name, io.BytesIO(data), len(data), generation=0)
                except _Conflict:  # created meanwhile (or by our own lost attempt): look again
                    if self._landed(name, None, data):
                        return
                    raise
                return
            try:
                if self.compose and (current.component_count or 0) < MAX_COMPONENTS:
                    self._compose_append(name, current, data)
                else:
                    old = current.download_as_bytes(
                        retry=None, if_generation_match=current.generation)
                    self._upload(name, io.BytesIO(old + data), len(old) + len(data),
                                 generation=current.generation)
            except _Conflict:
                if not self._landed(name, current.size, data):
                    raise
        self._retry(f"append to {key}", op)

    def list(self, prefix: str) -> list[str]:
        base = self._name(prefix).rstrip("/") + "/" if prefix else (
            self.prefix + "/" if self.prefix else "")
        strip = len(self.prefix) + 1 if self.prefix else 0

        def op() -> list[str]:
            blobs = self._client().list_blobs(self.bucket_name, prefix=base, retry=None)
            keys = (b.name[strip:] for b in blobs)
            return sorted(k for k in keys if not any(p.startswith(".") for p in k.split("/")))
        return self._retry(f"list {prefix}", op)

    def delete(self, prefix: str) -> None:
        from google.api_core import exceptions as gexc

        name = self._name(prefix)

        def op() -> None:
            bucket = self._bucket()
            blobs = [*self._client().list_blobs(self.bucket_name, prefix=name + "/", retry=None)]
            for blob in [bucket.blob(name), *blobs]:
                with contextlib.suppress(gexc.NotFound):
                    blob.delete(retry=None)
        self._retry(f"delete {prefix}", op)

    # -- code (CodeStore): bundles, shared with any store that has no transport of its own ---
    def held_commits(self) -> set[str]:
        return Bundles(self).held_commits()

    def receive_pack(self, pack: Path, commit: str, against: Sequence[str],
                     progress: Progress | None = None) -> int:
        return Bundles(self).receive_pack(pack, commit, against, progress)

    def fetch_code(self, commit: str, cache_dir: Path) -> Path:
        return Bundles(self).fetch_code(commit, cache_dir)

    # -- writing ------------------------------------------------------------------------------
    def _put(self, key: str, open_: Callable[[], IO[bytes] | _Counting], size: int, md5: bytes,
             chunk_size: int | None) -> None:
        name = self._name(key)

        def op() -> None:
            current = self._bucket().get_blob(name, retry=None)
            generation = current.generation if current is not None else 0
            if current is not None and current.md5_hash == base64.b64encode(md5).decode() \
                    and current.size == size:
                return  # already there: a retry whose earlier attempt landed
            with open_() as stream:
                self._upload(name, stream, size, generation=generation, chunk_size=chunk_size)
        self._retry(f"write {key}", op)

    def _upload(self, name: str, stream: IO[bytes] | _Counting, size: int, *, generation: int,
                chunk_size: int | None = None) -> None:
        from google.api_core import exceptions as gexc

        blob = self._bucket().blob(name, chunk_size=chunk_size)
        try:
            # Without a size the library goes resumable, chunk by chunk (progress, bounded
            # memory); with one it would send up to 8 MiB in one multipart request.
            blob.upload_from_file(stream, size=None if chunk_size else size,
                                  if_generation_match=generation, retry=None)
        except gexc.PreconditionFailed:
            raise _Conflict from None

    def _compose_append(self, name: str, current: Any, data: bytes) -> None:
        from google.api_core import exceptions as gexc

        bucket = self._bucket()
        tmp = bucket.blob(f"{self.prefix}/{TMP}/{uuid.uuid4().hex}".lstrip("/"))
        tmp.upload_from_string(data, if_generation_match=0, retry=None)
        try:
            # Fresh Blob objects: a reused one would send stale checksums with the request.
            bucket.blob(name).compose([bucket.blob(name), tmp],
                                      if_generation_match=current.generation, retry=None)
        except gexc.PreconditionFailed:
            raise _Conflict from None
        finally:
            with contextlib.suppress(gexc.GoogleAPICallError):
                tmp.delete(retry=None)  # a leftover temporary is hidden, and harmless

    def _landed(self, name: str, old_size: int | None, data: bytes) -> bool:
        """After a conflict: did our own earlier attempt do the append?"""
        blob = self._bucket().get_blob(name, retry=None)
        if blob is None or blob.size != (old_size or 0) + len(data):
            return False
        tail = blob.download_as_bytes(start=old_size or None, retry=None, checksum=None)
        return bool(tail == data)

    # -- plumbing -----------------------------------------------------------------------------
    def _name(self, key: str) -> str:
        key = key.strip("/")
        if any(part in ("", ".", "..") for part in key.split("/")) and key:
            raise StoreError(f"bad store key {key!r}")
        return f"{self.prefix}/{key}" if self.prefix and key else (self.prefix or key)

    def _client(self) -> Any:
        return _client(os.environ.get("STORAGE_EMULATOR_HOST"))

    def _bucket(self) -> Any:
        return self._client().bucket(self.bucket_name)

    @staticmethod
    def _sleep(seconds: float) -> None:
        time.sleep(seconds)

    def _retry(self, what: str, op: Callable[[], T]) -> T:
        from google.api_core import exceptions as gexc

        delay, deadline = self.initial_delay, time.monotonic() + self.retry_seconds
        while True:
            try:
                return op()
            except _Conflict:
                transient, why = True, "the object changed meanwhile"
            except Exception as exc:  # sorted into transient or not right here
                transient, why = _transient(exc), str(exc) or type(exc).__name__
                if not transient:
                    if isinstance(exc, gexc.NotFound):
                        raise StoreError(f"cannot {what} in {self.url}: no such bucket",
                                         hint=f"create it: gcloud storage buckets create "
                                              f"gs://{self.bucket_name}") from None
                    if isinstance(exc, gexc.Forbidden | gexc.Unauthorized):
                        raise StoreError(f"cannot {what} in {self.url}: access denied",
                                         hint="check `gcloud auth application-default "
                                              "login` or GOOGLE_APPLICATION_CREDENTIALS") from None
                    raise
            if time.monotonic() + delay > deadline:
                raise StoreError(f"cannot {what} in {self.url}: {why}",
                                 hint="is the bucket reachable? the store retried for "
                                      f"{self.retry_seconds:.0f}s")
            self._sleep(delay * (1 + random.random() / 2))
            delay = min(delay * 2, self.max_delay)


def _transient(exc: BaseException) -> bool:
    from google.cloud.storage.exceptions import InvalidResponse
    from google.cloud.storage.retry import _should_retry

    if isinstance(exc, InvalidResponse):  # resumable upload: a forgotten session is 404/410
        return True
    return bool(_should_retry(exc))


@lru_cache(maxsize=4)
def _client(emulator: str | None) -> Any:
    from google.cloud.storage import Client

    if emulator:
        from google.auth.credentials import AnonymousCredentials

        endpoint = emulator if "://" in emulator else f"http://{emulator}"
        return Client(project=os.environ.get("GOOGLE_CLOUD_PROJECT", "gitexp"),
                      credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
                      client_options={"api_endpoint": endpoint})
    return Client()


def _md5(data: bytes) -> bytes:
    return hashlib.md5(data, usedforsecurity=False).digest()


class _Counting(io.RawIOBase):
    """A file that reports how far it has been read (the upload's progress)."""

    def __init__(self, raw: IO[bytes], size: int, progress: Progress | None) -> None:
        super().__init__()
        self.raw, self.size, self.progress = raw, size, progress

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        if self.progress and data:
            self.progress(self.raw.tell(), self.size)
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.raw.seek(offset, whence)

    def tell(self) -> int:
        return self.raw.tell()

    def close(self) -> None:
        self.raw.close()
        super().close()
