"""One declarative spec per Tardis CSV data type: the single source of truth for columns.

The CSV header, the Parquet column names and Arrow types, nullability and the polars read schema
are all derived from ``DATA_TYPES`` below; a BigQuery schema is derived from ``arrow_schema`` by
``warehouse.schema.bigquery_schema`` (the one Arrow -> BigQuery mapping). Parsers, validators,
converters, the sandbox's CSV writer and the warehouse schemas import it; nothing else spells a
Tardis column name.

Column kinds:
- ``timestamp``: integer microseconds since the epoch in the CSV -> ``timestamp[us, UTC]``.
- ``float``: decimal text -> ``float64``.
- ``category``: a small vocabulary (side, exchange, option type) -> dictionary-encoded string.
- ``string``: high-cardinality text (trade ids) -> ``string_view``, no dictionary.
- ``bool``: ``true``/``false`` -> boolean.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Literal

import pyarrow as pa

Kind = Literal["timestamp", "float", "category", "string", "bool"]

INSTRUMENT_KEY_COLUMN = "instrument_key"
"""Column added to every normalized tick file (the canonical key, see docs/INSTRUMENT_KEY.md)."""

CATEGORY_TYPE = pa.dictionary(pa.uint32(), pa.string())
"""Small vocabularies: uint32 indices, what polars' Categorical writes, so that files from the
pyarrow writer and from polars' writer (see ``ticks.convert``) have one schema."""

_ARROW: dict[str, pa.DataType] = {
    "timestamp": pa.timestamp("us", tz="UTC"),
    "float": pa.float64(),
    "category": CATEGORY_TYPE,
    # Views, not offsets: polars produces them, Parquet stores them as plain UTF8 byte arrays, and
    # converting trade ids to offset strings cost ~10% of the converter's CPU (measured).
    "string": pa.string_view(),
    "bool": pa.bool_(),
}


@dataclass(frozen=True)
class Column:
    csv_name: str
    name: str
    kind: Kind
    nullable: bool = False
    description: str = ""

    @property
    def arrow_type(self) -> pa.DataType:
        return _ARROW[self.kind]


def _col(
    name: str, kind: Kind, nullable: bool = False, description: str = "", csv_name: str | None = None
) -> Column:
    return Column(csv_name=csv_name or name, name=name, kind=kind, nullable=nullable, description=description)


COMMON_COLUMNS: tuple[Column, ...] = (
    _col("exchange", "category", description="Tardis exchange id"),
    _col("symbol", "category", description="exchange-native symbol as in the Tardis file"),
    _col("timestamp", "timestamp", description="exchange time (Tardis falls back to local_timestamp)"),
    _col(
        "local_timestamp", "timestamp", description="when Tardis received the message; files are split by it"
    ),
)


@dataclass(frozen=True)
class DataTypeSpec:
    """What one Tardis data type looks like in CSV and in our Parquet."""

    name: str
    columns: tuple[Column, ...]
    description: str
    groupable: bool
    """Whether Tardis offers grouped files (OPTIONS, PERPETUALS, ...) for this type."""
    is_book: bool = False
    parquet_writer: Literal["pyarrow", "polars"] = "pyarrow"
    """Which writer converts a one-instrument file (``ticks.convert``): ``polars`` for wide book
    snapshots, where per-column encodings gain nothing and polars' writer is 1.8x faster;
    ``pyarrow`` elsewhere, where they shrink files by a third (trades, L2 updates)."""
    sort_key: tuple[str, ...] = ("local_timestamp",)

    @cached_property
    def csv_header(self) -> tuple[str, ...]:
        return tuple(c.csv_name for c in self.columns)

    @cached_property
    def csv_header_line(self) -> str:
        return ",".join(self.csv_header)

    @cached_property
    def column_names(self) -> tuple[str, ...]:
        """Parquet column names in file order, without ``instrument_key``."""
        return tuple(c.name for c in self.columns)

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"data type {self.name!r} has no column {name!r}")

    @cached_property
    def arrow_schema(self) -> pa.Schema:
        """Schema of a normalized tick Parquet file: the spec's columns plus ``instrument_key``."""
        fields = [pa.field(c.name, c.arrow_type, nullable=c.nullable) for c in self.columns]
        fields.append(pa.field(INSTRUMENT_KEY_COLUMN, CATEGORY_TYPE, nullable=False))
        return pa.schema(fields)

    @cached_property
    def polars_read_schema(self) -> dict[str, object]:
        """dtypes to give polars ``scan_csv`` (keyed by CSV name): timestamps read as Int64 first,
        small vocabularies as Categorical (the parallel CSV engine hashes them, not the caller)."""
        import polars as pl

        read: dict[str, object] = {
            "timestamp": pl.Int64,
            "float": pl.Float64,
            "category": pl.Categorical,
            "string": pl.String,
            "bool": pl.Boolean,
        }
        return {c.csv_name: read[c.kind] for c in self.columns}

    @cached_property
    def dictionary_columns(self) -> tuple[str, ...]:
        """Columns worth Parquet dictionary encoding (small vocabularies only)."""
        return tuple(c.name for c in self.columns if c.kind == "category") + (INSTRUMENT_KEY_COLUMN,)

    @cached_property
    def timestamp_columns(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.kind == "timestamp")


def _spec(
    name: str,
    extra: tuple[Column, ...],
    description: str,
    groupable: bool,
    is_book: bool = False,
    parquet_writer: Literal["pyarrow", "polars"] = "pyarrow",
) -> DataTypeSpec:
    return DataTypeSpec(
        name=name,
        columns=COMMON_COLUMNS + extra,
        description=description,
        groupable=groupable,
        is_book=is_book,
        parquet_writer=parquet_writer,
    )


