"""Realistic synthetic Tardis CSV.gz days for the benchmarks, cached under ``benchmarks/.work/``.

Why not uniform noise: real trade files are bursty (one aggressor order fills several makers at the
same exchange millisecond, same side, neighbouring prices, consecutive ids) and book snapshots change
only a few levels between rows. Compression ratios measured on white noise would mislead.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import polars as pl

from market_data_assets.tardis.formats import get_spec

WORK = Path(__file__).resolve().parent / ".work"
DAY_START_US = 1_704_067_200_000_000  # 2024-01-01T00:00:00Z
DAY_US = 86_400_000_000


def _arrival_times(rng: np.random.Generator, n: int) -> np.ndarray:
    """Bursty, sorted arrival times (µs) filling one day: gamma inter-arrivals with shape < 1."""
    gaps = rng.gamma(0.35, 1.0, n)
    t = np.cumsum(gaps)
    return DAY_START_US + 1_000 + (t / t[-1] * (DAY_US - 2_000)).astype(np.int64)


def trades_frame(n: int, seed: int = 7) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    fills = 1 + rng.geometric(0.45, n) - 1  # trades per aggressor order
    order_of_trade = np.repeat(np.arange(n), fills)[:n]
    n_orders = int(order_of_trade[-1]) + 1
    order_local = _arrival_times(rng, n_orders)
    first_of_order = np.r_[True, order_of_trade[1:] != order_of_trade[:-1]]
    fill_idx = np.arange(n) - np.maximum.accumulate(np.where(first_of_order, np.arange(n), 0))
    local = order_local[order_of_trade] + fill_idx * rng.integers(3, 40, n)
    latency = rng.lognormal(np.log(4_000), 0.6, n_orders).astype(np.int64)
    ts = (order_local - latency) // 1000 * 1000
    side_of_order = rng.random(n_orders) < 0.5
    mid_ticks = 420_000 + np.cumsum(rng.choice([-1, 0, 0, 0, 1], n_orders))
    sign = np.where(side_of_order, 1, -1)
    price_ticks = mid_ticks[order_of_trade] + sign[order_of_trade] * (fill_idx // 2)
    amount = np.maximum(np.round(rng.lognormal(-4.5, 1.6, n), 3), 0.001)
    return pl.DataFrame(
        {
            "exchange": pl.Series(["binance-futures"]).extend_constant("binance-futures", n - 1),
            "symbol": pl.Series(["BTCUSDT"]).extend_constant("BTCUSDT", n - 1),
            "timestamp": ts[order_of_trade],
            "local_timestamp": local,
            "id": (np.arange(n, dtype=np.int64) + 3_512_000_000).astype(str),
            "side": np.where(side_of_order[order_of_trade], "buy", "sell"),
            "price": np.round(price_ticks * 0.1, 1),
            "amount": amount,
        }
    )


def _persistent(rng: np.random.Generator, fresh: np.ndarray, change_prob: float) -> np.ndarray:
    """Each cell keeps its previous row's value unless it changes (probability ``change_prob``)."""
    frame = pl.DataFrame(fresh)
    mask = rng.random(fresh.shape) < change_prob
    mask[0, :] = True
    kept = frame.with_columns(
        pl.when(pl.lit(pl.Series(mask[:, i]))).then(pl.col(c)).otherwise(None).forward_fill().alias(c)
        for i, c in enumerate(frame.columns)
    )
    return kept.to_numpy()


def book_snapshot_frame(n: int, depth: int = 25, seed: int = 11) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    local = _arrival_times(rng, n)
    ts = (local - rng.lognormal(np.log(3_000), 0.5, n).astype(np.int64)) // 1000 * 1000
    best_bid_ticks = 420_000 + np.cumsum(rng.choice([-1, 0, 0, 0, 0, 0, 1], n))
    spread = np.where(rng.random(n) < 0.9, 1, 2)
    gaps = _persistent(rng, rng.choice([1, 1, 1, 2, 3], (n, 2 * depth)), 0.05).astype(np.int64)
    ask_ticks = best_bid_ticks[:, None] + spread[:, None] + np.cumsum(gaps[:, :depth], axis=1) - gaps[:, :1]
    bid_ticks = best_bid_ticks[:, None] - np.cumsum(gaps[:, depth:], axis=1) + gaps[:, depth : depth + 1]
    amounts = _persistent(rng, np.maximum(np.round(rng.lognormal(-1.0, 1.5, (n, 2 * depth)), 3), 0.001), 0.15)
    cols: dict[str, object] = {
        "exchange": pl.Series(["binance-futures"]).extend_constant("binance-futures", n - 1),
        "symbol": pl.Series(["BTCUSDT"]).extend_constant("BTCUSDT", n - 1),
        "timestamp": ts,
        "local_timestamp": local,
    }
    for i in range(depth):
        cols[f"asks[{i}].price"] = np.round(ask_ticks[:, i] * 0.1, 1)
        cols[f"asks[{i}].amount"] = amounts[:, i]
        cols[f"bids[{i}].price"] = np.round(bid_ticks[:, i] * 0.1, 1)
        cols[f"bids[{i}].amount"] = amounts[:, depth + i]
    frame = pl.DataFrame(cols)
    assert tuple(frame.columns) == get_spec(f"book_snapshot_{depth}").csv_header
    return frame


def cached_csv_gz(name: str, build: object) -> Path:
    """``benchmarks/.work/NAME.csv.gz``, generated once (gzip -6, like Tardis' files)."""
    WORK.mkdir(parents=True, exist_ok=True)
    out = WORK / f"{name}.csv.gz"
    if out.exists():
        return out
    csv = WORK / f"{name}.csv"
    build().write_csv(csv)  # type: ignore[operator]
    subprocess.run(["gzip", "-6", "-f", str(csv)], check=True)
    return out


def trades_day(rows: int = 5_000_000) -> Path:
    return cached_csv_gz(f"trades_{rows}", lambda: trades_frame(rows))


def book_snapshot_25_day(rows: int = 1_000_000) -> Path:
    return cached_csv_gz(f"book_snapshot_25_{rows}", lambda: book_snapshot_frame(rows))
