"""Candles of many instruments of one exchange-day at once, straight from their ticks (the 15s base).

Pure functions over polars frames: no storage, no Dagster. Each tick frame holds the rows of
many instruments (column ``instrument_key``), each instrument's rows together: its day file
followed by its next-day file, in file order (``sources.scan_exchange_day`` lays them out so).
``ticks_of_day`` keeps the rows whose exchange ``timestamp`` falls in the day and orders them by
(instrument, timestamp) with a stable sort, so file order breaks ties. Every ``*_features``
function then returns one row per (instrument, bucket) that has ticks of its source, and
``assemble_candles`` joins them, lays dense instruments on the full grid of the day and fills
empty buckets (``fill_empty_buckets``). Definitions are in docs/CANDLES.md; every one of them is
additive or a last value, which is what makes the roll-up in ``rollup.py`` exact.

Vectorized: one pass over all instruments of a chunk, grouped by an integer id
``instrument * buckets_per_day + bucket`` that is sorted by construction, so polars splits groups
at boundaries instead of hashing. One instrument with 5 M trades and 3,000 thin options cost the
same per row.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

import polars as pl

from market_data_assets.candles.density import DEFAULT_POLICY, DensityPolicy
from market_data_assets.candles.schema import (
    BOOK_COVERAGE,
    BOOK_FLOW_SUMS,
    BOOK_STATE_OF_INTEGRAL,
    CANDLE_COLUMNS,
    CANDLE_SCHEMA,
    Rollup,
)
from market_data_assets.candles.timeframes import BASE_TIMEFRAME, Timeframe
from market_data_assets.days import US_PER_DAY, day_start_us
from market_data_assets.errors import MarketDataError
from market_data_assets.polars_arrow import polars_schema
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
TOP_OF_BOOK: tuple[str, str, str, str] = tuple(  # pyright: ignore[reportAssignmentType]
    get_spec("book_snapshot_5").column(n).name
    for n in ("ask_price_0", "ask_amount_0", "bid_price_0", "bid_amount_0")
)
"""Top-of-book columns every book source is normalized to (quotes are renamed to these)."""

KEY = INSTRUMENT_KEY_COLUMN
BUCKET = "bucket"
"""Internal integer bucket start (epoch microseconds); becomes the ``timestamp`` column."""
_T = "_t"
"""Internal integer exchange timestamp (epoch microseconds)."""
_CODE = "_code"
"""Internal integer id of the instrument within one tick frame, increasing in row order."""
_G = "_g"
"""Internal group id ``_code * buckets_per_day + bucket index``: sorted once the ticks are."""
_OFFSET_BITS = 37
"""2**37 us > 1 day: ``_code << 37 | (t - day start)`` orders by (instrument, time) in one Int64."""


class CandleInputError(MarketDataError, ValueError):
    """Ticks that cannot make a candle (non-positive price, negative amount); names the files."""


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

    @property
    def width(self) -> int:
        return self.timeframe.us

    def frame(self) -> pl.DataFrame:
        return pl.DataFrame(
            {BUCKET: pl.int_range(self.start_us, self.end_us, self.width, eager=True, dtype=pl.Int64)}
        )


@dataclass(frozen=True)
class DayRows:
    """One source's rows of the day, ordered by (instrument, exchange time), and their instruments.

    The rows carry the instrument as the integer ``_CODE`` (its run in file order), not the key:
    a 5 M-row day would otherwise drag a key column through every sort and merge.
    """

    rows: pl.DataFrame
    keys: pl.Series
    """``keys[code]`` is the instrument key of ``_CODE == code``."""

    def with_keys(self, frame: pl.DataFrame) -> pl.DataFrame:
        """``frame``'s ``_CODE`` replaced by the ``KEY`` column (for frames far smaller than the rows)."""
        return frame.with_columns(self.keys.gather(frame[_CODE]).alias(KEY)).drop(_CODE)


