"""Deterministic synthetic market data in Tardis's CSV format, one (exchange, type, day, symbol) at a time.

``generate_csv`` is a pure function of (config, exchange, data_type, day, symbol): the HTTP server
only gzips what it returns. How the files are built, mirroring what real Tardis files do:

- Events are generated per *exchange day* with an exchange ``timestamp`` (ms precision, like the
  real feeds) and a ``local_timestamp`` (µs) a little later; daily files are split and ordered by
  ``local_timestamp``. Every trading day's last trade is stamped just before midnight and reaches
  the collector just after it, so it sits at the top of the NEXT day's file, as in real Tardis.
- Prices follow the shared index path of the instrument's underlying (``prices.py``), quantized to
  the instrument's ``priceIncrement`` *valid at that moment* (its ``changes`` history is honoured,
  e.g. BitMEX XBTUSD ticks at 0.5 before 2024-07-31 04:00 and at 0.1 after); amounts are whole
  multiples of the ``amountIncrement`` valid at that moment.
- Books are never crossed: asks ascend above bids that descend, spread >= one tick.
- Numbers are printed like Tardis prints them: ``2152`` not ``2152.0``, ``8531.5``, empty cells for
  values the exchange does not give, ``true``/``false`` for booleans.
- Nothing is produced outside an instrument's life (before ``listing``, after ``availableTo``) or
  inside an incident window of the exchange.

Size knob (``SandboxConfig.trades_per_day`` = T), per full instrument-day: trades T (options
~T/50), quotes and book_ticker T, book snapshots T/2, incremental_book_L2 one 25-level snapshot +
T updates, derivative_ticker T/10 (>= 24), liquidations ~T/100, options_chain T/40 (>= 2) per option.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import lru_cache

import numpy as np
import polars as pl

from market_data_assets.tardis.formats import get_spec
from market_data_assets.tardis.sandbox.config import SandboxConfig
from market_data_assets.tardis.sandbox.prices import US_PER_DAY, day_index, day_start_us, index_at, rng_for
from market_data_assets.tardis.sandbox.universe import (
    Instrument,
    SymbolGroup,
    _all_instruments,
    _horizon,
    exchange_info,
    incidents,
    known_exchange,
)

_YEAR_US = 365.25 * US_PER_DAY
_BOOK_DEPTH = 25


class SandboxNotFound(LookupError):
    """The request names no exchange / data type / symbol the sandbox offers (HTTP 404)."""


# ----------------------------------------------------------------------------------------------
# number formatting (Tardis style)


def decimals_of(x: float) -> int:
    """Digits after the point of an increment as written: 0.5 -> 1, 0.00001 -> 5, 100 -> 0."""
    exponent = Decimal(repr(float(x))).normalize().as_tuple().exponent
    return max(0, -int(exponent))


def format_units(values: Sequence[int] | np.ndarray, decimals: int) -> list[str]:
    """Integers counting ``10**-decimals`` units -> shortest exact decimal text (``8531.5``, ``2152``)."""
    ints = values.tolist() if isinstance(values, np.ndarray) else [int(v) for v in values]
    if decimals == 0:
        return [str(v) for v in ints]
    scale = 10**decimals
    out = []
    for v in ints:
        q, r = divmod(v, scale)
        out.append(str(q) if r == 0 else f"{q}.{r:0{decimals}d}".rstrip("0"))
    return out


def _decimal_text(column: pl.Expr, decimals: int) -> pl.Expr:
    """Vectorized ``format_units``: negative values become empty cells."""
    if decimals == 0:
        text = column.cast(pl.String)
    else:
        scale = 10**decimals
        whole = (column // scale).cast(pl.String)
        frac = (column % scale).cast(pl.String).str.zfill(decimals).str.strip_chars_end("0")
        text = pl.when(frac == "").then(whole).otherwise(pl.concat_str([whole, pl.lit("."), frac]))
    return pl.when(column < 0).then(pl.lit("")).otherwise(text)


def _csv_cells(columns: dict[str, tuple[np.ndarray, int]]) -> list[str]:
    """Comma-joined decimal text of integer-unit columns, row by row (polars: ~3x Python's speed)."""
    frame = pl.DataFrame({name: values.astype(np.int64) for name, (values, _) in columns.items()})
    joined = frame.select(
        pl.concat_str([_decimal_text(pl.col(n), d) for n, (_, d) in columns.items()], separator=",")
    )
    return joined.to_series().to_list()


def format_float(x: float | None, places: int) -> str:
    """A float rounded to ``places`` digits, trailing zeros dropped; ``None``/NaN -> empty cell."""
    if x is None or not math.isfinite(x):
        return ""
    text = f"{x:.{places}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


# ----------------------------------------------------------------------------------------------
# instrument parameters over time (``changes`` history)


_PARAM_FIELDS = ("priceIncrement", "amountIncrement", "minTradeAmount", "contractMultiplier")


def _parse_iso_us(text: str) -> int:
    moment = datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    return int(moment.timestamp() * 1_000_000)


def params_at(inst: Instrument, moment_us: int) -> dict[str, float]:
    """priceIncrement, amountIncrement, minTradeAmount, contractMultiplier valid at ``moment_us``.

    Tardis ``changes`` entries hold the values valid *before* their ``until``; the earliest entry
    whose ``until`` is after the moment and which names a field gives that field's value.
    """
    current: dict[str, float] = {
        "priceIncrement": inst.price_increment,
        "amountIncrement": inst.amount_increment,
        "minTradeAmount": inst.min_trade_amount,
        "contractMultiplier": inst.contract_multiplier if inst.contract_multiplier is not None else 1,
    }
    resolved: dict[str, float] = {}
    for change in inst.changes:
        if _parse_iso_us(str(change["until"])) > moment_us:
            for name in _PARAM_FIELDS:
                if name in change and name not in resolved:
                    resolved[name] = float(change[name])  # type: ignore[arg-type]
    return {**current, **resolved}


@dataclass(frozen=True)
class _Grid:
    """Per-event price tick and amount lot as scaled integers (units of 10**-decimals)."""

    tick_units: np.ndarray
    price_decimals: int
    lot_units: np.ndarray
    min_lots: np.ndarray
    amount_decimals: int

    @property
    def tick(self) -> np.ndarray:
        return self.tick_units / 10**self.price_decimals


def _grid(inst: Instrument, ts: np.ndarray) -> _Grid:
    bounds = sorted({_parse_iso_us(str(c["until"])) for c in inst.changes})
    segments = [params_at(inst, b - 1) for b in bounds] + [params_at(inst, 2**62)]
    seg = (
        np.searchsorted(np.array(bounds, dtype=np.int64), ts, side="right")
        if bounds
        else np.zeros(len(ts), int)
    )
    pdec = max(decimals_of(s["priceIncrement"]) for s in segments)
    adec = max(decimals_of(s["amountIncrement"]) for s in segments)
    ticks = np.array([round(s["priceIncrement"] * 10**pdec) for s in segments], dtype=np.int64)
    lots = np.array([round(s["amountIncrement"] * 10**adec) for s in segments], dtype=np.int64)
    mins = np.array(
        [max(1, round(s["minTradeAmount"] / s["amountIncrement"])) for s in segments], dtype=np.int64
    )
    return _Grid(ticks[seg], pdec, lots[seg], mins[seg], adec)


# ----------------------------------------------------------------------------------------------
# prices of one instrument


def _norm_cdf(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0)))


