"""The MFT feature registry: every feature declared once, as data.

Each ``Feature`` names its inputs (candle columns), its window (rows of ``w``), how far back it
reads (``lookback`` buckets before ``T``), its unit, its null rule and its computation: a polars
expression over one instrument's ordered bucket series (``compute.py`` evaluates it over many
instruments at once). The registry drives the computation, the Parquet schema
(``FEATURE_SCHEMA``), the warehouse tables ``features_<tf>``, the Dagster asset descriptions, the
partition mapping (how many earlier days each timeframe reads) and docs/FEATURES.md (a test checks
the doc lists exactly this registry). Adding a feature is adding one entry to ``FEATURES``.

Expressions may use the candle columns and the columns of features declared before them. The
series is the instrument's dense bucket grid over D and the earlier days its lookback needs,
crossing midnight; the absence rule (a row of ``[T - lookback, T]`` absent from the lake makes
the feature null) is applied by ``compute.py`` from ``lookback``, never by the expressions.

Point in time: row ``T`` describes ``[T, T + tf)`` and is known at ``available_at = T + tf``.
Every expression only reads rows ``<= T`` (``shift(k >= 0)`` and trailing ``rolling_*``), so no
feature of row ``T`` uses data stamped at or after ``T + tf`` (tested by perturbing the future).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import polars as pl
import pyarrow as pa

from market_data_assets.candles.schema import CANDLE_COLUMN_NAMES, CANDLE_DESCRIPTIONS
from market_data_assets.candles.timeframes import get_timeframe
from market_data_assets.days import US_PER_DAY
from market_data_assets.tardis.formats import INSTRUMENT_KEY_COLUMN

WINDOW = 20
"""Buckets of ``w``: the 20 buckets ending at T, inclusive."""
FEATURE_TIMEFRAMES: tuple[str, ...] = ("1m", "5m", "15m", "1h", "4h", "24h")
"""The candle timeframes that get features (the 15s base is HFT territory: candles carry it)."""


@dataclass(frozen=True)
class Feature:
    name: str
    description: str
    formula: str
    """The definition as docs/FEATURES.md prints it."""
    inputs: tuple[str, ...]
    """Candle columns it reads (earlier features it reads are listed in ``uses``)."""
    window: int
    """Rows of its window ending at T (1: the bucket itself)."""
    lookback: int
    """Buckets before T it reads: ``window - 1``, plus 1 when it uses returns into the window's first bucket."""
    unit: str
    null_rule: str
    expression: Callable[[], pl.Expr]
    uses: tuple[str, ...] = ()

    @property
    def field(self) -> pa.Field:
        return pa.field(self.name, pa.float64(), nullable=True)


# --- the expressions (one instrument's ordered bucket series; rows before T only) ------------

_C = pl.col
_LN2 = math.log(2.0)


def _log_return() -> pl.Expr:
    return (_C("close") / _C("close").shift(1)).log()


def _realized_vol() -> pl.Expr:
    return _C("realized_variance").rolling_sum(WINDOW).sqrt()


def _parkinson_vol() -> pl.Expr:
    traded = _C("trade_count") > 0
    term = pl.when(traded).then((_C("high") / _C("low")).log().pow(2)).otherwise(0.0)
    m = traded.cast(pl.Int64).rolling_sum(WINDOW)
    return pl.when(m > 0).then((term.rolling_sum(WINDOW) / (4.0 * _LN2 * m)).sqrt())


def _zscore_close() -> pl.Expr:
    close = _C("close")
    flat = close.rolling_max(WINDOW) == close.rolling_min(WINDOW)  # std exactly 0, no rounding doubt
    std = close.rolling_std(WINDOW, ddof=1)
    return pl.when(~flat).then((close - close.rolling_mean(WINDOW)) / std)


def _trade_imbalance() -> pl.Expr:
    total = _C("buy_volume") + _C("sell_volume")
    return pl.when(total != 0).then((_C("buy_volume") - _C("sell_volume")) / total)


def _kyle_lambda() -> pl.Expr:
    y = _C("log_return")
    used = y.is_not_null()
    x = pl.when(used).then(_C("buy_volume") - _C("sell_volume"))
    n = used.cast(pl.Int64).rolling_sum(WINDOW)

    def s(e: pl.Expr) -> pl.Expr:
        return e.fill_null(0.0).rolling_sum(WINDOW)

    sx, sy, sxy, sxx = s(x), s(y), s(x * y), s(x * x)
    # Zero variance decided exactly (every used x equal), not from a rounded n*Sxx - Sx^2.
    constant = x.rolling_max(WINDOW, min_samples=1) == x.rolling_min(WINDOW, min_samples=1)
    return pl.when((n >= 3) & ~constant).then((n * sxy - sx * sy) / (n * sxx - sx * sx))


