"""The order book as of each bucket's end, per timeframe: an as-of join of snapshots on the grid.

A row labelled with bucket start ``T`` holds the last snapshot stamped strictly before
``T + timeframe`` (exchange time, within the day), i.e. the book a strategy would see when the
bucket closes. Several snapshots with the same timestamp: the last in file order wins, the same
tie rule the candles use. Rows before the day's first snapshot have null levels. Vectorized: one
as-of join by instrument over every instrument of a chunk.
"""

from __future__ import annotations

from datetime import date

import polars as pl

from market_data_assets.candles.compute import _CODE, _T, BUCKET, KEY, DayGrid, identity_columns, ticks_of_day
from market_data_assets.candles.schema import book_level_columns, book_snapshot_schema
from market_data_assets.candles.timeframes import Timeframe, get_timeframe

SNAPSHOT_TS = "snapshot_timestamp"


def snapshots_of_day(book: pl.LazyFrame, day: date, depth: int) -> pl.DataFrame:
    """The day's snapshots of every instrument in ``book`` (day file then next-day file), by
    (instrument, exchange time), one row per timestamp: the last in file order."""
    grid = DayGrid(day, get_timeframe("24h"))  # only its day bounds are used
    levels = book_level_columns(depth)
    ticks = ticks_of_day(book, grid, [pl.col(c) for c in levels])
    rows = (
        ticks.rows
        if _CODE in ticks.rows.columns
        else ticks.rows.with_columns(pl.lit(0, pl.UInt32).alias(_CODE))
    )
    last_of_timestamp = (
        (pl.col(_CODE) != pl.col(_CODE).shift(-1)) | (pl.col(_T) != pl.col(_T).shift(-1))
    ).fill_null(True)
    return ticks.with_keys(rows.filter(last_of_timestamp))


def book_snapshots_for_timeframe(
    snapshots: pl.DataFrame, day: date, timeframe: Timeframe, depth: int, exchange: str
) -> pl.DataFrame:
    """One row per bucket of the day for each instrument of ``snapshots``: the book as of the bucket end."""
    grid = DayGrid(day, timeframe)
    schema = book_snapshot_schema(depth)
    keys = snapshots.select(KEY).unique(maintain_order=True)
    ends = (
        keys.join(grid.frame(), how="cross")
        .with_columns((pl.col(BUCKET) + timeframe.us).alias("_end"))
        .sort(KEY, "_end")
    )
    joined = ends.join_asof(
        snapshots.rename({_T: SNAPSHOT_TS}).sort(KEY, SNAPSHOT_TS),
        left_on="_end",
        right_on=SNAPSHOT_TS,
        by=KEY,
        strategy="backward",
        allow_exact_matches=False,
        coalesce=False,
        check_sortedness=False,
    )
    return joined.with_columns(
        *identity_columns(exchange, timeframe.name),
        pl.col(SNAPSHOT_TS).cast(pl.Datetime("us", "UTC")),
        pl.lit(depth, pl.Int16).alias("book_depth"),
    ).select(schema.names)
