"""One exchange-day's candles and book snapshots, as lazily produced outputs of whole-instrument chunks.

Each ``*_output`` function plans the work (one listing per folder, the day's raw manifest for
row counts) and returns a ``SlicesOutput`` whose chunks are computed only as they are consumed:
many instruments per polars pass, chunks sized by a row budget, so memory holds one chunk and
never the exchange-day. The Dagster IO manager (``defs/io_managers.py``) consumes them into the
layout with ``storage.slices.write_output``; the ``build_*`` functions do the same without
Dagster (tests, scripts). Every file carries ``complete_through_midnight`` in its Parquet
metadata, and coarser timeframes inherit it from the finer slice's marker.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date

import polars as pl
import pyarrow as pa

from market_data_assets.candles.book_snapshots import book_snapshots_for_timeframe, snapshots_of_day
from market_data_assets.candles.compute import KEY, TS, CandleInputError, compute_base_candles
from market_data_assets.candles.density import DEFAULT_POLICY, DensityPolicy
from market_data_assets.candles.rollup import rollup
from market_data_assets.candles.schema import CANDLE_SCHEMA, book_level_columns, book_snapshot_schema
from market_data_assets.candles.sources import (
    BOOK_SOURCES_FOR_SNAPSHOTS,
    CANDLE_DATA_TYPES,
    DEFAULT_CHUNK_ROWS,
    ExchangeDayFiles,
    chunks_by_rows,
    list_exchange_day,
    scan_exchange_day,
    scan_paths,
)
from market_data_assets.candles.timeframes import BASE_TIMEFRAME, TIMEFRAME_TABLE, Timeframe, get_timeframe
from market_data_assets.storage.base import ObjectStore
from market_data_assets.storage.layout import BOOK_SNAPSHOTS_AREA, CANDLES_AREA
from market_data_assets.storage.parallel import DEFAULT_IO_CONCURRENCY
from market_data_assets.storage.slices import (
    META_PREFIX,
    SliceRef,
    SlicesOutput,
    SliceSummary,
    StoredSlice,
    write_output,
)

COMPLETE_FLAG = "complete_through_midnight"
COMPLETE_META_KEY = (META_PREFIX + COMPLETE_FLAG).encode()
"""Parquet key-value metadata: ``true`` once the next day's raw ticks were read, else ``false``."""
DENSITY_FLAG = "density_policy"
"""Slice flag: the instrument types whose candles are sparse (each file's rows say ``density`` too)."""
DEFAULT_ROLLUP_CHUNK_BYTES = 8 << 20
"""Parquet bytes of finer candles per roll-up chunk. The roll-up's intermediate columns make the peak
many times that: on a Deribit day's 15s slice (51 MB) a 1m roll-up peaked at 1.3 GB with 64 MB
chunks, 0.55 GB with 8 MB, at the same CPU."""

Log = Callable[[str], None]


def _flag(value: bool) -> str:
    return "true" if value else "false"


def _candle_schema(_: pl.DataFrame) -> pa.Schema:
    return CANDLE_SCHEMA


def _book_schema(frame: pl.DataFrame) -> pa.Schema:
    return book_snapshot_schema(int(frame["book_depth"][0]))


# --- candles ---------------------------------------------------------------------------------------


def _naming_inputs(
    store: ObjectStore, files: ExchangeDayFiles, keys: list[str], error: Exception
) -> CandleInputError:
    """A polars failure on unreadable ticks (missing column, wrong type) as an error naming the files."""
    paths = [store.uri(p) for dt in files.files for k in keys for p in files.paths(dt, k)]
    return CandleInputError(f"cannot build {', '.join(keys)} from {', '.join(paths)}: {error}")


