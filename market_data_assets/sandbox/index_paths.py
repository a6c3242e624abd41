"""Deterministic synthetic price paths: one index per underlying, shared by every instrument on it.

Daily closes follow a mean-reverting random walk (in log space) around a hand-set anchor curve
so that prices stay plausible for each year (BTC near 40K in early 2024, near 95K at its end).
Inside a day the path is a Brownian bridge at one-second resolution from the previous close to
the day's close, so consecutive daily files join up and every data type of every instrument on
the same underlying sees the same market.
"""

from __future__ import annotations

import hashlib
import math
from datetime import date
from functools import lru_cache

import numpy as np

from market_data_assets.days import day_start_us

EPOCH = date(2019, 1, 1)
"""Day index 0 of every daily series."""
LAST_DAY = date(2031, 1, 1)
SECONDS_PER_DAY = 86_400
DAILY_VOL = 0.03

# underlying -> (date, price) anchors; log-linear in between, flat outside.
_ANCHORS: dict[str, tuple[tuple[date, float], ...]] = {
    "BTC": (
        (date(2019, 1, 1), 3800),
        (date(2019, 6, 26), 12000),
        (date(2020, 3, 13), 5000),
        (date(2020, 12, 31), 29000),
        (date(2021, 4, 14), 63000),
        (date(2021, 7, 20), 30000),
        (date(2021, 11, 10), 67000),
        (date(2022, 6, 18), 19000),
        (date(2022, 12, 31), 16500),
        (date(2023, 12, 31), 42000),
        (date(2024, 3, 14), 71000),
        (date(2024, 9, 6), 54000),
        (date(2024, 12, 17), 106000),
        (date(2025, 6, 30), 107000),
        (date(2031, 1, 1), 120000),
    ),
    "ETH": (
        (date(2019, 1, 1), 140),
        (date(2020, 3, 13), 110),
        (date(2021, 5, 12), 4300),
        (date(2022, 6, 18), 1000),
        (date(2023, 12, 31), 2300),
        (date(2024, 3, 12), 4000),
        (date(2024, 8, 5), 2400),
        (date(2024, 12, 16), 4000),
        (date(2031, 1, 1), 3500),
    ),
    "SOL": (
        (date(2019, 1, 1), 1.5),
        (date(2021, 11, 6), 250),
        (date(2022, 12, 29), 9),
        (date(2024, 11, 22), 260),
        (date(2031, 1, 1), 180),
    ),
    "WIF": (
        (date(2019, 1, 1), 0.2),
        (date(2024, 3, 31), 4.5),
        (date(2024, 8, 5), 1.3),
        (date(2024, 11, 13), 4.2),
        (date(2031, 1, 1), 1.0),
    ),
    "MATIC": (
        (date(2019, 1, 1), 0.004),
        (date(2021, 12, 27), 2.8),
        (date(2023, 12, 31), 0.95),
        (date(2024, 9, 10), 0.38),
        (date(2031, 1, 1), 0.4),
    ),
    "POL": (
        (date(2019, 1, 1), 0.4),
        (date(2024, 9, 13), 0.40),
        (date(2024, 12, 5), 0.70),
        (date(2031, 1, 1), 0.5),
    ),
}

UNDERLYINGS: tuple[str, ...] = tuple(_ANCHORS)


def stable_seed(*parts: object) -> int:
    """A seed that depends only on ``parts`` (not on Python's randomized ``hash``)."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def rng_for(*parts: object) -> np.random.Generator:
    """An independent, reproducible random stream for one (seed, ...) context."""
    return np.random.default_rng(stable_seed(*parts))


def day_index(day: date) -> int:
    return (day - EPOCH).days


def _anchor_curve(underlying: str, n_days: int) -> np.ndarray:
    anchors = _ANCHORS[underlying]
    xs = np.array([day_index(d) for d, _ in anchors], dtype=float)
    ys = np.log(np.array([p for _, p in anchors], dtype=float))
    return np.interp(np.arange(n_days, dtype=float), xs, ys)


@lru_cache(maxsize=64)
def daily_log_closes(seed: int, underlying: str) -> np.ndarray:
    """log(close) of each day from ``EPOCH`` to ``LAST_DAY`` (index = ``day_index``)."""
    if underlying not in _ANCHORS:
        raise KeyError(f"sandbox has no price path for underlying {underlying!r}")
    n = day_index(LAST_DAY) + 1
    anchor = _anchor_curve(underlying, n)
    shocks = rng_for(seed, "daily", underlying).normal(0.0, DAILY_VOL, n)
    deviation = np.empty(n)
    level = 0.0
    for i in range(n):  # OU around the anchor: plausible levels, random-walk texture
        level = 0.93 * level + shocks[i]
        deviation[i] = level
    out = anchor + deviation
    out.setflags(write=False)
    return out


def close_price(seed: int, underlying: str, day: date) -> float:
    """The index price at the end of ``day`` (= at 00:00 of the next day)."""
    return math.exp(daily_log_closes(seed, underlying)[day_index(day)])


@lru_cache(maxsize=48)
def intraday_path(seed: int, underlying: str, day: date) -> np.ndarray:
    """Index price at each whole second of ``day`` (86,401 points, 00:00:00 to 24:00:00)."""
    closes = daily_log_closes(seed, underlying)
    i = day_index(day)
    if not 1 <= i < len(closes):
        raise ValueError(f"sandbox prices cover {EPOCH} to {LAST_DAY}; got {day}")
    start, end = closes[i - 1], closes[i]
    steps = rng_for(seed, "intraday", underlying, day.isoformat()).normal(
        0.0, DAILY_VOL / math.sqrt(SECONDS_PER_DAY), SECONDS_PER_DAY
    )
    walk = np.concatenate(([0.0], np.cumsum(steps)))
    frac = np.linspace(0.0, 1.0, SECONDS_PER_DAY + 1)
    bridge = walk - frac * walk[-1]
    out = np.exp(start + frac * (end - start) + bridge)
    out.setflags(write=False)
    return out


def index_at(seed: int, underlying: str, day: date, ts_us: np.ndarray) -> np.ndarray:
    """Index price at microsecond timestamps inside ``day`` (clamped to the day)."""
    path = intraday_path(seed, underlying, day)
    sec = (np.asarray(ts_us, dtype=np.int64) - day_start_us(day)) // 1_000_000
    return path[np.clip(sec, 0, SECONDS_PER_DAY)]
