"""Candles of one instrument-day straight from its ticks (the 15s base of the roll-up chain).

Pure functions over polars frames: no storage, no Dagster. Each ``*_features`` function takes the
instrument's ticks of the day's file followed by the next day's file (rows in file order), keeps
the rows whose exchange ``timestamp`` falls in the day, orders them by that timestamp (a stable
sort, so file order breaks ties) and returns one row per non-empty bucket keyed by ``bucket``
(bucket start, integer microseconds since the epoch). ``assemble_candles`` lays them on the
dense grid of the day and derives the ratio columns. Definitions are in docs/CANDLES.md; every
one of them is additive or a last value, which is what makes the roll-up in ``rollup.py`` exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import polars as pl

from market_data_assets.candles.schema import CANDLE_COLUMNS, CANDLE_SCHEMA, Rollup
from market_data_assets.candles.timeframes import BASE_TIMEFRAME, Timeframe
from market_data_assets.days import US_PER_DAY, day_start_us
from market_data_assets.tardis.formats import INSTRUMENT_KEY_COLUMN, get_spec

# Tick column names, looked up in the tick spec so a rename there fails here at import.
TS = get_spec("trades").column("timestamp").name
PRICE = get_spec("trades").column("price").name
AMOUNT = get_spec("trades").column("amount").name
SIDE = get_spec("trades").column("side").name
DERIVATIVE_FIELDS: tuple[str, ...] = tuple(
    get_spec("derivative_ticker").column(n).name
    for n in ("mark_price", "index_price", "funding_rate", "open_interest")
)
TOP_OF_BOOK: tuple[str, str, str, str] = tuple(  # type: ignore[assignment]
    get_spec("book_snapshot_5").column(n).name
    for n in ("ask_price_0", "ask_amount_0", "bid_price_0", "bid_amount_0")
)
"""Top-of-book columns every book source is normalized to (quotes are renamed to these)."""

BUCKET = "bucket"
"""Internal integer bucket start (epoch microseconds); becomes the ``timestamp`` column."""
_T = "_t"
"""Internal integer exchange timestamp (epoch microseconds)."""


class TickDataError(ValueError):
    """Ticks that cannot make a candle (non-positive price, negative amount); names the instrument."""


@dataclass(frozen=True)
class DayGrid:
    """The buckets of one day at one timeframe: ``[day_start + i * width, ...)``."""

    day: date
    timeframe: Timeframe

    @property
    def start_us(self) -> int:
        return day_start_us(self.day)

    @property
    def end_us(self) -> int:
        return self.start_us + US_PER_DAY

    def frame(self) -> pl.DataFrame:
        return pl.DataFrame(
            {BUCKET: pl.int_range(self.start_us, self.end_us, self.timeframe.us, eager=True, dtype=pl.Int64)}
        )


def ticks_of_day(ticks: pl.LazyFrame, grid: DayGrid, columns: list[pl.Expr]) -> pl.DataFrame:
    """The rows stamped inside the day, ordered by exchange time (stable: file order breaks ties)."""
    # Filter on the stored column itself so the bounds reach Parquet row-group statistics.
    lo, hi = (pl.lit(v, pl.Int64).cast(pl.Datetime("us", "UTC")) for v in (grid.start_us, grid.end_us))
    t = (
        ticks.filter((pl.col(TS) >= lo) & (pl.col(TS) < hi))
        .select(pl.col(TS).cast(pl.Int64).alias(_T), *columns)
        .collect()
    )
    return order_by_exchange_time(t)


def order_by_exchange_time(t: pl.DataFrame) -> pl.DataFrame:
    """A stable sort by ``_T`` specialised for nearly sorted input.

    Tardis orders rows by ``local_timestamp``, so exchange timestamps are almost sorted: only rows
    that arrived late (stamped before some earlier row) are out of place. Those few are sorted on
    their own and merged back into the in-order rows, which is linear instead of a full sort. An
    in-order row with the same timestamp as a late row always precedes it in the file (otherwise
    it would be late too), so the left-biased merge keeps file order for ties: a stable sort.
    """
    ts = t[_T]
    if ts.is_sorted():
        return t
    in_order = ts >= ts.cum_max()
    if in_order.sum() < t.height // 2:
        return t.sort(_T, maintain_order=True)
    head = t.filter(in_order).with_columns(pl.col(_T).set_sorted())
    late = t.filter(~in_order).sort(_T, maintain_order=True)
    return head.merge_sorted(late, key=_T, maintain_order=True)


def _bucket(width: int) -> pl.Expr:
    return (pl.col(_T) // width * width).alias(BUCKET)


def _per_bucket(rows: pl.DataFrame, aggregations: list[pl.Expr]) -> pl.DataFrame:
    """Aggregate rows already ordered by time (hence by bucket) per bucket.

    The sorted flag on the bucket column lets polars split groups at boundaries instead of
    hashing every row: about 5x less work for a 5M-row day.
    """
    return rows.with_columns(pl.col(BUCKET).set_sorted()).group_by(BUCKET).agg(aggregations)


def trade_features(trades: pl.LazyFrame, grid: DayGrid, source: str = "trades") -> pl.DataFrame:
    """OHLC, volumes, counts, realized variance and the largest trade per non-empty bucket."""
    t = ticks_of_day(trades, grid, [pl.col(PRICE), pl.col(AMOUNT), pl.col(SIDE)])
    if t.height and (t[PRICE].min() <= 0 or t[AMOUNT].min() < 0):  # type: ignore[operator]
        raise TickDataError(f"{source}: a trade has a non-positive price or a negative amount")
    is_buy = pl.col(SIDE) == "buy"
    is_sell = pl.col(SIDE) == "sell"
    # Per-trade terms first, then only plain column aggregations: polars runs those on its fast
    # grouped kernels instead of evaluating an expression per group.
    per_trade = t.with_columns(
        _bucket(grid.timeframe.us),
        # The squared log return from the previous trade of the day belongs to this trade.
        pl.col(PRICE).log().diff().pow(2).fill_null(0.0).alias("realized_variance"),
        (pl.col(PRICE) * pl.col(AMOUNT)).alias("notional"),
        pl.when(is_buy).then(pl.col(AMOUNT)).otherwise(0.0).alias("buy_volume"),
        pl.when(is_sell).then(pl.col(AMOUNT)).otherwise(0.0).alias("sell_volume"),
        is_buy.alias("buy_count"),
        is_sell.alias("sell_count"),
    )
    return _per_bucket(
        per_trade,
        [
            pl.col(PRICE).first().alias("open"),
            pl.col(PRICE).max().alias("high"),
            pl.col(PRICE).min().alias("low"),
            pl.col(PRICE).last().alias("close"),
            pl.col(AMOUNT).sum().alias("volume"),
            pl.col("notional").sum(),
            pl.len().cast(pl.Int64).alias("trade_count"),
            pl.col("buy_volume").sum(),
            pl.col("sell_volume").sum(),
            pl.col("buy_count").sum().cast(pl.Int64),
            pl.col("sell_count").sum().cast(pl.Int64),
            pl.col("realized_variance").sum(),
            pl.col(AMOUNT).max().alias("max_trade_amount"),
        ],
    )


def book_features(book: pl.LazyFrame, grid: DayGrid) -> pl.DataFrame:
    """Time integrals of spread, mid and imbalance, covered time and snapshot count per bucket.

    The top of book is a step function: each snapshot holds until the next one (or the day's
    end). Adding every bucket start as a point carrying the state as of that instant cuts each
    step at bucket boundaries, so each segment lies in exactly one bucket. A segment counts as
    covered when both sides are present with a positive total size at the top.
    """
    ask_p, ask_a, bid_p, bid_a = TOP_OF_BOOK
    snaps = ticks_of_day(book, grid, [pl.col(c) for c in TOP_OF_BOOK]).with_columns(
        pl.lit(1, pl.Int64).alias("_snap")
    )
    state = snaps.unique(_T, keep="last", maintain_order=True).drop("_snap")
    starts = (
        grid.frame()
        .rename({BUCKET: _T})
        .join_asof(state, on=_T, strategy="backward", check_sortedness=False)
        .with_columns(pl.lit(0, pl.Int64).alias("_snap"))
    )
    valid = pl.all_horizontal(pl.col(c).is_not_null() for c in TOP_OF_BOOK) & (
        (pl.col(ask_a) + pl.col(bid_a)) > 0
    )
    dur = pl.when(valid).then(pl.col("_dur")).otherwise(0)
    # Both inputs are ordered by time: a linear merge, no sort. Ties between a snapshot and a
    # bucket start need no rule, as the bucket start carries the last snapshot at that instant.
    points = snaps.select(starts.columns).merge_sorted(starts, key=_T, maintain_order=True)
    segments = points.with_columns(
        (pl.col(_T).shift(-1).fill_null(grid.end_us) - pl.col(_T)).alias("_dur")
    ).select(
        _bucket(grid.timeframe.us),
        dur.alias("_cov"),
        (pl.when(valid).then(pl.col(ask_p) - pl.col(bid_p)) * dur).alias("_spread"),
        (pl.when(valid).then((pl.col(ask_p) + pl.col(bid_p)) / 2) * dur).alias("_mid"),
        (pl.when(valid).then((pl.col(bid_a) - pl.col(ask_a)) / (pl.col(bid_a) + pl.col(ask_a))) * dur).alias(
            "_imb"
        ),
        pl.col("_snap"),
    )
    return _per_bucket(
        segments,
        [
            pl.col("_cov").sum().cast(pl.Int64).alias("book_covered_us"),
            pl.col("_spread").sum().alias("spread_time_integral"),
            pl.col("_mid").sum().alias("mid_time_integral"),
            pl.col("_imb").sum().alias("imbalance_time_integral"),
            pl.col("_snap").sum().cast(pl.Int64).alias("snapshot_count"),
        ],
    )


def derivative_features(ticker: pl.LazyFrame, grid: DayGrid) -> pl.DataFrame:
    """Last non-null value of each derivative field per bucket (carried forward on the grid later)."""
    t = ticks_of_day(ticker, grid, [pl.col(c) for c in DERIVATIVE_FIELDS])
    return _per_bucket(
        t.with_columns(_bucket(grid.timeframe.us)),
        [pl.col(c).drop_nulls().last().alias(c) for c in DERIVATIVE_FIELDS],
    )


def liquidation_features(liquidations: pl.LazyFrame, grid: DayGrid) -> pl.DataFrame:
    """Liquidated amount and count per side per bucket."""
    t = ticks_of_day(liquidations, grid, [pl.col(AMOUNT), pl.col(SIDE)])
    is_buy = pl.col(SIDE) == "buy"
    is_sell = pl.col(SIDE) == "sell"
    per_row = t.select(
        _bucket(grid.timeframe.us),
        pl.when(is_buy).then(pl.col(AMOUNT)).otherwise(0.0).alias("liquidation_buy_volume"),
        pl.when(is_sell).then(pl.col(AMOUNT)).otherwise(0.0).alias("liquidation_sell_volume"),
        is_buy.alias("liquidation_buy_count"),
        is_sell.alias("liquidation_sell_count"),
    )
    return _per_bucket(
        per_row,
        [
            pl.col("liquidation_buy_volume").sum(),
            pl.col("liquidation_sell_volume").sum(),
            pl.col("liquidation_buy_count").sum().cast(pl.Int64),
            pl.col("liquidation_sell_count").sum().cast(pl.Int64),
        ],
    )


_ZERO_FILLED = tuple(c.name for c in CANDLE_COLUMNS if c.rollup is Rollup.SUM)
_CARRIED = ("close", *DERIVATIVE_FIELDS)
"""As-of-bucket-end values: an empty bucket carries the previous bucket's value."""
_DERIVED_LATER = frozenset(
    c.name for c in CANDLE_COLUMNS if c.rollup in (Rollup.RATIO, Rollup.KEY, Rollup.TIMEFRAME, Rollup.BUCKET)
)
"""Columns no feature frame provides: identity, bucket label and ratios are derived in assembly."""
_POLARS_TYPES: dict[str, pl.DataType] = dict(pl.from_arrow(CANDLE_SCHEMA.empty_table()).schema)
"""Polars dtype of each candle column, for the all-null columns of a missing data type."""


