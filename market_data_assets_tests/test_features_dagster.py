"""The feature assets for real: Dagster materializations (in process and through the CLI), the
partition mapping to earlier days, the DuckDB tables ``features_<tf>`` and the reader."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import pyarrow.parquet as pq
import pytest

from market_data_assets import reader
from market_data_assets.features.build import LOOKBACK_FLAG, lookback_span
from market_data_assets.features.registry import FEATURE_NAMES, FEATURE_SCHEMA, FEATURE_TIMEFRAMES
from market_data_assets.storage.layout import CANDLES_AREA, features_path
from market_data_assets.storage.local import LocalStore
from market_data_assets.storage.slices import META_PREFIX, SliceRef
from market_data_assets_tests.support.graph import PARTITIONS_DEF, asset, assets, group, resources
from market_data_assets_tests.test_features import EXCHANGE, A, B, C, hand_built, write_candle_slices

pytestmark = pytest.mark.servers


REPO = Path(__file__).resolve().parents[1]
DAY = date(2024, 3, 2)
PARTITION = f"{DAY.isoformat()}|{EXCHANGE}"
KEYS = (A, B, C)


def _lake(root: Path, timeframes: tuple[str, ...] = FEATURE_TIMEFRAMES) -> LocalStore:
    store = LocalStore(root)
    for tf in timeframes:
        days = lookback_span(DAY, tf)
        write_candle_slices(store, hand_built(tf, days), days, tf)
    return store


def _materialize(root: Path, selection: list[dg.AssetsDefinition]) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [*group("candles"), *group("features"), asset("bq_features")],
        selection=selection,
        partition_key=PARTITION,
        resources=resources(root),
    )


def _duckdb_rows(root: Path, table: str) -> pl.DataFrame:
    """The table's rows by plain SQL, typed like the lake files (UTC microsecond timestamps)."""
    with duckdb.connect(str(root / "warehouse.duckdb"), read_only=True) as con:
        con.execute("SET TimeZone = 'UTC'")
        frame = pl.from_arrow(
            con.sql(f"SELECT * FROM {table} ORDER BY instrument_key, timestamp").to_arrow_table()
        )
    return frame.with_columns(pl.col("timestamp", "available_at").cast(pl.Datetime("us", "UTC")))  # type: ignore[union-attr]


def test_feature_assets_and_bq_features_load_idempotently_and_the_reader_reads_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "lake"
    store = _lake(root)
    monkeypatch.setenv("MARKET_DATA_ROOT", str(root))
    result = _materialize(root, assets(*(f"features_{tf}" for tf in FEATURE_TIMEFRAMES), "bq_features"))
    assert result.success
    for tf in FEATURE_TIMEFRAMES:
        mat = result.asset_materializations_for_node(f"features_{tf}")[0]
        assert mat.partition == PARTITION
        assert mat.metadata["lookback_complete"].value is True
        assert mat.metadata["instruments"].value == 3
        meta = pq.read_metadata(store.uri(features_path(DAY, tf, A))).metadata
        assert meta[(META_PREFIX + LOOKBACK_FLAG).encode()] == b"true"
    first = {tf: _duckdb_rows(root, f"features_{tf}") for tf in FEATURE_TIMEFRAMES}
    for tf, rows in first.items():
        files = pl.concat(pl.read_parquet(store.uri(features_path(DAY, tf, k))) for k in KEYS)
        assert (
            rows.height
            == files.height
            == 3 * 86_400 // {"1m": 60, "5m": 300, "15m": 900, "1h": 3600, "4h": 14400, "24h": 86400}[tf]
        )
        assert rows.columns == FEATURE_SCHEMA.names
        assert rows.equals(files.sort("instrument_key", "timestamp")), tf
        read = reader.scan_features(tf, list(KEYS), DAY, DAY + timedelta(days=1)).collect()
        assert read.sort("instrument_key", "timestamp").equals(rows), tf
    # Re-run: the same rows, not twice as many.
    again = _materialize(root, [asset("bq_features")])
    assert again.success
    for tf in FEATURE_TIMEFRAMES:
        assert _duckdb_rows(root, f"features_{tf}").equals(first[tf]), tf
    # The reader projects and filters the time range.
    part = reader.scan_features(
        "1h",
        A,
        f"{DAY}T05:00:00",
        f"{DAY}T08:00:00",
        columns=["timestamp", "available_at", "realized_vol_20"],
    ).collect()
    assert part.columns == ["timestamp", "available_at", "realized_vol_20"] and part.height == 3
    assert (part["available_at"] - part["timestamp"]).unique().to_list() == [timedelta(hours=1)]
    with pytest.raises(ValueError, match="no features at '15s'"):
        reader.scan_features("15s", A, DAY, DAY)


def test_a_missing_earlier_day_is_skipped_and_flagged(tmp_path: Path) -> None:
    root = tmp_path / "lake"
    store = _lake(root, ("1m",))
    for gone_file in store.list(SliceRef(CANDLES_AREA, DAY - timedelta(days=1), "1m", EXCHANGE).folder + "/"):
        store.delete(gone_file.path)
    result = _materialize(root, [asset("features_1m")])
    assert result.success
    mat = result.asset_materializations_for_node("features_1m")[0]
    assert mat.metadata["lookback_complete"].value is False
    assert mat.metadata["lookback_incomplete_partitions"].value == [PARTITION]
    first = pl.read_parquet(store.uri(features_path(DAY, "1m", A))).head(25)
    assert first["realized_vol_20"].null_count() == 19 and first["log_return"][0] is None


def test_each_timeframe_reads_the_earlier_days_its_longest_lookback_needs() -> None:
    expected_days = {"1m": 1, "5m": 1, "15m": 1, "1h": 1, "4h": 4, "24h": 20}
    for tf in FEATURE_TIMEFRAMES:
        features = asset(f"features_{tf}")
        mapping = features.get_partition_mapping(dg.AssetKey(f"candles_{tf}"))
        upstream = mapping.get_upstream_mapped_partitions_result_for_partitions(
            PARTITIONS_DEF.subset_with_partition_keys([PARTITION]),
            PARTITIONS_DEF,
            PARTITIONS_DEF,
        ).partitions_subset.get_partition_keys()
        assert sorted(upstream) == [
            f"{DAY - timedelta(days=n)}|{EXCHANGE}" for n in range(expected_days[tf], -1, -1)
        ], tf
        assert features.group_names_by_key[features.key] == "features"
        description = features.descriptions_by_key[features.key]
        assert all(f"`{name}`" in description for name in FEATURE_NAMES) and "available_at" in description


def test_dagster_cli_materializes_features_on_the_embedded_default(tmp_path: Path) -> None:
    """`dagster asset materialize --select features_1m --partition "D|binance-futures"` once candles of D-1 and D exist."""
    root = tmp_path / "lake"
    store = _lake(root, ("1m",))
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MARKET_DATA_", "TARDIS_", "DAGSTER_"))}
    env |= {"MARKET_DATA_ROOT": str(root), "DAGSTER_HOME": str(home)}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "dagster",
            "asset",
            "materialize",
            "-m",
            "market_data_assets.definitions",
            "--select",
            "features_1m",
            "--partition",
            PARTITION,
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    for key in KEYS:
        path = store.uri(features_path(DAY, "1m", key))
        assert pq.read_metadata(path).metadata[(META_PREFIX + LOOKBACK_FLAG).encode()] == b"true"
        assert pl.read_parquet(path).height == 1440
