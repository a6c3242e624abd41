"""When messages happen and what every row shares: trading windows, timestamps, latencies, lot sizes.

Exchange timestamps have millisecond precision (as the real feeds), local timestamps microsecond
precision; a message's ``local_timestamp`` is its exchange timestamp plus a collector latency.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date

import numpy as np

from market_data_assets.days import US_PER_DAY, day_start_us, to_us
from market_data_assets.sandbox.exchanges import exchange_info
from market_data_assets.sandbox.instruments import Instrument
from market_data_assets.sandbox.textformat import Cells, join_cells


def trading_window(inst: Instrument, exchange: str, day: date) -> tuple[int, int] | None:
    """[start, end) µs of ``day`` in which the instrument trades (None when it does not)."""
    start = day_start_us(day)
    end = start + US_PER_DAY
    if day < exchange_info(exchange).available_since:
        return None
    a = max(start, to_us(inst.listing))
    b = end if inst.available_to is None else min(end, to_us(inst.available_to))
    return (a, b) if b - a >= 1_000_000 else None


def event_times(rng: np.random.Generator, a: int, b: int, n: int) -> np.ndarray:
    """``n`` sorted exchange timestamps (whole milliseconds, as real feeds) in [a, b)."""
    a_ms, b_ms = -(-a // 1000), b // 1000
    if n <= 0 or b_ms <= a_ms:
        return np.zeros(0, dtype=np.int64)
    ms = np.sort(rng.integers(a_ms, b_ms, n))
    return ms.astype(np.int64) * 1000


def latency_us(rng: np.random.Generator, n: int, low: int = 2_000, high: int = 250_000) -> np.ndarray:
    return rng.integers(low, high, n).astype(np.int64)


def scaled_count(base: float, a: int, b: int) -> int:
    return int(round(base * (b - a) / US_PER_DAY))


@dataclass(frozen=True)
class Table:
    """One instrument's rows for one file, not yet formatted: local timestamps + the columns after
    ``exchange,symbol``. Rows that fall outside the file (another day, an incident) are dropped
    before any text is made, so the spill-over from the previous day costs next to nothing."""

    local: np.ndarray
    columns: tuple[Cells, ...]

    @staticmethod
    def empty() -> Table:
        return Table(np.zeros(0, dtype=np.int64), ())

    def __len__(self) -> int:
        return len(self.local)

    def take(self, rows: np.ndarray) -> Table:
        return Table(self.local[rows], tuple(c.take(rows) for c in self.columns))

    def lines(self, exchange: str, symbol: str) -> list[str]:
        """CSV lines (no newline) starting ``exchange,symbol,``."""
        return join_cells([Cells(f"{exchange},{symbol}"), *self.columns], len(self))


def stamps(ts: np.ndarray, local: np.ndarray) -> tuple[Cells, Cells]:
    """The ``timestamp,local_timestamp`` columns."""
    return Cells(np.asarray(ts, dtype=np.int64)), Cells(np.asarray(local, dtype=np.int64))


def draw_lots(rng: np.random.Generator, n: int, scale: float) -> np.ndarray:
    return np.maximum(1, np.round(rng.lognormal(math.log(max(scale, 1.0)), 1.0, n))).astype(np.int64)


REFERENCE_PRICE = {"BTC": 50_000.0, "ETH": 3_000.0, "SOL": 100.0, "WIF": 2.0, "MATIC": 0.7, "POL": 0.5}


def lot_scale(inst: Instrument) -> float:
    """Typical trade size in lots: a few thousand USD of notional (options: a few contracts)."""
    if inst.type == "option":
        return 5.0
    if inst.inverse or inst.contract_type == "quanto_perpetual":
        return max(1.0, 3_000.0 / inst.amount_increment) if inst.inverse else 30.0
    base_amount = 3_000.0 / REFERENCE_PRICE.get(inst.base, 1.0)
    return max(1.0, base_amount / inst.amount_increment)


def sample_times(
    rng: np.random.Generator, a: int, b: int, n: int, day: date
) -> tuple[np.ndarray, np.ndarray]:
    """Exchange and local timestamps of non-trade messages; they never spill into the next day."""
    day_end = day_start_us(day) + US_PER_DAY
    ts = event_times(rng, a, min(b, day_end - 1_000_000), n)
    # sorted so that message order = local order (book updates must replay in file order);
    # the k-th smallest of ts + latency is still >= the k-th smallest ts
    local = np.sort(ts + latency_us(rng, len(ts), 1_000, 200_000))
    return ts, local
