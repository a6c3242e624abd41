"""Download targets: the checked-in YAML, config validation, and select_targets incl. grouped files."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl
import pytest

from market_data_assets.instruments import (
    TARGETS_SCHEMA,
    TargetsConfigError,
    build_instrument_definitions,
    load_targets_config,
    parse_targets_config,
    select_targets,
)
from market_data_assets.settings import DEFAULT_EXCHANGES, Settings
from market_data_assets.tardis.formats import DATA_TYPE_NAMES
from market_data_assets_tests.support.tardis_json import dataset_symbol_entry

DAY = date(2024, 12, 2)
N_OPTIONS = 25


_entry = dataset_symbol_entry


def _option_ids() -> list[str]:
    return [f"BTC-27DEC24-{50000 + 1000 * i}-{'C' if i % 2 else 'P'}" for i in range(N_OPTIONS)] + [
        "ETH-27DEC24-3000-C"
    ]


def _details(options_group_to: str | None = None) -> dict:
    entries = [
        _entry("BTC-PERPETUAL", "perpetual", ("trades", "book_snapshot_5", "derivative_ticker")),
        _entry("ETH-PERPETUAL", "perpetual", ("trades", "book_snapshot_5", "derivative_ticker")),
        _entry("SOL_USDC-PERPETUAL", "perpetual", ("trades",)),
        *(_entry(s, "option", ("trades", "quotes", "book_snapshot_5")) for s in _option_ids()),
        _entry("OPTIONS", "option", ("trades", "quotes", "options_chain"), to=options_group_to),
        _entry("PERPETUALS", "perpetual", ("trades", "derivative_ticker")),
    ]
    return {"id": "deribit", "datasets": {"symbols": entries}}


def _definitions(details: dict) -> pl.DataFrame:
    return build_instrument_definitions("deribit", DAY, details, None)


def _config(rules: list[dict], **top: object) -> object:
    return parse_targets_config({"exchanges": {"deribit": rules}, **top}, source="test.yaml")


def _as_set(frame: pl.DataFrame) -> set[tuple]:
    return set(frame.select("data_type", "instrument_key", "dataset_symbol", "grouped").iter_rows())


def _option_key(symbol: str) -> str:
    """Independent spelling of the key of the test's option ids (BTC-27DEC24-<strike>-<C|P>)."""
    base, _, strike, cp = symbol.split("-")
    return f"DERIBIT:OPTION:{base}-USD-{strike}-241227-{'CALL' if cp == 'C' else 'PUT'}"


# --- the checked-in file ----------------------------------------------------------------------------


def test_bundled_targets_file_is_valid_and_covers_the_default_exchanges() -> None:
    path = Settings.from_env({}).targets_file
    config = load_targets_config(path)
    assert set(DEFAULT_EXCHANGES) <= set(config.exchanges)
    for exchange in DEFAULT_EXCHANGES:
        assert config.rules_for(exchange), exchange
    assert "incremental_book_L2" not in {d for ds in config.data_types_by_exchange.values() for d in ds}


# --- selection -------------------------------------------------------------------------------------


def test_options_share_the_grouped_file_and_only_offered_types_are_selected() -> None:
    details = _details()
    config = _config(
        [
            {
                "types": ["option"],
                "base": ["BTC"],
                "data_types": ["trades", "options_chain", "book_snapshot_5", "liquidations"],
            }
        ]
    )
    targets = select_targets(_definitions(details), details, config, "deribit", DAY)
    assert targets.schema == TARGETS_SCHEMA
    btc_options = [s for s in _option_ids() if s.startswith("BTC")]
    expected = set()
    for symbol in btc_options:
        key = _option_key(symbol)
        expected.add(("trades", key, "OPTIONS", True))  # 25 >= 20 share it
        expected.add(("options_chain", key, "OPTIONS", True))  # only the group offers it
        expected.add(("book_snapshot_5", key, symbol, False))  # groups carry no books
        # liquidations: offered neither by the option nor by OPTIONS -> not selected
    assert _as_set(targets) == expected
    assert targets.height == len(expected)  # one row per (instrument, data type)
    assert targets.filter(pl.col("data_type") == "trades")["symbol_in_csv"].sort().to_list() == sorted(
        btc_options
    )
    assert set(targets["exchange"]) == {"deribit"}


def test_few_instruments_use_their_own_files_unless_the_threshold_allows() -> None:
    details = _details()
    rule = {"types": ["perpetual"], "base": ["BTC", "ETH"], "data_types": ["trades", "derivative_ticker"]}
    targets = select_targets(_definitions(details), details, _config([rule]), "deribit", DAY)
    assert _as_set(targets) == {
        (dt, f"DERIBIT:PERP:{b}-USD", f"{b}-PERPETUAL", False)
        for dt in ("trades", "derivative_ticker")
        for b in ("BTC", "ETH")
    }
    grouped = select_targets(
        _definitions(details), details, _config([rule], grouped_min_instruments=2), "deribit", DAY
    )
    assert _as_set(grouped) == {
        (dt, f"DERIBIT:PERP:{b}-USD", "PERPETUALS", True)
        for dt in ("trades", "derivative_ticker")
        for b in ("BTC", "ETH")
    }


