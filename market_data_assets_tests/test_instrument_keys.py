"""Canonical instrument keys: the required examples, every real metadata sample, the symbol parser,
hostile symbols and collisions (spec: docs/INSTRUMENT_KEY.md)."""

from __future__ import annotations

import json
import random
from datetime import date
from pathlib import Path, PurePosixPath

import polars as pl
import pytest

from market_data_assets.instruments import (
    InstrumentKeyError,
    SymbolParseError,
    UnsupportedInstrumentTypeError,
    build_instrument_definitions,
    format_strike,
    key_for_dataset_symbol,
    key_for_instrument,
    sanitize_field,
)
from market_data_assets.storage.layout import check_instrument_key, raw_ticks_dir, raw_ticks_path


def _meta(**fields: object) -> dict[str, object]:
    base: dict[str, object] = {
        "exchange": "deribit",
        "active": True,
        "availableSince": "2024-01-01T00:00:00.000Z",
        "priceIncrement": 0.5,
        "amountIncrement": 10,
        "minTradeAmount": 10,
    }
    return base | fields


# --- the four required examples, from both sources ------------------------------------------


def test_deribit_perpetual_from_metadata_and_symbol() -> None:
    record = _meta(
        id="BTC-PERPETUAL", baseCurrency="BTC", quoteCurrency="USD", type="perpetual", inverse=True
    )
    assert key_for_instrument(record) == "DERIBIT:PERP:BTC-USD"
    assert key_for_dataset_symbol("deribit", "BTC-PERPETUAL", "perpetual") == "DERIBIT:PERP:BTC-USD"


def test_deribit_inverse_option_quotes_strike_in_usd() -> None:
    record = _meta(
        id="BTC-25DEC24-50000-C",
        baseCurrency="BTC",
        quoteCurrency="BTC",  # premium currency; the strike is in USD
        type="option",
        expiry="2024-12-25T08:00:00.000Z",
        strikePrice=50000,
        optionType="call",
        inverse=True,
    )
    expected = "DERIBIT:OPTION:BTC-USD-50000-241225-CALL"
    assert key_for_instrument(record) == expected
    assert key_for_dataset_symbol("deribit", "BTC-25DEC24-50000-C", "option") == expected


def test_bitmex_xbtusd_is_btc_usd(tardis_samples: Path) -> None:
    record = json.loads((tardis_samples / "instruments_api" / "instrument_perpetual.json").read_text())
    assert record["id"] == "XBTUSD"
    assert key_for_instrument(record) == "BITMEX:PERP:BTC-USD"
    assert key_for_dataset_symbol("bitmex", "XBTUSD", "perpetual") == "BITMEX:PERP:BTC-USD"


def test_binance_spot_btcusdt() -> None:
    record = _meta(exchange="binance", id="BTCUSDT", baseCurrency="BTC", quoteCurrency="USDT", type="spot")
    assert key_for_instrument(record) == "BINANCE:SPOT_PAIR:BTC-USDT"
    assert key_for_dataset_symbol("binance", "BTCUSDT", "spot") == "BINANCE:SPOT_PAIR:BTC-USDT"
    minimal = {"id": "btcusdt", "baseCurrency": "BTC", "quoteCurrency": "USDT", "type": "spot"}
    assert key_for_instrument(minimal, "binance") == "BINANCE:SPOT_PAIR:BTC-USDT"


# --- every real metadata sample ---------------------------------------------------------------

SAMPLE_KEYS = {
    "instrument_combo.json": "DERIBIT:COMBO:BTC-USD-FS-28MAR25_PERP",
    "instrument_future.json": "DERIBIT:FUTURE:BTC-USD-250214",
    "instrument_option.json": "DERIBIT:OPTION:BTC-USD-200000-250425-PUT",
    "instrument_perpetual.json": "BITMEX:PERP:BTC-USD",
    "instrument_spot.json": "DERIBIT:SPOT_PAIR:BTC-USDC",
}


def test_every_sample_file_has_an_expected_key(tardis_samples: Path) -> None:
    files = sorted(p.name for p in (tardis_samples / "instruments_api").glob("*.json"))
    assert files == sorted(SAMPLE_KEYS)