def _norm_pdf(x: np.ndarray) -> np.ndarray:
    return np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)


@dataclass(frozen=True)
class OptionMarks:
    price: np.ndarray  # in base currency (Deribit inverse options)
    iv: np.ndarray  # fraction
    delta: np.ndarray
    gamma: np.ndarray
    vega: np.ndarray
    theta: np.ndarray
    rho: np.ndarray
    underlying: np.ndarray


def option_marks(config: SandboxConfig, inst: Instrument, day: date, ts: np.ndarray) -> OptionMarks:
    """Black-Scholes marks with a smile; premiums in the base coin, as Deribit quotes them."""
    assert inst.expiry is not None and inst.strike is not None
    spot = index_at(config.seed, inst.underlying, day, ts)
    expiry_us = int(inst.expiry.timestamp() * 1_000_000)
    t = np.maximum((expiry_us - ts) / _YEAR_US, 1.0 / (365.25 * 24 * 12))
    forward = spot * (1.0 + 0.05 * t)
    k = float(inst.strike)
    moneyness = np.log(k / forward)
    iv = 0.55 + 0.9 * moneyness**2 + 0.05 * np.sin(day_index(day) / 9.0)
    sq = iv * np.sqrt(t)
    d1 = (np.log(forward / k) + 0.5 * iv * iv * t) / sq
    d2 = d1 - sq
    if inst.option_type == "call":
        usd = forward * _norm_cdf(d1) - k * _norm_cdf(d2)
        delta = _norm_cdf(d1)
        rho = k * t * _norm_cdf(d2) / 100
    else:
        usd = k * _norm_cdf(-d2) - forward * _norm_cdf(-d1)
        delta = _norm_cdf(d1) - 1.0
        rho = -k * t * _norm_cdf(-d2) / 100
    gamma = _norm_pdf(d1) / (spot * sq)
    vega = spot * _norm_pdf(d1) * np.sqrt(t) / 100
    theta = -(spot * _norm_pdf(d1) * iv) / (2 * np.sqrt(t)) / 365.0
    return OptionMarks(np.maximum(usd / spot, 0.0), iv, delta, gamma, vega, theta, rho, forward)


