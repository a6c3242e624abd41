"""Which raw tick files feed one exchange-day's candles, how they are chunked and scanned.

Tardis splits daily files by ``local_timestamp``, so the ticks of day D stamped just before
midnight can sit at the top of file D+1. Each instrument of day D is therefore read from its
file of D followed by its file of D+1 (rows stay in file order); the candle code keeps exactly
the rows whose exchange ``timestamp`` lies in D. Only the exchange's own files are listed (the
key prefix), one listing per data type and day.

Instruments are processed in chunks: many instruments' files in ONE polars scan, sized by a row
budget (rows from the day's raw manifest), so 3,000 thin options share a few scans while a 5 M-trade
perpetual is a chunk of its own; memory holds one chunk, never the exchange-day.

Whether D+1 has been downloaded decides ``complete_through_midnight``: without it, the last
moments of D may still be missing, and the asset says so (see docs/CANDLES.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta

import polars as pl

from market_data_assets.candles.compute import (
    AMOUNT,
    DERIVATIVE_FIELDS,
    KEY,
    PRICE,
    SIDE,
    TOP_OF_BOOK,
    TS,
    DayTicks,
)
from market_data_assets.storage.base import ObjectStore
from market_data_assets.storage.frames import scan_files
from market_data_assets.storage.layout import (
    exchange_files,
    key_from_file_name,
    raw_manifest_path,
    raw_ticks_dir,
    raw_ticks_path,
)
from market_data_assets.tardis.formats import get_spec
from market_data_assets.ticks.manifest import STATUS_OK, read_manifest

BOOK_SOURCES_FOR_FEATURES: tuple[str, ...] = ("book_snapshot_5", "book_snapshot_25", "quotes")
"""Top-of-book source for candle book features, cheapest first (quotes only where no snapshot)."""
BOOK_SOURCES_FOR_SNAPSHOTS: tuple[str, ...] = ("book_snapshot_25", "book_snapshot_5")
"""Source of the per-timeframe book snapshots, deepest first."""
CANDLE_DATA_TYPES: tuple[str, ...] = (
    "trades",
    *BOOK_SOURCES_FOR_FEATURES,
    "derivative_ticker",
    "liquidations",
)
DEFAULT_CHUNK_ROWS = 2_000_000
"""Row budget of one chunk (about 300 MB of working memory for trades); one instrument is never split."""
ESTIMATED_BYTES_PER_ROW = 10
"""For a file the manifest does not know: Parquet trades take about 10 bytes a row."""


@dataclass(frozen=True)
class ExchangeDayFiles:
    """The raw tick files of one exchange for day D and D+1, per data type and instrument key."""

    day: date
    exchange: str
    files: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    """data_type -> instrument key -> [path in D, path in D+1] (whichever exist, in that order)."""
    next_day_present: bool = False
    """Whether D+1's raw ticks exist for this exchange (its manifest or any of its tick files)."""
    rows: dict[str, int] = field(default_factory=dict)
    """Rows per path of day D (from the manifest, else estimated from the size)."""

    def keys(self, data_type: str) -> list[str]:
        return sorted(self.files.get(data_type, {}))

    def paths(self, data_type: str, key: str) -> list[str]:
        return self.files.get(data_type, {}).get(key, [])

    def first_available(self, data_types: tuple[str, ...], key: str) -> str | None:
        return next((dt for dt in data_types if self.paths(dt, key)), None)

    def weight(self, key: str, data_types: tuple[str, ...]) -> int:
        return sum(self.rows.get(p, 0) for dt in data_types for p in self.paths(dt, key))