def ticks_of_day(
    ticks: pl.LazyFrame, grid: DayGrid, columns: list[pl.Expr], key: str | None = None
) -> DayRows:
    """Rows stamped inside the day with ``_CODE``, ``_T`` and ``columns``, ordered by (instrument,
    exchange time); stable, so file order breaks ties.

    ``key``: the frame is one instrument's and has no ``KEY`` column (nothing to read or sort by).
    """
    # Filter on the stored column itself so the bounds reach Parquet row-group statistics.
    lo, hi = (pl.lit(v, pl.Int64).cast(pl.Datetime("us", "UTC")) for v in (grid.start_us, grid.end_us))
    in_day = ticks.filter((pl.col(TS) >= lo) & (pl.col(TS) < hi))
    if key is not None:
        t = in_day.select(pl.col(TS).cast(pl.Int64).alias(_T), *columns).collect()
        return DayRows(
            order_by_exchange_time(t).with_columns(pl.lit(0, pl.UInt32).alias(_CODE)), pl.Series([key])
        )
    t = (
        in_day.select(pl.col(KEY), pl.col(TS).cast(pl.Int64).alias(_T), *columns)
        .with_columns(pl.col(KEY).rle_id().alias(_CODE))
        .collect()
    )
    run_starts = (pl.col(_CODE) != pl.col(_CODE).shift(1)).fill_null(True)
    keys = t.filter(run_starts)[KEY].cast(pl.String)
    t = t.drop(KEY)
    if len(keys) <= 1:
        return DayRows(order_by_exchange_time(t), keys)  # one instrument: linear for nearly sorted rows
    # Many instruments (thin ones, by the chunking): one stable sort on the combined key.
    order = pl.col(_CODE).cast(pl.Int64) * (1 << _OFFSET_BITS) + (pl.col(_T) - grid.start_us)
    return DayRows(t.sort(order, maintain_order=True), keys)


def order_by_exchange_time(t: pl.DataFrame, column: str = _T) -> pl.DataFrame:
    """A stable sort by ``column`` specialised for nearly sorted input.

    Tardis orders rows by ``local_timestamp``, so exchange timestamps are almost sorted: only rows
    that arrived late (stamped before some earlier row) are out of place. Those few are sorted on
    their own and merged back into the in-order rows, which is linear instead of a full sort. An
    in-order row with the same timestamp as a late row always precedes it in the file (otherwise
    it would be late too), so the left-biased merge keeps file order for ties: a stable sort.
    """
    ts = t[column]
    if ts.is_sorted():
        return t
    in_order = ts >= ts.cum_max()
    if in_order.sum() < t.height // 2:
        return t.sort(column, maintain_order=True)
    head = t.filter(in_order).with_columns(pl.col(column).set_sorted())
    late = t.filter(~in_order).sort(column, maintain_order=True)
    return head.merge_sorted(late, key=column, maintain_order=True)


def _with_group(t: pl.DataFrame, grid: DayGrid) -> pl.DataFrame:
    """Adds the sorted group id ``_G``: instrument code * buckets per day + bucket index."""
    index = (pl.col(_T) - grid.start_us) // grid.width
    group = (
        index
        if _CODE not in t.columns
        else pl.col(_CODE).cast(pl.Int64) * grid.timeframe.buckets_per_day + index
    )
    return t.with_columns(group.alias(_G).set_sorted())


def _bucket_of_row(grid: DayGrid) -> pl.Expr:
    return grid.start_us + (pl.col(_T) - grid.start_us) // grid.width * grid.width