def ratio_expressions() -> list[pl.Expr]:
    """vwap and the time-weighted means: numerator / denominator, null when the denominator is 0."""
    return [
        pl.when(pl.col(c.denominator) != 0)
        .then(pl.col(c.numerator) / pl.col(c.denominator))
        .otherwise(None)
        .alias(c.name)
        for c in CANDLE_COLUMNS
        if c.rollup is Rollup.RATIO
    ]


def fill_empty_ohlc() -> list[pl.Expr]:
    """An empty bucket after the first trade is flat at the last close (null before it)."""
    empty = pl.col("trade_count") == 0
    return [
        pl.when(empty).then(pl.col("close")).otherwise(pl.col(c)).alias(c) for c in ("open", "high", "low")
    ]


def identity_columns(key: str, exchange: str, timeframe: str) -> list[pl.Expr]:
    return [
        pl.lit(key, pl.String).alias(INSTRUMENT_KEY_COLUMN),
        pl.lit(exchange, pl.String).alias("exchange"),
        pl.lit(key.split(":")[1], pl.String).alias("instrument_type"),
        pl.lit(timeframe, pl.String).alias("timeframe"),
        pl.col(BUCKET).cast(pl.Datetime("us", "UTC")).alias("timestamp"),
    ]


def assemble_candles(grid: DayGrid, key: str, exchange: str, features: list[pl.DataFrame]) -> pl.DataFrame:
    """The dense candle frame of the day from per-bucket feature frames, in ``CANDLE_SCHEMA`` order."""
    df = grid.frame()
    for f in features:
        df = df.join(f, on=BUCKET, how="left")
    missing = [n for n in CANDLE_SCHEMA.names if n not in df.columns and n not in _DERIVED_LATER]
    df = df.with_columns(pl.lit(None, _POLARS_TYPES[n]).alias(n) for n in missing)
    return (
        df.with_columns(pl.col(c).fill_null(0) for c in _ZERO_FILLED)
        .with_columns(pl.col(c).forward_fill() for c in _CARRIED)
        .with_columns(fill_empty_ohlc())
        .with_columns(ratio_expressions())
        .with_columns(identity_columns(key, exchange, grid.timeframe.name))
        .select(CANDLE_SCHEMA.names)
    )


