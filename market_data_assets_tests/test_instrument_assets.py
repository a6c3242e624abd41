"""instrument_definitions and download_targets as real Dagster materializations against the sandbox."""

from __future__ import annotations

import logging
from datetime import date

import dagster as dg
import polars as pl
import pytest

from market_data_assets.defs.io_managers import LayoutIOManager
from market_data_assets.storage import layout, open_store
from market_data_assets_tests.support.graph import assets, check, market_data


def _resources() -> dict:
    resource = market_data()
    return {"market_data": resource, "layout_io_manager": LayoutIOManager(market_data=resource)}


@pytest.fixture
def tardis_env(sandbox, monkeypatch):
    monkeypatch.setenv("TARDIS_API_URL", sandbox.api_url)
    monkeypatch.setenv("TARDIS_DATASETS_URL", sandbox.datasets_url)
    monkeypatch.setenv("TARDIS_API_KEY", sandbox.api_key)
    return sandbox


def _read(store, path: str) -> pl.DataFrame:
    return pl.from_arrow(store.read_parquet(path))


def test_definitions_and_targets_for_one_partition(tardis_env, tmp_path, monkeypatch):
    root = tmp_path / "lake"
    monkeypatch.setenv("MARKET_DATA_ROOT", str(root))
    result = dg.materialize(
        assets("instrument_definitions", "download_targets"),
        resources=_resources(),
        partition_key="2024-03-05|deribit",
    )
    assert result.success
    store = open_store(str(root))
    defs = _read(store, layout.instruments_path(date(2024, 3, 5), "deribit"))
    assert defs.height > 0
    assert defs["instrument_key"].is_unique().all()
    assert set(defs["key_source"]) == {"metadata"}  # a key was given: metadata is used
    assert "DERIBIT:PERP:BTC-USD" in defs["instrument_key"].to_list()
    assert {"PERP", "FUTURE", "OPTION"} <= set(defs["instrument_type"])

    targets = _read(store, layout.targets_path(date(2024, 3, 5), "deribit"))
    assert set(targets.columns) >= {
        "exchange",
        "data_type",
        "instrument_key",
        "symbol_in_csv",
        "dataset_symbol",
        "grouped",
    }
    assert set(targets["instrument_key"]) <= set(defs["instrument_key"])
    # BTC options ride on the grouped OPTIONS file: one download for all of them.
    options = targets.filter(pl.col("instrument_key").str.starts_with("DERIBIT:OPTION:"))
    assert options.height > 1 and set(options["dataset_symbol"]) == {"OPTIONS"}

    mat = result.asset_materializations_for_node("instrument_definitions")[0]
    assert mat.metadata["dagster/row_count"].value == defs.height
    assert "instrument_key" in mat.metadata["preview"].value


def test_without_a_key_keys_come_from_symbol_ids(tardis_env, tmp_path, monkeypatch):
    monkeypatch.delenv("TARDIS_API_KEY")
    monkeypatch.setenv("MARKET_DATA_ROOT", str(tmp_path / "lake"))
    result = dg.materialize(
        assets("instrument_definitions"), resources=_resources(), partition_key="2024-03-01|deribit"
    )
    assert result.success
    defs = _read(open_store(str(tmp_path / "lake")), layout.instruments_path(date(2024, 3, 1), "deribit"))
    assert set(defs["key_source"]) == {"symbol_parse"}
    assert "DERIBIT:PERP:BTC-USD" in defs["instrument_key"].to_list()


