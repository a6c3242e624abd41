"""Settings: defaults, validation naming the variable, the secret key, the README's table."""

from __future__ import annotations

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
    """settings.py says the README's table is generated from SETTINGS_DOC: this keeps it true."""
    from pathlib import Path

    from market_data_assets.settings import settings_table

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert settings_table() in readme, "README's settings table differs from settings_table(): paste it again"


def test_every_variable_settings_reads_is_documented():
    import re
    from pathlib import Path

    import market_data_assets.settings as settings_module
    from market_data_assets.settings import SETTINGS_DOC

    source = Path(settings_module.__file__).read_text()
    read = set(re.findall(r'get\("((?:MARKET_DATA|TARDIS)_[A-Z_]+)"\)', source))
    read |= {variable for _, variable, _, _ in settings_module._BOUNDED_NUMBERS}
    assert len(read) > 20
    assert read <= set(SETTINGS_DOC), sorted(read - set(SETTINGS_DOC))


def test_numeric_defaults_are_written_once_and_the_readme_shows_them():
    """A bounded number's default is its Settings field's; the README cell must show that value."""
    import dataclasses

    from market_data_assets.settings import _BOUNDED_NUMBERS, SETTINGS_DOC

    defaults = {f.name: f.default for f in dataclasses.fields(Settings)}
    from_env = Settings.from_env({})
    for field, variable, lo, hi in _BOUNDED_NUMBERS:
        default = defaults[field]
        assert getattr(from_env, field) == default and lo <= default <= hi, field
        shown = f"`{default:g}`" if isinstance(default, float) else f"`{default}`"
        assert SETTINGS_DOC[variable][0] == shown, (variable, SETTINGS_DOC[variable][0], shown)
    with pytest.raises(SettingsError, match="MARKET_DATA_LIVE_LATENESS_S"):
        Settings.from_env({"MARKET_DATA_LIVE_LATENESS_S": "-1"})
    assert Settings.from_env({"MARKET_DATA_LIVE_LATENESS_S": "0.5"}).live_lateness_s == 0.5
    assert Settings.from_env({"TARDIS_MAX_RETRIES": "0"}).tardis_max_retries == 0
