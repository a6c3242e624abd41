"""Features of many instruments at once, on their dense bucket grids, windows crossing midnight.

Input: the candles of one timeframe for a set of instruments over D and the earlier days the
registry's longest lookback needs (as stored: dense or sparse, an instrument absent on a day it
did not trade). Sparse rows are densified first (``candles.densify``: exactly the dense rows),
then every instrument gets the SAME regular grid of buckets from the first lookback day's
midnight to D's end, rows the lake does not hold flagged absent. Because every instrument's run
has the same length and D's rows sit at least ``MAX_LOOKBACK`` rows into it, the registry's
expressions (``shift`` and trailing ``rolling_*``) run over the whole chunk in one vectorized
pass, per instrument (``over`` its sorted integer code, so a rolling kernel's floating-point state
never carries another instrument's, possibly later, rows). The absence
rule is applied once per feature from its ``lookback``: a feature of row T is null when any row
of ``[T - lookback, T]`` is absent.
"""

from __future__ import annotations

from datetime import date, timedelta

import polars as pl

from market_data_assets.candles.densify import densify
from market_data_assets.candles.density import Density
from market_data_assets.candles.timeframes import get_timeframe
from market_data_assets.days import US_PER_DAY, day_start_us
from market_data_assets.features.registry import FEATURE_SCHEMA, FEATURES, MAX_LOOKBACK, lookback_days
from market_data_assets.tardis.formats import INSTRUMENT_KEY_COLUMN

KEY = INSTRUMENT_KEY_COLUMN
_B = "_b"
_PRESENT = "_present"
_STORED = "_stored"
_CODE = "_code"
_IDENTITY = ("exchange", "instrument_type", "density")


def compute_features(candles: pl.DataFrame, day: date, timeframe: str) -> pl.DataFrame:
    """``FEATURE_SCHEMA`` rows of ``day`` for every instrument with candles on ``day``.

    ``candles``: candle rows (``CANDLE_SCHEMA``) of ``timeframe`` for ``day`` and any earlier days
    (those before ``day - lookback_days`` are ignored), many instruments, any order. A dense
    instrument gets every bucket of D; a sparse one the buckets its candles of D have.
    """
    tf = get_timeframe(timeframe)
    first_day = day - timedelta(days=lookback_days(timeframe))
    lo, d0, hi = day_start_us(first_day), day_start_us(day), day_start_us(day) + US_PER_DAY
    if (d0 - lo) // tf.us < MAX_LOOKBACK:
        raise AssertionError(f"{timeframe}: the grid leaves fewer than {MAX_LOOKBACK} buckets before D")
    if candles.height and candles["timeframe"].unique().to_list() != [tf.name]:
        raise ValueError(
            f"compute_features({timeframe}) got candles of {candles['timeframe'].unique().to_list()}"
        )
    rows = candles.with_columns(pl.col("timestamp").cast(pl.Int64).alias(_B)).filter(
        (pl.col(_B) >= lo) & (pl.col(_B) < hi)
    )
    of_day = rows.filter(pl.col(_B) >= d0)
    if of_day.height == 0:
        return pl.from_arrow(FEATURE_SCHEMA.empty_table())  # type: ignore[return-value]
    identity = of_day.group_by(KEY).agg(pl.col(c).first() for c in _IDENTITY).sort(KEY)
    stored = of_day.select(KEY, _B).with_columns(pl.lit(True).alias(_STORED))
    # Only D's instruments matter; densify their rows of every day (exact dense rows).
    rows = rows.join(identity.select(KEY), on=KEY, how="semi")
    sparse = rows.filter(pl.col("density") == Density.SPARSE.value)
    if sparse.height:
        densified = densify(sparse.drop(_B)).with_columns(pl.col("timestamp").cast(pl.Int64).alias(_B))
        rows = pl.concat(
            [rows.filter(pl.col("density") != Density.SPARSE.value), densified], how="diagonal_relaxed"
        )
    grid = (
        identity.select(KEY).with_columns(pl.int_ranges(lo, hi, tf.us, dtype=pl.Int64).alias(_B)).explode(_B)
    )
    inputs = sorted({c for f in FEATURES for c in f.inputs})
    series = grid.join(
        rows.select(KEY, _B, *inputs).with_columns(pl.lit(1, pl.Int32).alias(_PRESENT)),
        on=[KEY, _B],
        how="left",
        maintain_order="left",
    ).with_columns(pl.col(_PRESENT).fill_null(0))
    lazy = series.lazy().with_columns(pl.col(KEY).rle_id().alias(_CODE))
    present = pl.col(_PRESENT)
    for f in FEATURES:
        value = f.expression()
        if f.lookback:
            value = pl.when(present.rolling_sum(f.lookback + 1) == f.lookback + 1).then(value)
        # Per instrument: a rolling kernel's floating-point state never carries another
        # instrument's rows (which may be later in time) into this one's values.
        lazy = lazy.with_columns(value.over(_CODE).cast(pl.Float64).alias(f.name))
    out = (
        lazy.filter(pl.col(_B) >= d0)
        .join(stored.lazy(), on=[KEY, _B], how="left", maintain_order="left")
        .join(identity.lazy(), on=KEY, how="left", maintain_order="left")
        .filter((pl.col("density") != Density.SPARSE.value) | pl.col(_STORED).fill_null(False))
        .with_columns(
            pl.lit(tf.name).alias("timeframe"),
            pl.col(_B).cast(pl.Datetime("us", "UTC")).alias("timestamp"),
            (pl.col(_B) + tf.us).cast(pl.Datetime("us", "UTC")).alias("available_at"),
        )
        .select(FEATURE_SCHEMA.names)
        .collect()
    )
    return out
