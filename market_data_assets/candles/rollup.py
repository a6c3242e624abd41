"""Roll finer candles up to a coarser timeframe, driven by each column's rule in ``schema.py``.

The input holds many instruments of one day, sorted by (instrument, timestamp), dense or sparse.
Every coarser bucket is the union of the finer buckets whose start truncates to it. The rules
reproduce what the coarser timeframe computed straight from the ticks would give: sums and
maxima of additive features, last values of as-of-bucket-end features, OHLC from the finer
buckets that had trades, and the ratios recomputed from the rolled-up numerators and
denominators (never averaged).

A sparse input omits empty finer buckets. Their only non-zero contribution is the book held at
the previous bucket's end state (``close_spread`` …): each row therefore adds the held time up to
the next present row (cut at its coarser bucket end), and the first row of a coarser bucket the
held time since that bucket's start, at the previous row's state. On a dense input both are zero,
so dense and sparse roll up with one rule, and a coarser bucket exists when a finer one does.
"""

from __future__ import annotations

import polars as pl

from market_data_assets.candles.compute import BUCKET, KEY, fill_empty_ohlc, ratio_expressions
from market_data_assets.candles.schema import (
    BOOK_COVERAGE,
    BOOK_FLOW_SUMS,
    BOOK_STATE_OF_INTEGRAL,
    CANDLE_COLUMNS,
    CANDLE_SCHEMA,
    Rollup,
)
from market_data_assets.candles.timeframes import Timeframe, get_timeframe
from market_data_assets.days import US_PER_DAY

_TRADED = pl.col("trade_count") > 0


def _traded(col: pl.Expr) -> pl.Expr:
    """The value where the finer bucket had trades, else null (an aggregation then skips it).

    Masking per row and aggregating with null-skipping kernels keeps polars on its fast grouped
    path; ``filter`` inside an aggregation would evaluate an expression per group."""
    return pl.when(_TRADED).then(col)


def _aggregation(name: str, rule: Rollup, nullable: bool = False) -> pl.Expr | None:
    col = pl.col(name)
    if rule is Rollup.SUM and nullable:  # null only when every finer value is (BOOK_FLOW_SUMS)
        return pl.when(col.is_not_null().any()).then(col.sum())
    match rule:
        case Rollup.OPEN:
            return _traded(col).first(ignore_nulls=True)
        case Rollup.HIGH:
            return _traded(col).max()
        case Rollup.LOW:
            return _traded(col).min()
        case Rollup.LAST:
            return col.last()
        case Rollup.SUM:
            return col.sum()
        case Rollup.MAX:
            return col.max()
        case Rollup.KEY:
            return None if name == KEY else col.first()
        case Rollup.TIMEFRAME | Rollup.BUCKET | Rollup.RATIO:
            return None  # the coarser label, the group key, or derived after aggregation
    raise AssertionError(f"no roll-up for rule {rule!r}")


_AGGREGATIONS: list[pl.Expr] = [
    expr.alias(c.name)
    for c in CANDLE_COLUMNS
    if (expr := _aggregation(c.name, c.rollup, c.nullable)) is not None
]


