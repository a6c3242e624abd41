"""tardis-machine's normalized messages -> tick rows for the candle engine and the bronze log.

Message shapes (tardis-node's normalized types, as ``/ws-stream-normalized`` sends them):
``trade`` {symbol, exchange, id, price, amount, side, timestamp, localTimestamp},
``book_snapshot`` {name, depth, interval, bids: [{price, amount}], asks, ...},
``book_change`` {isSnapshot, bids, asks, ...}, ``derivative_ticker`` {lastPrice, openInterest,
fundingRate, indexPrice, markPrice, fundingTimestamp, predictedFundingRate, ...},
``liquidation`` (like trade), ``disconnect`` {exchange, symbols?, localTimestamp} and ``error``
{exchange, localTimestamp, details, subSequentErrorsCount}. Timestamps are ISO-8601 UTC with up
to 7 fraction digits (µs is kept).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from market_data_assets.errors import MarketDataError

CANDLE_SOURCES: dict[str, str] = {
    "trade": "trades",
    "book_snapshot": "book",
    "derivative_ticker": "derivative_ticker",
    "liquidation": "liquidations",
}
"""Message type -> the candle engine's tick kind (``book_change`` feeds only the bronze log)."""

DEFAULT_DATA_TYPES: tuple[str, ...] = ("trade", "book_snapshot_5_0ms", "derivative_ticker", "liquidation")
"""What the candles need: the batch candles read book_snapshot_5 files, so the live service asks
for 5-level snapshots on every change (``book_snapshot_5_0ms``)."""

_DAY_START: dict[str, int] = {}


class MessageError(MarketDataError, ValueError):
    """A message the service cannot read; the text names the field and a prefix of the message."""


def parse_iso_us(text: str) -> int:
    """``2024-03-01T00:00:00.1234567Z`` -> epoch µs (fraction truncated to µs)."""
    day = text[:10]
    base = _DAY_START.get(day)
    if base is None:
        if len(_DAY_START) > 64:
            _DAY_START.clear()
        base = _DAY_START[day] = int(datetime.fromisoformat(day).replace(tzinfo=UTC).timestamp()) * 1_000_000
    seconds = int(text[11:13]) * 3600 + int(text[14:16]) * 60 + int(text[17:19])
    micros = 0
    if len(text) > 20 and text[19] == ".":
        digits = text[20:].rstrip("Z")[:6]
        micros = int(digits.ljust(6, "0"))
    return base + seconds * 1_000_000 + micros


def _level0(levels: list[dict[str, Any]]) -> tuple[float | None, float | None]:
    if not levels:
        return None, None
    top = levels[0]
    return top.get("price"), top.get("amount")


def candle_values(kind: str, msg: dict[str, Any]) -> tuple:
    """The engine's field tuple of one message (``live.candles.KINDS`` order)."""
    if kind == "trades":
        return (msg["price"], msg["amount"], msg.get("side"))
    if kind == "book":
        ask_p, ask_a = _level0(msg.get("asks") or [])
        bid_p, bid_a = _level0(msg.get("bids") or [])
        return (ask_p, ask_a, bid_p, bid_a)
    if kind == "derivative_ticker":
        return (msg.get("markPrice"), msg.get("indexPrice"), msg.get("fundingRate"), msg.get("openInterest"))
    if kind == "liquidations":
        return (msg["amount"], msg.get("side"))
    raise MessageError(f"no candle fields for kind {kind!r}")
