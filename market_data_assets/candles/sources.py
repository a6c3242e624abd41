"""Which raw tick files feed one exchange-day's candles, and opening them lazily.

Tardis splits daily files by ``local_timestamp``, so the ticks of day D stamped just before
midnight can sit at the top of file D+1. Each instrument of day D is therefore read from its
file of D followed by its file of D+1 (rows stay in file order); the candle code keeps exactly
the rows whose exchange ``timestamp`` lies in D. Only the exchange's own files are listed (the
key prefix), one listing per data type and day.

Whether D+1 has been downloaded decides ``complete_through_midnight``: without it, the last
moments of D may still be missing, and the asset says so (see docs/CANDLES.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

import polars as pl

from market_data_assets.candles.compute import (
    AMOUNT,
    DERIVATIVE_FIELDS,
    PRICE,
    SIDE,
    TOP_OF_BOOK,
    TS,
    InstrumentDayTicks,
)
from market_data_assets.storage.layout import (
    key_from_file_name,
    key_prefix_for_exchange,
    raw_manifest_path,
    raw_ticks_dir,
    raw_ticks_path,
)
from market_data_assets.storage.polars_io import storage_options_for
from market_data_assets.storage.store import ObjectStore
from market_data_assets.tardis.formats import get_spec

BOOK_SOURCES_FOR_FEATURES: tuple[str, ...] = ("book_snapshot_5", "book_snapshot_25", "quotes")
"""Top-of-book source for candle book features, cheapest first (quotes only where no snapshot)."""
BOOK_SOURCES_FOR_SNAPSHOTS: tuple[str, ...] = ("book_snapshot_25", "book_snapshot_5")
"""Source of the per-timeframe book snapshots, deepest first."""
CANDLE_DATA_TYPES: tuple[str, ...] = (
    "trades",
    *BOOK_SOURCES_FOR_FEATURES,
    "derivative_ticker",
    "liquidations",
)


@dataclass(frozen=True)
class ExchangeDayFiles:
    """The raw tick files of one exchange for day D and D+1, per data type and instrument key."""

    day: date
    exchange: str
    files: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    """data_type -> instrument key -> [path in D, path in D+1] (whichever exist, in that order)."""
    next_day_present: bool = False
    """Whether D+1's raw ticks exist for this exchange (its manifest or any of its tick files)."""

    def keys(self, data_type: str) -> list[str]:
        return sorted(self.files.get(data_type, {}))

    def paths(self, data_type: str, key: str) -> list[str]:
        return self.files.get(data_type, {}).get(key, [])

    def first_available(self, data_types: tuple[str, ...], key: str) -> str | None:
        return next((dt for dt in data_types if self.paths(dt, key)), None)


def list_exchange_day(
    store: ObjectStore, day: date, exchange: str, data_types: tuple[str, ...] = CANDLE_DATA_TYPES
) -> ExchangeDayFiles:
    prefix = key_prefix_for_exchange(exchange)
    nxt = day + timedelta(days=1)
    files: dict[str, dict[str, list[str]]] = {}
    next_day_any = False
    for data_type in data_types:
        by_key: dict[str, list[str]] = {}
        for d in (day, nxt):
            for obj in store.list(f"{raw_ticks_dir(d, data_type)}/{prefix}"):
                if not obj.path.endswith(".parquet"):
                    continue
                key = key_from_file_name(obj.path)
                if obj.path != raw_ticks_path(d, data_type, key):
                    continue  # deeper or oddly named object: not a tick file of this layout
                by_key.setdefault(key, []).append(obj.path)
                next_day_any |= d == nxt
        if by_key:
            files[data_type] = by_key
    present = next_day_any or store.exists(raw_manifest_path(nxt, exchange))
    return ExchangeDayFiles(day, exchange, files, present)


def scan_ticks(store: ObjectStore, paths: list[str], columns: list[str]) -> pl.LazyFrame:
    """The files concatenated in order (day file first), only ``columns`` read.

    Scanned in place (a local file or ``gs://`` through polars' object store), so the filter on
    the day's time range reaches the Parquet row-group statistics: of the next day's file only
    the first row groups, the ones that can hold ticks stamped before midnight, are fetched.
    """
    options = storage_options_for(store.root)
    return pl.concat(
        [pl.scan_parquet(store.uri(p), storage_options=options).select(columns) for p in paths],
        how="vertical_relaxed",
    )


def _quotes_as_top_of_book() -> dict[str, str]:
    """quotes' ``ask_price`` ... -> the book's level-0 names, matched by side and field."""
    quote_names = [c.name for c in get_spec("quotes").columns if c.name.startswith(("ask_", "bid_"))]
    return {q: next(b for b in TOP_OF_BOOK if b.startswith(q + "_")) for q in quote_names}


def open_instrument_day(store: ObjectStore, files: ExchangeDayFiles, key: str) -> InstrumentDayTicks:
    """Lazy frames over one instrument's files of D and D+1 (nothing is read until collected)."""

    def scan(data_type: str, columns: list[str]) -> pl.LazyFrame | None:
        paths = files.paths(data_type, key)
        return scan_ticks(store, paths, columns) if paths else None

    trades = scan("trades", [TS, PRICE, AMOUNT, SIDE])
    if trades is None:
        raise FileNotFoundError(f"no trades file for {key} on {files.day} or the day after")
    book_type = files.first_available(BOOK_SOURCES_FOR_FEATURES, key)
    book = None
    if book_type == "quotes":
        rename = _quotes_as_top_of_book()
        book = scan("quotes", [TS, *rename])
        book = book.rename(rename) if book is not None else None
    elif book_type is not None:
        book = scan(book_type, [TS, *TOP_OF_BOOK])
    return InstrumentDayTicks(
        trades=trades,
        book=book,
        derivative_ticker=scan("derivative_ticker", [TS, *DERIVATIVE_FIELDS]),
        liquidations=scan("liquidations", [TS, AMOUNT, SIDE]),
        source=", ".join(store.uri(p) for p in files.paths("trades", key)),
    )