def _per_bucket(day: DayRows, rows: pl.DataFrame, aggregations: list[pl.Expr], grid: DayGrid) -> pl.DataFrame:
    """Aggregate rows ordered by (instrument, time) per (instrument, bucket), keyed by ``KEY``.

    The group id is sorted, so polars splits groups at boundaries instead of hashing every row:
    about 5x less work for a 5M-row day. Instrument and bucket come back from the group id.
    """
    n = grid.timeframe.buckets_per_day
    out = (
        rows.group_by(_G)
        .agg(aggregations)
        .sort(_G)
        .with_columns(
            (pl.col(_G) // n).cast(pl.UInt32).alias(_CODE),
            (grid.start_us + pl.col(_G) % n * grid.width).alias(BUCKET),
        )
        .drop(_G)
    )
    return day.with_keys(out)


def _same_instrument_as(offset: int, rows: pl.DataFrame) -> pl.Expr:
    if _CODE not in rows.columns:  # one instrument: every row has a neighbour but at the ends
        index = pl.int_range(pl.len())
        return index >= offset if offset > 0 else index < pl.len() + offset
    return (pl.col(_CODE) == pl.col(_CODE).shift(offset)).fill_null(False)


def trade_features(
    trades: pl.LazyFrame,
    grid: DayGrid,
    source: Callable[[str], str] = lambda key: key,
    key: str | None = None,
) -> pl.DataFrame:
    """OHLC, volumes, counts, realized variance and the largest trade per non-empty bucket."""
    day = ticks_of_day(trades, grid, [pl.col(PRICE), pl.col(AMOUNT), pl.col(SIDE)], key)
    t = day.rows
    if t.height and (t[PRICE].min() <= 0 or t[AMOUNT].min() < 0):  # pyright: ignore[reportOperatorIssue]
        bad = t.filter((pl.col(PRICE) <= 0) | (pl.col(AMOUNT) < 0))
        raise CandleInputError(
            f"{source(str(day.keys[bad[_CODE][0]]))}: a trade has a non-positive price or a negative amount"
        )
    log_return = pl.col(PRICE).log().diff()
    if len(day.keys) > 1:  # several instruments: no return across an instrument change
        log_return = pl.when(_same_instrument_as(1, t)).then(log_return)
    is_buy = pl.col(SIDE) == "buy"
    is_sell = pl.col(SIDE) == "sell"
    # Per-trade terms first, then only plain column aggregations: polars runs those on its fast
    # grouped kernels instead of evaluating an expression per group.
    per_trade = _with_group(t, grid).with_columns(
        # The squared log return from the previous trade of the instrument's day belongs to this trade.
        log_return.pow(2).fill_null(0.0).alias("realized_variance"),
        (pl.col(PRICE) * pl.col(AMOUNT)).alias("notional"),
        pl.when(is_buy).then(pl.col(AMOUNT)).otherwise(0.0).alias("buy_volume"),
        pl.when(is_sell).then(pl.col(AMOUNT)).otherwise(0.0).alias("sell_volume"),
        is_buy.alias("buy_count"),
        is_sell.alias("sell_count"),
    )
    return _per_bucket(
        day,
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
        grid,
    )


def book_features(book: pl.LazyFrame, grid: DayGrid, key: str | None = None) -> pl.DataFrame:
    """Time integrals of spread, mid and imbalance, coverage, snapshot count and the end state,
    per bucket that has snapshots.

    The top of book is a step function: each snapshot holds until the next one of the same
    instrument (or the day's end). A snapshot's own segment is cut at its bucket end; the first
    snapshot of a bucket also carries the lead-in segment from the bucket start, held by the
    previous snapshot's state. Buckets without snapshots are filled from the previous bucket's
    end state by ``fill_empty_buckets``. A state counts as covered when both sides are present
    with a positive total size at the top; several snapshots with one timestamp: the last in file
    order is the state (the others hold for zero time).
    """
    ask_p, ask_a, bid_p, bid_a = TOP_OF_BOOK
    day = ticks_of_day(book, grid, [pl.col(c) for c in TOP_OF_BOOK], key)
    s = _with_group(day.rows, grid)
    valid = pl.all_horizontal(pl.col(c).is_not_null() for c in TOP_OF_BOOK) & (
        (pl.col(ask_a) + pl.col(bid_a)) > 0
    )
    states = {
        "close_spread": pl.when(valid).then(pl.col(ask_p) - pl.col(bid_p)),
        "close_mid": pl.when(valid).then((pl.col(ask_p) + pl.col(bid_p)) / 2),
        "close_imbalance": pl.when(valid).then(
            (pl.col(bid_a) - pl.col(ask_a)) / (pl.col(bid_a) + pl.col(ask_a))
        ),
    }
    next_t = pl.when(_same_instrument_as(-1, s)).then(pl.col(_T).shift(-1)).otherwise(grid.end_us)
    s = s.with_columns(_order_flow(s, valid))
    first_in_bucket = (pl.col(_G) != pl.col(_G).shift(1)).fill_null(True)
    bucket = _bucket_of_row(grid)
    s = s.with_columns(**states).with_columns(
        (pl.min_horizontal(next_t, bucket + grid.width) - pl.col(_T)).alias("_own"),
        pl.when(first_in_bucket).then(pl.col(_T) - bucket).otherwise(0).alias("_lead"),
        *(pl.when(_same_instrument_as(1, s)).then(pl.col(c).shift(1)).alias(f"_prev_{c}") for c in states),
    )

    def held(state: str, duration: str) -> pl.Expr:
        return (pl.col(state) * pl.col(duration)).fill_null(0.0)

    def covered(state: str, duration: str) -> pl.Expr:
        return pl.when(pl.col(state).is_not_null()).then(pl.col(duration)).otherwise(0)

    segments = s.with_columns(
        (covered("close_spread", "_own") + covered("_prev_close_spread", "_lead")).alias(BOOK_COVERAGE),
        *(
            (held(f"_prev_{state}", "_lead") + held(state, "_own")).alias(integral)
            for integral, state in BOOK_STATE_OF_INTEGRAL.items()
        ),
    )
    return (
        _per_bucket(
            day,
            segments,
            [
                pl.col(BOOK_COVERAGE).sum().cast(pl.Int64),
                *(pl.col(integral).sum() for integral in BOOK_STATE_OF_INTEGRAL),
                pl.len().cast(pl.Int64).alias("snapshot_count"),
                *(pl.col(state).last() for state in states),
                pl.col(OFI).sum(),
                pl.col(_OFI_EVENTS).sum(),
            ],
            grid,
        )
        .with_columns(
            # No book at all in the bucket (no covered time, no event): null, not 0.
            pl.when((pl.col(BOOK_COVERAGE) > 0) | (pl.col(_OFI_EVENTS) > 0)).then(pl.col(OFI)).alias(OFI)
        )
        .drop(_OFI_EVENTS)
    )


OFI = "ofi_sum"
_OFI_EVENTS = "_ofi_events"


def _order_flow(s: pl.DataFrame, valid: pl.Expr) -> list[pl.Expr]:
    """Each state's order-flow event e_n (Cont, Kukanov & Stoikov 2014) against the previous state
    of the same instrument (ordered rows of the day), where both are two-sided; 0 otherwise, and
    ``_OFI_EVENTS`` says whether it counted."""
    ask_p, ask_a, bid_p, bid_a = TOP_OF_BOOK
    pb, qb, pa, qa = (pl.col(c) for c in (bid_p, bid_a, ask_p, ask_a))
    pb0, qb0, pa0, qa0 = (pl.col(c).shift(1) for c in (bid_p, bid_a, ask_p, ask_a))
    counted = valid & valid.shift(1).fill_null(False) & _same_instrument_as(1, s)
    e = (
        pl.when(pb >= pb0).then(qb).otherwise(0.0)
        - pl.when(pb <= pb0).then(qb0).otherwise(0.0)
        - pl.when(pa <= pa0).then(qa).otherwise(0.0)
        + pl.when(pa >= pa0).then(qa0).otherwise(0.0)
    )
    return [
        pl.when(counted).then(e).otherwise(0.0).alias(OFI),
        counted.cast(pl.Int64).alias(_OFI_EVENTS),
    ]


def derivative_features(ticker: pl.LazyFrame, grid: DayGrid, key: str | None = None) -> pl.DataFrame:
    """Last non-null value of each derivative field per bucket (carried forward on the grid later)."""
    day = ticks_of_day(ticker, grid, [pl.col(c) for c in DERIVATIVE_FIELDS], key)
    return _per_bucket(
        day,
        _with_group(day.rows, grid),
        [pl.col(c).drop_nulls().last().alias(c) for c in DERIVATIVE_FIELDS],
        grid,
    )


def liquidation_features(liquidations: pl.LazyFrame, grid: DayGrid, key: str | None = None) -> pl.DataFrame:
    """Liquidated amount and count per side per bucket."""
    day = ticks_of_day(liquidations, grid, [pl.col(AMOUNT), pl.col(SIDE)], key)
    t = _with_group(day.rows, grid)
    is_buy = pl.col(SIDE) == "buy"
    is_sell = pl.col(SIDE) == "sell"
    per_row = t.with_columns(
        pl.when(is_buy).then(pl.col(AMOUNT)).otherwise(0.0).alias("liquidation_buy_volume"),
        pl.when(is_sell).then(pl.col(AMOUNT)).otherwise(0.0).alias("liquidation_sell_volume"),
        is_buy.alias("liquidation_buy_count"),
        is_sell.alias("liquidation_sell_count"),
    )
    return _per_bucket(
        day,
        per_row,
        [
            pl.col("liquidation_buy_volume").sum(),
            pl.col("liquidation_sell_volume").sum(),
            pl.col("liquidation_buy_count").sum().cast(pl.Int64),
            pl.col("liquidation_sell_count").sum().cast(pl.Int64),
        ],
        grid,
    )


# --- assembly: rows of the grid, empty buckets filled --------------------------------------------

_ZERO_FILLED = tuple(
    c.name
    for c in CANDLE_COLUMNS
    if c.rollup is Rollup.SUM
    and c.name != BOOK_COVERAGE
    and c.name not in BOOK_STATE_OF_INTEGRAL
    and c.name not in BOOK_FLOW_SUMS
)
_CARRIED = ("close", *DERIVATIVE_FIELDS)
"""Last-value columns whose null means "nothing reported yet": an empty bucket carries the last one."""
_BOOK_STATES = tuple(BOOK_STATE_OF_INTEGRAL.values())
"""End-of-bucket book state: null is a state of its own (one-sided book), so it is carried with
a NaN sentinel rather than by forward-filling nulls."""
_DERIVED_LATER = frozenset(
    c.name for c in CANDLE_COLUMNS if c.rollup in (Rollup.RATIO, Rollup.KEY, Rollup.TIMEFRAME, Rollup.BUCKET)
)
"""Columns no feature frame provides: identity, bucket label and ratios are derived in assembly."""
_POLARS_TYPES: dict[str, pl.DataType] = dict(polars_schema(CANDLE_SCHEMA))
"""Polars dtype of each candle column, for the all-null columns of a missing data type."""


def ratio_expressions() -> list[pl.Expr]:
    """vwap and the time-weighted means: numerator / denominator, null when the denominator is 0."""
    return [
        pl.when(pl.col(den) != 0).then(pl.col(num) / pl.col(den)).otherwise(None).alias(c.name)
        for c in CANDLE_COLUMNS
        if c.rollup is Rollup.RATIO
        for num, den in [c.ratio_of]
    ]


def fill_empty_ohlc() -> list[pl.Expr]:
    """An empty bucket after the first trade is flat at the last close (null before it)."""
    empty = pl.col("trade_count") == 0
    return [
        pl.when(empty).then(pl.col("close")).otherwise(pl.col(c)).alias(c) for c in ("open", "high", "low")
    ]


def identity_columns(exchange: str, timeframe: str, policy: DensityPolicy | None = None) -> list[pl.Expr]:
    """Columns derived from the key and the partition; ``density`` from ``policy`` when given."""
    instrument_type = pl.col(KEY).str.split(":").list.get(1)
    out = [
        pl.col(KEY).cast(pl.String),
        pl.lit(exchange, pl.String).alias("exchange"),
        instrument_type.alias("instrument_type"),
        pl.lit(timeframe, pl.String).alias("timeframe"),
        pl.col(BUCKET).cast(pl.Datetime("us", "UTC")).alias("timestamp"),
    ]
    if policy is not None:
        out.append(policy.expression(instrument_type).alias("density"))
    return out


def fill_empty_buckets(df: pl.DataFrame, width: int, fresh_book: pl.Expr) -> pl.DataFrame:
    """Fill rows that have no ticks of some source, the way a bucket without ticks is defined.

    ``df`` is sorted by (instrument, bucket). Counts and sums become 0, ``close`` and the
    derivative fields carry the instrument's last value, and where ``fresh_book`` is false the
    book holds the previous bucket's end state for the whole width (coverage and integrals from
    it). Shared by the candles from ticks and by ``density.densify``, so a filled bucket is the
    same whichever way it was made.
    """
    nan = float("nan")
    carried_state = {
        s: pl.when(fresh_book).then(pl.col(s).fill_null(nan)).forward_fill().over(KEY).fill_nan(None)
        for s in _BOOK_STATES
    }
    df = df.with_columns(
        *(pl.col(c).fill_null(0) for c in _ZERO_FILLED),
        *(pl.col(c).forward_fill().over(KEY) for c in _CARRIED),
        *(expr.alias(s) for s, expr in carried_state.items()),
        fresh_book.alias("_fresh_book"),
    )
    held = pl.col("_fresh_book").not_()
    return df.with_columns(
        pl.when(held)
        .then(pl.when(pl.col("close_spread").is_not_null()).then(width).otherwise(0))
        .otherwise(pl.col(BOOK_COVERAGE).fill_null(0))
        .cast(pl.Int64)
        .alias(BOOK_COVERAGE),
        *(
            pl.when(held)
            .then((pl.col(state) * width).fill_null(0.0))
            .otherwise(pl.col(integral).fill_null(0.0))
            .alias(integral)
            for integral, state in BOOK_STATE_OF_INTEGRAL.items()
        ),
        # A held book has no event: 0 while it is two-sided, null (no book) otherwise.
        *(
            pl.when(held)
            .then(pl.when(pl.col("close_spread").is_not_null()).then(pl.lit(0.0)))
            .otherwise(pl.col(flow))
            .alias(flow)
            for flow in BOOK_FLOW_SUMS
        ),
    ).drop("_fresh_book")


def _with_missing_columns(df: pl.DataFrame) -> pl.DataFrame:
    missing = [n for n in CANDLE_SCHEMA.names if n not in df.columns and n not in _DERIVED_LATER]
    return df.with_columns(pl.lit(None, _POLARS_TYPES[n]).alias(n) for n in missing)


def assemble_candles(
    grid: DayGrid,
    exchange: str,
    trades: pl.DataFrame,
    features: list[pl.DataFrame],
    policy: DensityPolicy = DEFAULT_POLICY,
) -> pl.DataFrame:
    """Candles in ``CANDLE_SCHEMA`` order, sorted by (instrument, timestamp), from per-bucket frames.

    Only instruments that traded on the day get candles. Dense instruments get every bucket of
    the day; sparse ones the buckets with ticks of any source.
    """
    traded = trades.select(KEY).unique()
    keyed = [f.join(traded, on=KEY, how="semi") for f in features]
    observed = pl.concat([trades.select(KEY, BUCKET), *(f.select(KEY, BUCKET) for f in keyed)])
    instrument_type = pl.col(KEY).str.split(":").list.get(1)
    dense_keys = traded.filter(policy.is_dense(instrument_type))
    rows = (
        pl.concat([observed.join(dense_keys, on=KEY, how="anti"), dense_keys.join(grid.frame(), how="cross")])
        .unique()
        .sort(KEY, BUCKET)
    )
    df = rows.join(trades, on=[KEY, BUCKET], how="left")
    for f in keyed:
        df = df.join(f, on=[KEY, BUCKET], how="left")
    df = _with_missing_columns(df)
    return (
        fill_empty_buckets(df, grid.width, pl.col("snapshot_count").is_not_null())
        .with_columns(fill_empty_ohlc())
        .with_columns(ratio_expressions())
        .with_columns(identity_columns(exchange, grid.timeframe.name, policy))
        .select(CANDLE_SCHEMA.names)
    )


@dataclass(frozen=True)
class DayTicks:
    """Lazy tick frames of many instruments (column ``instrument_key``), each instrument's day
    file followed by its next-day file; book frames normalized to ``TOP_OF_BOOK``."""

    trades: pl.LazyFrame
    book: pl.LazyFrame | None = None
    derivative_ticker: pl.LazyFrame | None = None
    liquidations: pl.LazyFrame | None = None
    source: Callable[[str], str] = lambda key: key
    """Where an instrument's ticks came from, for error messages."""
    key: str | None = None
    """Set when the frames hold ONE instrument and no ``instrument_key`` column (nothing to sort by)."""


def compute_base_candles(
    ticks: DayTicks,
    day: date,
    exchange: str,
    timeframe: Timeframe = BASE_TIMEFRAME,
    policy: DensityPolicy = DEFAULT_POLICY,
) -> pl.DataFrame:
    """Candles of every instrument in ``ticks`` that traded on ``day`` (15s in production)."""
    grid = DayGrid(day, timeframe)
    trades = trade_features(ticks.trades, grid, ticks.source, ticks.key)
    features = []
    if ticks.book is not None:
        features.append(book_features(ticks.book, grid, ticks.key))
    if ticks.derivative_ticker is not None:
        features.append(derivative_features(ticks.derivative_ticker, grid, ticks.key))
    if ticks.liquidations is not None:
        features.append(liquidation_features(ticks.liquidations, grid, ticks.key))
    return assemble_candles(grid, exchange, trades, features, policy)


@dataclass(frozen=True)
class InstrumentDayTicks:
    """Lazy tick frames of ONE instrument for the day's file followed by the next day's file."""

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
    policy: DensityPolicy = DEFAULT_POLICY,
) -> pl.DataFrame | None:
    """Candles of one instrument-day (the vectorized path with one instrument); None if it did not trade."""

    df = compute_base_candles(
        DayTicks(
            trades=ticks.trades,
            book=ticks.book,
            derivative_ticker=ticks.derivative_ticker,
            liquidations=ticks.liquidations,
            source=lambda _: ticks.source or key,
            key=key,
        ),
        day,
        exchange,
        timeframe,
        policy,
    )
    return df if df.height else None
