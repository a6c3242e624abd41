"""Warehouse table definitions: derived from the lake's pyarrow schemas with BigQuery's Parquet type mapping."""

from __future__ import annotations

from datetime import date

import pyarrow as pa
import pytest

from market_data_assets.candles.schema import CANDLE_SCHEMA, book_snapshot_schema
from market_data_assets.storage.layout import TIMEFRAMES
from market_data_assets.warehouse.schema import (
    WAREHOUSE_TABLES,
    WarehouseSchemaError,
    bigquery_schema,
    bigquery_type,
    duckdb_columns_ddl,
    get_table,
)


def test_one_candle_and_one_book_table_per_timeframe_with_the_lake_columns() -> None:
    assert list(WAREHOUSE_TABLES) == [f"candles_{tf}" for tf in TIMEFRAMES] + [
        f"book_snapshots_{tf}" for tf in TIMEFRAMES
    ]
    candles = get_table("candles_4h")
    assert candles.schema.equals(CANDLE_SCHEMA.append(pa.field("source", pa.string())))
    assert candles.lake_names == CANDLE_SCHEMA.names and candles.constants == (("source", "batch"),)
    assert get_table("book_snapshots_15s").schema.equals(book_snapshot_schema(25))
    assert (
        get_table("candles_1m").lake_dir(date(2024, 1, 2))
        == "processed_candles/by_date/day-2024-01-02/timeframe-1m"
    )
    assert get_table("book_snapshots_24h").lake_dir(date(2024, 1, 2)) == (
        "processed_book_snapshots/by_date/day-2024-01-02/timeframe-24h"
    )
    with pytest.raises(WarehouseSchemaError, match="unknown warehouse table 'candles_3m'"):
        get_table("candles_3m")


@pytest.mark.parametrize(
    ("arrow_type", "expected"),
    [
        (pa.string(), "STRING"),
        (pa.large_string(), "STRING"),
        (pa.dictionary(pa.uint32(), pa.string()), "STRING"),
        (pa.int16(), "INT64"),
        (pa.uint32(), "INT64"),
        (pa.float32(), "FLOAT64"),
        (pa.bool_(), "BOOL"),
        (pa.timestamp("us", tz="UTC"), "TIMESTAMP"),
        (pa.timestamp("ns", tz="UTC"), "TIMESTAMP"),
        (pa.timestamp("us"), "DATETIME"),
        (pa.date32(), "DATE"),
        (pa.decimal128(38, 9), "NUMERIC"),
        (pa.decimal128(38, 18), "BIGNUMERIC"),
        (pa.binary(), "BYTES"),
    ],
)
def test_bigquery_type_follows_bigquerys_parquet_mapping(arrow_type: pa.DataType, expected: str) -> None:
    assert bigquery_type(arrow_type) == expected


def test_types_the_warehouse_cannot_hold_name_the_column() -> None:
    with pytest.raises(WarehouseSchemaError, match="column 'ids': uint64"):
        bigquery_type(pa.uint64(), column="ids")
    with pytest.raises(WarehouseSchemaError, match="column 'levels': no warehouse type"):
        bigquery_type(pa.list_(pa.float64()), column="levels")


def test_modes_follow_nullability_and_staging_is_all_nullable() -> None:
    fields = {f.name: f for f in bigquery_schema(CANDLE_SCHEMA)}
    assert (fields["timestamp"].field_type, fields["timestamp"].mode) == ("TIMESTAMP", "REQUIRED")
    assert (fields["close"].field_type, fields["close"].mode) == ("FLOAT64", "NULLABLE")
    assert (fields["trade_count"].field_type, fields["trade_count"].mode) == ("INT64", "REQUIRED")
    assert {f.mode for f in bigquery_schema(CANDLE_SCHEMA, all_nullable=True)} == {"NULLABLE"}


def test_duckdb_ddl_uses_the_same_values_as_bigquery() -> None:
    ddl = duckdb_columns_ddl(book_snapshot_schema(5))
    assert ddl.startswith('"instrument_key" VARCHAR NOT NULL, "exchange" VARCHAR NOT NULL')
    assert '"timestamp" TIMESTAMPTZ NOT NULL' in ddl
    assert '"snapshot_timestamp" TIMESTAMPTZ,' in ddl
    assert '"book_depth" BIGINT NOT NULL' in ddl
    assert ddl.endswith('"bid_amount_4" DOUBLE')


def test_every_tick_spec_maps_to_bigquery() -> None:
    """Tick tables get their BigQuery schema from the same Arrow mapping as candles."""
    from market_data_assets.tardis.formats import DATA_TYPES

    for spec in DATA_TYPES.values():
        fields = {f.name: f for f in bigquery_schema(spec.arrow_schema)}
        assert list(fields) == spec.arrow_schema.names
        assert fields["timestamp"].field_type == "TIMESTAMP" and fields["timestamp"].mode == "REQUIRED"
        assert fields["instrument_key"].field_type == "STRING"
    trades = {f.name: f for f in bigquery_schema(DATA_TYPES["trades"].arrow_schema)}
    assert (trades["id"].field_type, trades["id"].mode) == ("STRING", "NULLABLE")  # string_view
    assert (trades["side"].field_type, trades["price"].field_type) == ("STRING", "FLOAT64")
