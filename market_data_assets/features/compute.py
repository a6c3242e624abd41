"""Features of many instruments at once, on their dense bucket grids, windows crossing midnight.

Input: the candles of one timeframe for a set of instruments over D and the earlier days the
registry's longest lookback needs (as stored: dense or sparse, an instrument absent on a day it
did not trade). Every instrument gets the SAME regular grid of buckets from the first lookback
day's midnight to D's end; the buckets a sparse file omits are filled by ``candles.densify``'s
rule (``_densified``: only the columns features read, in one pass), and the rows of days the
lake has no candles for are flagged absent. Because every instrument's run
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

from market_data_assets.candles.density import Density
from market_data_assets.candles.timeframes import get_timeframe
from market_data_assets.days import US_PER_DAY, day_start_us
from market_data_assets.features.registry import FEATURE_SCHEMA, FEATURES, MAX_LOOKBACK, lookback_days
from market_data_assets.polars_arrow import to_polars
from market_data_assets.tardis.formats import INSTRUMENT_KEY_COLUMN

KEY = INSTRUMENT_KEY_COLUMN
_B = "_b"
_PRESENT = "_present"
_STORED = "_stored"
_IDENTITY = ("exchange", "instrument_type", "density")
_CODE = "_code"
_DAY = "_day"
_I = "_i"
_CARRIED = ("close", "mark_price", "index_price", "open_interest", "close_spread")
"""As-of-bucket-end candle values an omitted (empty) bucket carries from the previous one, within the day."""
_ZERO = ("trade_count", "buy_volume", "sell_volume", "notional", "realized_variance", "volume")
_SERIES_COLUMNS = tuple(sorted({c for f in FEATURES for c in f.inputs} | set(_CARRIED) | set(_ZERO)))
CANDLE_INPUTS: tuple[str, ...] = (KEY, "timeframe", "timestamp", *_IDENTITY, *_SERIES_COLUMNS)
"""The candle columns ``compute_features`` reads (the rest need not be loaded)."""


def _densified() -> list[pl.Expr]:
    """The feature inputs of buckets a sparse file omits, by ``candles.densify``'s rule (an omitted
    bucket had no ticks): zero counts and sums, the close, derivative values and book end state
    carried from the previous bucket of the same instrument-day (null before the first), OHLC flat
    at the close, ``ofi_sum`` 0 while the carried book is two-sided and null otherwise. Only the
    columns features read, in one pass over the sorted grid: a NaN sentinel at each midnight and at
    stored nulls stops the forward fill from crossing days or instruments (candle values are never
    NaN). Tested equal to the dense computation's features."""
    stored = pl.col(_STORED)
    midnight = pl.col(_B) % US_PER_DAY == 0
    nan = float("nan")

    def carried(c: str) -> pl.Expr:
        return (
            pl.when(stored)
            .then(pl.col(c).fill_null(nan))
            .when(midnight)
            .then(pl.lit(nan))
            .otherwise(None)
            .forward_fill()
            .fill_nan(None)
            .alias(c)
        )

    close = carried("close")
    return [
        *(carried(c) for c in _CARRIED),
        *(pl.when(stored).then(pl.col(c)).otherwise(close).alias(c) for c in ("high", "low")),
        *(pl.when(stored).then(pl.col(c)).otherwise(0).alias(c) for c in _ZERO),
        pl.when(stored)
        .then(pl.col("ofi_sum"))
        .when(carried("close_spread").is_not_null())
        .then(pl.lit(0.0))
        .alias("ofi_sum"),
    ]


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
        return to_polars(FEATURE_SCHEMA.empty_table())
    identity = (
        of_day.group_by(KEY)
        .agg(pl.col(c).first() for c in _IDENTITY)
        .sort(KEY)
        .with_row_index(_CODE)
        .with_columns(pl.col(_CODE).cast(pl.Int64))
    )
    # Integer positions on the grid: instrument code * buckets of the span + bucket index, so the
    # grid is built and joined on one sorted Int64 instead of (key string, bucket).
    span = (hi - lo) // tf.us
    span_days = (hi - lo) // US_PER_DAY
    rows = rows.join(identity.select(KEY, _CODE), on=KEY, how="inner").with_columns(
        (pl.col(_CODE) * span + (pl.col(_B) - lo) // tf.us).alias(_I),
        (pl.col(_CODE) * span_days + (pl.col(_B) - lo) // US_PER_DAY).alias(_DAY),
    )
    days = rows.select(_DAY).unique().with_columns(pl.lit(1, pl.Int32).alias(_PRESENT))
    grid = pl.DataFrame(
        {_I: pl.int_range(0, identity.height * span, dtype=pl.Int64, eager=True)}
    ).with_columns(
        (pl.col(_I) // span).alias(_CODE),
        (lo + pl.col(_I) % span * tf.us).alias(_B),
    )
    series = (
        grid.with_columns((pl.col(_CODE) * span_days + (pl.col(_B) - lo) // US_PER_DAY).alias(_DAY))
        .join(
            rows.select(_I, *_SERIES_COLUMNS).with_columns(pl.lit(True).alias(_STORED)),
            on=_I,
            how="left",
            maintain_order="left",
        )
        .join(days, on=_DAY, how="left", maintain_order="left")
        .with_columns(pl.col(_PRESENT).fill_null(0), pl.col(_STORED).fill_null(False))
        .with_columns(_densified())
    )
    lazy = series.lazy()
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
        .join(identity.lazy(), on=_CODE, how="left", maintain_order="left")
        .filter((pl.col("density") != Density.SPARSE.value) | pl.col(_STORED))
        .with_columns(
            pl.lit(tf.name).alias("timeframe"),
            pl.col(_B).cast(pl.Datetime("us", "UTC")).alias("timestamp"),
            (pl.col(_B) + tf.us).cast(pl.Datetime("us", "UTC")).alias("available_at"),
        )
        .select(FEATURE_SCHEMA.names)
        .collect()
    )
    return out