def mid_prices(config: SandboxConfig, inst: Instrument, day: date, ts: np.ndarray) -> np.ndarray:
    """The instrument's fair mid price at ``ts`` (µs, inside ``day``)."""
    if inst.type == "option":
        return option_marks(config, inst, day, ts).price
    index = index_at(config.seed, inst.underlying, day, ts)
    if inst.type == "spot":
        return index * (1.0002 if inst.quote == "USDT" else 1.0)
    if inst.type == "perpetual":
        return index * (1.0 + 0.0004 * np.sin(ts / 3.6e9 + len(inst.id)))
    assert inst.expiry is not None
    years = np.maximum(int(inst.expiry.timestamp() * 1_000_000) - ts, 0) / _YEAR_US
    return index * (1.0 + 0.08 * years)


def _spread_ticks(inst: Instrument, mid: np.ndarray, tick: np.ndarray) -> np.ndarray:
    bps = {"spot": 0.5, "perpetual": 0.3, "future": 2.0, "option": 300.0}[inst.type]
    return np.maximum(1, np.round(mid * bps / 1e4 / tick)).astype(np.int64)


def _quote_ticks(inst: Instrument, mid: np.ndarray, grid: _Grid) -> tuple[np.ndarray, np.ndarray]:
    """(best bid, best ask) in ticks; bid >= 1 tick, ask > bid."""
    tick = grid.tick
    spread = _spread_ticks(inst, mid, tick)
    bid = np.maximum(1, np.floor(mid / tick - spread / 2)).astype(np.int64)
    return bid, bid + spread


# ----------------------------------------------------------------------------------------------
# event timing


def _us(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000)


def _window(inst: Instrument, exchange: str, day: date) -> tuple[int, int] | None:
    """[start, end) µs of ``day`` in which the instrument trades (None when it does not)."""
    start = day_start_us(day)
    end = start + US_PER_DAY
    if day < exchange_info(exchange).available_since:
        return None
    a = max(start, int(inst.listing.timestamp() * 1_000_000))
    b = end if inst.available_to is None else min(end, int(inst.available_to.timestamp() * 1_000_000))
    return (a, b) if b - a >= 1_000_000 else None


