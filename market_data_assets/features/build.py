"""One exchange-day's features at one timeframe, as a lazily produced ``SlicesOutput``.

The inputs are the stored candle slices of D and of the earlier days the registry's lookback
needs (``lookback_days``), as the slices IO manager hands them to the asset; a day whose slice
was never materialized is ``None``. D's instruments are processed in chunks of whole
instruments sized by grid rows (instruments x buckets over the lookback span), each chunk's files
of every day read concurrently; memory holds one chunk. Every file carries the slice flags in its
Parquet metadata: ``lookback_complete`` (every earlier day was there; otherwise the windows that
need a missing day are null) and ``complete_through_midnight`` (inherited from the candles).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import date, timedelta

import polars as pl
import pyarrow as pa

from market_data_assets.candles.timeframes import get_timeframe
from market_data_assets.features.compute import CANDLE_INPUTS, compute_features
from market_data_assets.features.registry import FEATURE_SCHEMA, FEATURE_TIMEFRAMES, lookback_days
from market_data_assets.storage.base import ObjectStore
from market_data_assets.storage.frames import scan_files
from market_data_assets.storage.layout import CANDLES_AREA, FEATURES_AREA
from market_data_assets.storage.parallel import DEFAULT_IO_CONCURRENCY
from market_data_assets.storage.slices import (
    SliceRef,
    SlicesOutput,
    SliceSummary,
    StoredSlice,
    write_output,
)

LOOKBACK_FLAG = "lookback_complete"
COMPLETE_FLAG = "complete_through_midnight"
MISSING_DAYS_FLAG = "missing_lookback_days"
DEFAULT_GRID_ROWS = 1_000_000
"""Grid rows (instruments x buckets of the lookback span) per chunk: about 100 MB of columns."""


def _schema(_: pl.DataFrame) -> pa.Schema:
    return FEATURE_SCHEMA


def lookback_span(day: date, timeframe: str) -> list[date]:
    """The days whose candles the features of ``day`` read, oldest first, ``day`` last."""
    n = lookback_days(timeframe)
    return [day - timedelta(days=n - i) for i in range(n + 1)]


def features_output(
    store: ObjectStore,
    day: date,
    exchange: str,
    timeframe: str,
    candles: Mapping[date, StoredSlice | None],
    *,
    concurrency: int = DEFAULT_IO_CONCURRENCY,
    grid_rows: int = DEFAULT_GRID_ROWS,
) -> SlicesOutput:
    """Features of ``timeframe`` for ``day`` from the stored candle slices of its lookback span."""
    if timeframe not in FEATURE_TIMEFRAMES:
        raise ValueError(f"no features at {timeframe}; feature timeframes: {', '.join(FEATURE_TIMEFRAMES)}")
    span = lookback_span(day, timeframe)
    of_day = candles.get(day)
    if of_day is None:
        raise FileNotFoundError(f"candles_{timeframe} of {day}|{exchange} are not materialized")
    for d, stored in candles.items():
        if stored is not None and (stored.ref.timeframe != timeframe or stored.ref.exchange != exchange):
            raise ValueError(f"features {timeframe} {exchange}: got the candle slice {stored.ref} for {d}")
    missing = [d for d in span[:-1] if candles.get(d) is None]
    earlier = [stored for d in span[:-1] if (stored := candles.get(d)) is not None]
    flags = {
        LOOKBACK_FLAG: "false" if missing else "true",
        MISSING_DAYS_FLAG: ",".join(d.isoformat() for d in missing),
        COMPLETE_FLAG: "true"
        if all(s.flag(COMPLETE_FLAG, "true") == "true" for s in [*earlier, of_day])
        else "false",
    }
    output = SlicesOutput(FEATURES_AREA, day, exchange, (timeframe,), iter(()), _schema, flags=flags)
    paths_by_day = [{f.path.rsplit("/", 1)[-1][: -len(".parquet")]: f.path for f in s.files} for s in earlier]
    per_key = len(span) * get_timeframe(timeframe).buckets_per_day
    keys = sorted(of_day.keys)
    chunk_keys = max(1, grid_rows // per_key)
    day_paths = {k: p.path for k, p in zip(of_day.keys, of_day.files, strict=True)}

    def chunks() -> Iterator[Mapping[str, pl.DataFrame]]:
        for i in range(0, len(keys), chunk_keys):
            chunk = keys[i : i + chunk_keys]
            paths = [p[k] for p in paths_by_day for k in chunk if k in p] + [day_paths[k] for k in chunk]
            output.objects_read += len(paths)
            frame = _read_inputs(store, paths, concurrency)
            yield {timeframe: compute_features(frame, day, timeframe)}

    output.chunks = chunks()
    return output


def _read_inputs(store: ObjectStore, paths: list[str], concurrency: int) -> pl.DataFrame:
    """The candle columns features read, from every file: the project's multi-file read
    (``storage.frames``: polars in place on a folder, one GET per object on ``gs://``)."""
    return scan_files(store, paths, list(CANDLE_INPUTS), concurrency=concurrency).collect()


def open_lookback(
    store: ObjectStore, day: date, exchange: str, timeframe: str
) -> dict[date, StoredSlice | None]:
    """The stored candle slices of the lookback span (``None`` where never materialized), without Dagster."""
    out: dict[date, StoredSlice | None] = {}
    for d in lookback_span(day, timeframe):
        try:
            out[d] = StoredSlice.open(store, SliceRef(CANDLES_AREA, d, timeframe, exchange))
        except FileNotFoundError:
            out[d] = None
    return out


def build_features(
    store: ObjectStore, day: date, exchange: str, timeframe: str, **options: int
) -> SliceSummary:
    """Compute and write one exchange-day's features (tests, scripts): what the asset does."""
    output = features_output(
        store, day, exchange, timeframe, open_lookback(store, day, exchange, timeframe), **options
    )
    return write_output(store, output, options.get("concurrency", DEFAULT_IO_CONCURRENCY))[timeframe]
