"""One exchange's slice of a per-instrument folder: written as one file per instrument, read back.

A slice is what one (day, exchange) partition of a candle, book snapshot or feature asset owns in
one ``timeframe-TF`` folder: ``KEY.parquet`` for each of the exchange's instruments. Writing it:

1. every instrument's file is written atomically (``store.write_parquet``), on a bounded pool
   (``storage.parallel``); a failed write fails the whole slice naming the object, and nothing
   else is touched, so the previous files stay readable;
2. only then are the slice's stale files (instruments this write did not produce) deleted;
3. last, the marker ``_slice-EXCHANGE.json`` records what the slice holds (files, rows, bytes,
   instruments and the slice's flags). A reader that finds no marker knows the slice was never
   materialized, and the marker's flags (``complete_through_midnight``) cost one request, not
   one per file.

The core never imports Dagster: the IO manager in ``defs/io_managers.py`` calls this module.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

import polars as pl
import pyarrow as pa

from market_data_assets.storage import layout
from market_data_assets.storage.base import ObjectInfo, ObjectStore
from market_data_assets.storage.frames import scan_files
from market_data_assets.storage.parallel import map_objects
from market_data_assets.tardis.formats import INSTRUMENT_KEY_COLUMN

KEY = INSTRUMENT_KEY_COLUMN
META_PREFIX = "market_data_assets."
"""Parquet key-value metadata keys of every slice file: ``market_data_assets.<flag>``."""


@dataclass(frozen=True)
class SliceRef:
    """Which slice: an area of the layout, a day, a timeframe and an exchange."""

    area: str
    day: date
    timeframe: str
    exchange: str

    @property
    def folder(self) -> str:
        return layout.timeframe_dir(self.area, self.day, self.timeframe)

    @property
    def marker(self) -> str:
        return layout.slice_marker_path(self.area, self.day, self.timeframe, self.exchange)

    def path(self, key: str) -> str:
        return f"{self.folder}/{layout.check_instrument_key(key)}.parquet"

    def list(self, store: ObjectStore) -> list[ObjectInfo]:
        """The slice's instrument files: one listing of the exchange's key prefix."""
        out = []
        for obj in layout.exchange_files(store, self.folder, self.exchange):
            if obj.path.endswith(".parquet") and "/" not in obj.path[len(self.folder) + 1 :]:
                layout.key_from_file_name(obj.path)
                out.append(obj)
        return out


@dataclass
class SliceSummary:
    """What a slice holds after a write (also the marker's content)."""

    ref: SliceRef
    instruments: list[str] = field(default_factory=list)
    rows: int = 0
    bytes: int = 0
    files: int = 0
    deleted_stale: int = 0
    flags: dict[str, str] = field(default_factory=dict)
    sample: pl.DataFrame | None = None
    """The first rows written (for a preview)."""

    def marker_json(self) -> bytes:
        return json.dumps(
            {
                "area": self.ref.area,
                "day": self.ref.day.isoformat(),
                "timeframe": self.ref.timeframe,
                "exchange": self.ref.exchange,
                "files": self.files,
                "rows": self.rows,
                "bytes": self.bytes,
                "instruments": len(self.instruments),
                "flags": self.flags,
                "written_at": datetime.now(UTC).isoformat(),
            },
            indent=1,
        ).encode()


SchemaOf = Callable[[pl.DataFrame], pa.Schema]
"""The Parquet schema of a frame's rows (one per chunk: book snapshots are chunked by depth)."""
STATISTICS_COLUMNS = ["timestamp", KEY]
"""Columns whose min/max go into the footer: what readers filter on. Statistics of the other 40
columns cost write time for every one of thousands of small files and serve no query; so do
dictionaries (a file's string columns are constants, which the codec compresses as well): together
1.8 -> 1.4 ms of CPU per file, measured on 1,000 option files."""
SLICE_COMPRESSION = "snappy"
"""The codec of slice files. A slice file is small (a few KB: one instrument-day of candles), where
zstd's per-column-chunk cost dominates: snappy writes 1,000 one-instrument 1m files at 0.93 ms of
CPU each against zstd's 1.35, for files 9 % larger (17.5 vs 16.0 KB), and every reader (polars,
DuckDB, BigQuery loads) reads it. Raw tick files, large, stay zstd."""


class SliceWriter:
    """Writes frames of whole instruments into one slice, then ``finish()`` cleans up and marks it."""

    def __init__(
        self,
        store: ObjectStore,
        ref: SliceRef,
        schema_of: SchemaOf,
        flags: Mapping[str, str],
        concurrency: int,
    ) -> None:
        self.store = store
        self.ref = ref
        self.schema_of = schema_of
        self.concurrency = store.io_threads(concurrency)
        self.summary = SliceSummary(ref, flags=dict(flags))
        self._metadata = {(META_PREFIX + k).encode(): v.encode() for k, v in flags.items()}
        self._lock = threading.Lock()
        self._seen: set[str] = set()

    def write(self, frame: pl.DataFrame) -> None:
        """One file per instrument of ``frame``, concurrently.

        ``frame`` holds whole instruments, each instrument's rows together (the producers sort by
        key). It goes to Arrow and is cast to the schema ONCE; each file is a zero-copy slice of
        it: per-file conversion was a third of the cost of 3,000 small files.
        """
        if frame.height == 0:
            return
        runs = frame.select(pl.col(KEY).rle()).unnest(KEY)
        if runs.height != frame[KEY].n_unique():
            frame = frame.sort(KEY, maintain_order=True)
            runs = frame.select(pl.col(KEY).rle()).unnest(KEY)
        # One chunk per column first: slicing a table of many chunks (a frame read from thousands of
        # files has one per file) costs O(chunks) per slice, i.e. quadratic over the files.
        table = frame.rechunk().to_arrow().cast(self.schema_of(frame)).replace_schema_metadata(self._metadata)
        items: list[tuple[str, pa.Table]] = []
        offset = 0
        for length, key in runs.iter_rows():
            items.append((str(key), table.slice(offset, length)))
            offset += length
        duplicates = sorted(k for k, _ in items if k in self._seen)
        if duplicates:
            raise ValueError(f"{self.ref.folder}: instruments written twice in one slice: {duplicates[:5]}")
        sizes = map_objects(
            self._write_one, items, lambda item: self.store.uri(self.ref.path(item[0])), self.concurrency
        )
        with self._lock:
            if self.summary.sample is None:
                self.summary.sample = frame.head(200)
            for (key, part), size in zip(items, sizes, strict=True):
                self._seen.add(key)
                self.summary.instruments.append(key)
                self.summary.rows += part.num_rows
                self.summary.bytes += size
                self.summary.files += 1

    def _write_one(self, item: tuple[str, pa.Table]) -> int:
        key, part = item
        return self.store.write_parquet(
            part,
            self.ref.path(key),
            compression=SLICE_COMPRESSION,
            write_statistics=STATISTICS_COLUMNS,
            use_dictionary=False,
        )

    def finish(self) -> SliceSummary:
        """Delete the slice's files this write did not produce, then write the marker."""
        stale = [
            obj.path
            for obj in self.ref.list(self.store)
            if layout.key_from_file_name(obj.path) not in self._seen
        ]
        map_objects(self.store.delete, stale, self.store.uri, self.concurrency)
        self.summary.deleted_stale = len(stale)
        self.summary.instruments.sort()
        self.store.put_bytes(self.summary.marker_json(), self.ref.marker)
        return self.summary


@dataclass(frozen=True)
class StoredSlice:
    """A materialized slice as a downstream asset receives it: its files and its marker."""

    ref: SliceRef
    files: tuple[ObjectInfo, ...]
    marker: Mapping[str, object]

    @classmethod
    def open(cls, store: ObjectStore, ref: SliceRef) -> StoredSlice:
        """The slice's files and marker; ``FileNotFoundError`` naming the marker if never written."""
        marker = json.loads(store.get_bytes(ref.marker))
        return cls(ref, tuple(ref.list(store)), marker)

    def flag(self, name: str, default: str = "") -> str:
        flags = self.marker.get("flags", {})
        return str(flags.get(name, default)) if isinstance(flags, dict) else default

    @property
    def keys(self) -> list[str]:
        return [layout.key_from_file_name(f.path) for f in self.files]

    def uris(self, store: ObjectStore) -> list[str]:
        return [store.uri(f.path) for f in self.files]

    def read_chunks(self, store: ObjectStore, budget_bytes: int) -> Iterator[pl.DataFrame]:
        """The slice's rows in chunks of whole instruments (in key order), each about ``budget_bytes``
        of Parquet, every chunk's files read concurrently."""
        chunk: list[ObjectInfo] = []
        size = 0
        for obj in self.files:
            if chunk and size + obj.size > budget_bytes:
                yield read_frames(store, [o.path for o in chunk])
                chunk, size = [], 0
            chunk.append(obj)
            size += obj.size
        if chunk:
            yield read_frames(store, [o.path for o in chunk])


def read_frames(store: ObjectStore, paths: list[str]) -> pl.DataFrame:
    """The files' rows concatenated in ``paths`` order (``storage.frames``: local or ``gs://``).

    Files of one slice may differ in columns (book depth 5 vs 25): missing ones are null.
    """
    if not paths:
        return pl.DataFrame()
    return scan_files(store, paths).collect()


@dataclass
class SlicesOutput:
    """What one partition of a per-instrument asset produces: frames for one or more timeframe
    folders of one area, made lazily chunk by chunk (memory holds one chunk).

    The producer fills ``skipped`` and ``stage`` figures while its chunks are consumed.
    """

    area: str
    day: date
    exchange: str
    timeframes: tuple[str, ...]
    chunks: Iterator[Mapping[str, pl.DataFrame]]
    schema_of: SchemaOf
    flags: dict[str, str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    objects_read: int = 0
    clock: object | None = None
    """Set by the caller that times the stage (the Dagster wiring); the core ignores it."""

    def refs(self) -> dict[str, SliceRef]:
        return {tf: SliceRef(self.area, self.day, tf, self.exchange) for tf in self.timeframes}


def write_output(store: ObjectStore, output: SlicesOutput, concurrency: int) -> dict[str, SliceSummary]:
    """Consume ``output`` into its slices: every file, then stale-file removal and the markers."""
    writers = {
        tf: SliceWriter(store, ref, output.schema_of, output.flags, concurrency)
        for tf, ref in output.refs().items()
    }
    for chunk in output.chunks:
        unknown = sorted(set(chunk) - set(writers))
        if unknown:
            raise ValueError(f"{output.area}: chunk for timeframes {unknown} outside {output.timeframes}")
        for tf, frame in chunk.items():
            writers[tf].write(frame)
    return {tf: w.finish() for tf, w in writers.items()}