def list_exchange_day(
    store: ObjectStore, day: date, exchange: str, data_types: tuple[str, ...] = CANDLE_DATA_TYPES
) -> ExchangeDayFiles:
    nxt = day + timedelta(days=1)
    files: dict[str, dict[str, list[str]]] = {}
    rows: dict[str, int] = {}
    next_day_any = False
    for data_type in data_types:
        by_key: dict[str, list[str]] = {}
        for d in (day, nxt):
            for obj in exchange_files(store, raw_ticks_dir(d, data_type), exchange):
                if not obj.path.endswith(".parquet"):
                    continue
                key = key_from_file_name(obj.path)
                if obj.path != raw_ticks_path(d, data_type, key):
                    continue  # deeper or oddly named object: not a tick file of this layout
                by_key.setdefault(key, []).append(obj.path)
                next_day_any |= d == nxt
                if d == day:
                    rows[obj.path] = obj.size // ESTIMATED_BYTES_PER_ROW
        if by_key:
            files[data_type] = by_key
    if files and store.exists(raw_manifest_path(day, exchange)):
        manifest = read_manifest(store, day, exchange).to_pydict()
        for path, status, n in zip(manifest["path"], manifest["status"], manifest["rows"], strict=True):
            if status == STATUS_OK and path in rows:
                rows[path] = n
    present = next_day_any or store.exists(raw_manifest_path(nxt, exchange))
    return ExchangeDayFiles(day, exchange, files, present, rows)


def chunks_by_rows(keys: list[str], weight: dict[str, int], budget: int) -> Iterator[list[str]]:
    """Consecutive keys grouped while their rows fit ``budget``; a heavier key is a chunk alone."""
    chunk: list[str] = []
    rows = 0
    for key in keys:
        w = weight.get(key, 0)
        if chunk and rows + w > budget:
            yield chunk
            chunk, rows = [], 0
        chunk.append(key)
        rows += w
    if chunk:
        yield chunk


def scan_paths(store: ObjectStore, paths: list[str], columns: list[str]) -> pl.LazyFrame:
    """The files concatenated in order, only ``columns`` read, as ONE frame (``storage.frames``).

    On a local root the files are scanned in place, so the filter on the day's time range reaches
    the Parquet row-group statistics: of the next day's files only the first row groups, the ones
    that can hold ticks stamped before midnight, are read. On ``gs://`` each object is one GET on
    the bounded pool (a chunk's objects, read into memory).
    """
    return scan_files(store, paths, columns)


def _quotes_as_top_of_book() -> dict[str, str]:
    """quotes' ``ask_price`` ... -> the book's level-0 names, matched by side and field."""
    quote_names = [c.name for c in get_spec("quotes").columns if c.name.startswith(("ask_", "bid_"))]
    return {q: next(b for b in TOP_OF_BOOK if b.startswith(q + "_")) for q in quote_names}


def scan_exchange_day(store: ObjectStore, files: ExchangeDayFiles, keys: list[str]) -> DayTicks:
    """Lazy frames over the chunk's files of D and D+1, instruments in ``keys`` order."""

    single = keys[0] if len(keys) == 1 else None  # a heavy instrument alone: no key column to read

    def scan(data_type: str, columns: list[str], of: list[str]) -> pl.LazyFrame | None:
        paths = [p for k in of for p in files.paths(data_type, k)]
        return scan_paths(store, paths, columns if single else [KEY, *columns]) if paths else None

    def book_columns(frame: pl.LazyFrame) -> pl.LazyFrame:
        return frame.select(TS, *TOP_OF_BOOK) if single else frame.select(KEY, TS, *TOP_OF_BOOK)

    trades = scan("trades", [TS, PRICE, AMOUNT, SIDE], keys)
    if trades is None:
        raise FileNotFoundError(f"no trades file for {keys[:3]} on {files.day} or the day after")
    books = []
    for book_type in BOOK_SOURCES_FOR_FEATURES:
        of = [k for k in keys if files.first_available(BOOK_SOURCES_FOR_FEATURES, k) == book_type]
        if book_type == "quotes":
            rename = _quotes_as_top_of_book()
            frame = scan("quotes", [TS, *rename], of)
            frame = book_columns(frame.rename(rename)) if frame is not None else None
        else:
            frame = scan(book_type, [TS, *TOP_OF_BOOK], of)
        if frame is not None:
            books.append(frame)

    def source(key: str) -> str:
        return ", ".join(store.uri(p) for dt in files.files for p in files.paths(dt, key))

    return DayTicks(
        trades=trades,
        book=pl.concat(books, how="vertical_relaxed") if books else None,
        derivative_ticker=scan("derivative_ticker", [TS, *DERIVATIVE_FIELDS], keys),
        liquidations=scan("liquidations", [TS, AMOUNT, SIDE], keys),
        source=source,
        key=single,
    )
