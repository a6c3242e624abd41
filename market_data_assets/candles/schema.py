"""The candle and per-timeframe book snapshot tables, as data.

``CANDLE_COLUMNS`` is the single source of truth for the candle table: the Parquet schema
(``CANDLE_SCHEMA``), the warehouse tables ``candles_<tf>`` and the roll-up from one timeframe to
the next coarser one are all derived from it. Each column names its roll-up rule, so the roll-up
code never spells a feature by hand and a new feature cannot be added without saying how it rolls
up. Every rule is chosen so that rolling 15s candles up to any timeframe gives what computing
that timeframe straight from the ticks gives (exactly for counts, extremes and last values; up
to floating-point summation order for sums of floats). See docs/CANDLES.md.

Book snapshots per timeframe (``book_snapshot_schema``) reuse the tick spec's level columns
(``ask_price_0`` …) from ``tardis/formats.py``: their names are never re-spelled here.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import pyarrow as pa

from market_data_assets.tardis.formats import INSTRUMENT_KEY_COLUMN, get_spec


class Rollup(StrEnum):
    """How a column of a coarser candle is obtained from the finer candles inside it."""

    KEY = "key"
    """Identity column, constant within an instrument's file (instrument_key, exchange, type)."""
    TIMEFRAME = "timeframe"
    """The coarser timeframe's own label."""
    BUCKET = "bucket"
    """The coarser bucket start: the finer timestamp truncated to the coarser duration."""
    OPEN = "open"
    """Open of the first finer bucket that has trades; the carried close when none has."""
    HIGH = "high"
    """Max of highs over finer buckets with trades; the carried close when none has."""
    LOW = "low"
    """Min of lows over finer buckets with trades; the carried close when none has."""
    LAST = "last"
    """The last finer bucket's value (close, and every as-of-bucket-end value)."""
    SUM = "sum"
    """Sum; for a nullable column (``BOOK_FLOW_SUMS``) null when every finer value is null."""
    MAX = "max"
    """Max ignoring nulls; null when every finer value is null."""
    RATIO = "ratio"
    """Recomputed as numerator / denominator from the rolled-up columns; null when the denominator is 0."""


@dataclass(frozen=True)
class CandleColumn:
    name: str
    arrow_type: pa.DataType
    nullable: bool
    description: str
    rollup: Rollup
    numerator: str | None = None
    """For ``Rollup.RATIO``: the summed column divided ..."""
    denominator: str | None = None
    """... by this summed column."""

    @property
    def field(self) -> pa.Field:
        return pa.field(self.name, self.arrow_type, nullable=self.nullable)

    @property
    def ratio_of(self) -> tuple[str, str]:
        """``(numerator, denominator)`` of a ``Rollup.RATIO`` column; any other column has none."""
        if self.numerator is None or self.denominator is None:
            raise ValueError(f"candle column {self.name!r} is not a ratio")
        return self.numerator, self.denominator


_TS = pa.timestamp("us", tz="UTC")
_F64 = pa.float64()
_I64 = pa.int64()
_STR = pa.string()


def _c(
    name: str,
    arrow_type: pa.DataType,
    rollup: Rollup,
    description: str,
    *,
    nullable: bool = False,
    ratio: tuple[str, str] | None = None,
) -> CandleColumn:
    num, den = ratio if ratio else (None, None)
    return CandleColumn(name, arrow_type, nullable, description, rollup, num, den)


