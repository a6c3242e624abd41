"""ofi_sum: the order-flow imbalance base column, against a plain-Python reference from raw book snapshots.

The reference walks the day's level-0 book states in tick order (exchange timestamp, stable, day
file before next-day file, only rows stamped in D) and applies the Cont-Kukanov-Stoikov event
formula to each consecutive two-sided pair, then sums per bucket; it shares nothing with
``candles.compute`` but the documented definition. Compared at 15s, and its roll-ups at 1m and 1h,
for a dense instrument and a sparse one (whose densified and rolled-up rows must agree too).
"""

from __future__ import annotations

import math
import random

import polars as pl
import pytest

from market_data_assets.candles.build import build_base_candles, build_rolled_up_candles
from market_data_assets.candles.densify import densify
from market_data_assets.candles.rollup import rollup
from market_data_assets.candles.timeframes import get_timeframe
from market_data_assets.storage.layout import TIMEFRAMES, candles_path
from market_data_assets.storage.local import LocalStore
from market_data_assets_tests.support.candles import (
    DAY,
    DAY_US,
    EXCHANGE,
    NEXT,
    WIDTHS,
    at,
    day_start,
    write_ticks,
)

pytestmark = pytest.mark.slow


PERP = "BINANCE:SPOT_PAIR:BTC-USDT"
OPTION = "BINANCE:OPTION:BTC-USDT-50000-240105-CALL"


def _snap(ts: int, ap, aa, bp, ba) -> dict:
    return {"timestamp": ts, "ask_price_0": ap, "ask_amount_0": aa, "bid_price_0": bp, "bid_amount_0": ba}


def _trade(ts: int, price: float) -> dict:
    return {"timestamp": ts, "price": price, "amount": 1.0, "side": "buy"}


def _random_book(seed: int, n: int) -> tuple[list[dict], list[dict]]:
    """Book rows of file D and file D+1: moves up/down/flat, ties, one-sided states, a long gap."""
    rng = random.Random(seed)
    bid = 100.0
    rows = []
    t = at(0) - 3_000_000  # starts with rows stamped on D-1 (not part of D)
    for _ in range(n):
        t += rng.choice([0, 0, 1, 250_000, 4_000_000, 15_000_000 - t % 15_000_000])
        if rng.random() < 0.0005:
            t += 3 * 3600 * 1_000_000  # hours without a book update
        bid += rng.choice([-0.5, 0.0, 0.0, 0.5])
        ask = bid + rng.choice([0.5, 1.0])
        one_sided = rng.random() < 0.08
        rows.append(
            _snap(
                t,
                ask,
                rng.choice([0.5, 1.0, 2.0]),
                None if one_sided else bid,
                None if one_sided else rng.choice([0.5, 1.0, 3.0]),
            )
        )
    end = at(0, day=NEXT)
    day_rows = [r for r in rows if r["timestamp"] < end - 2_000_000]
    next_rows = [r for r in rows if r["timestamp"] >= end - 2_000_000]  # late D rows sit in file D+1
    next_rows.append(_snap(end + 5, 1.0, 1.0, 0.5, 1.0))
    return day_rows, next_rows


def reference_ofi(book: list[dict], width_s: int) -> dict[int, float | None]:
    """bucket start -> ofi_sum, null when the bucket had neither covered time nor an event."""
    lo, hi = day_start(DAY), day_start(DAY) + DAY_US
    states = sorted((r for r in book if lo <= r["timestamp"] < hi), key=lambda r: r["timestamp"])
    width = width_s * 1_000_000

    def two_sided(s: dict) -> bool:
        v = (s["ask_price_0"], s["ask_amount_0"], s["bid_price_0"], s["bid_amount_0"])
        return None not in v and s["ask_amount_0"] + s["bid_amount_0"] > 0

    sums: dict[int, float] = {}
    events: dict[int, int] = {}
    covered: dict[int, int] = {}
    for i, s in enumerate(states):
        b = lo + (s["timestamp"] - lo) // width * width
        if i > 0 and two_sided(s) and two_sided(states[i - 1]):
            p = states[i - 1]
            e = 0.0
            if s["bid_price_0"] >= p["bid_price_0"]:
                e += s["bid_amount_0"]
            if s["bid_price_0"] <= p["bid_price_0"]:
                e -= p["bid_amount_0"]
            if s["ask_price_0"] <= p["ask_price_0"]:
                e -= s["ask_amount_0"]
            if s["ask_price_0"] >= p["ask_price_0"]:
                e += p["ask_amount_0"]
            sums[b] = sums.get(b, 0.0) + e
            events[b] = events.get(b, 0) + 1
        if two_sided(s):  # covered time of the step [t_i, t_i+1), split over buckets
            start, stop = s["timestamp"], states[i + 1]["timestamp"] if i + 1 < len(states) else hi
            while start < stop:
                b0 = lo + (start - lo) // width * width
                part = min(stop, b0 + width) - start
                covered[b0] = covered.get(b0, 0) + part
                start += part
    out: dict[int, float | None] = {}
    for b in range(lo, hi, width):
        out[b] = sums.get(b, 0.0) if covered.get(b, 0) > 0 or events.get(b, 0) > 0 else None
    return out


