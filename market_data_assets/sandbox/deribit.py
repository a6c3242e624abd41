"""Deribit's dated futures and options: expiry calendars, strike ladders, ids like ``BTC-27DEC24-100000-C``.

Strikes are centred on the index price the day before listing, so every option is plausible when
it appears. The small universe lists weekly (2 weeks ahead, 3 strikes) and quarterly (6 months,
5 strikes) expiries: ~4K options across history, ~60 alive on a day. ``large`` adds daily and
monthly expiries and wide ladders: ~300K options up to 2024-12-31, ~3K alive on a day, which is
Deribit's real order of magnitude.
"""

from __future__ import annotations

import calendar
import math
from collections.abc import Iterable
from datetime import date, timedelta

from market_data_assets.days import day_start
from market_data_assets.sandbox.exchanges import exchange_info
from market_data_assets.sandbox.index_paths import close_price
from market_data_assets.sandbox.instruments import Instrument

_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")


def deribit_expiry_code(day: date) -> str:
    """Deribit's expiry spelling: ``9JUN20``, ``27DEC24`` (day not zero-padded)."""
    return f"{day.day}{_MONTHS[day.month - 1]}{day.year % 100:02d}"


def _last_friday(year: int, month: int) -> date:
    last = date(year, month, calendar.monthrange(year, month)[1])
    return last - timedelta(days=(last.weekday() - 4) % 7)


def _fridays(start: date, end: date) -> Iterable[date]:
    d = start + timedelta(days=(4 - start.weekday()) % 7)
    while d < end:
        yield d
        d += timedelta(days=7)


def _quarterlies(start: date, end: date) -> list[date]:
    return [
        q
        for y in range(start.year, end.year + 1)
        for m in (3, 6, 9, 12)
        if start <= (q := _last_friday(y, m)) < end
    ]


def _monthlies(start: date, end: date) -> list[date]:
    return [
        q
        for y in range(start.year, end.year + 1)
        for m in range(1, 13)
        if start <= (q := _last_friday(y, m)) < end
    ]


def _strike_step(price: float, n_strikes: int) -> float:
    """A round strike spacing so that ``n_strikes`` strikes span roughly +-40% of ``price``."""
    raw = price * 0.8 / max(n_strikes, 1)
    mag = 10 ** math.floor(math.log10(raw))
    for mult in (1, 2, 2.5, 5, 10):
        if mult * mag >= raw:
            return mult * mag
    return 10 * mag


def _strikes(price: float, n: int) -> list[float]:
    step = _strike_step(price, n)
    center = round(price / step) * step
    out = [center + step * (j - n // 2) for j in range(n)]
    return [s for s in out if s > 0]


def _fmt_strike(strike: float) -> str:
    return str(int(strike)) if float(strike).is_integer() else f"{strike:g}"


def _option_expiries(large: bool, start: date, horizon: date) -> dict[date, tuple[int, int]]:
    """expiry day -> (days listed before expiry, number of strikes); weekly/monthly/... merged."""
    series: list[tuple[Iterable[date], int, int]] = []
    if large:
        dailies_from = max(start, date(2021, 1, 1))
        series.append(
            ((dailies_from + timedelta(days=i) for i in range((horizon - dailies_from).days)), 3, 48)
        )
        series.append((_fridays(start, horizon), 35, 40))
        series.append((_monthlies(start, horizon), 120, 50))
        series.append((_quarterlies(start, horizon), 400, 60))
    else:
        series.append((_fridays(start, horizon), 14, 3))
        series.append((_quarterlies(start, horizon), 182, 5))
    out: dict[date, tuple[int, int]] = {}
    for days_iter, life, strikes in series:
        for d in days_iter:
            old_life, old_strikes = out.get(d, (0, 0))
            out[d] = (max(old_life, life), max(old_strikes, strikes))
    return out


def deribit_derivatives(seed: int, large: bool, horizon: date) -> list[Instrument]:
    start_dt = day_start(exchange_info("deribit").available_since)
    start = start_dt.date()
    fut_types = exchange_info("deribit").types["future"]
    opt_types = exchange_info("deribit").types["option"]
    out: list[Instrument] = []
    for base, fut_tick, fut_lot in (("BTC", 2.5, 10), ("ETH", 0.25, 1)):
        for expiry_day in _quarterlies(start, horizon + timedelta(days=300)):
            listing = max(start_dt, day_start(expiry_day - timedelta(days=270)) + timedelta(hours=8))
            expiry = day_start(expiry_day) + timedelta(hours=8)
            if listing >= day_start(horizon):
                continue
            code = f"{base}-{deribit_expiry_code(expiry_day)}"
            out.append(
                Instrument(
                    exchange="deribit",
                    id=code,
                    dataset_id=code,
                    type="future",
                    base=base,
                    quote="USD",
                    underlying=base,
                    listing=listing,
                    available_to=expiry,
                    expiry=expiry,
                    price_increment=fut_tick,
                    amount_increment=fut_lot,
                    min_trade_amount=fut_lot,
                    maker_fee=-0.0001,
                    taker_fee=0.0005,
                    data_types=fut_types,
                    settlement=base,
                    inverse=True,
                    contract_type="inverse_future",
                    contract_multiplier=1,
                    underlying_index=f"{base.lower()}_usd",
                )
            )
    expiries = _option_expiries(large, start, horizon + timedelta(days=400))
    for base, lot in (("BTC", 0.1), ("ETH", 1)):
        for expiry_day in sorted(expiries):
            life, n_strikes = expiries[expiry_day]
            listing_day = expiry_day - timedelta(days=life)
            listing = max(start_dt, day_start(listing_day) + timedelta(hours=8))
            if listing >= day_start(horizon):
                continue
            expiry = day_start(expiry_day) + timedelta(hours=8)
            ref = close_price(seed, base, listing.date() - timedelta(days=1))
            code = deribit_expiry_code(expiry_day)
            for strike in _strikes(ref, n_strikes):
                for letter, kind in (("C", "call"), ("P", "put")):
                    oid = f"{base}-{code}-{_fmt_strike(strike)}-{letter}"
                    out.append(
                        Instrument(
                            exchange="deribit",
                            id=oid,
                            dataset_id=oid,
                            type="option",
                            base=base,
                            quote=base,
                            underlying=base,
                            listing=listing,
                            available_to=expiry,
                            expiry=expiry,
                            price_increment=0.0001,
                            amount_increment=lot,
                            min_trade_amount=lot,
                            maker_fee=0.0003,
                            taker_fee=0.0003,
                            data_types=opt_types,
                            inverse=True,
                            contract_type=f"{kind}_option",
                            contract_multiplier=1,
                            strike=int(strike) if float(strike).is_integer() else strike,
                            option_type=kind,
                        )
                    )
    return out
