"""The sandbox's instrument universe: exchanges, instruments, grouped dataset symbols, incidents.

Everything here is a pure, cached function of (seed, large_deribit, exported_until). Instruments
listed on or after ``exported_until`` are not visible yet, exactly like symbols Tardis has not
seen; moving ``exported_until`` forward (a sensor test does) reveals them.

Shape of the universe (small default):
- binance (spot): btcusdt, ethusdt, solusdt, wifusdt (listed 2024-03-05 12:00),
  maticusdt (delisted 2024-09-10 04:00), polusdt (listed 2024-09-13 10:00).
- binance-futures (USDT perpetuals): btcusdt (priceIncrement 0.01 -> 0.1 on 2022-03-01),
  ethusdt, solusdt, wifusdt (listed 2024-03-05 08:00), maticusdt (delisted 2024-09-10 09:00).
- deribit: BTC/ETH-PERPETUAL (ETH contractMultiplier 10 -> 1 on 2024-06-01 08:00), quarterly
  inverse futures, and BTC/ETH options (weekly + quarterly expiries; with ``large_deribit`` also
  daily and monthly expiries and many more strikes: ~300K option symbols up to 2024-12-31).
- bitmex: XBTUSD (inverse; priceIncrement 0.5 -> 0.1 on 2024-07-31 04:00, the real history)
  and ETHUSD (quanto). Instruments metadata is free on bitmex, as on Tardis.
- coinbase (spot): BTC-USD, ETH-USD, SOL-USD (listed 2021-06-17 16:00).
Every exchange has grouped symbols (SPOT, PERPETUALS, FUTURES, OPTIONS) for the types it lists.
"""

from __future__ import annotations

import calendar
import gc
import math
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache

from market_data_assets.tardis.formats import get_spec
from market_data_assets.tardis.sandbox.config import SandboxConfig
from market_data_assets.tardis.sandbox.prices import close_price

GROUP_BY_TYPE: dict[str, str] = {
    "spot": "SPOT",
    "perpetual": "PERPETUALS",
    "future": "FUTURES",
    "option": "OPTIONS",
}
_BOOK_TYPES = ("incremental_book_L2", "book_snapshot_25", "book_snapshot_5")


def utc(y: int, m: int, d: int, hh: int = 0, mm: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=UTC)


