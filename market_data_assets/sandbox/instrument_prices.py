"""Prices of one instrument: the tick and lot valid at each moment, fair mids, quotes, option marks.

An instrument's ``changes`` history (Tardis's "values valid before ``until``") decides the
``priceIncrement`` and ``amountIncrement`` at each event, so the data agrees with the metadata
on both sides of a change.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date

import numpy as np

from market_data_assets.days import US_PER_DAY, parse_tardis_time, to_us
from market_data_assets.sandbox.config import SandboxConfig
from market_data_assets.sandbox.index_paths import day_index, index_at
from market_data_assets.sandbox.instruments import Instrument
from market_data_assets.sandbox.textformat import decimals_of

YEAR_US = 365.25 * US_PER_DAY


_PARAM_FIELDS = ("priceIncrement", "amountIncrement", "minTradeAmount", "contractMultiplier")


def parse_iso_us(text: str) -> int:
    return to_us(parse_tardis_time(text))


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
        if parse_iso_us(str(change["until"])) > moment_us:
            for name in _PARAM_FIELDS:
                if name in change and name not in resolved:
                    resolved[name] = float(change[name])  # pyright: ignore[reportArgumentType]
    return {**current, **resolved}


@dataclass(frozen=True)
class PriceGrid:
    """Per-event price tick and amount lot as scaled integers (units of 10**-decimals)."""

    tick_units: np.ndarray
    price_decimals: int
    lot_units: np.ndarray
    min_lots: np.ndarray
    amount_decimals: int

    @property
    def tick(self) -> np.ndarray:
        return self.tick_units / 10**self.price_decimals


def price_grid(inst: Instrument, ts: np.ndarray) -> PriceGrid:
    bounds = sorted({parse_iso_us(str(c["until"])) for c in inst.changes})
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
    return PriceGrid(ticks[seg], pdec, lots[seg], mins[seg], adec)


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
    expiry_us = to_us(inst.expiry)
    t = np.maximum((expiry_us - ts) / YEAR_US, 1.0 / (365.25 * 24 * 12))
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
    years = np.maximum(to_us(inst.expiry) - ts, 0) / YEAR_US
    return index * (1.0 + 0.08 * years)


def _spread_ticks(inst: Instrument, mid: np.ndarray, tick: np.ndarray) -> np.ndarray:
    bps = {"spot": 0.5, "perpetual": 0.3, "future": 2.0, "option": 300.0}[inst.type]
    return np.maximum(1, np.round(mid * bps / 1e4 / tick)).astype(np.int64)


def quote_ticks(inst: Instrument, mid: np.ndarray, grid: PriceGrid) -> tuple[np.ndarray, np.ndarray]:
    """(best bid, best ask) in ticks; bid >= 1 tick, ask > bid."""
    tick = grid.tick
    spread = _spread_ticks(inst, mid, tick)
    bid = np.maximum(1, np.floor(mid / tick - spread / 2)).astype(np.int64)
    return bid, bid + spread
