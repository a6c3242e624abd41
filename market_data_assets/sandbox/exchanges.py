"""The sandbox's exchanges: names, history start, channels, data types per instrument type, incidents.

The static facts (ids, names, ``availableSince``, channels) are those of Tardis's real
``/v1/exchanges`` answer; the incidents are invented but shaped like Tardis's incident reports
(a whole-day outage empties a day's files, a partial one leaves a hole and a fresh book snapshot).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import lru_cache

from market_data_assets.days import day_start, format_tardis_time
from market_data_assets.tardis.incidents import Incident


def utc(y: int, m: int, d: int, hh: int = 0, mm: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=UTC)


@lru_cache(maxsize=65536)
def iso(moment: datetime | date) -> str:
    """Tardis spelling of a UTC instant or day: ``2024-03-05T00:00:00.000Z``."""
    if not isinstance(moment, datetime):
        moment = day_start(moment)
    return format_tardis_time(moment)


@dataclass(frozen=True)
class ExchangeInfo:
    id: str
    name: str
    available_since: date
    channels: tuple[str, ...]
    types: dict[str, tuple[str, ...]]
    """instrument type -> data types offered per instrument of that type."""


EXCHANGES: dict[str, ExchangeInfo] = {
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


def exchange_info(exchange: str) -> ExchangeInfo:
    return EXCHANGES[exchange]


def incidents(exchange: str) -> tuple[Incident, ...]:
    return INCIDENTS.get(exchange, ())