def _base_chunk(
    store: ObjectStore, files: ExchangeDayFiles, keys: list[str], policy: DensityPolicy, tf: Timeframe
) -> pl.DataFrame:
    try:
        return compute_base_candles(
            scan_exchange_day(store, files, keys), files.day, files.exchange, tf, policy
        )
    except (pl.exceptions.PolarsError, OSError) as exc:
        if len(keys) == 1:
            raise _naming_inputs(store, files, keys, exc) from exc
    # A chunk of many instruments failed: redo it one by one so the error names the instrument.
    return pl.concat([_base_chunk(store, files, [k], policy, tf) for k in keys])


def base_candles_output(
    store: ObjectStore,
    day: date,
    exchange: str,
    *,
    policy: DensityPolicy = DEFAULT_POLICY,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    log: Log | None = None,
) -> SlicesOutput:
    """15s candles of every instrument of ``exchange`` that traded on ``day``, from raw ticks of D and D+1."""
    tf = BASE_TIMEFRAME
    files = list_exchange_day(store, day, exchange)
    keys = files.keys("trades")
    weight = {k: files.weight(k, CANDLE_DATA_TYPES) for k in keys}
    output = SlicesOutput(
        CANDLES_AREA,
        day,
        exchange,
        (tf.name,),
        iter(()),
        _candle_schema,
        flags={
            COMPLETE_FLAG: _flag(files.next_day_present),
            DENSITY_FLAG: ",".join(sorted(policy.sparse_types)),
        },
    )

    def chunks() -> Iterator[Mapping[str, pl.DataFrame]]:
        for chunk in chunks_by_rows(keys, weight, chunk_rows):
            df = _base_chunk(store, files, chunk, policy, tf)
            traded = set(df[KEY].unique().to_list())
            output.skipped.extend(k for k in chunk if k not in traded)
            output.objects_read += sum(len(files.paths(dt, k)) for dt in files.files for k in chunk)
            if log:
                log(
                    f"{len(chunk)} instruments ({sum(weight[k] for k in chunk)} rows) -> {df.height} {tf.name} candles"
                )
            yield {tf.name: df}

    output.chunks = chunks()
    return output


def rolled_up_output(
    store: ObjectStore,
    finer: StoredSlice,
    timeframe: str,
    *,
    chunk_bytes: int = DEFAULT_ROLLUP_CHUNK_BYTES,
) -> SlicesOutput:
    """``timeframe`` candles of the exchange-day from the finer timeframe's stored slice."""
    tf = get_timeframe(timeframe)
    if tf.finer is None:
        raise ValueError(f"timeframe {timeframe} is computed from ticks, not rolled up")
    if finer.ref.timeframe != tf.finer:
        raise ValueError(f"candles_{timeframe} rolls up {tf.finer}, got the {finer.ref.timeframe} slice")
    ref = finer.ref
    flags = {COMPLETE_FLAG: finer.flag(COMPLETE_FLAG, "true"), DENSITY_FLAG: finer.flag(DENSITY_FLAG)}
    output = SlicesOutput(
        CANDLES_AREA, ref.day, ref.exchange, (tf.name,), iter(()), _candle_schema, flags=flags
    )

    def chunks() -> Iterator[Mapping[str, pl.DataFrame]]:
        for frame in finer.read_chunks(store, chunk_bytes):
            output.objects_read += frame[KEY].n_unique()
            yield {tf.name: rollup(frame, tf)}

    output.chunks = chunks()
    return output


# --- book snapshots -----------------------------------------------------------------------------------


