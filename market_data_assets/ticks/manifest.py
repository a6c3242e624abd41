"""The per-partition manifest of raw tick files: what was downloaded, what it became, what failed.

One Parquet file per (day, exchange) at ``layout.raw_manifest_path``, one row per
(data_type, dataset_symbol, instrument_key). It is the resume ledger (a re-run skips a download
whose rows still match what storage holds) and the input of the missing-data report, which reads
exactly ``MANIFEST_SCHEMA``. Rows of one download group:

- ``ok``: a published file (``path``, ``rows``, ``bytes``, ``sha256``, timestamp range);
- ``empty`` with an ``instrument_key``: the file was fine but held no rows for that instrument
  (a grouped OPTIONS file and an option that did not trade);
- ``empty`` without a key: the download itself was empty (Tardis' empty gzip for a day with no data);
- ``failed`` without a key: the download or its conversion failed; ``error`` says why.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime

import pyarrow as pa

from market_data_assets.storage.base import ObjectStore
from market_data_assets.storage.layout import raw_manifest_path
from market_data_assets.storage.local import LocalStore

STATUS_OK = "ok"
STATUS_EMPTY = "empty"
STATUS_FAILED = "failed"

_TS = pa.timestamp("us", tz="UTC")

MANIFEST_SCHEMA = pa.schema(
    [
        pa.field("exchange", pa.string(), nullable=False),
        pa.field("day", pa.date32(), nullable=False),
        pa.field("data_type", pa.string(), nullable=False),
        pa.field("dataset_symbol", pa.string(), nullable=False),
        pa.field("instrument_key", pa.string()),
        pa.field("path", pa.string()),
        pa.field("status", pa.string(), nullable=False),
        pa.field("rows", pa.int64(), nullable=False),
        pa.field("bytes", pa.int64(), nullable=False),
        pa.field("source_bytes", pa.int64(), nullable=False),
        pa.field("sha256", pa.string()),
        pa.field("min_timestamp", _TS),
        pa.field("max_timestamp", _TS),
        pa.field("error", pa.string()),
        pa.field("written_at", _TS, nullable=False),
    ]
)

GroupKey = tuple[str, str]
"""(data_type, dataset_symbol): one download."""


@dataclass(frozen=True)
class ManifestRow:
    exchange: str
    day: date
    data_type: str
    dataset_symbol: str
    instrument_key: str | None
    path: str | None
    status: str
    rows: int = 0
    bytes: int = 0
    source_bytes: int = 0
    sha256: str | None = None
    min_timestamp: datetime | None = None
    max_timestamp: datetime | None = None
    error: str | None = None
    written_at: datetime | None = None

    @property
    def group(self) -> GroupKey:
        return (self.data_type, self.dataset_symbol)


def rows_to_table(rows: Iterable[ManifestRow]) -> pa.Table:
    now = datetime.now(UTC)
    records = [
        {name: getattr(r, name) for name in MANIFEST_SCHEMA.names} | {"written_at": r.written_at or now}
        for r in rows
    ]
    return pa.Table.from_pylist(records, schema=MANIFEST_SCHEMA)


def read_manifest(store: ObjectStore, day: date, exchange: str) -> pa.Table:
    """The partition's manifest (an empty table with ``MANIFEST_SCHEMA`` when there is none yet)."""
    path = raw_manifest_path(day, exchange)
    if not store.exists(path):
        return MANIFEST_SCHEMA.empty_table()
    return store.read_parquet(path).cast(MANIFEST_SCHEMA)


def read_manifest_rows(store: ObjectStore, day: date, exchange: str) -> list[ManifestRow]:
    return [ManifestRow(**rec) for rec in read_manifest(store, day, exchange).to_pylist()]


def write_manifest(store: ObjectStore, day: date, exchange: str, rows: Iterable[ManifestRow]) -> None:
    """Replace the manifest atomically (``write_parquet`` stages then renames / uploads once)."""
    ordered = sorted(rows, key=lambda r: (r.data_type, r.dataset_symbol, r.instrument_key or ""))
    store.write_parquet(rows_to_table(ordered), raw_manifest_path(day, exchange))


def stored_sha256(store: ObjectStore, path: str) -> str | None:
    """SHA-256 of a stored file's bytes (None when it cannot be read). A local file is hashed from
    disk in chunks; a remote object is fetched (the price of proving its bytes)."""
    try:
        if isinstance(store, LocalStore):
            with open(store.uri(path), "rb") as fh:
                return hashlib.file_digest(fh, "sha256").hexdigest()
        return hashlib.sha256(store.get_bytes(path)).hexdigest()
    except Exception:  # noqa: BLE001 - unreadable (gone, permissions, a remote error): it does not match
        return None


def group_is_complete(
    rows: list[ManifestRow],
    wanted_keys: Iterable[str],
    stored_sizes: Mapping[str, int],
    hash_of: Callable[[str], str | None] | None = None,
) -> bool:
    """Whether a download group may be skipped on a re-run.

    True when the group's rows are all good and still true of storage: no failure, every ``ok``
    file exists with the recorded size (and, given ``hash_of``, the recorded SHA-256: a file whose
    bytes changed in place keeps its size), and every instrument now wanted has a row (or the
    whole download was empty). A new target, a deleted, resized or altered file, or a failure
    means redo.
    """
    if not rows or any(r.status == STATUS_FAILED for r in rows):
        return False
    if len(rows) == 1 and rows[0].instrument_key is None and rows[0].status == STATUS_EMPTY:
        return True
    by_key = {r.instrument_key: r for r in rows}
    for key in wanted_keys:
        row = by_key.get(key)
        if row is None:
            return False
        if row.status == STATUS_OK and (row.path is None or stored_sizes.get(row.path) != row.bytes):
            return False
        if (
            row.status == STATUS_OK
            and hash_of is not None
            and row.path is not None
            and row.sha256
            and hash_of(row.path) != row.sha256
        ):
            return False
    return True