def test_a_refused_key_is_an_error_naming_the_variable_and_no_key_records_key_source(
    tardis_env, tmp_path, monkeypatch
):
    """A wrong key used to succeed with 'needs a Tardis API key' and keys parsed from symbols."""
    monkeypatch.setenv("MARKET_DATA_ROOT", str(tmp_path / "lake"))
    monkeypatch.setenv("TARDIS_API_KEY", "TD.wrong-key-4242")
    result = dg.materialize(
        assets("instrument_definitions"),
        resources=_resources(),
        partition_key="2024-03-05|deribit",
        raise_on_error=False,
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    text = str(failure.event_specific_data.error)
    assert "TARDIS_API_KEY" in text and "401" in text
    assert "wrong-key-4242" not in text
    store = open_store(str(tmp_path / "lake"))
    assert not store.exists(layout.instruments_path(date(2024, 3, 5), "deribit"))

    monkeypatch.delenv("TARDIS_API_KEY")
    result = dg.materialize(
        assets("instrument_definitions"), resources=_resources(), partition_key="2024-03-01|deribit"
    )
    mat = result.asset_materializations_for_node("instrument_definitions")[0]
    assert set(mat.metadata["key_source"].value) == {"symbol_parse"}


def test_a_run_covering_several_partitions_writes_each(tardis_env, tmp_path, monkeypatch):
    monkeypatch.setenv("MARKET_DATA_ROOT", str(tmp_path / "lake"))
    result = dg.materialize(
        assets("instrument_definitions", "download_targets"),
        resources=_resources(),
        tags={
            "dagster/asset_partition_range_start": "2024-03-01|bitmex",
            "dagster/asset_partition_range_end": "2024-03-03|bitmex",
        },
    )
    assert result.success
    store = open_store(str(tmp_path / "lake"))
    for day in (date(2024, 3, 1), date(2024, 3, 2), date(2024, 3, 3)):
        assert _read(store, layout.instruments_path(day, "bitmex")).height > 0
        assert _read(store, layout.targets_path(day, "bitmex")).height > 0


def test_definitions_into_gcs(tardis_env, gcs_env):
    """The same materialization with MARKET_DATA_ROOT=gs://… against the GCS emulator."""
    result = dg.materialize(
        assets("instrument_definitions"), resources=_resources(), partition_key="2024-01-01|deribit"
    )
    assert result.success
    store = open_store(gcs_env)
    path = layout.instruments_path(date(2024, 1, 1), "deribit")
    assert store.exists(path)
    assert _read(store, path).height > 0
    assert [o.path for o in store.list("instrument_availability/")] == [path]


def test_a_typo_in_the_targets_file_is_an_error_or_a_visible_failure(tardis_env, tmp_path, monkeypatch):
    """`bitmx:` or `XBTUSDD` used to be a successful run with no data that raw_ticks_complete passed."""
    raw_ticks_complete = check("raw_ticks_complete")
    from market_data_assets_tests.test_quality_checks import _run_check

    root = tmp_path / "lake"
    monkeypatch.setenv("MARKET_DATA_ROOT", str(root))
    targets = tmp_path / "targets.yaml"
    monkeypatch.setenv("MARKET_DATA_TARGETS_FILE", str(targets))
    partition = "2024-03-01|bitmex"

    targets.write_text("exchanges:\n  bitmx:\n    - {symbols: [XBTUSD], data_types: [trades]}\n")
    result = dg.materialize(
        assets("instrument_definitions", "download_targets"),
        resources=_resources(),
        partition_key=partition,
        raise_on_error=False,
    )
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert failure.step_key == "download_targets"
    text = str(failure.event_specific_data.error)
    assert "unknown exchange 'bitmx'" in text and "did you mean 'bitmex'" in text and str(targets) in text

    targets.write_text("exchanges:\n  bitmex:\n    - {symbols: [XBTUSDD], data_types: [trades]}\n")
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(
        assets("instrument_definitions", "download_targets"),
        resources=_resources(),
        partition_key=partition,
        instance=instance,
    )
    mat = result.asset_materializations_for_node("download_targets")[0]
    assert mat.metadata["dagster/row_count"].value == 0
    (unmatched,) = mat.metadata["unmatched_rules"].value
    assert "exchanges.bitmex[0]" in unmatched and "selects no instrument" in unmatched
    warnings = [e.user_message for e in instance.all_logs(result.run_id) if e.level == logging.WARNING]
    assert any("exchanges.bitmex[0]: selects no instrument" in w for w in warnings), warnings

    evaluation = _run_check(raw_ticks_complete, root, partition)
    assert not evaluation.passed
    assert "the targets select nothing" in str(evaluation.metadata["partitions_without_targets"].value)

    targets.write_text(
        "allow_empty: true\nexchanges:\n  bitmex:\n    - {symbols: [XBTUSDD], data_types: [trades]}\n"
    )
    assert _run_check(raw_ticks_complete, root, partition).passed
