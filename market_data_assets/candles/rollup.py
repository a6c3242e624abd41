"""Roll finer candles up to a coarser timeframe, driven by each column's rule in ``schema.py``.

The finer frame is one instrument-day on its dense grid, so every coarser bucket is exactly the
union of the finer buckets whose start truncates to it. The rules reproduce what the coarser
timeframe computed straight from the ticks would give: sums and maxima of additive features,
last values of as-of-bucket-end features, OHLC from the finer buckets that had trades, and the
ratios recomputed from the rolled-up numerators and denominators (never averaged).
"""

from __future__ import annotations

import polars as pl

from market_data_assets.candles.compute import BUCKET, fill_empty_ohlc, identity_columns, ratio_expressions
from market_data_assets.candles.schema import CANDLE_COLUMNS, CANDLE_SCHEMA, Rollup
from market_data_assets.candles.timeframes import Timeframe
from market_data_assets.tardis.formats import INSTRUMENT_KEY_COLUMN

_TRADED = pl.col("trade_count") > 0


def _aggregation(name: str, rule: Rollup) -> pl.Expr | None:
    col = pl.col(name)
    match rule:
        case Rollup.OPEN:
            return col.filter(_TRADED).first()
        case Rollup.HIGH:
            return col.filter(_TRADED).max()
        case Rollup.LOW:
            return col.filter(_TRADED).min()
        case Rollup.LAST:
            return col.last()
        case Rollup.SUM:
            return col.sum()
        case Rollup.MAX:
            return col.max()
        case Rollup.KEY | Rollup.TIMEFRAME | Rollup.BUCKET | Rollup.RATIO:
            return None  # the group key, constants, or derived after aggregation
    raise AssertionError(f"no roll-up for rule {rule!r}")


_AGGREGATIONS: list[pl.Expr] = [
    expr.alias(c.name) for c in CANDLE_COLUMNS if (expr := _aggregation(c.name, c.rollup)) is not None
]


def rollup(finer: pl.DataFrame, timeframe: Timeframe) -> pl.DataFrame:
    """Candles of ``timeframe`` from the finer candles of one instrument-day (any finer timeframe)."""
    if finer.height == 0:
        return finer.clear()
    keys = finer.select(INSTRUMENT_KEY_COLUMN, "exchange").unique()
    if keys.height != 1:
        raise ValueError(f"rollup expects one instrument-day, got {keys.height} (instrument, exchange) pairs")
    key, exchange = keys.row(0)
    width = timeframe.us
    return (
        finer.lazy()
        .with_columns((pl.col("timestamp").cast(pl.Int64) // width * width).alias(BUCKET))
        .group_by(BUCKET, maintain_order=True)
        .agg(_AGGREGATIONS)
        .with_columns(fill_empty_ohlc())
        .with_columns(ratio_expressions())
        .with_columns(identity_columns(key, exchange, timeframe.name))
        .select(CANDLE_SCHEMA.names)
        .collect()
    )