_TRADE_LIKE = (
    _col("id", "string", nullable=True, description="exchange trade id; may be empty"),
    _col("side", "category", description="aggressor side: buy, sell or unknown"),
    _col("price", "float"),
    _col("amount", "float", description="in the venue's unit (contracts on inverse instruments)"),
)

_QUOTE_LIKE = (
    _col("ask_amount", "float", nullable=True),
    _col("ask_price", "float", nullable=True),
    _col("bid_price", "float", nullable=True),
    _col("bid_amount", "float", nullable=True),
)


def _book_levels(depth: int) -> tuple[Column, ...]:
    """Tardis ``asks[i].price`` style headers -> BigQuery-safe ``ask_price_i`` names.

    Tardis orders each level asks[i].price, asks[i].amount, bids[i].price, bids[i].amount.
    """
    cols: list[Column] = []
    for i in range(depth):
        for side_csv, side in (("asks", "ask"), ("bids", "bid")):
            for field_name in ("price", "amount"):
                cols.append(
                    _col(
                        f"{side}_{field_name}_{i}",
                        "float",
                        nullable=True,
                        csv_name=f"{side_csv}[{i}].{field_name}",
                    )
                )
    return tuple(cols)


DATA_TYPES: dict[str, DataTypeSpec] = {
    spec.name: spec
    for spec in (
        _spec("trades", _TRADE_LIKE, "individual trades", groupable=True),
        _spec(
            "liquidations",
            (
                _col("id", "string", nullable=True),
                _col("side", "category", description="buy: a short was liquidated; sell: a long"),
                _col("price", "float"),
                _col("amount", "float"),
            ),
            "liquidation orders",
            groupable=True,
        ),
        _spec(
            "incremental_book_L2",
            (
                _col("is_snapshot", "bool"),
                _col("side", "category", description="bid or ask"),
                _col("price", "float"),
                _col("amount", "float", description="new absolute level size; 0 removes the level"),
            ),
            "L2 order book updates (absolute sizes); a snapshot resets the book",
            groupable=False,
            is_book=True,
        ),
        _spec("quotes", _QUOTE_LIKE, "top of book (best bid/ask)", groupable=True),
        _spec("book_ticker", _QUOTE_LIKE, "exchange book ticker channel (best bid/ask)", groupable=True),
        _spec(
            "derivative_ticker",
            (
                _col("funding_timestamp", "timestamp", nullable=True),
                _col("funding_rate", "float", nullable=True),
                _col("predicted_funding_rate", "float", nullable=True),
                _col("open_interest", "float", nullable=True),
                _col("last_price", "float", nullable=True),
                _col("index_price", "float", nullable=True),
                _col("mark_price", "float", nullable=True),
            ),
            "funding, open interest, mark and index prices of derivatives",
            groupable=True,
        ),
        _spec(
            "options_chain",
            (
                _col("type", "category", description="put or call"),
                _col("strike_price", "float"),
                _col("expiration", "timestamp"),
                _col("open_interest", "float", nullable=True),
                _col("last_price", "float", nullable=True),
                _col("bid_price", "float", nullable=True),
                _col("bid_amount", "float", nullable=True),
                _col("bid_iv", "float", nullable=True, description="percent"),
                _col("ask_price", "float", nullable=True),
                _col("ask_amount", "float", nullable=True),
                _col("ask_iv", "float", nullable=True, description="percent"),
                _col("mark_price", "float", nullable=True),
                _col("mark_iv", "float", nullable=True, description="percent"),
                _col("underlying_index", "category", nullable=True),
                _col("underlying_price", "float", nullable=True),
                _col("delta", "float", nullable=True),
                _col("gamma", "float", nullable=True),
                _col("vega", "float", nullable=True),
                _col("theta", "float", nullable=True),
                _col("rho", "float", nullable=True),
            ),
            "option quotes and greeks",
            groupable=True,
        ),
        _spec(
            "book_snapshot_5",
            _book_levels(5),
            "top 5 levels of the book",
            groupable=False,
            is_book=True,
            parquet_writer="polars",
        ),
        _spec(
            "book_snapshot_25",
            _book_levels(25),
            "top 25 levels of the book",
            groupable=False,
            is_book=True,
            parquet_writer="polars",
        ),
    )
}

DATA_TYPE_NAMES: tuple[str, ...] = tuple(DATA_TYPES)


class UnknownDataTypeError(ValueError):
    pass


def get_spec(data_type: str) -> DataTypeSpec:
    """The spec of ``data_type``; a clear error naming it if Tardis has no such type."""
    try:
        return DATA_TYPES[data_type]
    except KeyError:
        raise UnknownDataTypeError(
            f"unknown Tardis data type {data_type!r}; known: {', '.join(DATA_TYPE_NAMES)}"
        ) from None


class HeaderMismatchError(ValueError):
    """A CSV header that is not the spec's; the message names the file and the columns."""


def check_header(data_type: str, header: list[str] | tuple[str, ...], source: str) -> None:
    """Raise ``HeaderMismatchError`` unless ``header`` is exactly the spec's CSV header."""
    expected = get_spec(data_type).csv_header
    got = tuple(h.strip() for h in header)
    if got == expected:
        return
    missing = [c for c in expected if c not in got]
    unexpected = [c for c in got if c not in expected]
    detail = []
    if missing:
        detail.append(f"missing {missing}")
    if unexpected:
        detail.append(f"unexpected {unexpected}")
    if not detail:
        detail.append("columns out of order")
    raise HeaderMismatchError(
        f"{source}: CSV header does not match the Tardis {data_type} format ({'; '.join(detail)}); "
        f"expected {','.join(expected)}"
    )