def test_group_not_available_that_day_falls_back_to_own_files() -> None:
    details = _details(options_group_to="2024-12-01")
    config = _config([{"types": ["option"], "base": ["BTC"], "data_types": ["trades", "options_chain"]}])
    targets = select_targets(_definitions(details), details, config, "deribit", DAY)
    assert set(targets["data_type"]) == {"trades"}
    assert targets["grouped"].sum() == 0
    assert set(targets["dataset_symbol"]) == {s for s in _option_ids() if s.startswith("BTC")}


def test_symbols_by_dataset_id_or_key_and_quote_filter() -> None:
    details = _details()
    config = _config(
        [
            {
                "symbols": ["btc-perpetual", "DERIBIT:OPTION:ETH-USD-3000-241227-CALL"],
                "data_types": ["trades"],
            },
            {"types": ["perpetual"], "quote": ["USDC"], "data_types": ["trades", "book_snapshot_5"]},
        ]
    )
    targets = select_targets(_definitions(details), details, config, "deribit", DAY)
    assert _as_set(targets) == {
        ("trades", "DERIBIT:PERP:BTC-USD", "BTC-PERPETUAL", False),
        ("trades", "DERIBIT:OPTION:ETH-USD-3000-241227-CALL", "ETH-27DEC24-3000-C", False),
        ("trades", "DERIBIT:PERP:SOL-USDC", "SOL_USDC-PERPETUAL", False),
    }


def test_overlapping_rules_do_not_duplicate_rows_and_other_exchanges_are_empty() -> None:
    details = _details()
    rule = {"types": ["perpetual"], "data_types": ["trades"]}
    targets = select_targets(_definitions(details), details, _config([rule, rule]), "deribit", DAY)
    assert targets.height == 3
    assert targets.select("instrument_key", "data_type").is_duplicated().sum() == 0
    other = select_targets(_definitions(details), details, _config([rule]), "bitmex", DAY)
    assert other.height == 0 and other.schema == TARGETS_SCHEMA


# --- validation --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("document", "pattern"),
    [
        (
            {"exchanges": {"deribit": [{"data_types": ["trade"]}]}},
            r"test.yaml: exchanges.deribit\[0\].*unknown data type.*'trade'",
        ),
        (
            {"exchanges": {"deribit": [{"data_types": ["trades"], "bases": ["BTC"]}]}},
            r"exchanges.deribit\[0\].*unknown key.*'bases'",
        ),
        (
            {"exchanges": {"deribit": [{"types": ["perp"], "data_types": ["trades"]}]}},
            r"exchanges.deribit\[0\].*instrument type.*'perp'",
        ),
        (
            {"exchanges": {"deribit": [{"types": ["option"]}]}},
            r"exchanges.deribit\[0\].*'data_types' is required",
        ),
        (
            {"exchanges": {"deribit": [{"data_types": "trades"}]}},
            r"exchanges.deribit\[0\].*'data_types' must be a non-empty list",
        ),
        (
            {"exchanges": {"deribit": [{"base": [], "data_types": ["trades"]}]}},
            r"exchanges.deribit\[0\].*'base' must be a non-empty list",
        ),
        ({"exchanges": {"deribit": ["trades"]}}, r"exchanges.deribit\[0\].*must be a mapping"),
        ({"exchanges": {"deribit": {"types": ["option"]}}}, r"exchanges.deribit.*expected a list of rules"),
        ({"exchanges": {"Deribit!": []}}, r"exchanges.Deribit!.*invalid exchange id"),
        (
            {"exchanges": {"deribit": [{"symbols": ["BITMEX:PERP:BTC-USD"], "data_types": ["trades"]}]}},
            r"not a key of exchange 'deribit'",
        ),
        (
            {"exchanges": {"deribit": [{"symbols": ["DERIBIT:PERP:../x"], "data_types": ["trades"]}]}},
            r"invalid instrument key",
        ),
        ({"exchange": {}}, r"test.yaml: unknown top-level key.*'exchange'"),
        ({"exchanges": {}, "grouped_min_instruments": 0}, r"grouped_min_instruments"),
        (["deribit"], r"test.yaml: expected a mapping"),
    ],
)
def test_config_errors_name_the_file_and_entry(document: object, pattern: str) -> None:
    with pytest.raises(TargetsConfigError, match=pattern):
        parse_targets_config(document, source="test.yaml")


def test_load_errors_name_the_file(tmp_path: Path) -> None:
    broken = tmp_path / "targets.yaml"
    broken.write_text("exchanges:\n  deribit: [ {data_types: [trades]\n")
    with pytest.raises(TargetsConfigError, match=f"{broken}.*not valid YAML"):
        load_targets_config(broken)
    with pytest.raises(TargetsConfigError, match="missing.yaml.*cannot read"):
        load_targets_config(tmp_path / "missing.yaml")
    bad_type = tmp_path / "bad.yaml"
    bad_type.write_text("exchanges:\n  binance:\n    - {symbols: [BTCUSDT], data_types: [candles]}\n")
    with pytest.raises(TargetsConfigError, match=rf"{bad_type}: exchanges.binance\[0\].*'candles'"):
        load_targets_config(bad_type)


def test_every_data_type_of_the_formats_is_accepted() -> None:
    config = _config([{"data_types": list(DATA_TYPE_NAMES)}])
    assert config.rules_for("deribit")[0].data_types == DATA_TYPE_NAMES
