"""Sparse candles back onto the dense grid of their day, exactly as the dense computation gives them.

An omitted bucket of a sparse file had no ticks of any source, so it is what the dense
computation makes of an empty bucket: zero counts and sums, the last close (OHLC flat at it),
the last derivative values, and the book held at the previous bucket's end state for the whole
width. ``compute.fill_empty_buckets`` is that rule, shared with the candles from ticks.
"""

from __future__ import annotations

import polars as pl

from market_data_assets.candles.compute import (
    BUCKET,
    KEY,
    fill_empty_buckets,
    fill_empty_ohlc,
    ratio_expressions,
)
from market_data_assets.candles.density import Density
from market_data_assets.candles.schema import CANDLE_SCHEMA
from market_data_assets.candles.timeframes import get_timeframe
from market_data_assets.days import US_PER_DAY

_IDENTITY = ("exchange", "instrument_type", "timeframe")


def densify(candles: pl.DataFrame) -> pl.DataFrame:
    """Every bucket of each (instrument, day) present in ``candles`` (one timeframe), sorted.

    Dense rows pass through unchanged; an instrument absent on a day (it did not trade) stays
    absent, as in dense files.
    """
    if candles.height == 0:
        return candles
    timeframes = candles["timeframe"].unique().to_list()
    if len(timeframes) != 1:
        raise ValueError(f"densify expects one timeframe, got {sorted(timeframes)}")
    width = get_timeframe(timeframes[0]).us
    rows = candles.with_columns(
        pl.col("timestamp").cast(pl.Int64).alias(BUCKET), pl.lit(True).alias("_present")
    ).with_columns((pl.col(BUCKET) // US_PER_DAY * US_PER_DAY).alias("_day"))
    days = rows.select(KEY, "_day").unique()
    grid = days.with_columns(
        pl.int_ranges(pl.col("_day"), pl.col("_day") + US_PER_DAY, width, dtype=pl.Int64).alias(BUCKET)
    ).explode(BUCKET)
    identity = rows.group_by(KEY).agg(pl.col(c).first() for c in _IDENTITY)
    out = []
    for (_,), part in (
        grid.join(rows.drop(*_IDENTITY), on=[KEY, "_day", BUCKET], how="left")
        .join(identity, on=KEY, how="left")
        .sort(KEY, BUCKET)
        .partition_by("_day", as_dict=True, maintain_order=True)
        .items()
    ):
        filled = fill_empty_buckets(part, width, pl.col("_present").fill_null(False))
        out.append(
            filled.with_columns(fill_empty_ohlc())
            .with_columns(ratio_expressions())
            .with_columns(
                pl.col(BUCKET).cast(pl.Datetime("us", "UTC")).alias("timestamp"),
                pl.lit(Density.DENSE.value).alias("density"),
            )
            .select(CANDLE_SCHEMA.names)
        )
    return pl.concat(out).sort(KEY, "timestamp")
