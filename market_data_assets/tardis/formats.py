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

Values are checked as well as types (``ticks.values`` applies the rules, on both conversion
routes), because one bad cell spreads: a ``NaN`` price makes the close, VWAP, notional and
realized variance of its candle NaN, and every coarser timeframe after it. Each column says
what it accepts:

- ``float`` columns never accept ``NaN`` or ``±inf`` (Tardis writes an *empty cell* where the
  exchange gave no value, never a non-number). ``domain`` adds the sign rule: ``price``
  (non-negative, except on COMBO instruments: a Deribit future spread trades at a negative price),
  ``non_negative`` (amounts, sizes, open interest, implied volatility) or ``any_sign`` (funding
  rates, greeks).
- ``category`` columns with a ``vocabulary`` accept only those values (``side`` of a trade:
  buy, sell, unknown; of a book update: bid, ask; option ``type``: put, call).
- ``nullable`` says where an empty cell is legitimate: e.g. book snapshot levels are empty when
  the book is thinner than the snapshot depth, a trade ``id`` may be empty, any
  ``derivative_ticker`` field may be missing. An amount of 0 is legitimate in
  ``incremental_book_L2`` (it removes the level).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Literal

import pyarrow as pa

from market_data_assets.errors import MarketDataError

if TYPE_CHECKING:  # polars is imported where it is used: this module is read by light tools too
    import polars as pl

Kind = Literal["timestamp", "float", "category", "string", "bool"]
Domain = Literal["price", "non_negative", "any_sign"]
"""Sign rule of a ``float`` column (all of them refuse NaN and infinities); see the module doc."""

TRADE_SIDES = ("buy", "sell", "unknown")
LIQUIDATION_SIDES = ("buy", "sell")
BOOK_SIDES = ("bid", "ask")
OPTION_TYPES = ("put", "call")

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
    domain: Domain = "non_negative"
    """Only read for ``float`` columns."""
    vocabulary: tuple[str, ...] | None = None
    """The only values a ``category`` column accepts; None: any value."""

    @property
    def arrow_type(self) -> pa.DataType:
        return _ARROW[self.kind]


def _col(
    name: str,
    kind: Kind,
    nullable: bool = False,
    description: str = "",
    csv_name: str | None = None,
    domain: Domain = "non_negative",
    vocabulary: tuple[str, ...] | None = None,
) -> Column:
    return Column(
        csv_name=csv_name or name,
        name=name,
        kind=kind,
        nullable=nullable,
        description=description,
        domain=domain,
        vocabulary=vocabulary,
    )


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

    @cached_property
    def csv_header(self) -> tuple[str, ...]:
        return tuple(c.csv_name for c in self.columns)

    @cached_property
    def csv_header_line(self) -> str:
        return ",".join(self.csv_header)

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
    def polars_read_schema(self) -> dict[str, pl.DataType]:
        """dtypes to give polars ``scan_csv`` (keyed by CSV name): timestamps read as Int64 first,
        small vocabularies as Categorical (the parallel CSV engine hashes them, not the caller)."""
        import polars as pl

        read: dict[str, pl.DataType] = {
            "timestamp": pl.Int64(),
            "float": pl.Float64(),
            "category": pl.Categorical(),
            "string": pl.String(),
            "bool": pl.Boolean(),
        }
        return {c.csv_name: read[c.kind] for c in self.columns}

    @cached_property
    def dictionary_columns(self) -> tuple[str, ...]:
        """Columns worth Parquet dictionary encoding (small vocabularies only)."""
        return tuple(c.name for c in self.columns if c.kind == "category") + (INSTRUMENT_KEY_COLUMN,)

    @cached_property
    def timestamp_columns(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.kind == "timestamp")

    @cached_property
    def float_columns(self) -> tuple[Column, ...]:
        """Columns whose values are checked as numbers (finite; sign by ``domain``)."""
        return tuple(c for c in self.columns if c.kind == "float")

    @cached_property
    def vocabulary_columns(self) -> tuple[Column, ...]:
        """Columns whose values must come from a fixed ``vocabulary``."""
        return tuple(c for c in self.columns if c.vocabulary is not None)


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
    _col("side", "category", description="aggressor side: buy, sell or unknown", vocabulary=TRADE_SIDES),
    _col("price", "float", domain="price"),
    _col("amount", "float", description="in the venue's unit (contracts on inverse instruments)"),
)