@lru_cache(maxsize=65536)
def iso(moment: datetime | date) -> str:
    """Tardis spelling of a UTC instant: ``2024-03-05T00:00:00.000Z`` (cached: few distinct values)."""
    if not isinstance(moment, datetime):
        moment = datetime(moment.year, moment.month, moment.day, tzinfo=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


@dataclass(frozen=True)
class ExchangeInfo:
    id: str
    name: str
    available_since: date
    channels: tuple[str, ...]
    types: dict[str, tuple[str, ...]]
    """instrument type -> data types offered per instrument of that type."""


_EXCHANGES: dict[str, ExchangeInfo] = {
    "binance": ExchangeInfo(
        "binance",
        "Binance Spot",
        date(2019, 3, 30),
        (
            "trade",
            "aggTrade",
            "ticker",
            "depth",
            "depthSnapshot",
            "bookTicker",
            "recentTrades",
            "borrowInterest",
            "tokenNav",
        ),
        {
            "spot": (
                "trades",
                "incremental_book_L2",
                "quotes",
                "book_ticker",
                "book_snapshot_25",
                "book_snapshot_5",
            )
        },
    ),
    "binance-futures": ExchangeInfo(
        "binance-futures",
        "Binance USDT Futures",
        date(2019, 11, 17),
        (
            "trade",
            "aggTrade",
            "ticker",
            "depth",
            "depthSnapshot",
            "markPrice",
            "bookTicker",
            "forceOrder",
            "openInterest",
            "recentTrades",
            "compositeIndex",
            "assetIndex",
            "topLongShortAccountRatio",
            "topLongShortPositionRatio",
            "globalLongShortAccountRatio",
            "takerlongshortRatio",
            "!contractInfo",
        ),
        {
            "perpetual": (
                "trades",
                "incremental_book_L2",
                "quotes",
                "book_ticker",
                "derivative_ticker",
                "liquidations",
                "book_snapshot_25",
                "book_snapshot_5",
            )
        },
    ),
    "deribit": ExchangeInfo(
        "deribit",
        "Deribit",
        date(2019, 3, 30),
        (
            "book",
            "deribit_price_index",
            "deribit_price_ranking",
            "deribit_volatility_index",
            "estimated_expiration_price",
            "markprice.options",
            "perpetual",
            "trades",
            "ticker",
            "quote",
            "platform_state",
            "instrument.state.any",
        ),
        {
            "perpetual": (
                "trades",
                "incremental_book_L2",
                "quotes",
                "derivative_ticker",
                "liquidations",
                "book_snapshot_25",
                "book_snapshot_5",
            ),
            "future": (
                "trades",
                "incremental_book_L2",
                "quotes",
                "derivative_ticker",
                "liquidations",
                "book_snapshot_25",
                "book_snapshot_5",
            ),
            "option": ("trades", "incremental_book_L2", "quotes", "book_snapshot_25", "book_snapshot_5"),
        },
    ),
    "bitmex": ExchangeInfo(
        "bitmex",
        "BitMEX",
        date(2019, 3, 30),
        (
            "trade",
            "orderBookL2",
            "liquidation",
            "connected",
            "announcement",
            "chat",
            "publicNotifications",
            "instrument",
            "settlement",
            "funding",
            "insurance",
            "orderBookL2_25",
            "orderBook10",
            "quote",
            "quoteBin1m",
            "quoteBin5m",
            "quoteBin1h",
            "quoteBin1d",
            "tradeBin1m",
            "tradeBin5m",
            "tradeBin1h",
            "tradeBin1d",
        ),
        {
            "perpetual": (
                "trades",
                "incremental_book_L2",
                "quotes",
                "derivative_ticker",
                "liquidations",
                "book_snapshot_25",
                "book_snapshot_5",
            )
        },
    ),
    "coinbase": ExchangeInfo(
        "coinbase",
        "Coinbase Pro",
        date(2019, 3, 30),
        (
            "match",
            "subscriptions",
            "received",
            "open",
            "done",
            "change",
            "l2update",
            "ticker",
            "snapshot",
            "last_match",
            "full_snapshot",
            "rfq_matches",
        ),
        {"spot": ("trades", "incremental_book_L2", "quotes", "book_snapshot_25", "book_snapshot_5")},
    ),
}

FREE_INSTRUMENTS_EXCHANGES = frozenset({"bitmex"})
"""Exchanges whose instruments metadata needs no key (as on Tardis)."""


@dataclass(frozen=True)
class Incident:
    start: datetime
    end: datetime
    status: str
    details: str

    def as_json(self) -> dict[str, str]:
        return {"from": iso(self.start), "to": iso(self.end), "status": self.status, "details": self.details}


INCIDENTS: dict[str, tuple[Incident, ...]] = {
    "coinbase": (
        Incident(
            utc(2024, 2, 14),
            utc(2024, 2, 15),
            "wontfix",
            "Websocket feed outage: no data recorded for the whole day.",
        ),
    ),
    "binance-futures": (
        Incident(
            utc(2024, 6, 3, 10),
            utc(2024, 6, 3, 13, 30),
            "resolved",
            "Collector reconnect loop: data missing 10:00-13:30 UTC.",
        ),
    ),
    "deribit": (
        Incident(
            utc(2024, 4, 7),
            utc(2024, 4, 8),
            "unresolved",
            "Exchange maintenance: no market data for the whole day.",
        ),
    ),
    "bitmex": (
        Incident(
            utc(2020, 3, 13, 2), utc(2020, 3, 13, 2, 30), "resolved", "Exchange overload: partial data loss."
        ),
    ),
}


@dataclass(slots=True, eq=False)
class Instrument:
    """One tradable instrument as the sandbox knows it (metadata + what drives its prices).

    Treat as immutable. Not ``frozen``: frozen dataclasses assign fields through
    ``object.__setattr__``, which doubles the time to build the ~300K-option large universe.
    """

    exchange: str
    id: str
    dataset_id: str
    type: str
    base: str
    quote: str
    underlying: str
    listing: datetime
    available_to: datetime | None
    price_increment: float
    amount_increment: float
    min_trade_amount: float
    maker_fee: float
    taker_fee: float
    data_types: tuple[str, ...]
    settlement: str | None = None
    expiry: datetime | None = None
    inverse: bool | None = None
    contract_type: str | None = None
    contract_multiplier: float | None = None
    underlying_index: str | None = None
    strike: float | None = None
    option_type: str | None = None
    changes: tuple[dict[str, object], ...] = ()
    show_listing: bool = True

    @property
    def available_since(self) -> date:
        return self.listing.date()

    def alive_between(self, start: datetime, end: datetime) -> bool:
        """Whether the instrument traded at some moment of ``[start, end)``."""
        return self.listing < end and (self.available_to is None or self.available_to > start)

    def metadata(self, exported_until: date) -> dict[str, object]:
        """The Tardis instruments-API object for this instrument (field names as Tardis spells them)."""
        out: dict[str, object] = {
            "id": self.id,
            "datasetId": self.dataset_id,
            "exchange": self.exchange,
            "baseCurrency": self.base,
            "quoteCurrency": self.quote,
        }
        if self.settlement is not None:
            out["settlementCurrency"] = self.settlement
        out["type"] = self.type
        out["active"] = self.available_to is None or self.available_to > midnight(exported_until)
        out["availableSince"] = iso(self.available_since)
        if self.available_to is not None:
            out["availableTo"] = iso(self.available_to)
        if self.show_listing:
            out["listing"] = iso(self.listing)
        if self.expiry is not None:
            out["expiry"] = iso(self.expiry)
        out.update(
            priceIncrement=self.price_increment,
            amountIncrement=self.amount_increment,
            minTradeAmount=self.min_trade_amount,
            makerFee=self.maker_fee,
            takerFee=self.taker_fee,
        )
        for key, value in (
            ("inverse", self.inverse),
            ("contractType", self.contract_type),
            ("contractMultiplier", self.contract_multiplier),
            ("underlyingIndex", self.underlying_index),
            ("strikePrice", self.strike),
            ("optionType", self.option_type),
        ):
            if value is not None:
                out[key] = value
        if self.changes:
            out["changes"] = [dict(c) for c in self.changes]
        return out

    def symbol_entry(self) -> dict[str, object]:
        """This instrument's ``datasets.symbols[]`` entry in the exchange details."""
        out: dict[str, object] = {
            "id": self.dataset_id,
            "type": self.type,
            "availableSince": iso(self.available_since),
        }
        if self.available_to is not None:
            out["availableTo"] = iso(self.available_to)
        out["dataTypes"] = list(self.data_types)
        return out


@dataclass(frozen=True)
class SymbolGroup:
    """A grouped dataset symbol (OPTIONS, PERPETUALS, ...): one mixed file per day and data type."""

    exchange: str
    id: str
    type: str
    data_types: tuple[str, ...]
    available_since: date
    members: tuple[Instrument, ...] = field(repr=False)

    def members_alive(self, start: datetime, end: datetime) -> list[Instrument]:
        return [m for m in self.members if m.alive_between(start, end)]

    def symbol_entry(self) -> dict[str, object]:
        return {
            "id": self.id,
            "type": self.type,
            "availableSince": iso(self.available_since),
            "dataTypes": list(self.data_types),
        }


# ----------------------------------------------------------------------------------------------
# instrument builders


def _spot(
    exchange: str,
    native: str,
    dataset: str,
    base: str,
    quote: str,
    listing: datetime,
    price_inc: float,
    amount_inc: float,
    *,
    until: datetime | None = None,
    changes: tuple[dict[str, object], ...] = (),
) -> Instrument:
    fee = 0.001 if exchange == "binance" else 0.004
    return Instrument(
        exchange=exchange,
        id=native,
        dataset_id=dataset,
        type="spot",
        base=base,
        quote=quote,
        underlying=base,
        listing=listing,
        available_to=until,
        price_increment=price_inc,
        amount_increment=amount_inc,
        min_trade_amount=amount_inc,
        maker_fee=fee / 2 if exchange == "coinbase" else fee,
        taker_fee=fee,
        data_types=_EXCHANGES[exchange].types["spot"],
        changes=changes,
    )


def _binance_perp(
    native: str,
    base: str,
    listing: datetime,
    price_inc: float,
    amount_inc: float,
    *,
    until: datetime | None = None,
    changes: tuple[dict[str, object], ...] = (),
) -> Instrument:
    return Instrument(
        exchange="binance-futures",
        id=native,
        dataset_id=native.upper(),
        type="perpetual",
        base=base,
        quote="USDT",
        underlying=base,
        listing=listing,
        available_to=until,
        price_increment=price_inc,
        amount_increment=amount_inc,
        min_trade_amount=amount_inc,
        maker_fee=0.0002,
        taker_fee=0.0005,
        data_types=_EXCHANGES["binance-futures"].types["perpetual"],
        settlement="USDT",
        inverse=False,
        contract_type="linear_perpetual",
        contract_multiplier=1,
        changes=changes,
    )


def _exchange_start(exchange: str) -> datetime:
    return midnight(_EXCHANGES[exchange].available_since)


def _static_instruments(exchange: str) -> list[Instrument]:
    start = _exchange_start(exchange)
    if exchange == "binance":
        return [
            _spot("binance", "btcusdt", "BTCUSDT", "BTC", "USDT", start, 0.01, 0.00001),
            _spot("binance", "ethusdt", "ETHUSDT", "ETH", "USDT", start, 0.01, 0.0001),
            _spot("binance", "solusdt", "SOLUSDT", "SOL", "USDT", utc(2020, 8, 11, 6), 0.01, 0.001),
            _spot("binance", "wifusdt", "WIFUSDT", "WIF", "USDT", utc(2024, 3, 5, 12), 0.0001, 0.01),
            _spot(
                "binance",
                "maticusdt",
                "MATICUSDT",
                "MATIC",
                "USDT",
                start,
                0.0001,
                0.1,
                until=utc(2024, 9, 10, 4),
            ),
            _spot("binance", "polusdt", "POLUSDT", "POL", "USDT", utc(2024, 9, 13, 10), 0.0001, 0.1),
        ]
    if exchange == "binance-futures":
        return [
            _binance_perp(
                "btcusdt",
                "BTC",
                start,
                0.1,
                0.001,
                changes=({"until": "2022-03-01T00:00:00.000Z", "priceIncrement": 0.01},),
            ),
            _binance_perp("ethusdt", "ETH", utc(2019, 11, 27, 8), 0.01, 0.001),
            _binance_perp("solusdt", "SOL", utc(2020, 9, 14, 8), 0.01, 1),
            _binance_perp("wifusdt", "WIF", utc(2024, 3, 5, 8), 0.0001, 1),
            _binance_perp("maticusdt", "MATIC", start, 0.0001, 1, until=utc(2024, 9, 10, 9)),
        ]
    if exchange == "coinbase":
        return [
            _spot("coinbase", "BTC-USD", "BTC-USD", "BTC", "USD", start, 0.01, 0.00000001),
            _spot("coinbase", "ETH-USD", "ETH-USD", "ETH", "USD", start, 0.01, 0.00000001),
            _spot("coinbase", "SOL-USD", "SOL-USD", "SOL", "USD", utc(2021, 6, 17, 16), 0.01, 0.001),
        ]
    if exchange == "bitmex":
        perp = _EXCHANGES["bitmex"].types["perpetual"]
        return [
            Instrument(
                exchange="bitmex",
                id="XBTUSD",
                dataset_id="XBTUSD",
                type="perpetual",
                base="BTC",
                quote="USD",
                underlying="BTC",
                listing=start,
                available_to=None,
                price_increment=0.1,
                amount_increment=100,
                min_trade_amount=100,
                maker_fee=-0.0001,
                taker_fee=0.00075,
                data_types=perp,
                settlement="BTC",
                inverse=True,
                contract_type="inverse_perpetual",
                contract_multiplier=1,
                underlying_index=".BXBT",
                changes=(
                    {"until": "2021-06-08T04:30:00.000Z", "amountIncrement": 1, "minTradeAmount": 1},
                    {"until": "2024-07-31T04:00:00.000Z", "priceIncrement": 0.5},
                    {"until": "2024-10-22T00:00:00.000Z", "makerFee": 0.0002, "takerFee": 0.00075},
                ),
                show_listing=False,
            ),
            Instrument(
                exchange="bitmex",
                id="ETHUSD",
                dataset_id="ETHUSD",
                type="perpetual",
                base="ETH",
                quote="USD",
                underlying="ETH",
                listing=start,
                available_to=None,
                price_increment=0.05,
                amount_increment=1,
                min_trade_amount=1,
                maker_fee=-0.0001,
                taker_fee=0.00075,
                data_types=perp,
                settlement="BTC",
                inverse=False,
                contract_type="quanto_perpetual",
                contract_multiplier=0.000001,
                underlying_index=".BETH",
                show_listing=False,
            ),
        ]
    if exchange == "deribit":
        perp = _EXCHANGES["deribit"].types["perpetual"]
        return [
            Instrument(
                exchange="deribit",
                id="BTC-PERPETUAL",
                dataset_id="BTC-PERPETUAL",
                type="perpetual",
                base="BTC",
                quote="USD",
                underlying="BTC",
                listing=start,
                available_to=None,
                price_increment=0.5,
                amount_increment=10,
                min_trade_amount=10,
                maker_fee=0.0,
                taker_fee=0.0005,
                data_types=perp,
                settlement="BTC",
                inverse=True,
                contract_type="inverse_perpetual",
                contract_multiplier=10,
                underlying_index="btc_usd",
            ),
            Instrument(
                exchange="deribit",
                id="ETH-PERPETUAL",
                dataset_id="ETH-PERPETUAL",
                type="perpetual",
                base="ETH",
                quote="USD",
                underlying="ETH",
                listing=start,
                available_to=None,
                price_increment=0.05,
                amount_increment=1,
                min_trade_amount=1,
                maker_fee=0.0,
                taker_fee=0.0005,
                data_types=perp,
                settlement="ETH",
                inverse=True,
                contract_type="inverse_perpetual",
                contract_multiplier=1,
                underlying_index="eth_usd",
                changes=(
                    {
                        "until": "2024-06-01T08:00:00.000Z",
                        "amountIncrement": 10,
                        "minTradeAmount": 10,
                        "contractMultiplier": 10,
                    },
                ),
            ),
        ]
    raise KeyError(exchange)


# ----------------------------------------------------------------------------------------------
# Deribit expiries, futures and options

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


@dataclass(frozen=True)
class _Series:
    name: str
    lifetime_days: int
    strikes: int


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


def _deribit_derivatives(seed: int, large: bool, horizon: date) -> list[Instrument]:
    start_dt = _exchange_start("deribit")
    start = start_dt.date()
    fut_types = _EXCHANGES["deribit"].types["future"]
    opt_types = _EXCHANGES["deribit"].types["option"]
    out: list[Instrument] = []
    for base, fut_tick, fut_lot in (("BTC", 2.5, 10), ("ETH", 0.25, 1)):
        for expiry_day in _quarterlies(start, horizon + timedelta(days=300)):
            listing = max(start_dt, midnight(expiry_day - timedelta(days=270)) + timedelta(hours=8))
            expiry = midnight(expiry_day) + timedelta(hours=8)
            if listing >= midnight(horizon):
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
            listing = max(start_dt, midnight(listing_day) + timedelta(hours=8))
            if listing >= midnight(horizon):
                continue
            expiry = midnight(expiry_day) + timedelta(hours=8)
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


# ----------------------------------------------------------------------------------------------
# cached universe and visibility


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while building hundreds of thousands of acyclic objects.

    Without this, CPython's generational GC rescans the growing heap again and again and the
    large Deribit universe takes 3-4x longer to build.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _horizon(exported_until: date) -> date:
    return date(exported_until.year + 2, 1, 1)


@lru_cache(maxsize=8)
def _all_instruments(seed: int, large: bool, exchange: str, horizon: date) -> tuple[Instrument, ...]:
    with gc_paused():
        return _build_instruments(seed, large, exchange, horizon)


def _build_instruments(seed: int, large: bool, exchange: str, horizon: date) -> tuple[Instrument, ...]:
    items = _static_instruments(exchange)
    if exchange == "deribit":
        items += _deribit_derivatives(seed, large, horizon)
    return tuple(items)


def exchange_info(exchange: str) -> ExchangeInfo:
    return _EXCHANGES[exchange]


def known_exchange(config: SandboxConfig, exchange: str) -> bool:
    return exchange in config.exchanges and exchange in _EXCHANGES


@dataclass(frozen=True)
class ExchangeUniverse:
    """What one exchange offers as of ``exported_until``: instruments, groups and lookups."""

    exchange: str
    exported_until: date
    instruments: tuple[Instrument, ...]
    groups: tuple[SymbolGroup, ...]
    by_dataset_id: dict[str, Instrument | SymbolGroup] = field(repr=False)
    by_id: dict[str, Instrument] = field(repr=False)


@lru_cache(maxsize=32)
def exchange_universe(seed: int, large: bool, exchange: str, exported_until: date) -> ExchangeUniverse:
    """The instruments of ``exchange`` visible at ``exported_until`` (cached: built once per value)."""
    with gc_paused():
        return _build_universe(seed, large, exchange, exported_until)


def _build_universe(seed: int, large: bool, exchange: str, exported_until: date) -> ExchangeUniverse:
    horizon = _horizon(exported_until)
    cutoff = midnight(exported_until)  # listed before the cutoff <=> listed on a day before it
    instruments = tuple(i for i in _all_instruments(seed, large, exchange, horizon) if i.listing < cutoff)
    groups: list[SymbolGroup] = []
    for itype, group_id in GROUP_BY_TYPE.items():
        members = tuple(i for i in instruments if i.type == itype)
        if not members:
            continue
        offered = {t for types in {m.data_types for m in members} for t in types if get_spec(t).groupable}
        if itype == "option":
            offered.add("options_chain")
        data_types = tuple(t for t in _GROUP_TYPE_ORDER if t in offered)
        since = min(m.available_since for m in members)
        groups.append(SymbolGroup(exchange, group_id, itype, data_types, since, members))
    by_dataset: dict[str, Instrument | SymbolGroup] = {g.id: g for g in groups}
    by_dataset.update({i.dataset_id: i for i in instruments})
    return ExchangeUniverse(
        exchange=exchange,
        exported_until=exported_until,
        instruments=instruments,
        groups=tuple(groups),
        by_dataset_id=by_dataset,
        by_id={i.id: i for i in instruments},
    )


_GROUP_TYPE_ORDER = ("trades", "quotes", "book_ticker", "derivative_ticker", "liquidations", "options_chain")


def _universe(config: SandboxConfig, exchange: str, exported_until: date | None) -> ExchangeUniverse:
    if not known_exchange(config, exchange):
        raise KeyError(
            f"sandbox does not serve exchange {exchange!r}; it serves {', '.join(config.exchanges)}"
        )
    return exchange_universe(
        config.seed, config.large_deribit, exchange, exported_until or config.exported_until
    )


def list_instruments(
    config: SandboxConfig, exchange: str, exported_until: date | None = None
) -> list[dict[str, object]]:
    """Instruments-API objects of ``exchange`` (what ``GET /v1/instruments/{exchange}`` returns).

    ``exported_until`` defaults to the config's; instruments listed on or after it are hidden.
    """
    uni = _universe(config, exchange, exported_until)
    with gc_paused():
        return [i.metadata(uni.exported_until) for i in uni.instruments]


def list_dataset_symbols(
    config: SandboxConfig, exchange: str, exported_until: date | None = None
) -> list[dict[str, object]]:
    """``datasets.symbols`` of the exchange details: grouped symbols first, then every instrument.

    Each entry is ``{id, type, availableSince, availableTo?, dataTypes}``; ``id`` is the dataset id
    to put in a datasets URL.
    """
    uni = _universe(config, exchange, exported_until)
    with gc_paused():
        return [g.symbol_entry() for g in uni.groups] + [i.symbol_entry() for i in uni.instruments]


def incidents(exchange: str) -> tuple[Incident, ...]:
    return INCIDENTS.get(exchange, ())