CANDLE_COLUMNS: tuple[CandleColumn, ...] = (
    # --- identity --------------------------------------------------------------------------
    _c(INSTRUMENT_KEY_COLUMN, _STR, Rollup.KEY, "canonical instrument key VENUE:TYPE:SYMBOL"),
    _c("exchange", _STR, Rollup.KEY, "Tardis exchange id"),
    _c("instrument_type", _STR, Rollup.KEY, "TYPE field of the key: SPOT_PAIR, PERP, FUTURE, OPTION, COMBO"),
    _c(
        "density",
        _STR,
        Rollup.KEY,
        "dense (every bucket of the day) or sparse (only buckets with ticks); the instrument type's "
        "policy, docs/CANDLES.md",
    ),
    _c("timeframe", _STR, Rollup.TIMEFRAME, "15s, 1m, 5m, 15m, 1h, 4h or 24h"),
    _c(
        "timestamp",
        _TS,
        Rollup.BUCKET,
        "bucket start (UTC); the bucket is [timestamp, timestamp + timeframe) of exchange time",
    ),
    # --- trades ----------------------------------------------------------------------------
    _c(
        "open",
        _F64,
        Rollup.OPEN,
        "first trade price; the previous close in an empty bucket; null before the day's first trade",
        nullable=True,
    ),
    _c("high", _F64, Rollup.HIGH, "highest trade price (previous close if empty)", nullable=True),
    _c("low", _F64, Rollup.LOW, "lowest trade price (previous close if empty)", nullable=True),
    _c(
        "close",
        _F64,
        Rollup.LAST,
        "last trade price at or before the bucket end (within the day); null before the first trade",
        nullable=True,
    ),
    _c("volume", _F64, Rollup.SUM, "sum of trade amounts, in the venue's unit (contracts on inverse)"),
    _c("notional", _F64, Rollup.SUM, "sum of price * amount (quote currency for linear/spot)"),
    _c(
        "vwap",
        _F64,
        Rollup.RATIO,
        "notional / volume: amount-weighted mean price; null without trades",
        nullable=True,
        ratio=("notional", "volume"),
    ),
    _c("trade_count", _I64, Rollup.SUM, "number of trades"),
    _c("buy_volume", _F64, Rollup.SUM, "volume of trades whose aggressor bought"),
    _c("sell_volume", _F64, Rollup.SUM, "volume of trades whose aggressor sold"),
    _c("buy_count", _I64, Rollup.SUM, "number of buyer-initiated trades"),
    _c("sell_count", _I64, Rollup.SUM, "number of seller-initiated trades (side unknown counts in neither)"),
    _c(
        "realized_variance",
        _F64,
        Rollup.SUM,
        "sum of squared log returns between consecutive trades of the day, each assigned to the "
        "later trade's bucket (the day's first trade contributes nothing)",
    ),
    _c(
        "max_trade_amount",
        _F64,
        Rollup.MAX,
        "largest single trade amount; null without trades",
        nullable=True,
    ),
    # --- book (time-weighted over the part of the bucket with a two-sided book) -------------
    _c(
        "book_covered_us",
        _I64,
        Rollup.SUM,
        "microseconds of the bucket during which a two-sided top of book was known (the accumulator "
        "that makes the time-weighted features roll up exactly)",
    ),
    _c(
        "spread_time_integral",
        _F64,
        Rollup.SUM,
        "integral of (best ask - best bid) over covered time, price*us",
    ),
    _c(
        "mid_time_integral",
        _F64,
        Rollup.SUM,
        "integral of (best ask + best bid) / 2 over covered time, price*us",
    ),
    _c(
        "imbalance_time_integral",
        _F64,
        Rollup.SUM,
        "integral of top-of-book imbalance (bid_amount - ask_amount) / (bid_amount + ask_amount) over covered time",
    ),
    _c(
        "twa_spread",
        _F64,
        Rollup.RATIO,
        "time-weighted mean spread; null without book coverage",
        nullable=True,
        ratio=("spread_time_integral", "book_covered_us"),
    ),
    _c(
        "twa_mid",
        _F64,
        Rollup.RATIO,
        "time-weighted mean mid price; null without book coverage",
        nullable=True,
        ratio=("mid_time_integral", "book_covered_us"),
    ),
    _c(
        "twa_imbalance",
        _F64,
        Rollup.RATIO,
        "time-weighted mean top-of-book imbalance in [-1, 1]; null without book coverage",
        nullable=True,
        ratio=("imbalance_time_integral", "book_covered_us"),
    ),
    _c("snapshot_count", _I64, Rollup.SUM, "book snapshots (or quotes) stamped inside the bucket"),
    _c(
        "close_spread",
        _F64,
        Rollup.LAST,
        "best ask - best bid of the top of book at the bucket end; null when it was one-sided or unknown",
        nullable=True,
    ),
    _c(
        "close_mid",
        _F64,
        Rollup.LAST,
        "(best ask + best bid) / 2 at the bucket end; null likewise",
        nullable=True,
    ),
    _c(
        "close_imbalance",
        _F64,
        Rollup.LAST,
        "top-of-book imbalance at the bucket end; null likewise",
        nullable=True,
    ),
    _c(
        "ofi_sum",
        _F64,
        Rollup.SUM,
        "order-flow imbalance (Cont, Kukanov & Stoikov 2014): sum over the bucket's level-0 book states n "
        "(whose predecessor n-1 of the day exists and both are two-sided) of e_n = qb_n[Pb_n >= Pb_n-1] - "
        "qb_n-1[Pb_n <= Pb_n-1] - qa_n[Pa_n <= Pa_n-1] + qa_n-1[Pa_n >= Pa_n-1], in the venue's amount unit; "
        "0 in a covered bucket without such a pair; null when the bucket has no book coverage at all",
        nullable=True,
    ),
    # --- derivative ticker (as of the bucket end, carried forward within the day) -----------
    _c("mark_price", _F64, Rollup.LAST, "last mark price reported before the bucket end", nullable=True),
    _c("index_price", _F64, Rollup.LAST, "last index price reported before the bucket end", nullable=True),
    _c("funding_rate", _F64, Rollup.LAST, "last funding rate reported before the bucket end", nullable=True),
    _c(
        "open_interest", _F64, Rollup.LAST, "last open interest reported before the bucket end", nullable=True
    ),
    # --- liquidations ----------------------------------------------------------------------
    _c("liquidation_buy_volume", _F64, Rollup.SUM, "liquidated amount on buy orders (shorts liquidated)"),
    _c("liquidation_sell_volume", _F64, Rollup.SUM, "liquidated amount on sell orders (longs liquidated)"),
    _c("liquidation_buy_count", _I64, Rollup.SUM, "number of buy-side liquidations"),
    _c("liquidation_sell_count", _I64, Rollup.SUM, "number of sell-side liquidations"),
)