def book_snapshots_output(
    store: ObjectStore,
    day: date,
    exchange: str,
    timeframes: tuple[Timeframe, ...] = TIMEFRAME_TABLE,
    *,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    log: Log | None = None,
) -> SlicesOutput:
    """The book as of every bucket end, at every timeframe, for each instrument with book snapshots."""
    files = list_exchange_day(store, day, exchange, BOOK_SOURCES_FOR_SNAPSHOTS)
    by_type: dict[str, list[str]] = {}
    for key in sorted({k for dt in BOOK_SOURCES_FOR_SNAPSHOTS for k in files.keys(dt)}):
        book_type = files.first_available(BOOK_SOURCES_FOR_SNAPSHOTS, key)
        assert book_type is not None
        by_type.setdefault(book_type, []).append(key)
    output = SlicesOutput(
        BOOK_SNAPSHOTS_AREA,
        day,
        exchange,
        tuple(tf.name for tf in timeframes),
        iter(()),
        _book_schema,
        flags={COMPLETE_FLAG: _flag(files.next_day_present)},
    )

    def chunks() -> Iterator[Mapping[str, pl.DataFrame]]:
        for book_type, keys in by_type.items():
            depth = int(book_type.rsplit("_", 1)[1])
            weight = {k: files.weight(k, (book_type,)) for k in keys}
            for chunk in chunks_by_rows(keys, weight, chunk_rows):
                paths = [p for k in chunk for p in files.paths(book_type, k)]
                try:
                    snaps = snapshots_of_day(
                        scan_paths(store, paths, [KEY, TS, *book_level_columns(depth)]), day, depth
                    )
                except (pl.exceptions.PolarsError, OSError) as exc:
                    raise _naming_inputs(store, files, chunk, exc) from exc
                output.objects_read += len(paths)
                present = set(snaps[KEY].unique().to_list())
                output.skipped.extend(k for k in chunk if k not in present)
                if log:
                    log(
                        f"{len(chunk)} instruments: {snaps.height} {book_type} snapshots -> {len(timeframes)} timeframes"
                    )
                yield {
                    tf.name: book_snapshots_for_timeframe(snaps, day, tf, depth, exchange)
                    for tf in timeframes
                }

    output.chunks = chunks()
    return output


# --- without Dagster: build straight into the store -------------------------------------------------


@dataclass
class BuildSummary:
    """What one build wrote, over all its timeframes: the assets turn it into Dagster metadata."""

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
    objects_read: int = 0
    by_timeframe: dict[str, SliceSummary] = field(default_factory=dict)

    @classmethod
    def of(cls, output: SlicesOutput, slices: Mapping[str, SliceSummary]) -> BuildSummary:
        return cls(
            output.day,
            output.exchange,
            output.timeframes,
            instruments=sorted({k for s in slices.values() for k in s.instruments}),
            rows=sum(s.rows for s in slices.values()),
            bytes=sum(s.bytes for s in slices.values()),
            files=sum(s.files for s in slices.values()),
            deleted_stale=sum(s.deleted_stale for s in slices.values()),
            complete_through_midnight=output.flags.get(COMPLETE_FLAG, "true") == "true",
            skipped=sorted(output.skipped),
            objects_read=output.objects_read,
            by_timeframe=dict(slices),
        )


def build(
    store: ObjectStore, output: SlicesOutput, concurrency: int = DEFAULT_IO_CONCURRENCY
) -> BuildSummary:
    return BuildSummary.of(output, write_output(store, output, concurrency))


def build_base_candles(
    store: ObjectStore, day: date, exchange: str, log: Log | None = None, **options: object
) -> BuildSummary:
    return build(store, base_candles_output(store, day, exchange, log=log, **options))  # pyright: ignore[reportArgumentType]


def build_rolled_up_candles(store: ObjectStore, day: date, exchange: str, timeframe: str) -> BuildSummary:
    finer = get_timeframe(timeframe).finer
    if finer is None:
        raise ValueError(f"timeframe {timeframe} is computed from ticks, not rolled up")
    stored = StoredSlice.open(store, SliceRef(CANDLES_AREA, day, finer, exchange))
    return build(store, rolled_up_output(store, stored, timeframe))


def build_book_snapshots(
    store: ObjectStore,
    day: date,
    exchange: str,
    timeframes: tuple[Timeframe, ...] = TIMEFRAME_TABLE,
    log: Log | None = None,
) -> BuildSummary:
    return build(store, book_snapshots_output(store, day, exchange, timeframes, log=log))
