"""The order book as of each bucket's end, per timeframe: an as-of join of snapshots on the grid.

A row labelled with bucket start ``T`` holds the last snapshot stamped strictly before
``T + timeframe`` (exchange time, within the day), i.e. the book a strategy would see when the
bucket closes. Several snapshots with the same timestamp: the last in file order wins, the same
tie rule the candles use. Rows before the day's first snapshot have null levels.
"""

from __future__ import annotations

from datetime import date

import polars as pl

from market_data_assets.candles.compute import _T, BUCKET, DayGrid, identity_columns, ticks_of_day
from market_data_assets.candles.schema import book_level_columns, book_snapshot_schema
from market_data_assets.candles.timeframes import Timeframe, get_timeframe

SNAPSHOT_TS = "snapshot_timestamp"


def snapshots_of_day(book: pl.LazyFrame, day: date, depth: int) -> pl.DataFrame:
    """The day's snapshots (day file then next-day file), by exchange time, one row per timestamp."""
    grid = DayGrid(day, get_timeframe("24h"))  # only its day bounds are used
    levels = book_level_columns(depth)
    snaps = ticks_of_day(book, grid, [pl.col(c) for c in levels])
    return snaps.unique(_T, keep="last", maintain_order=True)


def book_snapshots_for_timeframe(
    snapshots: pl.DataFrame, day: date, timeframe: Timeframe, depth: int, key: str, exchange: str
) -> pl.DataFrame:
    """One row per bucket of the day: the book as of the bucket end, in ``book_snapshot_schema(depth)``."""
    grid = DayGrid(day, timeframe)
    schema = book_snapshot_schema(depth)
    ends = grid.frame().with_columns((pl.col(BUCKET) + timeframe.us).alias("_end"))
    joined = ends.join_asof(
        snapshots.rename({_T: SNAPSHOT_TS}),
        left_on="_end",
        right_on=SNAPSHOT_TS,
        strategy="backward",
        allow_exact_matches=False,
        coalesce=False,
        check_sortedness=False,
    )
    return joined.with_columns(
        *identity_columns(key, exchange, timeframe.name),
        pl.col(SNAPSHOT_TS).cast(pl.Datetime("us", "UTC")),
        pl.lit(depth, pl.Int16).alias("book_depth"),
    ).select(schema.names)
