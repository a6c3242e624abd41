"""Build one exchange-day's candle and book snapshot files in the store (what the assets call).

One instrument at a time: its ticks are scanned lazily, reduced to candles and written, so memory
holds one instrument's ticks at most, never the exchange-day. Each file is written atomically
(``store.write_parquet``); files of the same exchange-day and timeframe that this build did not
produce (an instrument that no longer qualifies) are deleted afterwards, so a rebuild replaces
exactly its own slice. Every file carries ``complete_through_midnight`` in its Parquet metadata
and coarser timeframes inherit it from the finer files they are rolled up from.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date

import polars as pl
import pyarrow as pa

from market_data_assets.candles.book_snapshots import book_snapshots_for_timeframe, snapshots_of_day
from market_data_assets.candles.compute import TS, TickDataError, compute_candles
from market_data_assets.candles.rollup import rollup
from market_data_assets.candles.schema import CANDLE_SCHEMA, book_level_columns, book_snapshot_schema
from market_data_assets.candles.sources import (
    BOOK_SOURCES_FOR_SNAPSHOTS,
    ExchangeDayFiles,
    list_exchange_day,
    open_instrument_day,
    scan_ticks,
)
from market_data_assets.candles.timeframes import BASE_TIMEFRAME, TIMEFRAME_TABLE, Timeframe, get_timeframe
from market_data_assets.storage.layout import (
    book_snapshots_dir,
    book_snapshots_path,
    candles_dir,
    candles_path,
    key_from_file_name,
    key_prefix_for_exchange,
)
from market_data_assets.storage.store import ObjectStore

COMPLETE_META_KEY = b"market_data_assets.complete_through_midnight"
"""Parquet key-value metadata: ``true`` once the next day's raw ticks were read, else ``false``."""

Log = Callable[[str], None]


@dataclass
class BuildSummary:
    """What one build wrote: the assets turn it into Dagster metadata."""

    day: date
    exchange: str
    timeframes: tuple[str, ...]
    instruments: list[str] = field(default_factory=list)
    rows: int = 0
    bytes: int = 0
    files: int = 0
    deleted_stale: int = 0
    complete_through_midnight: bool = True
    skipped: list[str] = field(default_factory=list)
    """Instruments with files but no tick stamped inside the day (e.g. only after midnight)."""
    preview: pl.DataFrame | None = None


def _write(store: ObjectStore, df: pl.DataFrame, schema: pa.Schema, path: str, complete: bool) -> int:
    table = df.to_arrow().cast(schema)
    table = table.replace_schema_metadata({COMPLETE_META_KEY: b"true" if complete else b"false"})
    return store.write_parquet(table, path)


def _read_complete_flag(table: pa.Table) -> bool:
    return (table.schema.metadata or {}).get(COMPLETE_META_KEY, b"true") == b"true"


def _delete_stale(store: ObjectStore, folder: str, exchange: str, keep: set[str]) -> int:
    deleted = 0
    for obj in store.list(f"{folder}/{key_prefix_for_exchange(exchange)}"):
        if obj.path.endswith(".parquet") and key_from_file_name(obj.path) not in keep:
            store.delete(obj.path)
            deleted += 1
    return deleted


@contextmanager
def _naming_inputs(
    store: ObjectStore, files: ExchangeDayFiles, key: str, data_types: tuple[str, ...] | None = None
) -> Iterator[None]:
    """Re-raise a polars failure on unreadable ticks (missing column, wrong type) naming the files."""
    try:
        yield
    except (pl.exceptions.PolarsError, OSError) as exc:
        types = data_types or tuple(files.files)
        paths = [store.uri(p) for dt in types for p in files.paths(dt, key)]
        raise TickDataError(f"cannot build {key} from {', '.join(paths)}: {exc}") from exc


def _preview(df: pl.DataFrame, rows: int = 5) -> pl.DataFrame:
    cols = ["instrument_key", "timestamp", "open", "high", "low", "close", "volume", "trade_count", "vwap"]
    traded = df.filter(pl.col("trade_count") > 0)
    return (traded if traded.height else df).select(cols).head(rows)


