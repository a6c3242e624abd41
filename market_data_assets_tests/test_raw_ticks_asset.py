"""A real Dagster materialization of raw_ticks for one partition against the live sandbox."""

from __future__ import annotations

import csv
import io
from datetime import date
from pathlib import Path

import dagster as dg
import polars as pl
import pyarrow.parquet as pq

from market_data_assets.sandbox import RunningSandbox, generate_csv
from market_data_assets.storage.layout import raw_ticks_path, targets_path
from market_data_assets.storage.local import LocalStore
from market_data_assets.ticks.manifest import read_manifest
from market_data_assets_tests.support.graph import asset, market_data

DAY = date(2024, 3, 5)
PARTITION = "2024-03-05|deribit"
TARGETS = [
    ("trades", "BTC-PERPETUAL", "DERIBIT:PERP:BTC-USD"),
    ("derivative_ticker", "BTC-PERPETUAL", "DERIBIT:PERP:BTC-USD"),
    ("trades", "ETH-PERPETUAL", "DERIBIT:PERP:ETH-USD"),
]


def write_targets(store: LocalStore, day: date = DAY) -> None:
    frame = pl.DataFrame(
        [
            {
                "exchange": "deribit",
                "data_type": dt,
                "instrument_key": key,
                "symbol_in_csv": sym,
                "dataset_symbol": sym,
                "grouped": False,
            }
            for dt, sym, key in TARGETS
        ]
    )
    store.write_parquet(frame.to_arrow(), targets_path(day, "deribit"))


def expected_rows(sandbox: RunningSandbox, data_type: str, symbol: str) -> int:
    text = generate_csv(sandbox.config, "deribit", data_type, DAY, symbol).decode()
    return sum(1 for _ in csv.DictReader(io.StringIO(text)))


def materialize(root: Path, force: bool = False) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [asset("raw_ticks")],
        partition_key=PARTITION,
        resources={"market_data": market_data(root)},
        run_config=dg.RunConfig({"raw_ticks": {"config": {"force": force}}}),
        raise_on_error=False,
    )


def test_raw_ticks_materializes_a_partition(sandbox_env: RunningSandbox, tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "lake")
    write_targets(store)
    sandbox_env.clear_requests()
    result = materialize(tmp_path / "lake")
    assert result.success

    for dt, sym, key in TARGETS:
        table = pq.read_table(store.uri(raw_ticks_path(DAY, dt, key)))
        assert table.num_rows == expected_rows(sandbox_env, dt, sym) > 0
        assert set(table.column("instrument_key").to_pylist()) == {key}

    (mat,) = result.asset_materializations_for_node("raw_ticks")
    assert mat.partition == PARTITION
    meta = {k: v.value for k, v in mat.metadata.items()}
    assert meta["files"] == 3
    assert meta["rows_by_data_type"] == {
        "derivative_ticker": expected_rows(sandbox_env, "derivative_ticker", "BTC-PERPETUAL"),
        "trades": expected_rows(sandbox_env, "trades", "BTC-PERPETUAL")
        + expected_rows(sandbox_env, "trades", "ETH-PERPETUAL"),
    }
    assert meta["dagster/row_count"] == sum(meta["rows_by_data_type"].values())
    assert meta["failed_downloads"] == 0 and meta["failures"] == "(none)"
    assert meta["rows_per_second"] > 0
    assert "sandbox-key" not in repr(meta)
    assert sum(1 for r in sandbox_env.requests if r.path.endswith(".csv.gz")) == 3

    # A second run resumes everything from the manifest; force downloads again.
    sandbox_env.clear_requests()
    again = materialize(tmp_path / "lake")
    assert again.success
    (mat,) = again.asset_materializations_for_node("raw_ticks")
    assert mat.metadata["resumed_downloads"].value == 3
    assert not [r for r in sandbox_env.requests if r.path.endswith(".csv.gz")]
    forced = materialize(tmp_path / "lake", force=True)
    assert forced.success
    assert sum(1 for r in sandbox_env.requests if r.path.endswith(".csv.gz")) == 3


def test_raw_ticks_fails_at_the_end_listing_failed_files(
    sandbox_env: RunningSandbox, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("TARDIS_MAX_RETRIES", "1")
    store = LocalStore(tmp_path / "lake")
    write_targets(store)
    sandbox_env.add_fault(path_glob="*/derivative_ticker/*", kind="503")
    result = materialize(tmp_path / "lake")

    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = str(failure.event_specific_data.error)  # type: ignore[union-attr]
    assert "1 raw tick download(s) failed" in message and "derivative_ticker/BTC-PERPETUAL" in message
    assert "sandbox-key" not in message
    # the other files were still published and recorded
    manifest = read_manifest(store, DAY, "deribit").to_pylist()
    assert sorted(r["status"] for r in manifest) == ["failed", "ok", "ok"]
    assert store.exists(raw_ticks_path(DAY, "trades", "DERIBIT:PERP:ETH-USD"))


def test_missing_targets_file_is_a_clear_failure(sandbox_env: RunningSandbox, tmp_path: Path) -> None:
    result = materialize(tmp_path / "lake")
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "no download targets for 2024-03-05|deribit" in str(failure.event_specific_data.error)  # type: ignore[union-attr]


def test_one_run_covers_a_range_of_partitions(sandbox_env: RunningSandbox, tmp_path: Path) -> None:
    """A multi-run backfill shard: one run, two days, every file and one materialization per day."""
    store = LocalStore(tmp_path / "lake")
    days = [date(2024, 3, 4), DAY]
    for day in days:
        write_targets(store, day)
    result = dg.materialize(
        [asset("raw_ticks")],
        resources={"market_data": market_data(tmp_path / "lake")},
        tags={
            "dagster/asset_partition_range_start": "2024-03-04|deribit",
            "dagster/asset_partition_range_end": "2024-03-05|deribit",
        },
    )
    assert result.success
    assert sorted(m.partition for m in result.asset_materializations_for_node("raw_ticks")) == [
        "2024-03-04|deribit",
        "2024-03-05|deribit",
    ]
    for day in days:
        for dt, _sym, key in TARGETS:
            assert store.exists(raw_ticks_path(day, dt, key))
        assert {r["status"] for r in read_manifest(store, day, "deribit").to_pylist()} == {"ok"}
