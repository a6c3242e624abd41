"""``datasets.symbols`` of Tardis exchange details -> a typed frame, and which entries are groups.

Exchange details are public (no key), so this list is what every path can rely on: it says
which CSV files exist (id x dataTypes x days in [availableSince, availableTo)), and it lists the
grouped files (``OPTIONS``, ``PERPETUALS``, ...) that carry many instruments in one download.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import polars as pl

from market_data_assets.days import day_bounds
from market_data_assets.instruments.errors import InstrumentMetadataError
from market_data_assets.instruments.metadata import parse_timestamps

GROUP_TYPES: dict[str, str] = {
    "SPOT": "spot",
    "FUTURES": "future",
    "PERPETUALS": "perpetual",
    "OPTIONS": "option",
    "COMBOS": "combo",
}
"""Grouped dataset ids -> the Tardis instrument type whose instruments each group file carries.
The group is recognized by its id (the entry's own ``type`` is not relied on)."""

DATASET_SYMBOLS_SCHEMA: dict[str, pl.DataType] = {
    "id": pl.String(),
    "type": pl.String(),
    "availableSince": pl.String(),
    "availableTo": pl.String(),
}


def _data_types_column(exchange: str, symbols: list[Any]) -> pl.Series:
    """``dataTypes`` lists as one comma-joined string per entry, split by polars.

    Building a polars list column from 300K Python lists is ~50x slower than this (measured).
    """
    try:
        values = [entry.get("dataTypes") for entry in symbols]
        # ",".join would happily turn the string "trades" into "t,r,a,d,e,s": lists only.
        if any(type(v) is not list for v in values if v is not None):
            raise TypeError("dataTypes is not a list")
        joined = [",".join(v) if v else "" for v in values]
    except (TypeError, AttributeError):
        for entry in symbols:
            if not isinstance(entry, dict):
                raise InstrumentMetadataError(
                    f"{exchange}: datasets.symbols entries must be JSON objects, got {entry!r:.80}"
                ) from None
            value = entry.get("dataTypes")
            if not isinstance(value, list | None) or not all(isinstance(v, str) for v in value or ()):
                ident = entry.get("id") if isinstance(entry, dict) else None
                raise InstrumentMetadataError(
                    f"{exchange}: datasets.symbols entry {ident!r}: 'dataTypes' must be a list of strings, "
                    f"got {value!r:.80}"
                ) from None
        raise
    text = pl.Series("data_types", joined, dtype=pl.String)
    return (
        pl.select(
            pl.when(text == "").then(pl.lit([], dtype=pl.List(pl.String))).otherwise(text.str.split(","))
        )
        .to_series()
        .alias("data_types")
    )


def _symbols_list(exchange: str, exchange_details: dict[str, Any]) -> list[Any]:
    datasets = exchange_details.get("datasets") if isinstance(exchange_details, dict) else None
    symbols = datasets.get("symbols") if isinstance(datasets, dict) else None
    if not isinstance(symbols, list):
        raise InstrumentMetadataError(f"{exchange}: exchange details carry no 'datasets.symbols' list")
    return symbols


def dataset_symbols_frame(exchange: str, exchange_details: dict[str, Any]) -> pl.DataFrame:
    """Columns: dataset_symbol, tardis_type, available_since, available_to, group_type, _index.

    ``group_type`` is null for an instrument's own file and the carried instrument type for a
    grouped file; ``_index`` is the entry's position in ``datasets.symbols``, which
    :func:`with_data_types` uses to read the data types of just the rows a caller keeps (a
    day's few thousand, not Deribit's 300K). Malformed details raise
    ``InstrumentMetadataError`` naming the exchange.
    """
    symbols = _symbols_list(exchange, exchange_details)
    try:
        raw = pl.from_dicts(symbols, schema=DATASET_SYMBOLS_SCHEMA, strict=False) if symbols else None
    except Exception as exc:  # noqa: BLE001 - named below
        raise InstrumentMetadataError(
            f"{exchange}: unreadable exchange details datasets.symbols: {exc}"
        ) from exc
    if raw is None:
        raw = pl.DataFrame(schema=DATASET_SYMBOLS_SCHEMA)
    bad = raw.filter(pl.col("id").is_null() | pl.col("type").is_null() | pl.col("availableSince").is_null())
    if bad.height:
        raise InstrumentMetadataError(
            f"{exchange}: datasets.symbols entries without id/type/availableSince: {bad.head(3).to_dicts()}"
        )
    raw = parse_timestamps(raw, "availableSince", exchange, "datasets.symbols.availableSince")
    raw = parse_timestamps(raw, "availableTo", exchange, "datasets.symbols.availableTo")
    frame = (
        raw.with_row_index("_index")
        .select(
            pl.col("id")
            .str.to_uppercase()
            .str.replace_all("/", "-", literal=True)
            .str.replace_all(":", "-", literal=True)
            .alias("dataset_symbol"),
            pl.col("type").str.strip_chars().str.to_lowercase().alias("tardis_type"),
            pl.col("availableSince").alias("available_since"),
            pl.col("availableTo").alias("available_to"),
            "_index",
        )
        .unique(subset="dataset_symbol", keep="first", maintain_order=True)
    )
    return frame.with_columns(
        pl.col("dataset_symbol")
        .replace_strict(GROUP_TYPES, default=None, return_dtype=pl.String)
        .alias("group_type")
    )


def with_data_types(exchange: str, exchange_details: dict[str, Any], frame: pl.DataFrame) -> pl.DataFrame:
    """Add ``data_types`` (list of str) to rows of :func:`dataset_symbols_frame`, by ``_index``."""
    symbols = _symbols_list(exchange, exchange_details)
    entries = [symbols[i] for i in frame["_index"].to_list()]
    return frame.with_columns(_data_types_column(exchange, entries))


def available_on(day: date) -> pl.Expr:
    """True where [available_since, available_to) overlaps the UTC day (an open end is open)."""
    start, end = day_bounds(day)
    return (pl.col("available_since") < end) & (
        pl.col("available_to").is_null() | (pl.col("available_to") > start)
    )