@pytest.mark.parametrize(("file_name", "expected"), sorted(SAMPLE_KEYS.items()))
def test_keys_of_real_metadata_samples(tardis_samples: Path, file_name: str, expected: str) -> None:
    record = json.loads((tardis_samples / "instruments_api" / file_name).read_text())
    key = key_for_instrument(record)
    assert key == expected
    assert check_instrument_key(key) == key


# --- the symbol parser (no metadata) ------------------------------------------------------------


@pytest.mark.parametrize(
    ("exchange", "symbol", "tardis_type", "expected"),
    [
        ("deribit", "BTC-27DEC24", "future", "DERIBIT:FUTURE:BTC-USD-241227"),
        ("deribit", "ETH_USDC-PERPETUAL", "perpetual", "DERIBIT:PERP:ETH-USDC"),
        ("deribit", "BTC-9JUN20-9875-P", "option", "DERIBIT:OPTION:BTC-USD-9875-200609-PUT"),
        ("deribit", "XRP_USDC-30AUG24-0d625-C", "option", "DERIBIT:OPTION:XRP-USDC-0.625-240830-CALL"),
        ("deribit", "BTC_USDC", "spot", "DERIBIT:SPOT_PAIR:BTC-USDC"),
        ("deribit", "BTC-FS-28MAR25_PERP", "combo", "DERIBIT:COMBO:BTC-USD-FS-28MAR25_PERP"),
        ("binance", "ETHBTC", "spot", "BINANCE:SPOT_PAIR:ETH-BTC"),
        ("binance", "BTCTUSD", "spot", "BINANCE:SPOT_PAIR:BTC-TUSD"),
        ("binance", "btcusdt", "spot", "BINANCE:SPOT_PAIR:BTC-USDT"),
        ("binance-futures", "BTCUSDT", "perpetual", "BINANCE-FUTURES:PERP:BTC-USDT"),
        ("binance-futures", "1000SHIBUSDT", "perpetual", "BINANCE-FUTURES:PERP:1000SHIB-USDT"),
        ("binance-futures", "BTCUSDT_250328", "future", "BINANCE-FUTURES:FUTURE:BTC-USDT-250328"),
        ("binance-delivery", "BTCUSD_PERP", "perpetual", "BINANCE-DELIVERY:PERP:BTC-USD"),
        ("bitmex", "XBTZ24", "future", "BITMEX:FUTURE:BTC-USD-241227"),  # last Friday of Dec 2024
        ("bitmex", "XBT_USDT", "spot", "BITMEX:SPOT_PAIR:BTC-USDT"),
        ("coinbase", "BTC-USD", "spot", "COINBASE:SPOT_PAIR:BTC-USD"),
        ("kraken", "XBT/USD", "spot", "KRAKEN:SPOT_PAIR:BTC-USD"),
        ("bybit", "BTC:USDT", "perpetual", "BYBIT:PERP:BTC-USDT"),
    ],
)
def test_symbol_parser(exchange: str, symbol: str, tardis_type: str, expected: str) -> None:
    assert key_for_dataset_symbol(exchange, symbol, tardis_type) == expected


def test_unreadable_symbol_is_refused_naming_it() -> None:
    with pytest.raises(SymbolParseError, match=r"coinbase.*'\.\.-\.\.-ETC'"):
        key_for_dataset_symbol("coinbase", "../../etc", "spot")
    with pytest.raises(SymbolParseError, match="kraken.*'BTC-30DEC24'"):
        key_for_dataset_symbol("kraken", "BTC-30DEC24", "future")  # no pattern: expiry unknowable


def test_prediction_type_is_refused_naming_the_symbol() -> None:
    record = _meta(
        exchange="polymarket", id="WILL-IT-RAIN", baseCurrency="YES", quoteCurrency="USDC", type="prediction"
    )
    with pytest.raises(UnsupportedInstrumentTypeError, match="polymarket.*'WILL-IT-RAIN'"):
        key_for_instrument(record)
    with pytest.raises(UnsupportedInstrumentTypeError, match="'WILL-IT-RAIN'"):
        key_for_dataset_symbol("polymarket", "WILL-IT-RAIN", "prediction")