def build_base_candles(store: ObjectStore, day: date, exchange: str, log: Log | None = None) -> BuildSummary:
    """15s candles of every instrument of ``exchange`` that traded on ``day``, from raw ticks."""
    tf = BASE_TIMEFRAME
    files = list_exchange_day(store, day, exchange)
    summary = BuildSummary(day, exchange, (tf.name,), complete_through_midnight=files.next_day_present)
    for key in files.keys("trades"):
        with _naming_inputs(store, files, key):
            df = compute_candles(open_instrument_day(store, files, key), day, key, exchange, tf)
        if df is None:
            summary.skipped.append(key)
            continue
        summary.bytes += _write(
            store, df, CANDLE_SCHEMA, candles_path(day, tf.name, key), files.next_day_present
        )
        summary.instruments.append(key)
        summary.rows += df.height
        summary.files += 1
        if summary.preview is None:
            summary.preview = _preview(df)
        if log:
            log(f"{key}: {df['trade_count'].sum()} trades -> {df.height} {tf.name} candles")
    summary.deleted_stale = _delete_stale(
        store, candles_dir(day, tf.name), exchange, set(summary.instruments)
    )
    return summary


def build_rolled_up_candles(store: ObjectStore, day: date, exchange: str, timeframe: str) -> BuildSummary:
    """``timeframe`` candles of the exchange-day from the next finer timeframe's files."""
    tf = get_timeframe(timeframe)
    if tf.finer is None:
        raise ValueError(f"timeframe {timeframe} is computed from ticks, not rolled up")
    summary = BuildSummary(day, exchange, (tf.name,))
    prefix = f"{candles_dir(day, tf.finer)}/{key_prefix_for_exchange(exchange)}"
    for obj in store.list(prefix):
        if not obj.path.endswith(".parquet"):
            continue
        key = key_from_file_name(obj.path)
        table = store.read_parquet(obj.path)
        complete = _read_complete_flag(table)
        df = rollup(pl.from_arrow(table), tf)  # type: ignore[arg-type]
        summary.bytes += _write(store, df, CANDLE_SCHEMA, candles_path(day, tf.name, key), complete)
        summary.complete_through_midnight &= complete
        summary.instruments.append(key)
        summary.rows += df.height
        summary.files += 1
        if summary.preview is None:
            summary.preview = _preview(df)
    summary.deleted_stale = _delete_stale(
        store, candles_dir(day, tf.name), exchange, set(summary.instruments)
    )
    return summary


def build_book_snapshots(
    store: ObjectStore,
    day: date,
    exchange: str,
    timeframes: tuple[Timeframe, ...] = TIMEFRAME_TABLE,
    log: Log | None = None,
) -> BuildSummary:
    """The book as of every bucket end, at every timeframe, for each instrument with book snapshots."""
    files = list_exchange_day(store, day, exchange, BOOK_SOURCES_FOR_SNAPSHOTS)
    summary = BuildSummary(
        day, exchange, tuple(tf.name for tf in timeframes), complete_through_midnight=files.next_day_present
    )
    keys = sorted({k for dt in BOOK_SOURCES_FOR_SNAPSHOTS for k in files.keys(dt)})
    for key in keys:
        book_type = files.first_available(BOOK_SOURCES_FOR_SNAPSHOTS, key)
        assert book_type is not None
        depth = int(book_type.rsplit("_", 1)[1])
        scan = scan_ticks(store, files.paths(book_type, key), [TS, *book_level_columns(depth)])
        with _naming_inputs(store, files, key, (book_type,)):
            snaps = snapshots_of_day(scan, day, depth)
        if snaps.height == 0:
            summary.skipped.append(key)
            continue
        for tf in timeframes:
            df = book_snapshots_for_timeframe(snaps, day, tf, depth, key, exchange)
            path = book_snapshots_path(day, tf.name, key)
            summary.bytes += _write(store, df, book_snapshot_schema(depth), path, files.next_day_present)
            summary.rows += df.height
            summary.files += 1
            if summary.preview is None and tf.name == "1h":
                summary.preview = df.select(df.columns[4:11]).head(5)
        summary.instruments.append(key)
        if log:
            log(f"{key}: {snaps.height} {book_type} snapshots -> {len(timeframes)} timeframes")
    for tf in timeframes:
        summary.deleted_stale += _delete_stale(
            store, book_snapshots_dir(day, tf.name), exchange, set(summary.instruments)
        )
    return summary
