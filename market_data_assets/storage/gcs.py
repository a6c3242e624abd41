"""The ``gs://bucket/prefix`` object store, over the official ``google-cloud-storage`` client.

Why it looks the way it does:

* Atomicity comes from GCS itself: an object upload (single request or resumable session) only
  becomes visible when it completes, so a reader sees the previous object or the new one, never
  half of one. ``put_file`` is therefore exactly one upload of a finished local file, with no
  temporary object and no copy-then-rename (GCS has no rename; a copy would double the traffic).
* Retries are the client library's (exponential backoff on 429/5xx and connection errors). An
  unconditional upload is retried too: every writer in this project publishes deterministic
  content under a deterministic name, so repeating the same upload is harmless.
* Every error names the ``gs://`` URI it concerns, because "404 Not Found" alone does not tell an
  operator which of thousands of partition files is missing.
* ``STORAGE_EMULATOR_HOST`` and ``GOOGLE_CLOUD_PROJECT`` are read here and not in ``settings.py``:
  they are Google's own conventions, honoured by every Google client library, and the emulator
  switch must behave exactly as those libraries expect.
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from google.api_core import exceptions as gexc
from google.auth.credentials import AnonymousCredentials
from google.auth.exceptions import DefaultCredentialsError
from google.cloud import storage

from market_data_assets.storage.base import (
    ObjectInfo,
    ObjectStore,
    StoreError,
    check_relative_path,
    counted,
    local_staging_dir,
)

EMULATOR_PROJECT_DEFAULT = "test-project"
DEFAULT_LIST_PAGE_SIZE = 1000  # the GCS maximum: fewest round trips per listing
DEFAULT_TIMEOUT_S = 300.0  # per HTTP request; large Parquet uploads need more than the 60 s default

# https://cloud.google.com/storage/docs/buckets#naming (dotted names up to 222 characters).
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")


def gcs_emulator_host() -> str | None:
    """``STORAGE_EMULATOR_HOST`` as a base URL (``http://host:port``), or None for real GCS."""
    host = os.environ.get("STORAGE_EMULATOR_HOST", "").strip()
    if not host:
        return None
    return host if "://" in host else f"http://{host}"


def parse_gs_uri(uri: str) -> tuple[str, str]:
    """``gs://bucket/a/b/`` -> ``("bucket", "a/b")``; refuses anything that is not a usable root."""
    if not isinstance(uri, str) or not uri.startswith("gs://"):
        raise StoreError(f"invalid GCS root {uri!r}: expected gs://bucket[/prefix]")
    bucket, _, prefix = uri.removeprefix("gs://").partition("/")
    if not _BUCKET.match(bucket) or ".." in bucket:
        raise StoreError(f"invalid GCS root {uri!r}: {bucket!r} is not a valid bucket name")
    prefix = prefix.rstrip("/")
    if prefix:
        try:
            check_relative_path(prefix)
        except StoreError as exc:
            raise StoreError(f"invalid GCS root {uri!r}: bad prefix {prefix!r}") from exc
    return bucket, prefix


def _check_prefix(prefix: str) -> str:
    """A listing prefix may end anywhere (``day-2024-01``, ``area/``) but may not climb out."""
    if prefix == "":
        return prefix
    body = prefix[:-1] if prefix.endswith("/") else prefix
    try:
        check_relative_path(body)
    except StoreError as exc:
        raise StoreError(f"invalid listing prefix {prefix!r}: {exc}") from exc
    return prefix


CONNECTION_POOL_SIZE = 64
"""HTTP connections kept per store: object I/O runs on a pool of up to MARKET_DATA_IO_CONCURRENCY
threads, and requests' default of 10 would make the rest open and drop a connection per call."""


def _widen_connection_pool(client: storage.Client, size: int = CONNECTION_POOL_SIZE) -> storage.Client:
    from requests.adapters import HTTPAdapter

    session = getattr(client, "_http", None)
    if session is not None and hasattr(session, "mount"):
        for scheme in ("https://", "http://"):
            session.mount(scheme, HTTPAdapter(pool_connections=size, pool_maxsize=size))
    return client


def arrow_filesystem(emulator_host: str | None = None) -> pafs.GcsFileSystem:
    """pyarrow's GCS filesystem (google-cloud-cpp) for the emulator (anonymous) or real GCS
    (application default credentials, like the Python client): the one builder of it."""
    emulator = emulator_host or gcs_emulator_host()
    if not emulator:
        return pafs.GcsFileSystem()
    if "://" not in emulator:
        emulator = f"http://{emulator}"
    scheme, _, host = emulator.rpartition("://")
    return pafs.GcsFileSystem(anonymous=True, endpoint_override=host.rstrip("/"), scheme=scheme)


def client_for_environment() -> storage.Client:
    """A storage client for the emulator (anonymous) or real GCS (application default credentials)."""
    emulator = gcs_emulator_host()
    project = os.environ.get("GOOGLE_CLOUD_PROJECT") or None
    if emulator:
        return _widen_connection_pool(
            storage.Client(
                project=project or EMULATOR_PROJECT_DEFAULT,
                credentials=AnonymousCredentials(),
                client_options={"api_endpoint": emulator},
            )
        )
    return _widen_connection_pool(storage.Client(project=project))


class GcsStore(ObjectStore):
    """Objects named ``prefix/`` + the relative path, in one bucket."""

    def __init__(
        self,
        client: storage.Client,
        bucket: str,
        prefix: str = "",
        *,
        list_page_size: int = DEFAULT_LIST_PAGE_SIZE,
        timeout: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self._bucket_name, self._prefix = parse_gs_uri(f"gs://{bucket}/{prefix}")
        self._client = client
        self._bucket = client.bucket(self._bucket_name)
        self._list_page_size = list_page_size
        self._timeout = timeout
        self.root = (
            f"gs://{self._bucket_name}/{self._prefix}" if self._prefix else f"gs://{self._bucket_name}"
        )

    @classmethod
    def from_uri(cls, uri: str, client: storage.Client | None = None, **options: object) -> GcsStore:
        """The store for ``gs://bucket/prefix`` with ``client`` (the Dagster ``gcs`` resource's) or a
        client built from the environment (the reader, the CLI)."""
        bucket, prefix = parse_gs_uri(uri)
        if client is not None:
            return cls(_widen_connection_pool(client), bucket, prefix, **options)  # pyright: ignore[reportArgumentType]
        try:
            client = client_for_environment()
        except DefaultCredentialsError as exc:
            raise StoreError(
                f"cannot open {uri}: no Google credentials found (run `gcloud auth application-default "
                f"login`, set GOOGLE_APPLICATION_CREDENTIALS, or set STORAGE_EMULATOR_HOST for an emulator)"
            ) from exc
        return cls(client, bucket, prefix, **options)  # pyright: ignore[reportArgumentType]

    def __repr__(self) -> str:
        return f"GcsStore({self.root!r})"

    def __reduce__(self) -> tuple[object, ...]:
        # A client holds sockets and cannot be pickled: a store crosses processes by its URI.
        return (_reopen, (self.root, self._list_page_size, self._timeout))

    # --- names ------------------------------------------------------------------------------

    def object_name(self, path: str) -> str:
        """The GCS object name of a relative store path (validated)."""
        check_relative_path(path)
        return f"{self._prefix}/{path}" if self._prefix else path

    def uri(self, path: str) -> str:
        return f"gs://{self._bucket_name}/{self.object_name(path)}"

    def _relative(self, name: str) -> str:
        return name[len(self._prefix) + 1 :] if self._prefix else name

    # --- the interface ---------------------------------------------------------------------

    @counted
    def put_file(self, local_path: Path, path: str, *, move: bool = False) -> None:
        """One upload of a finished local file."""
        uri = self.uri(path)
        local_path = Path(local_path)
        if not local_path.is_file():
            raise FileNotFoundError(f"cannot upload {local_path} to {uri}: the local file does not exist")
        blob = self._bucket.blob(self.object_name(path))
        try:
            blob.upload_from_filename(str(local_path), timeout=self._timeout)  # pyright: ignore[reportArgumentType]  google-cloud-storage takes a float timeout; its annotation says int
        except gexc.GoogleAPICallError as exc:
            raise StoreError(f"upload of {local_path} to {uri} failed: {exc}") from exc
        if move:
            local_path.unlink(missing_ok=True)

    @counted
    def put_bytes(self, data: bytes | pa.Buffer, path: str) -> None:
        """One upload from memory (no staged file): visible all at once, like ``put_file``."""
        uri = self.uri(path)
        try:
            self._bucket.blob(self.object_name(path)).upload_from_string(
                data if isinstance(data, bytes) else data.to_pybytes(),
                content_type="application/octet-stream",
                timeout=self._timeout,  # pyright: ignore[reportArgumentType]  google-cloud-storage takes a float timeout; its annotation says int
            )
        except gexc.GoogleAPICallError as exc:
            raise StoreError(f"upload to {uri} failed: {exc}") from exc

    @functools.cached_property
    def _arrow_fs(self) -> pafs.GcsFileSystem:
        return arrow_filesystem()

    @counted
    def get_bytes(self, path: str) -> bytes:
        """One GET through pyarrow's C++ client: a fifth of the Python client's CPU per request
        (0.3 vs 1.7 ms, measured), which is what a step reading thousands of small objects pays."""
        uri = self.uri(path)
        try:
            with self._arrow_fs.open_input_stream(f"{self._bucket_name}/{self.object_name(path)}") as f:
                return f.read()
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"{uri} does not exist") from exc
        except OSError as exc:
            raise StoreError(f"download of {uri} failed: {exc}") from exc

    def read_parquet(self, path: str, columns: list[str] | None = None) -> pa.Table:
        data = self.get_bytes(path)
        try:
            with pq.ParquetFile(pa.BufferReader(data)) as f:
                return f.read(columns=columns)
        except (pa.ArrowInvalid, pa.ArrowKeyError) as exc:
            raise StoreError(f"{self.uri(path)} is not a readable Parquet file: {exc}") from exc

    @counted
    def exists(self, path: str) -> bool:
        try:
            return self._bucket.blob(self.object_name(path)).exists(timeout=self._timeout)  # pyright: ignore[reportArgumentType]  google-cloud-storage takes a float timeout; its annotation says int
        except gexc.GoogleAPICallError as exc:
            raise StoreError(f"cannot check whether {self.uri(path)} exists: {exc}") from exc

    @counted
    def list(self, prefix: str) -> list[ObjectInfo]:
        """One listing call; the iterator follows ``nextPageToken`` across pages."""
        _check_prefix(prefix)
        full = f"{self._prefix}/{prefix}" if self._prefix else prefix
        try:
            blobs = self._client.list_blobs(
                self._bucket_name,
                prefix=full or None,
                page_size=self._list_page_size,
                fields="items(name,size),nextPageToken",
                timeout=self._timeout,  # pyright: ignore[reportArgumentType]  google-cloud-storage takes a float timeout; its annotation says int
            )
            out = [ObjectInfo(self._relative(b.name), int(b.size or 0)) for b in blobs]
        except gexc.NotFound as exc:
            raise StoreError(
                f"cannot list {self.root}/{prefix}: bucket {self._bucket_name} not found"
            ) from exc
        except gexc.GoogleAPICallError as exc:
            raise StoreError(f"cannot list {self.root}/{prefix}: {exc}") from exc
        out.sort(key=lambda o: o.path)
        return out

    @counted
    def delete(self, path: str) -> None:
        try:
            self._bucket.blob(self.object_name(path)).delete(timeout=self._timeout)  # pyright: ignore[reportArgumentType]  google-cloud-storage takes a float timeout; its annotation says int
        except gexc.NotFound:
            return
        except gexc.GoogleAPICallError as exc:
            raise StoreError(f"cannot delete {self.uri(path)}: {exc}") from exc

    def staging_dir(self) -> Path:
        return local_staging_dir()


def _reopen(root: str, list_page_size: int, timeout: float) -> GcsStore:
    return GcsStore.from_uri(root, list_page_size=list_page_size, timeout=timeout)
