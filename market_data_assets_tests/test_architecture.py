"""The shape of the code: what the Definitions hold, and which packages may import what."""

from __future__ import annotations


def test_definitions_load_with_every_asset_check_job_and_sensor():
    from market_data_assets.definitions import defs

    timeframes = ("15s", "1m", "5m", "15m", "1h", "4h", "24h")
    assert {k.to_user_string() for k in defs.resolve_all_asset_keys()} == {
        "instrument_definitions",
        "download_targets",
        "raw_ticks",
        *(f"candles_{tf}" for tf in timeframes),
        "book_snapshots",
        "bq_candles",
        *(f"features_{tf}" for tf in timeframes[1:]),
        "bq_features",
        "missing_data_report",
        "live_reconciliation",
    }
    graph = defs.resolve_asset_graph()
    checks = {k.name for k in graph.asset_check_keys}
    assert checks == {
        "raw_ticks_complete",
        "instrument_keys_unique",
        "candle_volume_matches_raw_trades",
        "candle_timestamps_inside_day",
        "no_unexplained_live_differences",
    }
    assert {j.name for j in defs.resolve_all_job_defs()} >= {"ingest_job", "process_job", "daily_job"}
    assert defs.resolve_sensor_def("tardis_new_days") is not None
    # Every asset says what it is in the UI.
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.description, key
        assert node.group_name != "default", key


def test_core_packages_never_import_dagster():
    """The house rule: behaviour lives in plain-Python core packages; only defs/ wires Dagster."""
    import pkgutil
    import subprocess
    import sys

    import market_data_assets

    core = ("tardis", "instruments", "ticks", "candles", "live", "storage", "warehouse", "quality")
    modules = [
        m.name
        for m in pkgutil.walk_packages(market_data_assets.__path__, "market_data_assets.")
        if m.name.split(".")[1] in core
    ]
    assert len(modules) > 20
    code = "import importlib, sys\n" + "".join(f"importlib.import_module({m!r})\n" for m in modules)
    code += "bad = sorted(m for m in sys.modules if m == 'dagster' or m.startswith('dagster.'))\nprint(bad)\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