def _with_held_book(finer: pl.LazyFrame, finer_width: int, width: int) -> pl.LazyFrame:
    """Adds to each row's book sums the time the book was held after it (and before it, for the
    first row of a coarser bucket) in buckets the input omits."""
    b = pl.col("_b")
    coarse = pl.col(BUCKET)
    run = pl.col("_run")  # the instrument's run id: integer comparisons, not string ones
    same_next = (run == run.shift(-1)).fill_null(False)
    same_prev = (run == run.shift(1)).fill_null(False)
    day_end = b // US_PER_DAY * US_PER_DAY + US_PER_DAY
    next_b = pl.when(same_next).then(b.shift(-1)).otherwise(day_end)
    first_in_coarse = (~same_prev) | (coarse != coarse.shift(1)).fill_null(True)
    held = finer.with_columns(
        (pl.min_horizontal(next_b, coarse + width) - (b + finer_width)).alias("_after"),
        pl.when(first_in_coarse).then(b - coarse).otherwise(0).alias("_before"),
        *(
            pl.when(same_prev).then(pl.col(s).shift(1)).alias(f"_prev_{s}")
            for s in BOOK_STATE_OF_INTEGRAL.values()
        ),
    )

    def covered(state: str, duration: str) -> pl.Expr:
        return pl.when(pl.col(state).is_not_null()).then(pl.col(duration)).otherwise(0)

    def integral(state: str, duration: str) -> pl.Expr:
        return (pl.col(state) * pl.col(duration)).fill_null(0.0)

    held_covered = covered("close_spread", "_after") + covered("_prev_close_spread", "_before")
    return held.with_columns(
        (pl.col(BOOK_COVERAGE) + held_covered).alias(BOOK_COVERAGE),
        # Omitted buckets held a two-sided book without events: they make a flow sum 0, not null.
        *(
            pl.when(held_covered > 0).then(pl.col(f).fill_null(0.0)).otherwise(pl.col(f)).alias(f)
            for f in BOOK_FLOW_SUMS
        ),
        *(
            (pl.col(name) + integral(state, "_after") + integral(f"_prev_{state}", "_before")).alias(name)
            for name, state in BOOK_STATE_OF_INTEGRAL.items()
        ),
    )


def _sorted_by_instrument_and_time(df: pl.DataFrame) -> bool:
    """Whether each instrument's rows are together and in time order (what the slices hold)."""
    runs = df.select(pl.col(KEY).rle_id().alias("run"), pl.col("timestamp"))
    same = runs["run"] == runs["run"].shift(1)
    rising = (runs["timestamp"] > runs["timestamp"].shift(1)) | ~same
    return int(runs["run"][-1]) + 1 == df[KEY].n_unique() and bool(rising.fill_null(True).all())


def rollup(finer: pl.DataFrame, timeframe: Timeframe) -> pl.DataFrame:
    """Candles of ``timeframe`` from finer candles (any finer timeframe, many instruments, one day each)."""
    if finer.height == 0:
        return finer.clear()
    finer_tfs = finer["timeframe"].unique().to_list()
    if len(finer_tfs) != 1:
        raise ValueError(f"rollup expects one finer timeframe, got {sorted(finer_tfs)}")
    finer_width = get_timeframe(finer_tfs[0]).us
    width = timeframe.us
    if width % finer_width or width <= finer_width:
        raise ValueError(f"cannot roll {finer_tfs[0]} up to {timeframe.name}")
    if not _sorted_by_instrument_and_time(finer):
        finer = finer.sort(KEY, "timestamp", maintain_order=True)
    rows = (
        finer.lazy()
        .with_columns(pl.col("timestamp").cast(pl.Int64).alias("_b"))
        .with_columns((pl.col("_b") // width * width).alias(BUCKET))
        .with_columns(pl.col(KEY).rle_id().cast(pl.Int64).alias("_run"))
        # Group id: (instrument run, coarser bucket since the epoch) in one Int64, in row order.
        .with_columns((pl.col("_run") * (1 << 32) + pl.col(BUCKET) // width).alias("_g"))
    )
    # Hash grouping, then a sort: a roll-up's groups hold a few finer rows each, and polars' sorted
    # (slice) grouping pays per group (20x slower on 365k groups of 1-4 rows, measured).
    return (
        _with_held_book(rows, finer_width, width)
        .group_by("_g")
        .agg(pl.col(KEY).first(), pl.col(BUCKET).first(), *_AGGREGATIONS)
        .sort("_g")
        .with_columns(fill_empty_ohlc())
        .with_columns(ratio_expressions())
        .with_columns(
            pl.lit(timeframe.name, pl.String).alias("timeframe"),
            pl.col(BUCKET).cast(pl.Datetime("us", "UTC")).alias("timestamp"),
        )
        .select(CANDLE_SCHEMA.names)
        .collect()
    )