def _amihud() -> pl.Expr:
    term = pl.when((_C("notional") > 0) & _C("log_return").is_not_null()).then(
        _C("log_return").abs() / _C("notional")
    )
    count = term.is_not_null().cast(pl.Int64).rolling_sum(WINDOW)
    return pl.when(count > 0).then(term.fill_null(0.0).rolling_sum(WINDOW) / count)


def _basis_bps() -> pl.Expr:
    return (_C("mark_price") - _C("index_price")) / _C("index_price") * 10_000.0


def _open_interest_change() -> pl.Expr:
    return _C("open_interest") - _C("open_interest").shift(1)


def _ofi() -> pl.Expr:
    return _C("ofi_sum")


_W = f"the {WINDOW} buckets ending at T (w), crossing midnight"

FEATURES: tuple[Feature, ...] = (
    Feature(
        "log_return",
        "log return of the close from the previous bucket of the same instrument (at 00:00 the last bucket of D-1)",
        "ln(close_T / close_{T-1})",
        ("close",),
        window=1,
        lookback=1,
        unit="log return (dimensionless)",
        null_rule="null if either close is null or the previous bucket is absent from the lake",
        expression=_log_return,
    ),
    Feature(
        "realized_vol_20",
        "realized volatility: square root of the summed within-bucket realized variance over w",
        "sqrt(Σ_w realized_variance)",
        ("realized_variance",),
        window=WINDOW,
        lookback=WINDOW - 1,
        unit="log-return units per sqrt(20 buckets)",
        null_rule="null if any bucket of w is absent from the lake",
        expression=_realized_vol,
    ),
    Feature(
        "parkinson_vol_20",
        "Parkinson high-low volatility over the buckets of w that traded",
        "sqrt(Σ ln(high/low)² / (4·ln 2·m)) over the m buckets of w with trade_count > 0",
        ("high", "low", "trade_count"),
        window=WINDOW,
        lookback=WINDOW - 1,
        unit="log-return units per sqrt(bucket)",
        null_rule="null if m = 0 or any bucket of w is absent from the lake",
        expression=_parkinson_vol,
    ),
    Feature(
        "zscore_close_20",
        "z-score of the close against the closes of w",
        "(close_T − mean_w(close)) / std_w(close), std with ddof = 1",
        ("close",),
        window=WINDOW,
        lookback=WINDOW - 1,
        unit="standard deviations",
        null_rule="null if any close in w is null, the std is 0, or any bucket of w is absent",
        expression=_zscore_close,
    ),
    Feature(
        "trade_imbalance",
        "aggressor imbalance of the bucket's traded volume",
        "(buy_volume − sell_volume) / (buy_volume + sell_volume)",
        ("buy_volume", "sell_volume"),
        window=1,
        lookback=0,
        unit="fraction in [-1, 1]",
        null_rule="null when buy_volume + sell_volume = 0",
        expression=_trade_imbalance,
    ),
    Feature(
        "kyle_lambda_20",
        "Kyle's lambda: price impact per unit of signed volume, OLS over w",
        "OLS slope of log_return on (buy_volume − sell_volume) over the buckets of w with non-null log_return",
        ("buy_volume", "sell_volume"),
        window=WINDOW,
        lookback=WINDOW,
        unit="log return per unit of amount (the venue's unit: contracts on inverse venues)",
        null_rule="null with fewer than 3 such buckets, zero variance of the signed volume, or any bucket of "
        "w or the one before it absent from the lake (the first return of w needs it)",
        expression=_kyle_lambda,
        uses=("log_return",),
    ),
    Feature(
        "amihud_20",
        "Amihud illiquidity: mean absolute return per unit of notional over w",
        "mean of abs(log_return) / notional over the buckets of w with notional > 0 and non-null log_return",
        ("notional",),
        window=WINDOW,
        lookback=WINDOW,
        unit="log return per unit of notional (quote currency on linear venues)",
        null_rule="null if no bucket qualifies, or any bucket of w or the one before it is absent from the lake",
        expression=_amihud,
        uses=("log_return",),
    ),
    Feature(
        "basis_bps",
        "mark price premium over the index at the bucket end",
        "(mark_price − index_price) / index_price × 10,000",
        ("mark_price", "index_price"),
        window=1,
        lookback=0,
        unit="basis points",
        null_rule="null if either price is null",
        expression=_basis_bps,
    ),
    Feature(
        "open_interest_change",
        "change of open interest from the previous bucket's end (crossing midnight)",
        "open_interest_T − open_interest_{T−1}",
        ("open_interest",),
        window=1,
        lookback=1,
        unit="the venue's open interest unit (contracts or base currency)",
        null_rule="null if either value is null or the previous bucket is absent from the lake",
        expression=_open_interest_change,
    ),
    Feature(
        "ofi",
        "order-flow imbalance (Cont, Kukanov & Stoikov 2014) of the bucket: the candles' ofi_sum, "
        "summed from the 15s base",
        "Σ over the bucket's level-0 book states n (predecessor n−1 of the day exists, both two-sided) of "
        "e_n = qb_n·[Pb_n ≥ Pb_{n−1}] − qb_{n−1}·[Pb_n ≤ Pb_{n−1}] − qa_n·[Pa_n ≤ Pa_{n−1}] + qa_{n−1}·[Pa_n ≥ Pa_{n−1}]",
        ("ofi_sum",),
        window=1,
        lookback=0,
        unit="amount at the top of book (the venue's unit)",
        null_rule="null when the bucket has no book coverage at all (no two-sided book held, no event)",
        expression=_ofi,
    ),
)
FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)
MAX_LOOKBACK: int = max(f.lookback for f in FEATURES)