# --- hostile symbols ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        (
            {"id": "xbt/usd", "baseCurrency": "xbt", "quoteCurrency": "usd", "type": "spot"},
            "KRAKEN:SPOT_PAIR:BTC-USD",
        ),
        (
            {"id": "a:b", "baseCurrency": "a:b", "quoteCurrency": "c/d", "type": "perpetual"},
            "KRAKEN:PERP:A-B-C-D",
        ),
        (
            {"id": "../../etc/passwd", "baseCurrency": "BTC", "quoteCurrency": "USD", "type": "combo"},
            "KRAKEN:COMBO:BTC-USD-..-..-ETC-PASSWD",
        ),
        (
            {"id": "x", "baseCurrency": "bt c..", "quoteCurrency": "€", "type": "spot"},
            "KRAKEN:SPOT_PAIR:BT-C..--",
        ),
    ],
)
def test_hostile_symbols_stay_inside_their_folder(record: dict[str, object], expected: str) -> None:
    key = key_for_instrument(_meta(exchange="kraken", **record))
    assert key == expected
    assert check_instrument_key(key) == key
    path = PurePosixPath(raw_ticks_path(date(2024, 1, 1), "trades", key))
    assert str(path.parent) == raw_ticks_dir(date(2024, 1, 1), "trades")
    assert ".." not in path.parent.parts and "/" not in path.name


@pytest.mark.parametrize("base", ["..", ".", "", "   "])
def test_a_field_that_is_empty_or_only_dots_is_refused(base: str) -> None:
    record = _meta(exchange="kraken", id="../x", baseCurrency=base, quoteCurrency="USD", type="spot")
    with pytest.raises((InstrumentKeyError, ValueError), match="kraken.*'../x'"):
        key_for_instrument(record)


def test_sanitize_and_strike_format() -> None:
    assert sanitize_field("xbt/usd:1 é") == "XBT-USD-1--"
    assert [format_strike(s) for s in (50000.0, 0.625, 1e-05, 2.5, 120000.0)] == [
        "50000",
        "0.625",
        "0.00001",
        "2.5",
        "120000",
    ]


# --- collisions --------------------------------------------------------------------------------


def _colliding_futures() -> list[dict[str, object]]:
    """Three futures that all map to DERIBIT:FUTURE:BTC-USD-241227, plus one bystander."""
    common = {
        "baseCurrency": "BTC",
        "quoteCurrency": "USD",
        "type": "future",
        "expiry": "2024-12-27T08:00:00.000Z",
    }
    return [
        _meta(id="BTC-27DEC24-Z", availableSince="2024-06-01T00:00:00.000Z", **common),
        _meta(id="BTC-27DEC24", availableSince="2024-03-01T00:00:00.000Z", **common),
        _meta(id="BTC-27DEC24-A", availableSince="2024-06-01T00:00:00.000Z", **common),
        _meta(
            id="BTC-28MAR25",
            baseCurrency="BTC",
            quoteCurrency="USD",
            type="future",
            expiry="2025-03-28T08:00:00.000Z",
        ),
    ]


def _details(records: list[dict[str, object]]) -> dict[str, object]:
    return {
        "datasets": {
            "symbols": [
                {
                    "id": r["id"],
                    "type": r["type"],
                    "availableSince": "2019-01-01T00:00:00.000Z",
                    "dataTypes": ["trades"],
                }
                for r in records
            ]
        }
    }


