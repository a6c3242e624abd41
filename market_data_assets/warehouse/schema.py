"""The warehouse tables, derived from the lake's pyarrow schemas: no column is spelled here.

Each table ``candles_<tf>`` has the columns of ``CANDLE_SCHEMA`` plus ``source`` and each
``book_snapshots_<tf>`` those of ``book_snapshot_schema(BOOK_SNAPSHOT_TABLE_DEPTH)``. The
mapping pyarrow -> BigQuery type is the one BigQuery itself applies when it loads Parquet, so a
load job never has to coerce; DuckDB gets the DuckDB type of that BigQuery type, so the same SQL
(and the same values) work against both warehouses.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING

import pyarrow as pa

from market_data_assets.candles.schema import BOOK_SNAPSHOT_TABLE_DEPTH, CANDLE_SCHEMA, book_snapshot_schema
from market_data_assets.errors import MarketDataError
from market_data_assets.features.registry import FEATURE_SCHEMA, FEATURE_TIMEFRAMES
from market_data_assets.storage import layout

if TYPE_CHECKING:
    from google.cloud.bigquery import SchemaField

DEFAULT_DATASET = "market_data_analytics"
"""BigQuery dataset that holds the tables unless the URI names another (DuckDB: the file's main schema)."""

PARTITION_COLUMN = "timestamp"
"""Tables are DAY-partitioned on this column; a slice is one day of it."""
CLUSTERING_COLUMNS: tuple[str, ...] = ("exchange", "instrument_type", "instrument_key")
"""BigQuery clustering order: the slice filter (exchange) first, then what queries select by."""
EXCHANGE_COLUMN = "exchange"

SOURCE_COLUMN = "source"
"""Where a candle row came from: ``batch`` (Tardis's published day) or ``live`` (the streaming
service). Not in the lake's batch files: a batch load writes ``batch``; the batch slice replace
deletes the live rows of its (day, exchange), so batch supersedes live (docs/LIVE.md)."""
BATCH_SOURCE = "batch"
LIVE_SOURCE = "live"
CANDLE_TABLE_SCHEMA: pa.Schema = CANDLE_SCHEMA.append(pa.field(SOURCE_COLUMN, pa.string()))
"""The candles tables: ``CANDLE_SCHEMA`` + ``source``."""

CANDLES_PREFIX = "candles_"
BOOK_SNAPSHOTS_PREFIX = "book_snapshots_"
FEATURES_PREFIX = "features_"


class WarehouseSchemaError(MarketDataError, ValueError):
    """A pyarrow type the warehouse cannot hold, or an unknown table; the message names it."""


@dataclass(frozen=True)
class WarehouseTable:
    """One warehouse table: its name, the lake folder its files come from, and its schema."""

    name: str
    timeframe: str
    kind: str
    """``candles``, ``book_snapshots`` or ``features``."""
    schema: pa.Schema
    files_vary: bool = False
    """True when the table's files may carry a subset of its columns (book depth 5 vs 25)."""
    constants: tuple[tuple[str, str], ...] = ()
    """(column, value) the lake files do not carry and a batch load writes as that constant."""

    @property
    def lake_names(self) -> list[str]:
        """The columns the lake files carry (the table's minus the load constants)."""
        constant = {name for name, _ in self.constants}
        return [n for n in self.schema.names if n not in constant]

    def lake_dir(self, day: date) -> str:
        """The lake folder (relative to the store root) holding this table's files for ``day``."""
        if self.kind == "candles":
            return layout.candles_dir(day, self.timeframe)
        if self.kind == "features":
            return layout.features_dir(day, self.timeframe)
        return layout.book_snapshots_dir(day, self.timeframe)


def _check_partitioning(tables: dict[str, WarehouseTable]) -> dict[str, WarehouseTable]:
    for table in tables.values():
        missing = [c for c in (PARTITION_COLUMN, *CLUSTERING_COLUMNS) if c not in table.schema.names]
        if missing:
            raise WarehouseSchemaError(f"table {table.name} lacks the partition/clustering columns {missing}")
    return tables


def _build_tables() -> dict[str, WarehouseTable]:
    tables: dict[str, WarehouseTable] = {}
    book_schema = book_snapshot_schema(BOOK_SNAPSHOT_TABLE_DEPTH)
    for tf in layout.TIMEFRAMES:
        tables[f"{CANDLES_PREFIX}{tf}"] = WarehouseTable(
            f"{CANDLES_PREFIX}{tf}",
            tf,
            "candles",
            CANDLE_TABLE_SCHEMA,
            constants=((SOURCE_COLUMN, BATCH_SOURCE),),
        )
    for tf in layout.TIMEFRAMES:
        name = f"{BOOK_SNAPSHOTS_PREFIX}{tf}"
        tables[name] = WarehouseTable(name, tf, "book_snapshots", book_schema, files_vary=True)
    return _check_partitioning(tables)


WAREHOUSE_TABLES: dict[str, WarehouseTable] = _build_tables()
"""The candle and book snapshot tables by name (what ``bq_candles`` loads), candles first, each in
TIMEFRAMES order."""
FEATURE_TABLES: dict[str, WarehouseTable] = _check_partitioning(
    {
        f"{FEATURES_PREFIX}{tf}": WarehouseTable(f"{FEATURES_PREFIX}{tf}", tf, "features", FEATURE_SCHEMA)
        for tf in FEATURE_TIMEFRAMES
    }
)
"""The feature tables ``features_<tf>`` (columns from the feature registry; loaded by ``bq_features``)."""
ALL_TABLES: dict[str, WarehouseTable] = {**WAREHOUSE_TABLES, **FEATURE_TABLES}


def get_table(name: str) -> WarehouseTable:
    try:
        return ALL_TABLES[name]
    except KeyError:
        raise WarehouseSchemaError(
            f"unknown warehouse table {name!r}; known: {', '.join(ALL_TABLES)}"
        ) from None


# --- pyarrow -> BigQuery ---------------------------------------------------------------------


def bigquery_type(arrow_type: pa.DataType, *, column: str = "?") -> str:
    """The BigQuery (GoogleSQL) type that holds ``arrow_type``; an error names the column otherwise."""
    t = arrow_type
    if pa.types.is_dictionary(t):
        return bigquery_type(t.value_type, column=column)
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return "STRING"
    if pa.types.is_boolean(t):
        return "BOOL"
    if pa.types.is_integer(t):
        if pa.types.is_uint64(t):
            raise WarehouseSchemaError(f"column {column!r}: uint64 does not fit BigQuery's INT64")
        return "INT64"
    if pa.types.is_floating(t):
        return "FLOAT64"
    if pa.types.is_timestamp(t):
        # A zoned instant is a BigQuery TIMESTAMP; a naive wall-clock value is a DATETIME.
        return "TIMESTAMP" if t.tz is not None else "DATETIME"
    if pa.types.is_date(t):
        return "DATE"
    if pa.types.is_decimal(t):
        return "NUMERIC" if t.precision <= 38 and t.scale <= 9 else "BIGNUMERIC"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        return "BYTES"
    raise WarehouseSchemaError(f"column {column!r}: no warehouse type for pyarrow {t}")


def bigquery_schema(schema: pa.Schema, *, all_nullable: bool = False) -> list[SchemaField]:
    """BigQuery fields for ``schema``; a non-nullable arrow field is REQUIRED unless ``all_nullable``.

    Staging tables use ``all_nullable=True``: they are a landing zone, and a missing value
    should fail the INSERT into the real table (inside the transaction), not the load.
    """
    from google.cloud.bigquery import SchemaField

    return [
        SchemaField(
            f.name,
            bigquery_type(f.type, column=f.name),
            mode="NULLABLE" if all_nullable or f.nullable else "REQUIRED",
        )
        for f in schema
    ]


# --- BigQuery type -> DuckDB -----------------------------------------------------------------

_DUCKDB_OF_BIGQUERY = {
    "STRING": "VARCHAR",
    "BOOL": "BOOLEAN",
    "INT64": "BIGINT",
    "FLOAT64": "DOUBLE",
    "TIMESTAMP": "TIMESTAMPTZ",
    "DATETIME": "TIMESTAMP",
    "DATE": "DATE",
    "NUMERIC": "DECIMAL(38, 9)",
    "BIGNUMERIC": "DECIMAL(38, 18)",
    "BYTES": "BLOB",
}


def duckdb_type(arrow_type: pa.DataType, *, column: str = "?") -> str:
    """DuckDB type of the BigQuery type of ``arrow_type``: both warehouses hold the same values."""
    return _DUCKDB_OF_BIGQUERY[bigquery_type(arrow_type, column=column)]


def quote_duckdb(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def duckdb_columns_ddl(schema: pa.Schema) -> str:
    """``"col" TYPE [NOT NULL], ...`` for a DuckDB ``CREATE TABLE``."""
    return ", ".join(
        f"{quote_duckdb(f.name)} {duckdb_type(f.type, column=f.name)}{'' if f.nullable else ' NOT NULL'}"
        for f in schema
    )
