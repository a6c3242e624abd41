from __future__ import annotations

from datetime import date

import pytest

from market_data_assets.partitions import PartitionKeyError, parse_partition_key
from market_data_assets.settings import Secret, Settings, SettingsError
from market_data_assets.storage import layout
from market_data_assets.tardis.formats import DATA_TYPES, HeaderMismatchError, check_header


def test_defaults_give_the_embedded_setup():
    s = Settings.from_env({})
    assert s.root == "./data"
    assert s.warehouse_kind == "duckdb"
    assert not s.tardis_api_key
    assert "deribit" in s.exchanges


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MARKET_DATA_ROOT", "s3://bucket"),
        ("MARKET_DATA_EXCHANGES", "Binance"),
        ("MARKET_DATA_START_DATE", "2024-13-01"),
        ("MARKET_DATA_WAREHOUSE", "postgres://x"),
        ("MARKET_DATA_CONCURRENCY", "many"),
        ("TARDIS_API_URL", "ftp://x"),
    ],
)
def test_invalid_settings_name_the_variable(name, value):
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})


def test_api_key_never_shows():
    s = Settings.from_env({"TARDIS_API_KEY": "TD.supersecret"})
    assert s.tardis_api_key.reveal() == "TD.supersecret"
    assert "supersecret" not in repr(s) and "supersecret" not in str(s)
    assert "supersecret" not in repr(Secret("supersecret"))


@pytest.mark.parametrize(
    "key", ["TD.super\nsecret", "TD.super\x00secret", "TD.super\tsecret", "TD.süpersecret"]
)
def test_api_key_with_control_characters_is_refused_naming_the_variable_only(key):
    """A key with a newline used to reach aiohttp and fail as a bare 'Forbidden control character
    detected in headers' that named no variable."""
    with pytest.raises(SettingsError, match="TARDIS_API_KEY") as info:
        Settings.from_env({"TARDIS_API_KEY": key})
    assert "secret" not in str(info.value) and "super" not in str(info.value)


def test_partition_keys():
    p = parse_partition_key("2024-01-15|binance-futures")
    assert p.day == date(2024, 1, 15) and p.exchange == "binance-futures"
    for bad in ("2024-01-15", "2024-02-30|binance", "2024-01-15|../etc", "2024-01-15|Binance"):
        with pytest.raises(PartitionKeyError, match="partition key"):
            parse_partition_key(bad)


def test_real_csv_headers_match_specs(tardis_samples):
    real = {
        "book_snapshot_25": "binance-futures_book_snapshot_25_BTCUSDT.csv",
        "book_snapshot_5": "binance-futures_book_snapshot_5_BTCUSDT.csv",
        "trades": "bitmex_trades_XBTUSD.csv",
        "incremental_book_L2": "deribit_incremental_book_L2_BTC-PERPETUAL.csv",
        "quotes": "huobi-dm-swap_quotes_BTC-USD.csv",
    }
    for data_type, name in real.items():
        header = (tardis_samples / "csv_real" / name).read_text().splitlines()[0].split(",")
        check_header(data_type, header, name)
    synthetic = {"derivative_ticker": "derivative_ticker_1.csv", "options_chain": "options_chain.csv"}
    for data_type, name in synthetic.items():
        header = (
            (tardis_samples / "csv_synthetic_tardis_format" / name).read_text().splitlines()[0].split(",")
        )
        check_header(data_type, header, name)


def test_header_mismatch_names_file_and_columns():
    with pytest.raises(HeaderMismatchError, match=r"f\.csv.*missing \['amount'\]"):
        check_header(
            "trades", ["exchange", "symbol", "timestamp", "local_timestamp", "id", "side", "price"], "f.csv"
        )


def test_book_columns_are_bigquery_safe():
    import re

    for spec in DATA_TYPES.values():
        for name in spec.arrow_schema.names:
            assert re.match(r"^[a-z_][a-z0-9_]*$", name), name


def test_layout_paths_and_rejections():
    d = date(2024, 1, 15)
    assert layout.raw_ticks_path(d, "trades", "DERIBIT:PERP:BTC-USD") == (
        "raw_tick_data/by_date/day-2024-01-15/data_type-trades/DERIBIT:PERP:BTC-USD.parquet"
    )
    assert layout.instruments_path(d, "deribit") == (
        "instrument_availability/by_date/day-2024-01-15/venue-deribit/instruments.parquet"
    )
    for bad in ("DERIBIT:PERP:../../etc", "DERIBIT:PERP:A/B", "deribit:perp:x", "A:B", "A:B:.."):
        with pytest.raises(layout.LayoutError):
            layout.raw_ticks_path(d, "trades", bad)
    with pytest.raises(layout.LayoutError):
        layout.candles_path(d, "2m", "DERIBIT:PERP:BTC-USD")
    for p in (
        layout.targets_path(d, "x"),
        layout.candles_path(d, "1m", "A:B:C"),
        layout.book_snapshots_path(d, "1h", "A:B:C"),
        layout.features_path(d, "4h", "A:B:C"),
        layout.report_path(d, "x"),
        layout.raw_manifest_path(d, "x"),
    ):
        assert p.count("/") == 4


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


def test_readme_documents_every_setting():
    from pathlib import Path

    from market_data_assets.settings import SETTINGS_DOC

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for name in SETTINGS_DOC:
        assert f"| `{name}` |" in readme, f"README's settings table lacks {name}"


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
