"""Order book files: ``book_snapshot_5`` / ``book_snapshot_25`` and ``incremental_book_L2``.

Books are never crossed: asks ascend above bids that descend and the spread is at least a tick.
The L2 stream opens each day with a full snapshot, replays into an uncrossed book message by
message, and starts again from a snapshot after a collector outage, as Tardis's files do.
"""

from __future__ import annotations

from datetime import date

import numpy as np

from market_data_assets.days import to_us
from market_data_assets.sandbox.config import SandboxConfig
from market_data_assets.sandbox.events import (
    Table,
    draw_lots,
    lot_scale,
    sample_times,
    scaled_count,
    stamps,
    trading_window,
)
from market_data_assets.sandbox.exchanges import incidents
from market_data_assets.sandbox.index_paths import rng_for
from market_data_assets.sandbox.instrument_prices import mid_prices, price_grid, quote_ticks
from market_data_assets.sandbox.instruments import Instrument
from market_data_assets.sandbox.textformat import Cells

BOOK_DEPTH = 25


def levels_available(inst: Instrument, depth: int) -> int:
    """Illiquid books (options) show fewer levels than asked: the rest are empty cells."""
    return min(depth, 8) if inst.type == "option" else depth


def book_snapshots(config: SandboxConfig, exchange: str, inst: Instrument, day: date, depth: int) -> Table:
    window = trading_window(inst, exchange, day)
    if window is None:
        return Table.empty()
    rng = rng_for(config.seed, exchange, f"book_snapshot_{depth}", inst.dataset_id, day.isoformat())
    per_day = config.trades_per_day / (40 if inst.type == "option" else 2)
    ts, local = sample_times(rng, *window, max(1, scaled_count(per_day, *window)), day)
    if len(ts) == 0:
        return Table.empty()
    grid = price_grid(inst, ts)
    bid0, ask0 = quote_ticks(inst, mid_prices(config, inst, day, ts), grid)
    shown = levels_available(inst, depth)
    gaps = rng.integers(1, 4, size=(len(ts), shown)).astype(np.int64)
    gaps[:, 0] = 0
    steps = np.cumsum(gaps, axis=1)
    asks = (ask0[:, None] + steps) * grid.tick_units[:, None]
    bids = (bid0[:, None] - steps) * grid.tick_units[:, None]
    bid_ok = (bid0[:, None] - steps) >= 1
    scale = lot_scale(inst) * 3
    ask_amt = draw_lots(rng, len(ts) * shown, scale).reshape(len(ts), shown) * grid.lot_units[:, None]
    bid_amt = draw_lots(rng, len(ts) * shown, scale).reshape(len(ts), shown) * grid.lot_units[:, None]
    pd, ad = grid.price_decimals, grid.amount_decimals
    columns: list[Cells] = []
    for i in range(shown):
        ok = bid_ok[:, i]
        columns += [
            Cells(asks[:, i], pd),
            Cells(ask_amt[:, i], ad),
            Cells(bids[:, i], pd, present=ok),  # a book thinner than its depth: empty cells
            Cells(bid_amt[:, i], ad, present=ok),
        ]
    columns += [Cells("")] * (4 * (depth - shown))
    return Table(local, (*stamps(ts, local), *columns))


def incremental_book(config: SandboxConfig, exchange: str, inst: Instrument, day: date) -> Table:
    """A 25-level snapshot at the start, then updates that keep the book uncrossed."""
    window = trading_window(inst, exchange, day)
    if window is None:
        return Table.empty()
    rng = rng_for(config.seed, exchange, "incremental_book_L2", inst.dataset_id, day.isoformat())
    per_day = config.trades_per_day / (20 if inst.type == "option" else 1)
    a, b = window
    ts, local = sample_times(rng, a, b, max(1, scaled_count(per_day, a, b)) + 1, day)
    if len(ts) == 0:
        return Table.empty()
    # the day opens with the initial snapshot right after the window starts (real files: 00:00:00.2)
    first = min(int(ts[0]), (-(-a // 1000) + int(rng.integers(50, 400))) * 1000)
    ts[0], local[0] = first, min(int(local[0]), first + int(rng.integers(1_000, 200_000)))
    grid = price_grid(inst, ts)
    bid0, ask0 = quote_ticks(inst, mid_prices(config, inst, day, ts), grid)
    depth = levels_available(inst, BOOK_DEPTH)
    n = len(ts)
    # all randomness drawn up front (fast, and the stream does not depend on the book's path)
    lot_pool = iter(draw_lots(rng, 2 * depth + 4 * n, lot_scale(inst) * 3).tolist())
    snapshot_gaps = rng.integers(1, 3, 2 * depth).tolist()
    sides = (rng.random(n) < 0.5).tolist()
    offsets = rng.integers(0, depth, n).tolist()
    deletes = (rng.random(n) < 0.3).tolist()
    tick_units, lot_units = grid.tick_units.tolist(), grid.lot_units.tolist()
    local_l = local.tolist()
    pd, ad = grid.price_decimals, grid.amount_decimals
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
    reconnects = sorted(
        to_us(incident.end) for incident in incidents(exchange) if a < to_us(incident.end) <= b
    )
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
    rows = np.array(events, dtype=np.int64)
    return Table(
        local[rows],
        (
            *stamps(ts[rows], local[rows]),
            Cells(np.array(heads, dtype=object)),
            Cells(np.array(prices, dtype=np.int64), pd),
            Cells(np.array(amounts, dtype=np.int64), ad),
        ),
    )