_QUOTE_LIKE = (
    _col("ask_amount", "float", nullable=True),
    _col("ask_price", "float", nullable=True, domain="price"),
    _col("bid_price", "float", nullable=True, domain="price"),
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
                        description="empty when the book has fewer levels than the snapshot depth",
                        csv_name=f"{side_csv}[{i}].{field_name}",
                        domain="price" if field_name == "price" else "non_negative",
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
                _col(
                    "side",
                    "category",
                    description="buy: a short was liquidated; sell: a long",
                    vocabulary=LIQUIDATION_SIDES,
                ),
                _col("price", "float", domain="price"),
                _col("amount", "float"),
            ),
            "liquidation orders",
            groupable=True,
        ),
        _spec(
            "incremental_book_L2",
            (
                _col("is_snapshot", "bool"),
                _col("side", "category", description="bid or ask", vocabulary=BOOK_SIDES),
                _col("price", "float", domain="price"),
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
                _col("funding_rate", "float", nullable=True, domain="any_sign"),
                _col("predicted_funding_rate", "float", nullable=True, domain="any_sign"),
                _col("open_interest", "float", nullable=True),
                _col("last_price", "float", nullable=True, domain="price"),
                _col("index_price", "float", nullable=True, domain="price"),
                _col("mark_price", "float", nullable=True, domain="price"),
            ),
            "funding, open interest, mark and index prices of derivatives",
            groupable=True,
        ),
        _spec(
            "options_chain",
            (
                _col("type", "category", description="put or call", vocabulary=OPTION_TYPES),
                _col("strike_price", "float"),
                _col("expiration", "timestamp"),
                _col("open_interest", "float", nullable=True),
                _col("last_price", "float", nullable=True, domain="price"),
                _col("bid_price", "float", nullable=True, domain="price"),
                _col("bid_amount", "float", nullable=True),
                _col("bid_iv", "float", nullable=True, description="percent"),
                _col("ask_price", "float", nullable=True, domain="price"),
                _col("ask_amount", "float", nullable=True),
                _col("ask_iv", "float", nullable=True, description="percent"),
                _col("mark_price", "float", nullable=True, domain="price"),
                _col("mark_iv", "float", nullable=True, description="percent"),
                _col("underlying_index", "category", nullable=True),
                _col("underlying_price", "float", nullable=True, domain="price"),
                _col("delta", "float", nullable=True, domain="any_sign"),
                _col("gamma", "float", nullable=True, domain="any_sign"),
                _col("vega", "float", nullable=True, domain="any_sign"),
                _col("theta", "float", nullable=True, domain="any_sign"),
                _col("rho", "float", nullable=True, domain="any_sign"),
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


class UnknownDataTypeError(MarketDataError, ValueError):
    pass


def get_spec(data_type: str) -> DataTypeSpec:
    """The spec of ``data_type``; a clear error naming it if Tardis has no such type."""
    try:
        return DATA_TYPES[data_type]
    except KeyError:
        raise UnknownDataTypeError(
            f"unknown Tardis data type {data_type!r}; known: {', '.join(DATA_TYPE_NAMES)}"
        ) from None


def header_mismatch(data_type: str, header: list[str] | tuple[str, ...]) -> str | None:
    """None if ``header`` is exactly the spec's CSV header, else what differs (the columns missing,
    unexpected or out of order, and the expected header), for the caller's error to name its file."""
    expected = get_spec(data_type).csv_header
    got = tuple(h.strip() for h in header)
    if got == expected:
        return None
    missing = [c for c in expected if c not in got]
    unexpected = [c for c in got if c not in expected]
    detail = []
    if missing:
        detail.append(f"missing {missing}")
    if unexpected:
        detail.append(f"unexpected {unexpected}")
    if not detail:
        detail.append("columns out of order")
    return (
        f"CSV header does not match the Tardis {data_type} format ({'; '.join(detail)}); "
        f"expected {','.join(expected)}"
    )
