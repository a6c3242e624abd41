"""The object store interface every asset writes through, and what both implementations share.

One small interface (``ObjectStore``), two implementations: ``local.LocalStore`` (a folder) and
``gcs.GcsStore`` (``gs://bucket/prefix``); ``storage.open_store(root)`` picks one from the root, so
switching ``MARKET_DATA_ROOT`` from ``./data`` to ``gs://bucket/prefix`` is the only change a user
makes. Writes are atomic: a local file is written under a temporary name in the same folder and
renamed; a GCS object is a single upload, which GCS makes visible all at once. Either way a reader
sees the old file or the new one, never half.
"""

from __future__ import annotations

import functools
import io
import tempfile
import threading
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from market_data_assets.errors import MarketDataError


class StoreError(MarketDataError, RuntimeError):
    pass


@dataclass(frozen=True)
class ObjectInfo:
    path: str
    """Relative to the store root, ``/``-separated."""
    size: int


def check_relative_path(path: str) -> str:
    """``path`` if it is a valid store path (relative, ``/``-separated, no ``.``/``..``), else StoreError."""
    if not path or path.startswith("/") or "\\" in path or any(p in ("", ".", "..") for p in path.split("/")):
        raise StoreError(
            f"invalid storage path {path!r}: must be relative, '/'-separated, without '.' or '..'"
        )
    return path


def counted(method: Callable) -> Callable:
    """Counts one store request per call (``ObjectStore.requests``): the figure a stage reports."""

    @functools.wraps(method)
    def wrapper(self: ObjectStore, *args: object, **kwargs: object) -> object:
        with _COUNTER_LOCK:
            self.requests = getattr(self, "requests", 0) + 1
        return method(self, *args, **kwargs)

    return wrapper


_COUNTER_LOCK = threading.Lock()


class ObjectStore(ABC):
    """Relative ``/`` paths in, bytes and files out. Implementations: LocalStore, GcsStore.

    Every implementation is safe to call from several threads at once (object I/O runs on a
    bounded pool: ``storage.parallel``).
    """

    root: str
    requests: int = 0
    """Requests made so far (reads, writes, listings, existence checks, deletes)."""

    @abstractmethod
    def uri(self, path: str) -> str:
        """Absolute location (a local path or ``gs://...``) for readers such as polars or duckdb."""

    @abstractmethod
    def put_file(self, local_path: Path, path: str, *, move: bool = False) -> None:
        """Atomically publish a finished local file under ``path``."""

    @abstractmethod
    def get_bytes(self, path: str) -> bytes: ...

    @abstractmethod
    def exists(self, path: str) -> bool: ...

    @abstractmethod
    def list(self, prefix: str) -> list[ObjectInfo]:
        """Every object whose path starts with ``prefix`` (one listing call, paginated as needed)."""

    @abstractmethod
    def delete(self, path: str) -> None:
        """Delete one object; deleting a missing object is not an error."""

    @abstractmethod
    def staging_dir(self) -> Path:
        """A local folder for files about to be ``put_file(move=True)`` (same filesystem when local)."""

    def io_threads(self, requested: int) -> int:
        """Threads worth running for ``requested`` concurrent object operations: every one, where
        each operation mostly waits on the network."""
        return requested

    # --- conveniences shared by both implementations ---------------------------------------

    def put_bytes(self, data: bytes | pa.Buffer, path: str) -> None:
        """Atomically publish ``data`` under ``path`` (stores override it without a staged file)."""
        with self.staged_file(suffix=Path(path).suffix) as tmp:
            tmp.write_bytes(data)
            self.put_file(tmp, path, move=True)

    @contextmanager
    def staged_file(self, suffix: str = "") -> Iterator[Path]:
        """A temporary local path that is removed afterwards unless it was moved into the store."""
        tmp = self.staging_dir() / f".tmp-{uuid.uuid4().hex}{suffix}"
        try:
            yield tmp
        finally:
            tmp.unlink(missing_ok=True)

    def write_parquet(self, table: pa.Table, path: str, **write_options: object) -> int:
        """Write ``table`` atomically as Parquet (zstd by default); returns the bytes written.

        Serialized in memory and published with one ``put_bytes``: no staged file to write, stat
        and move (a sixth of the cost of each of a slice's thousands of small files).
        """
        options: dict[str, Any] = {"compression": "zstd"}
        options.update(write_options)
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, **options)
        data = sink.getvalue()
        self.put_bytes(data, path)
        return data.size

    def read_parquet(self, path: str, columns: list[str] | None = None) -> pa.Table:
        # ParquetFile, not read_table: read_table imports pyarrow.dataset (and pandas), ~1 s the first time.
        with pq.ParquetFile(io.BytesIO(self.get_bytes(path))) as f:
            return f.read(columns=columns)


def local_staging_dir() -> Path:
    """A process-wide temporary folder for stores whose objects are remote."""
    d = Path(tempfile.gettempdir()) / "market_data_assets-staging"
    d.mkdir(parents=True, exist_ok=True)
    return d