def _event_times(rng: np.random.Generator, a: int, b: int, n: int) -> np.ndarray:
    """``n`` sorted exchange timestamps (whole milliseconds, as real feeds) in [a, b)."""
    a_ms, b_ms = -(-a // 1000), b // 1000
    if n <= 0 or b_ms <= a_ms:
        return np.zeros(0, dtype=np.int64)
    ms = np.sort(rng.integers(a_ms, b_ms, n))
    return ms.astype(np.int64) * 1000


def _latency(rng: np.random.Generator, n: int, low: int = 2_000, high: int = 250_000) -> np.ndarray:
    return rng.integers(low, high, n).astype(np.int64)


def _scaled_count(base: float, a: int, b: int) -> int:
    return int(round(base * (b - a) / US_PER_DAY))


@dataclass
class Chunk:
    """Rows of one instrument destined for one file: CSV lines and their local timestamps."""

    local: np.ndarray
    lines: list[str]

    @staticmethod
    def empty() -> Chunk:
        return Chunk(np.zeros(0, dtype=np.int64), [])


def _prefix(exchange: str, inst: Instrument, ts: np.ndarray, local: np.ndarray) -> list[str]:
    head = f"{exchange},{inst.dataset_id},"
    return [f"{head}{t},{lt}," for t, lt in zip(ts.tolist(), local.tolist(), strict=True)]


# ----------------------------------------------------------------------------------------------
# per data type generators: (config, exchange, inst, day) -> Chunk of that exchange day's events


def _trade_ids(exchange: str, inst: Instrument, rng: np.random.Generator, day: date, n: int) -> list[str]:
    if exchange == "bitmex":
        raw = rng.integers(0, 2**63, size=(n, 2), dtype=np.int64)
        out = []
        for hi, lo in raw.tolist():
            h = f"{hi:016x}{lo:016x}"
            out.append(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}")
        return out
    base = 10_000_000 * day_index(day) + rng.integers(0, 1_000_000)
    return [str(base + i) for i in range(n)]


def _lots(rng: np.random.Generator, n: int, scale: float) -> np.ndarray:
    return np.maximum(1, np.round(rng.lognormal(math.log(max(scale, 1.0)), 1.0, n))).astype(np.int64)


_REFERENCE_PRICE = {"BTC": 50_000.0, "ETH": 3_000.0, "SOL": 100.0, "WIF": 2.0, "MATIC": 0.7, "POL": 0.5}


def _lot_scale(inst: Instrument) -> float:
    """Typical trade size in lots: a few thousand USD of notional (options: a few contracts)."""
    if inst.type == "option":
        return 5.0
    if inst.inverse or inst.contract_type == "quanto_perpetual":
        return max(1.0, 3_000.0 / inst.amount_increment) if inst.inverse else 30.0
    base_amount = 3_000.0 / _REFERENCE_PRICE.get(inst.base, 1.0)
    return max(1.0, base_amount / inst.amount_increment)


def _trades(
    config: SandboxConfig, exchange: str, inst: Instrument, day: date, *, liquidations: bool = False
) -> Chunk:
    window = _window(inst, exchange, day)
    if window is None:
        return Chunk.empty()
    a, b = window
    kind = "liquidations" if liquidations else "trades"
    rng = rng_for(config.seed, exchange, kind, inst.dataset_id, day.isoformat())
    per_day = config.trades_per_day / (50 if inst.type == "option" else 1)
    if liquidations:
        per_day = config.trades_per_day / 100
        n = int(rng.poisson(per_day * (b - a) / US_PER_DAY))
    elif inst.type == "option":
        n = int(rng.poisson(per_day * (b - a) / US_PER_DAY))
    else:
        n = max(1, _scaled_count(per_day, a, b))
    ts = _event_times(rng, a, b, n)
    if len(ts) == 0:
        return Chunk.empty()
    # several fills of one order share the exchange timestamp (as in real files)
    same = rng.random(len(ts)) < 0.3
    same[0] = False
    for i in np.nonzero(same)[0]:
        ts[i] = ts[i - 1]
    latency = _latency(rng, len(ts))
    for i in np.nonzero(same)[0]:
        latency[i] = latency[i - 1]
    day_end = day_start_us(day) + US_PER_DAY
    if b == day_end and not liquidations and inst.type != "option":
        # the day's last trade reaches the collector after midnight: it belongs to the next file
        ts[-1] = day_end - 1000 * int(rng.integers(1, 60))
        latency[-1] = 100_000 + int(rng.integers(0, 150_000))
    local = ts + latency
    grid = _grid(inst, ts)
    mid = mid_prices(config, inst, day, ts)
    bid, ask = _quote_ticks(inst, mid, grid)
    buy = rng.random(len(ts)) < 0.5
    price = np.where(buy, ask, bid) * grid.tick_units
    amount = np.maximum(_lots(rng, len(ts), _lot_scale(inst)), grid.min_lots) * grid.lot_units
    if liquidations and exchange == "binance-futures":
        ids = [""] * len(ts)  # binance forceOrder messages carry no id
    else:
        ids = _trade_ids(exchange, inst, rng, day, len(ts))
    sides = np.where(buy, "buy", "sell").tolist()
    prices = format_units(price, grid.price_decimals)
    amounts = format_units(amount, grid.amount_decimals)
    pre = _prefix(exchange, inst, ts, local)
    lines = [
        f"{p}{i},{s},{pr},{am}" for p, i, s, pr, am in zip(pre, ids, sides, prices, amounts, strict=True)
    ]
    return Chunk(local, lines)


def _sample_times(
    rng: np.random.Generator, a: int, b: int, n: int, day: date
) -> tuple[np.ndarray, np.ndarray]:
    """Exchange and local timestamps of non-trade messages; they never spill into the next day."""
    day_end = day_start_us(day) + US_PER_DAY
    ts = _event_times(rng, a, min(b, day_end - 1_000_000), n)
    # sorted so that message order = local order (book updates must replay in file order);
    # the k-th smallest of ts + latency is still >= the k-th smallest ts
    local = np.sort(ts + _latency(rng, len(ts), 1_000, 200_000))
    return ts, local


def _quotes(
    config: SandboxConfig, exchange: str, inst: Instrument, day: date, *, stream: str = "quotes"
) -> Chunk:
    window = _window(inst, exchange, day)
    if window is None:
        return Chunk.empty()
    rng = rng_for(config.seed, exchange, stream, inst.dataset_id, day.isoformat())
    per_day = config.trades_per_day / (20 if inst.type == "option" else 1)
    ts, local = _sample_times(rng, *window, max(1, _scaled_count(per_day, *window)), day)
    if len(ts) == 0:
        return Chunk.empty()
    grid = _grid(inst, ts)
    bid, ask = _quote_ticks(inst, mid_prices(config, inst, day, ts), grid)
    scale = _lot_scale(inst) * 5
    ask_amount = format_units(_lots(rng, len(ts), scale) * grid.lot_units, grid.amount_decimals)
    bid_amount = format_units(_lots(rng, len(ts), scale) * grid.lot_units, grid.amount_decimals)
    ask_price = format_units(ask * grid.tick_units, grid.price_decimals)
    bid_price = format_units(bid * grid.tick_units, grid.price_decimals)
    pre = _prefix(exchange, inst, ts, local)
    lines = [
        f"{p}{aa},{ap},{bp},{ba}"
        for p, aa, ap, bp, ba in zip(pre, ask_amount, ask_price, bid_price, bid_amount, strict=True)
    ]
    return Chunk(local, lines)


def _book_ticker(config: SandboxConfig, exchange: str, inst: Instrument, day: date) -> Chunk:
    return _quotes(config, exchange, inst, day, stream="book_ticker")


def _levels_available(inst: Instrument, depth: int) -> int:
    """Illiquid books (options) show fewer levels than asked: the rest are empty cells."""
    return min(depth, 8) if inst.type == "option" else depth


def _book_snapshots(config: SandboxConfig, exchange: str, inst: Instrument, day: date, depth: int) -> Chunk:
    window = _window(inst, exchange, day)
    if window is None:
        return Chunk.empty()
    rng = rng_for(config.seed, exchange, f"book_snapshot_{depth}", inst.dataset_id, day.isoformat())
    per_day = config.trades_per_day / (40 if inst.type == "option" else 2)
    ts, local = _sample_times(rng, *window, max(1, _scaled_count(per_day, *window)), day)
    if len(ts) == 0:
        return Chunk.empty()
    grid = _grid(inst, ts)
    bid0, ask0 = _quote_ticks(inst, mid_prices(config, inst, day, ts), grid)
    shown = _levels_available(inst, depth)
    gaps = rng.integers(1, 4, size=(len(ts), shown)).astype(np.int64)
    gaps[:, 0] = 0
    steps = np.cumsum(gaps, axis=1)
    asks = (ask0[:, None] + steps) * grid.tick_units[:, None]
    bids = (bid0[:, None] - steps) * grid.tick_units[:, None]
    bid_ok = (bid0[:, None] - steps) >= 1
    scale = _lot_scale(inst) * 3
    ask_amt = _lots(rng, len(ts) * shown, scale).reshape(len(ts), shown) * grid.lot_units[:, None]
    bid_amt = _lots(rng, len(ts) * shown, scale).reshape(len(ts), shown) * grid.lot_units[:, None]
    pd, ad = grid.price_decimals, grid.amount_decimals
    cells: dict[str, tuple[np.ndarray, int]] = {}
    for i in range(shown):
        bid_price = np.where(bid_ok[:, i], bids[:, i], -1)  # -1: no such level -> empty cell
        cells[f"a{i}"] = (asks[:, i], pd)
        cells[f"A{i}"] = (ask_amt[:, i], ad)
        cells[f"b{i}"] = (bid_price, pd)
        cells[f"B{i}"] = (np.where(bid_ok[:, i], bid_amt[:, i], -1), ad)
    rows = _csv_cells(cells)
    missing = "," * 4 * (depth - shown)
    pre = _prefix(exchange, inst, ts, local)
    return Chunk(local, [f"{p}{r}{missing}" for p, r in zip(pre, rows, strict=True)])


def _incremental_book(config: SandboxConfig, exchange: str, inst: Instrument, day: date) -> Chunk:
    """A 25-level snapshot at the start, then updates that keep the book uncrossed."""
    window = _window(inst, exchange, day)
    if window is None:
        return Chunk.empty()
    rng = rng_for(config.seed, exchange, "incremental_book_L2", inst.dataset_id, day.isoformat())
    per_day = config.trades_per_day / (20 if inst.type == "option" else 1)
    a, b = window
    ts, local = _sample_times(rng, a, b, max(1, _scaled_count(per_day, a, b)) + 1, day)
    if len(ts) == 0:
        return Chunk.empty()
    # the day opens with the initial snapshot right after the window starts (real files: 00:00:00.2)
    first = min(int(ts[0]), (-(-a // 1000) + int(rng.integers(50, 400))) * 1000)
    ts[0], local[0] = first, min(int(local[0]), first + int(rng.integers(1_000, 200_000)))
    grid = _grid(inst, ts)
    bid0, ask0 = _quote_ticks(inst, mid_prices(config, inst, day, ts), grid)
    depth = _levels_available(inst, _BOOK_DEPTH)
    n = len(ts)
    # all randomness drawn up front (fast, and the stream does not depend on the book's path)
    lot_pool = iter(_lots(rng, 2 * depth + 4 * n, _lot_scale(inst) * 3).tolist())
    snapshot_gaps = rng.integers(1, 3, 2 * depth).tolist()
    sides = (rng.random(n) < 0.5).tolist()
    offsets = rng.integers(0, depth, n).tolist()
    deletes = (rng.random(n) < 0.3).tolist()
    tick_units, lot_units = grid.tick_units.tolist(), grid.lot_units.tolist()
    ts_l, local_l = ts.tolist(), local.tolist()
    pd, ad = grid.price_decimals, grid.amount_decimals
    head = f"{exchange},{inst.dataset_id},"
    events: list[int] = []
    heads: list[str] = []  # "is_snapshot,side"
    prices: list[int] = []
    amounts: list[int] = []

    def emit(i: int, snapshot: str, side: str, price_ticks: int, lots: int) -> None:
        events.append(i)
        heads.append(f"{snapshot},{side}")
        prices.append(price_ticks * tick_units[i])
        amounts.append(lots * lot_units[i])

    bids: dict[int, int] = {}
    asks: dict[int, int] = {}
    level = int(ask0[0])
    for k in range(depth):
        asks[level] = next(lot_pool)
        emit(0, "true", "ask", level, asks[level])
        level += snapshot_gaps[k]
    level = int(bid0[0])
    for k in range(depth):
        if level < 1:
            break
        bids[level] = next(lot_pool)
        emit(0, "true", "bid", level, bids[level])
        level -= snapshot_gaps[depth + k]
    best_bids, best_asks = bid0.tolist(), ask0.tolist()
    # after a collector outage Tardis's feed reconnects and starts again with a full snapshot
    reconnects = sorted(_us(incident.end) for incident in incidents(exchange) if a < _us(incident.end) <= b)
    for i in range(1, n):
        best_bid, best_ask = best_bids[i], best_asks[i]
        if reconnects and local_l[i] >= reconnects[0]:
            while reconnects and local_l[i] >= reconnects[0]:
                reconnects.pop(0)
            for p in sorted(asks):
                emit(i, "true", "ask", p, asks[p])
            for p in sorted(bids, reverse=True):
                emit(i, "true", "bid", p, bids[p])
        for p in sorted(p for p in asks if p < best_ask):  # the market moved up through these asks
            del asks[p]
            emit(i, "false", "ask", p, 0)
        for p in sorted((p for p in bids if p > best_bid), reverse=True):
            del bids[p]
            emit(i, "false", "bid", p, 0)
        if best_ask not in asks:
            asks[best_ask] = next(lot_pool)
            emit(i, "false", "ask", best_ask, asks[best_ask])
        if best_bid not in bids:
            bids[best_bid] = next(lot_pool)
            emit(i, "false", "bid", best_bid, bids[best_bid])
        side = "ask" if sides[i] else "bid"
        book = asks if sides[i] else bids
        price = best_ask + offsets[i] if sides[i] else best_bid - offsets[i]
        if price < 1:
            continue
        if deletes[i] and price in book and len(book) > 5 and price not in (best_ask, best_bid):
            del book[price]
            emit(i, "false", side, price, 0)
        else:
            book[price] = next(lot_pool)
            emit(i, "false", side, price, book[price])
    cells = _csv_cells({"p": (np.array(prices), pd), "a": (np.array(amounts), ad)})
    lines = [f"{head}{ts_l[i]},{local_l[i]},{h},{c}" for i, h, c in zip(events, heads, cells, strict=True)]
    return Chunk(local[np.array(events, dtype=np.int64)], lines)


def _funding_times(exchange: str, ts: np.ndarray) -> np.ndarray | None:
    """Next 8-hourly funding time (binance-futures, bitmex); Deribit funds continuously -> None."""
    if exchange == "deribit":
        return None
    period = 8 * 3600 * 1_000_000
    return (ts // period + 1) * period


def _derivative_ticker(config: SandboxConfig, exchange: str, inst: Instrument, day: date) -> Chunk:
    window = _window(inst, exchange, day)
    if window is None:
        return Chunk.empty()
    rng = rng_for(config.seed, exchange, "derivative_ticker", inst.dataset_id, day.isoformat())
    n = max(24, _scaled_count(config.trades_per_day / 10, *window))
    ts, local = _sample_times(rng, *window, n, day)
    if len(ts) == 0:
        return Chunk.empty()
    grid = _grid(inst, ts)
    mid = mid_prices(config, inst, day, ts)
    index = index_at(config.seed, inst.underlying, day, ts)
    last = np.round(mid / grid.tick).astype(np.int64) * grid.tick_units
    perpetual = inst.type == "perpetual"
    funding = _funding_times(exchange, ts) if perpetual else None
    rate = 0.0001 + 0.00005 * np.sin(ts / 7.2e9) + rng.normal(0, 0.00001, len(ts))
    oi_base = {"BTC": 2e8, "ETH": 8e7}.get(inst.base, 2e6) / (1 if inst.inverse else float(np.mean(mid)))
    oi = oi_base * (1 + 0.05 * np.sin(ts / 5e9)) + rng.normal(0, oi_base * 0.001, len(ts))
    last_s = format_units(last, grid.price_decimals)
    pre = _prefix(exchange, inst, ts, local)
    lines = []
    for r, p in enumerate(pre):
        cells = [
            str(int(funding[r])) if funding is not None else "",
            format_float(float(rate[r]), 8) if perpetual else "",
            format_float(float(rate[r]) * 1.1, 8) if perpetual and exchange == "bitmex" else "",
            format_float(float(oi[r]), 0 if inst.inverse else 3),
            last_s[r],
            format_float(float(index[r]), 2),
            format_float(float(mid[r]), 4 if grid.price_decimals < 4 else grid.price_decimals + 2),
        ]
        lines.append(p + ",".join(cells))
    return Chunk(local, lines)


def _liquidations(config: SandboxConfig, exchange: str, inst: Instrument, day: date) -> Chunk:
    return _trades(config, exchange, inst, day, liquidations=True)


def _options_chain(config: SandboxConfig, exchange: str, inst: Instrument, day: date) -> Chunk:
    window = _window(inst, exchange, day)
    if window is None or inst.type != "option":
        return Chunk.empty()
    rng = rng_for(config.seed, exchange, "options_chain", inst.dataset_id, day.isoformat())
    ts, local = _sample_times(rng, *window, max(2, _scaled_count(config.trades_per_day / 40, *window)), day)
    if len(ts) == 0:
        return Chunk.empty()
    grid = _grid(inst, ts)
    marks = option_marks(config, inst, day, ts)
    bid, ask = _quote_ticks(inst, marks.price, grid)
    assert inst.expiry is not None
    expiration = int(inst.expiry.timestamp() * 1_000_000)
    underlying_index = f"SYN.{inst.base}-{inst.id.split('-')[1]}"
    strike = format_float(float(inst.strike or 0), 4)
    pd, ad = grid.price_decimals, grid.amount_decimals
    pre = _prefix(exchange, inst, ts, local)
    oi = np.round(rng.lognormal(3, 1)) * float(grid.lot_units[0]) / 10**ad
    lines = []
    for r, p in enumerate(pre):
        has_bid = bid[r] >= 2 and rng.random() > 0.1  # deep OTM options often show no bid
        has_ask = rng.random() > 0.05
        bid_price = format_units([bid[r] * grid.tick_units[r]], pd)[0] if has_bid else ""
        ask_price = format_units([ask[r] * grid.tick_units[r]], pd)[0] if has_ask else ""
        bid_amount = format_units([_lots(rng, 1, 20)[0] * grid.lot_units[r]], ad)[0] if has_bid else ""
        ask_amount = format_units([_lots(rng, 1, 20)[0] * grid.lot_units[r]], ad)[0] if has_ask else ""
        iv = float(marks.iv[r]) * 100
        cells = [
            inst.option_type or "",
            strike,
            str(expiration),
            format_float(oi, 1),
            format_units([max(1, round(float(marks.price[r]) / grid.tick[r])) * grid.tick_units[r]], pd)[0],
            bid_price,
            bid_amount,
            format_float(iv - 2.5, 2) if has_bid else "",
            ask_price,
            ask_amount,
            format_float(iv + 2.5, 2) if has_ask else "",
            format_float(float(marks.price[r]), 8),
            format_float(iv, 2),
            underlying_index,
            format_float(float(marks.underlying[r]), 2),
            format_float(float(marks.delta[r]), 5),
            format_float(float(marks.gamma[r]), 5),
            format_float(float(marks.vega[r]), 5),
            format_float(float(marks.theta[r]), 5),
            format_float(float(marks.rho[r]), 5),
        ]
        lines.append(p + ",".join(cells))
    return Chunk(local, lines)


Generator = Callable[[SandboxConfig, str, Instrument, date], Chunk]

GENERATORS: dict[str, Generator] = {
    "trades": _trades,
    "liquidations": _liquidations,
    "quotes": _quotes,
    "book_ticker": _book_ticker,
    "incremental_book_L2": _incremental_book,
    "book_snapshot_5": lambda c, e, i, d: _book_snapshots(c, e, i, d, 5),
    "book_snapshot_25": lambda c, e, i, d: _book_snapshots(c, e, i, d, 25),
    "derivative_ticker": _derivative_ticker,
    "options_chain": _options_chain,
}
_SPILLS_INTO_NEXT_DAY = frozenset({"trades"})


# ----------------------------------------------------------------------------------------------
# files


@lru_cache(maxsize=16)
def _lookup(seed: int, large: bool, exchange: str, horizon: date) -> dict[str, Instrument]:
    return {i.dataset_id: i for i in _all_instruments(seed, large, exchange, horizon)}


def resolve_symbol(config: SandboxConfig, exchange: str, symbol: str, day: date) -> Instrument | SymbolGroup:
    """The instrument or group a dataset ``symbol`` names, as known on ``day`` (SandboxNotFound if none)."""
    from market_data_assets.tardis.sandbox.universe import exchange_universe

    if not known_exchange(config, exchange):
        raise SandboxNotFound(f"unknown exchange {exchange!r}")
    horizon = _horizon(max(config.exported_until, day))
    inst = _lookup(config.seed, config.large_deribit, exchange, horizon).get(symbol)
    if inst is not None:
        return inst
    group = exchange_universe(
        config.seed, config.large_deribit, exchange, config.exported_until
    ).by_dataset_id.get(symbol)
    if isinstance(group, SymbolGroup):
        return group
    raise SandboxNotFound(f"unknown symbol {symbol!r} for exchange {exchange!r}")


def _chunks_for_day(
    config: SandboxConfig, exchange: str, data_type: str, insts: list[Instrument], day: date
) -> list[Chunk]:
    gen = GENERATORS[data_type]
    start = day_start_us(day)
    end = start + US_PER_DAY
    chunks = []
    for inst in insts:
        parts = [gen(config, exchange, inst, day)]
        if data_type in _SPILLS_INTO_NEXT_DAY:
            parts.insert(0, gen(config, exchange, inst, day - timedelta(days=1)))
        for part in parts:
            keep = (part.local >= start) & (part.local < end)
            for incident in incidents(exchange):
                lo = int(incident.start.timestamp() * 1_000_000)
                hi = int(incident.end.timestamp() * 1_000_000)
                keep &= (part.local < lo) | (part.local >= hi)
            idx = np.nonzero(keep)[0]
            if len(idx):
                chunks.append(Chunk(part.local[idx], [part.lines[i] for i in idx.tolist()]))
    return chunks


def generate_csv(config: SandboxConfig, exchange: str, data_type: str, day: date, symbol: str) -> bytes:
    """The uncompressed Tardis CSV for one file: header line + rows ordered by ``local_timestamp``.

    ``symbol`` is the dataset id (``BTCUSDT``, ``BTC-PERPETUAL``, or a group: ``OPTIONS``,
    ``PERPETUALS``, ``FUTURES``, ``SPOT``). Returns ``b""`` (no header) for a day without data, as
    Tardis serves an empty gzip then. Raises ``SandboxNotFound`` for an exchange, symbol or data
    type the sandbox does not offer. Independent of ``exported_until``: a day's content never
    changes once it exists.
    """
    target = resolve_symbol(config, exchange, symbol, day)
    if data_type not in target.data_types:
        raise SandboxNotFound(
            f"data type {data_type!r} is not available for {exchange} {symbol}; "
            f"available: {', '.join(target.data_types)}"
        )
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    lookback = timedelta(days=1 if data_type in _SPILLS_INTO_NEXT_DAY else 0)
    if isinstance(target, SymbolGroup):
        insts = [
            m
            for m in _lookup(
                config.seed, config.large_deribit, exchange, _horizon(max(config.exported_until, day))
            ).values()
            if m.type == target.type and m.alive_between(start - lookback, start + timedelta(days=1))
        ]
    else:
        insts = [target]
    chunks = _chunks_for_day(config, exchange, data_type, insts, day)
    if not chunks:
        return b""
    local = np.concatenate([c.local for c in chunks])
    lines = [line for c in chunks for line in c.lines]
    order = np.argsort(local, kind="stable")
    body = "\n".join([get_spec(data_type).csv_header_line, *(lines[i] for i in order.tolist())]) + "\n"
    return body.encode()