@dataclass(frozen=True)
class InstrumentDayTicks:
    """Lazy tick frames of one instrument for the day's file followed by the next day's file."""

    trades: pl.LazyFrame
    book: pl.LazyFrame | None = None
    """Normalized to ``timestamp`` + ``TOP_OF_BOOK`` columns (book_snapshot_* or renamed quotes)."""
    derivative_ticker: pl.LazyFrame | None = None
    liquidations: pl.LazyFrame | None = None
    source: str = ""
    """Where the ticks came from, for error messages."""


def compute_candles(
    ticks: InstrumentDayTicks,
    day: date,
    key: str,
    exchange: str,
    timeframe: Timeframe = BASE_TIMEFRAME,
) -> pl.DataFrame | None:
    """Candles of one instrument-day at ``timeframe`` (15s in production); ``None`` if it did not trade."""
    grid = DayGrid(day, timeframe)
    trades = trade_features(ticks.trades, grid, source=ticks.source or key)
    if trades.height == 0:
        return None
    features = [trades]
    if ticks.book is not None:
        features.append(book_features(ticks.book, grid))
    if ticks.derivative_ticker is not None:
        features.append(derivative_features(ticks.derivative_ticker, grid))
    if ticks.liquidations is not None:
        features.append(liquidation_features(ticks.liquidations, grid))
    return assemble_candles(grid, key, exchange, features)
