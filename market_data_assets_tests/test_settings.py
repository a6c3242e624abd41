"""Settings: defaults, validation naming the variable, the secret key, the README's table."""

from __future__ import annotations

import dataclasses

import pytest

from market_data_assets.settings import Secret, Settings, SettingsError


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


def test_readme_settings_table_is_the_generated_one():
    """settings.py says the README's table is generated from SETTING_SPECS: this keeps it true."""
    from pathlib import Path

    from market_data_assets.settings import settings_table

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert settings_table() in readme, "README's settings table differs from settings_table(): paste it again"


# A valid value other than the default, per variable: every spec needs one, so a new setting must
# show here that from_env reads it. "{tmp}" is a folder holding an existing file `targets.yaml`.
SAMPLES = {
    "MARKET_DATA_ROOT": "gs://bucket/prefix",
    "MARKET_DATA_EXCHANGES": "deribit,bitmex",
    "MARKET_DATA_START_DATE": "2023-06-01",
    "MARKET_DATA_END_DATE": "2024-06-30",
    "MARKET_DATA_WAREHOUSE": "bigquery://my-project/market_data",
    "MARKET_DATA_DUCKDB_MEMORY_LIMIT": "1GiB",
    "MARKET_DATA_DUCKDB_THREADS": "4",
    "MARKET_DATA_DUCKDB_BATCH_FILES": "50",
    "MARKET_DATA_TARGETS_FILE": "{tmp}/targets.yaml",
    "MARKET_DATA_CONCURRENCY": "8",
    "MARKET_DATA_CONVERT_WORKERS": "3",
    "MARKET_DATA_STAGING_MAX_AGE_HOURS": "0",
    "MARKET_DATA_BACKFILL_DAYS_PER_RUN": "30",
    "MARKET_DATA_SENSOR_LOOKBACK_DAYS": "10",
    "MARKET_DATA_IO_CONCURRENCY": "64",
    "MARKET_DATA_SPARSE_CANDLE_TYPES": "none",
    "MARKET_DATA_CANDLE_CHUNK_ROWS": "500000",
    "TARDIS_API_KEY": "TD.sample",
    "TARDIS_API_URL": "http://127.0.0.1:8000/v1",
    "TARDIS_DATASETS_URL": "http://127.0.0.1:8000/v1",
    "TARDIS_REQUESTS_PER_MINUTE": "60",
    "TARDIS_MAX_RETRIES": "0",
    "TARDIS_MACHINE_WS_URL": "ws://127.0.0.1:9001",
    "MARKET_DATA_LIVE_MAX_LAG_S": "60",
    "MARKET_DATA_LIVE_LATENESS_S": "0.5",
}


def test_from_env_honours_every_spec_variable(tmp_path):
    """Each variable of the table reaches its own field (and only a table variable is read)."""
    from market_data_assets.settings import SETTING_SPECS

    (tmp_path / "targets.yaml").write_text("{}\n")
    variables = [spec.variable for spec in SETTING_SPECS]
    assert len(variables) == len(set(variables)) > 20
    assert set(SAMPLES) == set(variables), "give every setting a sample value here"
    default = Settings()
    for spec in SETTING_SPECS:
        changed = Settings.from_env({spec.variable: SAMPLES[spec.variable].format(tmp=tmp_path)})
        assert getattr(changed, spec.field) != getattr(default, spec.field), spec.variable
        others = [f.name for f in dataclasses.fields(Settings) if f.name != spec.field]
        assert [getattr(changed, n) for n in others] == [getattr(default, n) for n in others], spec.variable
    assert Settings.from_env({"MARKET_DATA_NOT_A_SETTING": "x"}) == default


def test_defaults_are_the_documented_ones():
    """The defaults as the brief and the README promise them, written here by hand (not read from
    SETTING_SPECS): a changed default must change this list too. The dataclass and from_env({})
    both give them, and a blank variable (an env file's `NAME=` line) means unset."""
    from datetime import date
    from pathlib import Path

    from market_data_assets.settings import SETTING_SPECS

    documented = {
        "root": "./data",
        "exchanges": ("binance", "binance-futures", "deribit", "bitmex", "coinbase"),
        "start_date": date(2024, 1, 1),
        "end_date": None,
        "warehouse": "duckdb",
        "duckdb_memory_limit": "384MB",
        "duckdb_threads": 2,
        "duckdb_batch_files": 500,
        "concurrency": 16,
        "convert_workers": 2,
        "staging_max_age_hours": 24,
        "backfill_days_per_run": 7,
        "sensor_lookback_days": 3,
        "io_concurrency": 32,
        "sparse_candle_types": ("OPTION", "COMBO"),
        "candle_chunk_rows": 2_000_000,
        "tardis_api_url": "https://api.tardis.dev/v1",
        "tardis_datasets_url": "https://datasets.tardis.dev/v1",
        "tardis_requests_per_minute": 2400,
        "tardis_max_retries": 8,
        "tardis_machine_ws_url": "ws://127.0.0.1:8001",
        "live_lateness_s": 2.0,
        "live_max_lag_s": 300.0,
    }
    bundled = Path(__file__).resolve().parents[1] / "market_data_assets" / "download_targets.yaml"
    for settings in (
        Settings(),
        Settings.from_env({}),
        Settings.from_env({s.variable: "  " for s in SETTING_SPECS}),
    ):
        assert {n: getattr(settings, n) for n in documented} == documented
        assert settings.targets_file == bundled and not settings.tardis_api_key
    assert {f.name for f in dataclasses.fields(Settings)} == {*documented, "targets_file", "tardis_api_key"}


def test_sparse_candle_types_default_is_the_density_modules():
    """settings.py cannot import candles.density at import time (an import circle), so the table
    repeats its default; this keeps the two equal."""
    from market_data_assets.candles.density import DEFAULT_SPARSE_TYPES

    assert Settings().sparse_candle_types == DEFAULT_SPARSE_TYPES


def test_numeric_settings_refuse_values_just_outside_their_bounds():
    """Every int or float setting is bounded; its default is inside, its bounds are accepted, and a
    value just outside is refused naming the variable."""
    from market_data_assets.settings import SETTING_SPECS, Bounded

    numeric = [spec for spec in SETTING_SPECS if isinstance(spec.default, (int, float))]
    assert len(numeric) >= 13
    for spec in numeric:
        parse = spec.parse
        assert isinstance(parse, Bounded), spec.variable
        assert parse.kind is type(spec.default), spec.variable
        assert parse.lo <= spec.default <= parse.hi, spec.variable
        step = 1 if parse.kind is int else 0.001
        for inside in (parse.lo, parse.hi):
            assert getattr(Settings.from_env({spec.variable: str(inside)}), spec.field) == inside
        for outside in (parse.lo - step, parse.hi + step):
            with pytest.raises(SettingsError, match=f"^{spec.variable}=.* is outside"):
                Settings.from_env({spec.variable: str(outside)})
    with pytest.raises(SettingsError, match="MARKET_DATA_LIVE_LATENESS_S"):
        Settings.from_env({"MARKET_DATA_LIVE_LATENESS_S": "-1"})
    assert Settings.from_env({"MARKET_DATA_LIVE_LATENESS_S": "0.5"}).live_lateness_s == 0.5
    assert Settings.from_env({"TARDIS_MAX_RETRIES": "0"}).tardis_max_retries == 0