@pytest.mark.slow
def test_collision_is_resolved_deterministically_and_reported() -> None:
    records = _colliding_futures()
    frame = build_instrument_definitions("deribit", date(2024, 7, 1), _details(records), records)
    got = dict(zip(frame["exchange_symbol"], frame["instrument_key"], strict=True))
    # order: (availableSince, id): BTC-27DEC24 (March) first, then -A before -Z (June, by id)
    assert got == {
        "BTC-27DEC24": "DERIBIT:FUTURE:BTC-USD-241227",
        "BTC-27DEC24-A": "DERIBIT:FUTURE:BTC-USD-241227.2",
        "BTC-27DEC24-Z": "DERIBIT:FUTURE:BTC-USD-241227.3",
        "BTC-28MAR25": "DERIBIT:FUTURE:BTC-USD-250328",
    }
    contested = dict(zip(frame["exchange_symbol"], frame["collision_of"], strict=True))
    assert contested["BTC-28MAR25"] is None
    assert {contested[s] for s in ("BTC-27DEC24", "BTC-27DEC24-A", "BTC-27DEC24-Z")} == {
        "DERIBIT:FUTURE:BTC-USD-241227"
    }
    for key in frame["instrument_key"]:
        check_instrument_key(key)
    for seed in range(5):
        shuffled = records.copy()
        random.Random(seed).shuffle(shuffled)
        again = build_instrument_definitions("deribit", date(2024, 7, 1), _details(shuffled), shuffled)
        assert again.equals(frame)


def test_collision_keys_are_stable_across_days() -> None:
    """Resolved over the whole universe: the March future keeps its key even before the others list."""
    records = _colliding_futures()
    early = build_instrument_definitions("deribit", date(2024, 4, 1), _details(records), records)
    assert early.filter(pl.col("exchange_symbol") == "BTC-27DEC24")["instrument_key"].to_list() == [
        "DERIBIT:FUTURE:BTC-USD-241227"
    ]
    assert "BTC-27DEC24-A" not in early["exchange_symbol"].to_list()


def test_split_ambiguity_collides_and_is_resolved() -> None:
    """`A-B`/`C` and `A`/`B-C` spell the same SYMBOL: a collision even though base/quote differ."""
    records = [
        _meta(exchange="kraken", id="AB_C", baseCurrency="A-B", quoteCurrency="C", type="spot"),
        _meta(exchange="kraken", id="A_BC", baseCurrency="A", quoteCurrency="B-C", type="spot",
              availableSince="2024-02-01T00:00:00.000Z"),
    ]  # fmt: skip
    details = {"datasets": {"symbols": []}}
    frame = build_instrument_definitions("kraken", date(2024, 3, 1), details, records)
    assert dict(zip(frame["exchange_symbol"], frame["instrument_key"], strict=True)) == {
        "AB_C": "KRAKEN:SPOT_PAIR:A-B-C",
        "A_BC": "KRAKEN:SPOT_PAIR:A-B-C.2",
    }
    # before the second one lists, the first still has the plain key; on no day do they swap
    alone = build_instrument_definitions("kraken", date(2024, 1, 15), details, records)
    assert alone["instrument_key"].to_list() == ["KRAKEN:SPOT_PAIR:A-B-C"]


# --- full matches and the key length bound -----------------------------------------------------


def test_path_patterns_are_full_matches_and_keys_have_a_maximum_length(tmp_path: Path) -> None:
    """A trailing newline used to pass ``$``; a key over ~209 characters could never be written
    (the temporary suffix overflowed the file name limit) and failed with a bare Errno 36."""
    from market_data_assets.storage.layout import MAX_INSTRUMENT_KEY_LENGTH, LayoutError, check_exchange
    from market_data_assets.storage.local import LocalStore

    for bad in ("bitmex\n", "bitmex\r\n"):
        with pytest.raises(LayoutError):
            check_exchange(bad)
    with pytest.raises(LayoutError):
        check_instrument_key("BITMEX:PERP:BTC\n")

    longest = "KRAKEN:COMBO:" + "A" * (MAX_INSTRUMENT_KEY_LENGTH - len("KRAKEN:COMBO:"))
    store = LocalStore(tmp_path)
    store.put_bytes(b"x", raw_ticks_path(date(2024, 1, 1), "trades", longest))  # room for the temp name
    with pytest.raises(LayoutError, match=f"maximum is {MAX_INSTRUMENT_KEY_LENGTH}"):
        check_instrument_key(longest + "A")

    combo = "BTC-" + "X" * 250
    record = _meta(exchange="kraken", id=combo, baseCurrency="BTC", quoteCurrency="USD", type="combo")
    with pytest.raises(InstrumentKeyError, match=f"longer than {MAX_INSTRUMENT_KEY_LENGTH}.*{combo[:20]}"):
        key_for_instrument(record)