def _check_registry() -> None:
    seen: set[str] = set()
    for f in FEATURES:
        unknown = [c for c in f.inputs if c not in CANDLE_COLUMN_NAMES]
        if unknown:
            raise RuntimeError(f"feature {f.name} reads unknown candle columns {unknown}")
        later = [u for u in f.uses if u not in seen]
        if later:
            raise RuntimeError(f"feature {f.name} uses {later}, not declared before it")
        if f.name in seen or f.name in CANDLE_COLUMN_NAMES:
            raise RuntimeError(f"feature name {f.name} is taken")
        if f.lookback < f.window - 1:
            raise RuntimeError(f"feature {f.name}: lookback {f.lookback} shorter than its window")
        seen.add(f.name)


_check_registry()


def lookback_days(timeframe: str) -> int:
    """Earlier days a timeframe's features read: enough for ``MAX_LOOKBACK`` buckets before any T of D
    (1m … 1h: 1; 4h: 4; 24h: 20, because kyle/amihud reach the bucket before their 20-bucket window)."""
    tf = get_timeframe(timeframe)
    return -(-MAX_LOOKBACK * tf.us // US_PER_DAY)


# --- the table ---------------------------------------------------------------------------------

_TS = pa.timestamp("us", tz="UTC")
KEY_COLUMNS: tuple[tuple[str, pa.DataType, str], ...] = (
    (INSTRUMENT_KEY_COLUMN, pa.string(), CANDLE_DESCRIPTIONS[INSTRUMENT_KEY_COLUMN]),
    ("exchange", pa.string(), CANDLE_DESCRIPTIONS["exchange"]),
    ("instrument_type", pa.string(), CANDLE_DESCRIPTIONS["instrument_type"]),
    (
        "density",
        pa.string(),
        "the candles' density: dense files have every bucket of D; sparse ones (options, combos) the buckets "
        "their candles have (the values are computed on the dense grid all the same)",
    ),
    ("timeframe", pa.string(), "1m, 5m, 15m, 1h, 4h or 24h"),
    ("timestamp", _TS, "bucket start T (UTC); the row describes [T, T + timeframe)"),
    (
        "available_at",
        _TS,
        "T + timeframe: when the row is known; no feature of the row uses data stamped at or after it",
    ),
)
FEATURE_SCHEMA: pa.Schema = pa.schema(
    [pa.field(n, t, nullable=False) for n, t, _ in KEY_COLUMNS] + [f.field for f in FEATURES]
)
FEATURE_DESCRIPTIONS: dict[str, str] = {
    **{n: d for n, _, d in KEY_COLUMNS},
    **{f.name: f"{f.description}: {f.formula} [{f.unit}]; {f.null_rule}" for f in FEATURES},
}


def asset_description(timeframe: str) -> str:
    """The Dagster description of ``features_<tf>``: the layout and every feature, from the registry."""
    tf = get_timeframe(timeframe)
    days = lookback_days(timeframe)
    lines = [
        f"MFT features of every instrument with {tf.name} candles on D, computed from `candles_{tf.name}` of D "
        f"and the {days} day(s) before it (the longest lookback is {MAX_LOOKBACK} buckets), on each "
        "instrument's dense bucket grid, windows crossing midnight. Row T describes [T, T + tf) and is known "
        "at `available_at` = T + tf. A missing earlier day makes the windows that need it null "
        f"(`lookback_complete = false`). `processed_features/by_date/day-D/timeframe-{tf.name}/KEY.parquet`; "
        "docs/FEATURES.md.",
        "",
        "| feature | definition | unit | null when |",
        "|---|---|---|---|",
    ]
    lines += [f"| `{f.name}` | {f.formula} | {f.unit} | {f.null_rule} |" for f in FEATURES]
    return "\n".join(lines)


def timeframe_delta(timeframe: str) -> timedelta:
    return get_timeframe(timeframe).duration