CANDLE_SCHEMA: pa.Schema = pa.schema([c.field for c in CANDLE_COLUMNS])

BOOK_COVERAGE = "book_covered_us"
BOOK_STATE_OF_INTEGRAL: dict[str, str] = {
    "spread_time_integral": "close_spread",
    "mid_time_integral": "close_mid",
    "imbalance_time_integral": "close_imbalance",
}
"""Each book time integral and the end-of-bucket state it integrates.

A bucket without a book update holds the state of the previous bucket's end for its whole
width: its integral is ``state * width`` and its coverage ``width`` where the state is known.
That rule fills the empty buckets of a sparse file (densify, roll-up) exactly as a dense
computation from the ticks would have filled them.
"""
BOOK_FLOW_SUMS: tuple[str, ...] = ("ofi_sum",)
"""Sums of book events (nullable SUM columns): 0 over time the book was held two-sided without an
event, null when a bucket has neither coverage nor an event (no book at all). A nullable SUM rolls up
to null exactly when every finer value is null, which keeps that rule exact under roll-up, sparse
roll-up and densify (a zero-duration two-sided state can carry an event in a bucket without
coverage: its event still counts, so the bucket is not null)."""
CANDLE_COLUMN_NAMES: tuple[str, ...] = tuple(c.name for c in CANDLE_COLUMNS)
CANDLE_DESCRIPTIONS: dict[str, str] = {c.name: c.description for c in CANDLE_COLUMNS}


# --- book snapshots per timeframe ------------------------------------------------------------

BOOK_SNAPSHOT_DEPTH = 5
"""Default depth: the levels of ``book_snapshot_5``, the book type most targets download."""
BOOK_SNAPSHOT_DEPTHS: tuple[int, ...] = (5, 25)
"""A file has depth 25 when the instrument's ``book_snapshot_25`` was downloaded, else 5."""
BOOK_SNAPSHOT_TABLE_DEPTH = 25
"""Depth of the warehouse tables ``book_snapshots_<tf>``: a depth-5 file leaves levels 5..24 null."""

BOOK_SNAPSHOT_KEY_COLUMNS: tuple[tuple[str, pa.DataType, bool, str], ...] = (
    (INSTRUMENT_KEY_COLUMN, _STR, False, "canonical instrument key"),
    ("exchange", _STR, False, "Tardis exchange id"),
    ("instrument_type", _STR, False, "TYPE field of the key"),
    ("timeframe", _STR, False, "15s, 1m, 5m, 15m, 1h, 4h or 24h"),
    (
        "timestamp",
        _TS,
        False,
        "bucket START (UTC); the row is the book as of the bucket END: the last snapshot stamped "
        "strictly before timestamp + timeframe",
    ),
    (
        "snapshot_timestamp",
        _TS,
        True,
        "exchange timestamp of that snapshot (its age shows staleness); null before the day's first snapshot",
    ),
    ("book_depth", pa.int16(), False, "levels per side this file carries: 5 or 25"),
)


def book_level_columns(depth: int) -> tuple[str, ...]:
    """``ask_price_0, ask_amount_0, bid_price_0, bid_amount_0, ...`` exactly as the tick spec names them."""
    if depth not in BOOK_SNAPSHOT_DEPTHS:
        raise ValueError(f"book snapshot depth {depth!r} is not one of {BOOK_SNAPSHOT_DEPTHS}")
    spec = get_spec(f"book_snapshot_{depth}")
    return tuple(c.name for c in spec.columns if c.name.startswith(("ask_", "bid_")))


def book_snapshot_schema(depth: int = BOOK_SNAPSHOT_DEPTH) -> pa.Schema:
    """Schema of ``processed_book_snapshots/.../KEY.parquet`` for a book of ``depth`` levels."""
    fields = [pa.field(n, t, nullable=nullable) for n, t, nullable, _ in BOOK_SNAPSHOT_KEY_COLUMNS]
    fields += [pa.field(n, _F64, nullable=True) for n in book_level_columns(depth)]
    return pa.schema(fields)
