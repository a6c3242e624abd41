"""The asset checks pass on what the pipeline wrote, and fail on a lake that has a hole or a wrong candle."""

from __future__ import annotations

import shutil

import dagster as dg
import polars as pl
import pytest

from market_data_assets.storage import layout
from market_data_assets_tests.support.graph import check, group, resources

raw_ticks_complete = check("raw_ticks_complete")
instrument_keys_unique = check("instrument_keys_unique")
candle_volume_matches_raw_trades = check("candle_volume_matches_raw_trades")
candle_timestamps_inside_day = check("candle_timestamps_inside_day")


def test_checks_pass_on_the_pipelines_output(pipeline_lake):
    evaluations = {e.check_name: e for e in pipeline_lake.process_result.get_asset_check_evaluations()}
    assert {"candle_volume_matches_raw_trades", "candle_timestamps_inside_day"} <= set(evaluations)
    assert all(e.passed for e in evaluations.values()), evaluations
    assert evaluations["candle_volume_matches_raw_trades"].metadata["instruments_compared"].value > 0


def _run_check(check, root, partition_key: str) -> dg.AssetCheckEvaluation:
    """Execute one check (only the check) in a real run against the lake at ``root``."""
    defs = dg.Definitions(
        assets=[*group("instruments"), *group("ingest"), *group("candles")],
        asset_checks=[check],
        jobs=[dg.define_asset_job("check_only", selection=dg.AssetSelection.checks(check))],
        resources=resources(root),
    )
    # A check-only selection has no asset to infer the partitions from (Dagster refuses partition_key=),
    # so the run carries the partition as tags, as a launched partitioned run does.
    day, exchange = partition_key.split("|")
    tags = {
        "dagster/partition": partition_key,
        "dagster/partition/date": day,
        "dagster/partition/exchange": exchange,
    }
    result = defs.resolve_job_def("check_only").execute_in_process(tags=tags, raise_on_error=False)
    (evaluation,) = result.get_asset_check_evaluations()
    return evaluation


@pytest.fixture
def lake_copy(pipeline_lake, tmp_path):
    root = tmp_path / "lake"
    shutil.copytree(pipeline_lake.root, root)
    return root


def test_raw_ticks_check_fails_on_a_missing_file(pipeline_lake, lake_copy):
    key = f"{pipeline_lake.day}|bitmex"
    assert _run_check(raw_ticks_complete, lake_copy, key).passed
    victim = layout.raw_ticks_path(pipeline_lake.day, "trades", "BITMEX:PERP:BTC-USD")
    (lake_copy / victim).unlink()
    evaluation = _run_check(raw_ticks_complete, lake_copy, key)
    assert not evaluation.passed
    assert evaluation.metadata["problems"].value == 1
    assert "BITMEX:PERP:BTC-USD" in evaluation.metadata["problem_files"].value


def test_volume_check_fails_on_a_wrong_candle(pipeline_lake, lake_copy):
    key = f"{pipeline_lake.day}|bitmex"
    path = lake_copy / layout.candles_path(pipeline_lake.day, "24h", "BITMEX:PERP:BTC-USD")
    pl.read_parquet(path).with_columns(pl.col("volume") + 1.0).write_parquet(path)
    evaluation = _run_check(candle_volume_matches_raw_trades, lake_copy, key)
    assert not evaluation.passed
    assert evaluation.metadata["mismatches"].value[0]["instrument_key"] == "BITMEX:PERP:BTC-USD"


def test_key_uniqueness_check_fails_on_duplicates(pipeline_lake, lake_copy):
    key = f"{pipeline_lake.day}|bitmex"
    assert _run_check(instrument_keys_unique, lake_copy, key).passed
    path = lake_copy / layout.instruments_path(pipeline_lake.day, "bitmex")
    df = pl.read_parquet(path)
    pl.concat([df, df.head(1)]).write_parquet(path)
    evaluation = _run_check(instrument_keys_unique, lake_copy, key)
    assert not evaluation.passed
    assert evaluation.metadata["duplicate_keys"].value == [f"{key}: {df['instrument_key'][0]}"]


def test_timestamps_check_fails_on_a_candle_outside_the_day(pipeline_lake, lake_copy):
    from datetime import timedelta

    key = f"{pipeline_lake.day}|bitmex"
    assert _run_check(candle_timestamps_inside_day, lake_copy, key).passed
    path = lake_copy / layout.candles_path(pipeline_lake.day, "15s", "BITMEX:PERP:BTC-USD")
    df = pl.read_parquet(path)
    shifted = df.with_columns(
        pl.col("timestamp") + timedelta(seconds=15)
    )  # the last bucket now starts at midnight
    shifted.write_parquet(path)
    evaluation = _run_check(candle_timestamps_inside_day, lake_copy, key)
    assert not evaluation.passed
    (entry,) = evaluation.metadata["outside_day"].value
    assert entry.startswith(str(path)) and "00:00:00" in entry
