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

from datetime import date
from typing import Any

import polars as pl

from market_data_assets.days import day_start_us
from market_data_assets.errors import MarketDataError

CANDLE_SOURCES: dict[str, str] = {
    "trade": "trades",
    "book_snapshot": "book",
    "derivative_ticker": "derivative_ticker",
    "liquidation": "liquidations",
}
"""Message type -> the candle engine's tick kind (``book_change`` feeds the book only through
``live.books``, when no snapshot is subscribed; otherwise only the bronze log)."""

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
        base = _DAY_START[day] = day_start_us(date.fromisoformat(day))
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


# --- micro-batches: many messages decoded at once ---------------------------------------------

_LEVEL = pl.Struct({"price": pl.Float64, "amount": pl.Float64})
MESSAGE_STRUCT = pl.Struct(
    {
        "type": pl.String,
        "symbol": pl.String,
        "timestamp": pl.String,
        "localTimestamp": pl.String,
        "price": pl.Float64,
        "amount": pl.Float64,
        "side": pl.String,
        "bids": pl.List(_LEVEL),
        "asks": pl.List(_LEVEL),
        "isSnapshot": pl.Boolean,
        "markPrice": pl.Float64,
        "indexPrice": pl.Float64,
        "fundingRate": pl.Float64,
        "openInterest": pl.Float64,
    }
)
"""The fields the service reads; every other field stays in the raw text (the bronze log)."""

VALUE_COLUMNS: dict[str, tuple[str, ...]] = {
    "trades": ("price", "amount", "side"),
    "book": ("_ask_price", "_ask_amount", "_bid_price", "_bid_amount"),
    "derivative_ticker": ("markPrice", "indexPrice", "fundingRate", "openInterest"),
    "liquidations": ("amount", "side"),
}
"""Per candle source, the decoded columns in ``candle_values`` order (``live.candles.KINDS``)."""

_ISO = "%Y-%m-%dT%H:%M:%S%.fZ"


def decode_batch(texts: list[str]) -> pl.DataFrame:
    """Many messages -> one frame (``MESSAGE_STRUCT`` + ``_ts``/``_local`` epoch µs + top of book).

    Why: ``json.loads`` plus two ISO parses and the dict handling cost ~15 µs a message in Python;
    decoding a micro-batch in polars costs a fraction of that. Timestamps are truncated to µs, as
    ``parse_iso_us`` does; a missing level is null, as ``candle_values`` gives.
    """

    def instant(name: str) -> pl.Expr:
        return (
            pl.col(name).str.to_datetime(_ISO, time_unit="us", time_zone="UTC", strict=False).dt.epoch("us")
        )

    def level(side: str, field: str) -> pl.Expr:
        return pl.col(side).list.first().struct.field(field)

    return (
        pl.Series("m", texts, pl.String)
        .str.json_decode(MESSAGE_STRUCT)
        .struct.unnest()
        .with_columns(
            instant("timestamp").alias("_ts"),
            instant("localTimestamp").alias("_local"),
            level("asks", "price").alias("_ask_price"),
            level("asks", "amount").alias("_ask_amount"),
            level("bids", "price").alias("_bid_price"),
            level("bids", "amount").alias("_bid_amount"),
        )
    )
