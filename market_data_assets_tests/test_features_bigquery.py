"""Features on ``gs://`` (the GCS emulator) loaded into BigQuery (local-bigquery): the tables
``features_<tf>`` are DAY-partitioned and clustered like the candle tables, re-loading a slice gives
the same rows, and ``reader.scan_features`` reads the lake back from ``gs://``."""

from __future__ import annotations

from datetime import timedelta

import polars as pl
import pytest
from google.cloud import bigquery

from market_data_assets import reader
from market_data_assets.features.build import build_features, lookback_span
from market_data_assets.features.registry import FEATURE_SCHEMA
from market_data_assets.warehouse import load_slice
from market_data_assets.warehouse.schema import CLUSTERING_COLUMNS, FEATURE_TABLES, PARTITION_COLUMN
from market_data_assets_tests.test_features import DAY, EXCHANGE, A, hand_built, write_candle_slices
from market_data_assets_tests.test_warehouse_bigquery import Lake, lake  # noqa: F401 - the fixture

pytestmark = pytest.mark.emulator


def test_feature_tables_load_idempotently_from_gcs_and_read_back(lake: Lake) -> None:  # noqa: F811
    tables = [FEATURE_TABLES["features_1m"], FEATURE_TABLES["features_1h"]]
    files: dict[str, pl.DataFrame] = {}
    for table in tables:
        days = lookback_span(DAY, table.timeframe)
        write_candle_slices(lake.store, hand_built(table.timeframe, days), days, table.timeframe)  # type: ignore[arg-type]
        summary = build_features(lake.store, DAY, EXCHANGE, table.timeframe)
        assert summary.files == 3
        files[table.name] = (
            reader.scan_features(
                table.timeframe, summary.instruments, DAY, DAY + timedelta(days=1), root=lake.store.root
            )
            .collect()
            .sort("instrument_key", "timestamp")
        )
    for round_ in (1, 2):
        load = load_slice(lake.wh, lake.store, DAY, EXCHANGE, tables)
        for table in tables:
            assert load.results[table.name].rows == files[table.name].height, (round_, table.name)
            assert lake.wh.count(table.name, DAY, EXCHANGE) == files[table.name].height, (round_, table.name)
    found = lake.client.get_table(lake.wh.table_id("features_1m"), retry=lake.emulator.retry)
    assert [f.name for f in found.schema] == FEATURE_SCHEMA.names
    assert found.time_partitioning.type_ == bigquery.TimePartitioningType.DAY
    assert found.time_partitioning.field == PARTITION_COLUMN
    assert list(found.clustering_fields) == list(CLUSTERING_COLUMNS)
    rows = pl.DataFrame(lake.read_slice("features_1h", DAY, EXCHANGE)).sort("instrument_key", "timestamp")
    expected = files["features_1h"]
    assert rows.height == expected.height
    for name in ("log_return", "realized_vol_20", "kyle_lambda_20", "ofi"):
        assert rows[name].is_null().to_list() == expected[name].is_null().to_list(), name
        diff = (rows[name] - expected[name]).abs().max()
        assert diff is None or diff < 1e-12, name
    one = reader.scan_features(
        "1h",
        A,
        f"{DAY}T00:00:00",
        f"{DAY}T03:00:00",
        columns=["instrument_key", "available_at"],
        root=lake.store.root,
    ).collect()
    assert one.height == 3 and set(one["instrument_key"]) == {A}