def _check(frame: pl.DataFrame, expected: dict[int, float | None], context: str) -> None:
    got = dict(zip(frame["timestamp"].cast(pl.Int64).to_list(), frame["ofi_sum"].to_list(), strict=True))
    for b, ev in expected.items():
        if b not in got:  # a sparse file omits buckets without ticks: they must be 0 or null by the rule
            continue
        av = got[b]
        where = f"{context} bucket {b}: got {av}, expected {ev}"
        if ev is None or av is None:
            assert av is None and ev is None, where
        else:
            assert math.isclose(av, ev, rel_tol=1e-9, abs_tol=1e-9), where


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[LocalStore, list[dict], list[dict]]:
    store = LocalStore(tmp_path_factory.mktemp("ofi") / "lake")
    books = {}
    for key, seed in ((PERP, 1), (OPTION, 2)):
        day_rows, next_rows = _random_book(seed, 6000)
        trades = [_trade(at(0, 0, 7), 100.0), _trade(at(13), 101.0)]
        write_ticks(store, "trades", DAY, key, trades)
        write_ticks(store, "trades", NEXT, key, [_trade(at(0, 0, 1, day=NEXT), 1.0)])
        write_ticks(store, "book_snapshot_5", DAY, key, day_rows)
        write_ticks(store, "book_snapshot_5", NEXT, key, next_rows)
        books[key] = day_rows + next_rows
    build_base_candles(store, DAY, EXCHANGE)
    for tf in TIMEFRAMES[1:]:
        build_rolled_up_candles(store, DAY, EXCHANGE, tf)
    return store, books[PERP], books[OPTION]


@pytest.mark.parametrize("timeframe", ["15s", "1m", "1h"])
def test_ofi_sum_equals_the_reference_from_raw_book_snapshots(built, timeframe: str) -> None:
    store, perp_book, option_book = built
    for key, book in ((PERP, perp_book), (OPTION, option_book)):
        frame = pl.read_parquet(store.uri(candles_path(DAY, timeframe, key)))
        expected = reference_ofi(book, WIDTHS[timeframe])
        if key == PERP:
            assert frame.height == len(expected)
        if timeframe == "15s":  # the data has buckets without any book, and covered ones
            assert 0 < sum(v is None for v in expected.values()) < len(expected) / 2
        _check(frame, expected, f"{key} {timeframe}")
        _check(densify(frame), expected, f"{key} {timeframe} densified")


def test_sparse_ofi_densifies_and_rolls_up_like_the_dense_grid(built) -> None:
    store, _, option_book = built
    sparse = pl.read_parquet(store.uri(candles_path(DAY, "15s", OPTION)))
    assert sparse["density"][0] == "sparse" and sparse.height < 5760
    dense = densify(sparse)
    assert dense.height == 5760
    for tf in ("1m", "5m", "1h", "24h"):
        from_sparse = rollup(sparse, get_timeframe(tf))
        from_dense = rollup(dense, get_timeframe(tf)).join(from_sparse.select("timestamp"), on="timestamp")
        assert from_sparse["ofi_sum"].is_null().to_list() == from_dense["ofi_sum"].is_null().to_list(), tf
        diff = (from_sparse["ofi_sum"] - from_dense["ofi_sum"]).abs().max()
        assert diff is None or diff < 1e-9, tf
        _check(densify(from_sparse), reference_ofi(option_book, WIDTHS[tf]), f"sparse {tf}")
