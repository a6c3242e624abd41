"""Deterministic synthetic market data in Tardis's CSV format, one (exchange, type, day, symbol) at a time.

``generate_csv`` is a pure function of (config, exchange, data_type, day, symbol): the HTTP server
only gzips what it returns. How the files are built, mirroring what real Tardis files do:

- Events are generated per *exchange day* with an exchange ``timestamp`` (ms precision, like the
  real feeds) and a ``local_timestamp`` (µs) a little later; daily files are split and ordered by
  ``local_timestamp``. Every trading day's last trade (options aside) is stamped just before
  midnight and reaches the collector just after it, so it sits at the top of the NEXT day's file,
  as in real Tardis.
- Prices follow the shared index path of the instrument's underlying (``index_paths.py``), quantized to
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

from collections.abc import Callable
from datetime import date, timedelta
from functools import lru_cache

import numpy as np

from market_data_assets.days import US_PER_DAY, day_start, day_start_us, to_us
from market_data_assets.sandbox.books import book_snapshots, incremental_book
from market_data_assets.sandbox.config import SandboxConfig
from market_data_assets.sandbox.events import (
    Table,
    draw_lots,
    event_times,
    latency_us,
    lot_scale,
    sample_times,
    scaled_count,
    stamps,
    trading_window,
)
from market_data_assets.sandbox.exchanges import incidents
from market_data_assets.sandbox.index_paths import day_index, index_at, rng_for
from market_data_assets.sandbox.instrument_prices import mid_prices, option_marks, price_grid, quote_ticks
from market_data_assets.sandbox.instruments import Instrument, SymbolGroup
from market_data_assets.sandbox.textformat import Cells, format_float
from market_data_assets.sandbox.universe import all_instruments, horizon_for, known_exchange
from market_data_assets.tardis.formats import get_spec


class SandboxNotFound(LookupError):
    """The request names no exchange / data type / symbol the sandbox offers (HTTP 404)."""


# ----------------------------------------------------------------------------------------------
# per data type generators: (config, exchange, inst, day) -> Table of that exchange day's events


def _trade_ids(exchange: str, rng: np.random.Generator, day: date, n: int) -> np.ndarray:
    """BitMEX: UUIDs (as in the real file); the others: increasing integers."""
    if exchange == "bitmex":
        raw = rng.integers(0, 2**63, size=(n, 2), dtype=np.int64)
        out = []
        for hi, lo in raw.tolist():
            h = f"{hi:016x}{lo:016x}"
            out.append(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}")
        return np.array(out, dtype=object)
    base = 10_000_000 * day_index(day) + int(rng.integers(0, 1_000_000))
    return base + np.arange(n, dtype=np.int64)


def _trades(
    config: SandboxConfig, exchange: str, inst: Instrument, day: date, *, liquidations: bool = False
) -> Table:
    window = trading_window(inst, exchange, day)
    if window is None:
        return Table.empty()
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
        n = max(1, scaled_count(per_day, a, b))
    ts = event_times(rng, a, b, n)
    if len(ts) == 0:
        return Table.empty()
    # several fills of one order share the exchange timestamp (as in real files)
    same = rng.random(len(ts)) < 0.3
    same[0] = False
    for i in np.nonzero(same)[0]:
        ts[i] = ts[i - 1]
    latency = latency_us(rng, len(ts))
    for i in np.nonzero(same)[0]:
        latency[i] = latency[i - 1]
    day_end = day_start_us(day) + US_PER_DAY
    if b == day_end and not liquidations and inst.type != "option":
        # the day's last trade reaches the collector after midnight: it belongs to the next file
        ts[-1] = day_end - 1000 * int(rng.integers(1, 60))
        latency[-1] = 100_000 + int(rng.integers(0, 150_000))
    local = ts + latency
    grid = price_grid(inst, ts)
    mid = mid_prices(config, inst, day, ts)
    bid, ask = quote_ticks(inst, mid, grid)
    buy = rng.random(len(ts)) < 0.5
    price = np.where(buy, ask, bid) * grid.tick_units
    amount = np.maximum(draw_lots(rng, len(ts), lot_scale(inst)), grid.min_lots) * grid.lot_units
    if liquidations and exchange == "binance-futures":
        ids = Cells("")  # binance forceOrder messages carry no id
    else:
        ids = Cells(_trade_ids(exchange, rng, day, len(ts)))
    sides = Cells(np.where(buy, "buy", "sell").astype(object))
    return Table(
        local,
        (
            *stamps(ts, local),
            ids,
            sides,
            Cells(price, grid.price_decimals),
            Cells(amount, grid.amount_decimals),
        ),
    )


def _quotes(
    config: SandboxConfig, exchange: str, inst: Instrument, day: date, *, stream: str = "quotes"
) -> Table:
    window = trading_window(inst, exchange, day)
    if window is None:
        return Table.empty()
    rng = rng_for(config.seed, exchange, stream, inst.dataset_id, day.isoformat())
    per_day = config.trades_per_day / (20 if inst.type == "option" else 1)
    ts, local = sample_times(rng, *window, max(1, scaled_count(per_day, *window)), day)
    if len(ts) == 0:
        return Table.empty()
    grid = price_grid(inst, ts)
    bid, ask = quote_ticks(inst, mid_prices(config, inst, day, ts), grid)
    scale = lot_scale(inst) * 5
    ask_amount = draw_lots(rng, len(ts), scale) * grid.lot_units
    bid_amount = draw_lots(rng, len(ts), scale) * grid.lot_units
    pd, ad = grid.price_decimals, grid.amount_decimals
    return Table(
        local,
        (
            *stamps(ts, local),
            Cells(ask_amount, ad),
            Cells(ask * grid.tick_units, pd),
            Cells(bid * grid.tick_units, pd),
            Cells(bid_amount, ad),
        ),
    )


def _book_ticker(config: SandboxConfig, exchange: str, inst: Instrument, day: date) -> Table:
    return _quotes(config, exchange, inst, day, stream="book_ticker")


def _funding_times(exchange: str, ts: np.ndarray) -> np.ndarray | None:
    """Next 8-hourly funding time (binance-futures, bitmex); Deribit funds continuously -> None."""
    if exchange == "deribit":
        return None
    period = 8 * 3600 * 1_000_000
    return (ts // period + 1) * period


def _derivative_ticker(config: SandboxConfig, exchange: str, inst: Instrument, day: date) -> Table:
    window = trading_window(inst, exchange, day)
    if window is None:
        return Table.empty()
    rng = rng_for(config.seed, exchange, "derivative_ticker", inst.dataset_id, day.isoformat())
    n = max(24, scaled_count(config.trades_per_day / 10, *window))
    ts, local = sample_times(rng, *window, n, day)
    if len(ts) == 0:
        return Table.empty()
    grid = price_grid(inst, ts)
    mid = mid_prices(config, inst, day, ts)
    index = index_at(config.seed, inst.underlying, day, ts)
    last = np.round(mid / grid.tick).astype(np.int64) * grid.tick_units
    perpetual = inst.type == "perpetual"
    funding = _funding_times(exchange, ts) if perpetual else None
    rate = 0.0001 + 0.00005 * np.sin(ts / 7.2e9) + rng.normal(0, 0.00001, len(ts))
    oi_base = {"BTC": 2e8, "ETH": 8e7}.get(inst.base, 2e6) / (1 if inst.inverse else float(np.mean(mid)))
    oi = oi_base * (1 + 0.05 * np.sin(ts / 5e9)) + rng.normal(0, oi_base * 0.001, len(ts))
    mark_places = 4 if grid.price_decimals < 4 else grid.price_decimals + 2
    none = Cells("")
    return Table(
        local,
        (
            *stamps(ts, local),
            Cells(funding) if funding is not None else none,
            Cells(rate, 8) if perpetual else none,
            Cells(rate * 1.1, 8) if perpetual and exchange == "bitmex" else none,
            Cells(oi, 0 if inst.inverse else 3),
            Cells(last, grid.price_decimals),
            Cells(index, 2),
            Cells(mid, mark_places),
        ),
    )


def _liquidations(config: SandboxConfig, exchange: str, inst: Instrument, day: date) -> Table:
    return _trades(config, exchange, inst, day, liquidations=True)


def _options_chain(config: SandboxConfig, exchange: str, inst: Instrument, day: date) -> Table:
    window = trading_window(inst, exchange, day)
    if window is None or inst.type != "option":
        return Table.empty()
    rng = rng_for(config.seed, exchange, "options_chain", inst.dataset_id, day.isoformat())
    ts, local = sample_times(rng, *window, max(2, scaled_count(config.trades_per_day / 40, *window)), day)
    if len(ts) == 0:
        return Table.empty()
    grid = price_grid(inst, ts)
    marks = option_marks(config, inst, day, ts)
    bid, ask = quote_ticks(inst, marks.price, grid)
    assert inst.expiry is not None
    expiration = to_us(inst.expiry)
    underlying_index = f"SYN.{inst.base}-{inst.id.split('-')[1]}"
    strike = format_float(float(inst.strike or 0), 4)
    pd, ad = grid.price_decimals, grid.amount_decimals
    n = len(ts)
    has_bid = (bid >= 2) & (rng.random(n) > 0.1)  # deep OTM options often show no bid
    has_ask = rng.random(n) > 0.05
    iv = marks.iv * 100
    open_interest = round(float(rng.lognormal(3, 1))) * float(grid.lot_units[0]) / 10**ad
    last = np.maximum(1, np.round(marks.price / grid.tick)).astype(np.int64) * grid.tick_units
    columns = (
        *stamps(ts, local),
        Cells(inst.option_type or ""),
        Cells(strike),
        Cells(str(expiration)),
        Cells(format_float(open_interest, 1)),
        Cells(last, pd),
        Cells(bid * grid.tick_units, pd, present=has_bid),
        Cells(draw_lots(rng, n, 20) * grid.lot_units, ad, present=has_bid),
        Cells(iv - 2.5, 2, present=has_bid),
        Cells(ask * grid.tick_units, pd, present=has_ask),
        Cells(draw_lots(rng, n, 20) * grid.lot_units, ad, present=has_ask),
        Cells(iv + 2.5, 2, present=has_ask),
        Cells(marks.price, 8),
        Cells(iv, 2),
        Cells(underlying_index),
        Cells(marks.underlying, 2),
        Cells(marks.delta, 5),
        Cells(marks.gamma, 5),
        Cells(marks.vega, 5),
        Cells(marks.theta, 5),
        Cells(marks.rho, 5),
    )
    return Table(local, columns)


Generator = Callable[[SandboxConfig, str, Instrument, date], Table]

GENERATORS: dict[str, Generator] = {
    "trades": _trades,
    "liquidations": _liquidations,
    "quotes": _quotes,
    "book_ticker": _book_ticker,
    "incremental_book_L2": incremental_book,
    "book_snapshot_5": lambda c, e, i, d: book_snapshots(c, e, i, d, 5),
    "book_snapshot_25": lambda c, e, i, d: book_snapshots(c, e, i, d, 25),
    "derivative_ticker": _derivative_ticker,
    "options_chain": _options_chain,
}
_SPILLS_INTO_NEXT_DAY = frozenset({"trades"})


# ----------------------------------------------------------------------------------------------
# files


@lru_cache(maxsize=16)
def _lookup(seed: int, large: bool, exchange: str, horizon: date) -> dict[str, Instrument]:
    return {i.dataset_id: i for i in all_instruments(seed, large, exchange, horizon)}


def resolve_symbol(config: SandboxConfig, exchange: str, symbol: str, day: date) -> Instrument | SymbolGroup:
    """The instrument or group a dataset ``symbol`` names, as known on ``day`` (SandboxNotFound if none)."""
    from market_data_assets.sandbox.universe import exchange_universe

    if not known_exchange(config, exchange):
        raise SandboxNotFound(f"unknown exchange {exchange!r}")
    horizon = horizon_for(max(config.exported_until, day))
    inst = _lookup(config.seed, config.large_deribit, exchange, horizon).get(symbol)
    if inst is not None:
        return inst
    group = exchange_universe(
        config.seed, config.large_deribit, exchange, config.exported_until
    ).by_dataset_id.get(symbol)
    if isinstance(group, SymbolGroup):
        return group
    raise SandboxNotFound(f"unknown symbol {symbol!r} for exchange {exchange!r}")


def _lines_for_day(
    config: SandboxConfig, exchange: str, data_type: str, insts: list[Instrument], day: date
) -> tuple[np.ndarray, list[str]]:
    """Every row of the file with its local timestamp (not yet in file order)."""
    gen = GENERATORS[data_type]
    start = day_start_us(day)
    end = start + US_PER_DAY
    windows = [(to_us(i.start), to_us(i.end)) for i in incidents(exchange)]
    locals_: list[np.ndarray] = []
    lines: list[str] = []
    for inst in insts:
        tables = [gen(config, exchange, inst, day)]
        if data_type in _SPILLS_INTO_NEXT_DAY:
            tables.insert(0, gen(config, exchange, inst, day - timedelta(days=1)))
        for table in tables:
            keep = (table.local >= start) & (table.local < end)
            for lo, hi in windows:
                keep &= (table.local < lo) | (table.local >= hi)
            rows = np.nonzero(keep)[0]
            if len(rows):
                kept = table.take(rows)
                locals_.append(kept.local)
                lines.extend(kept.lines(exchange, inst.dataset_id))
    return (np.concatenate(locals_) if locals_ else np.zeros(0, dtype=np.int64)), lines


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
    start = day_start(day)
    lookback = timedelta(days=1 if data_type in _SPILLS_INTO_NEXT_DAY else 0)
    if isinstance(target, SymbolGroup):
        insts = [
            m
            for m in _lookup(
                config.seed, config.large_deribit, exchange, horizon_for(max(config.exported_until, day))
            ).values()
            if m.type == target.type and m.alive_between(start - lookback, start + timedelta(days=1))
        ]
    else:
        insts = [target]
    local, lines = _lines_for_day(config, exchange, data_type, insts, day)
    if not lines:
        return b""
    order = np.argsort(local, kind="stable")
    body = "\n".join([get_spec(data_type).csv_header_line, *(lines[i] for i in order.tolist())]) + "\n"
    return body.encode()
