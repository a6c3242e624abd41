"""build_instrument_definitions: the day's values from `changes`, availability windows, the no-metadata path,
grouped symbols, the schema, and bad metadata input."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
import pytest

from market_data_assets.instruments import (
    DEFINITIONS_SCHEMA,
    InstrumentMetadataError,
    UnsupportedInstrumentTypeError,
    build_instrument_definitions,
    empty_definitions,
)
from market_data_assets.storage.layout import check_instrument_key
from market_data_assets_tests.support.tardis_json import dataset_symbol_entry


def _sample(tardis_samples: Path, name: str) -> dict:
    return json.loads((tardis_samples / "instruments_api" / name).read_text())


def _details(*entries: dict) -> dict:
    return {"id": "x", "datasets": {"symbols": list(entries)}}


_entry = dataset_symbol_entry


def _reference_value(record: dict, field: str, day: date):
    """Independent reading of TARDIS.md: first change (by until) with until > day start carrying the field."""
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    for change in sorted(record.get("changes", []), key=lambda c: c["until"]):
        until = datetime.fromisoformat(change["until"].replace("Z", "+00:00"))
        if until > start and field in change:
            return float(change[field])
    return float(record[field])


# --- changes history ------------------------------------------------------------------------------

PERP_DAYS = [
    date(2020, 1, 1),
    date(2021, 6, 7),
    date(2021, 6, 8),  # the change is at 04:30: the day starts with the old value
    date(2021, 6, 9),
    date(2024, 7, 30),
    date(2024, 7, 31),
    date(2024, 8, 1),
    date(2024, 10, 21),
    date(2024, 10, 22),
    date(2025, 1, 1),
]
FIELD_COLUMNS = {
    "priceIncrement": "tick_size",
    "amountIncrement": "lot_size",
    "minTradeAmount": "min_trade_amount",
    "makerFee": "maker_fee",
    "takerFee": "taker_fee",
}


@pytest.mark.parametrize("day", PERP_DAYS)
@pytest.mark.slow
def test_changes_history_gives_that_days_values(tardis_samples: Path, day: date) -> None:
    record = _sample(tardis_samples, "instrument_perpetual.json")
    frame = build_instrument_definitions("bitmex", day, _details(_entry("XBTUSD", "perpetual")), [record])
    assert frame.height == 1
    row = frame.row(0, named=True)
    for field, column in FIELD_COLUMNS.items():
        assert row[column] == _reference_value(record, field, day), (day, field)


@pytest.mark.slow
def test_changes_history_spot_checks(tardis_samples: Path) -> None:
    """Hand-read from the sample files, so the reference above is itself checked."""
    perp = _sample(tardis_samples, "instrument_perpetual.json")
    details = _details(_entry("XBTUSD", "perpetual"))

    def row(day: date) -> dict:
        return build_instrument_definitions("bitmex", day, details, [perp]).row(0, named=True)

    assert (row(date(2021, 6, 7))["lot_size"], row(date(2021, 6, 7))["tick_size"]) == (1.0, 0.5)
    assert (row(date(2021, 6, 9))["lot_size"], row(date(2021, 6, 9))["tick_size"]) == (100.0, 0.5)
    assert row(date(2024, 8, 1))["tick_size"] == 0.1
    assert (row(date(2024, 10, 21))["maker_fee"], row(date(2024, 10, 22))["maker_fee"]) == (0.0002, 0.0005)

    spot = _sample(tardis_samples, "instrument_spot.json")
    spot_details = _details(_entry("BTC_USDC", "spot"))
    before = build_instrument_definitions("deribit", date(2024, 4, 1), spot_details, [spot]).row(
        0, named=True
    )
    after = build_instrument_definitions("deribit", date(2024, 4, 3), spot_details, [spot]).row(0, named=True)
    assert (before["tick_size"], after["tick_size"]) == (0.01, 1.0)
    assert before["instrument_key"] == after["instrument_key"] == "DERIBIT:SPOT_PAIR:BTC-USDC"


# --- availability ---------------------------------------------------------------------------------


def _window_instruments() -> list[dict]:
    common = {"exchange": "deribit", "priceIncrement": 0.5, "amountIncrement": 10, "minTradeAmount": 10}
    return [
        common | {"id": "BTC-PERPETUAL", "baseCurrency": "BTC", "quoteCurrency": "USD", "type": "perpetual",
                  "availableSince": "2019-03-30T00:00:00.000Z"},
        common | {"id": "ETH-PERPETUAL", "baseCurrency": "ETH", "quoteCurrency": "USD", "type": "perpetual",
                  "availableSince": "2024-02-10T00:00:00.000Z", "availableTo": "2024-02-20T00:00:00.000Z"},
        common | {"id": "BTC-16FEB24", "baseCurrency": "BTC", "quoteCurrency": "USD", "type": "future",
                  "availableSince": "2024-02-01T00:00:00.000Z", "expiry": "2024-02-16T08:00:00.000Z"},
        common | {"id": "SOL-PERPETUAL", "baseCurrency": "SOL", "quoteCurrency": "USD", "type": "perpetual",
                  "availableSince": "2024-02-01T00:00:00.000Z", "listing": "2024-02-15T10:00:00.000Z"},
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("day", "expected"),
    [
        (date(2024, 1, 31), {"BTC-PERPETUAL"}),
        (date(2024, 2, 9), {"BTC-PERPETUAL", "BTC-16FEB24"}),
        (date(2024, 2, 10), {"BTC-PERPETUAL", "BTC-16FEB24", "ETH-PERPETUAL"}),
        (date(2024, 2, 15), {"BTC-PERPETUAL", "BTC-16FEB24", "ETH-PERPETUAL", "SOL-PERPETUAL"}),
        (date(2024, 2, 16), {"BTC-PERPETUAL", "BTC-16FEB24", "ETH-PERPETUAL", "SOL-PERPETUAL"}),  # expiry day
        (date(2024, 2, 17), {"BTC-PERPETUAL", "ETH-PERPETUAL", "SOL-PERPETUAL"}),
        (date(2024, 2, 19), {"BTC-PERPETUAL", "ETH-PERPETUAL", "SOL-PERPETUAL"}),
        (date(2024, 2, 20), {"BTC-PERPETUAL", "SOL-PERPETUAL"}),  # availableTo is exclusive
    ],
)
def test_availability_window(day: date, expected: set[str]) -> None:
    records = _window_instruments()
    details = _details(*(_entry(r["id"], r["type"]) for r in records))
    frame = build_instrument_definitions("deribit", day, details, records)
    assert set(frame["exchange_symbol"]) == expected
    assert frame["as_of_day"].unique().to_list() == [day]


def test_empty_day_keeps_typed_columns() -> None:
    records = _window_instruments()
    details = _details(*(_entry(r["id"], r["type"]) for r in records))
    frame = build_instrument_definitions("deribit", date(2018, 1, 1), details, records)
    assert frame.height == 0
    assert frame.schema == DEFINITIONS_SCHEMA == empty_definitions().schema


# --- without metadata, grouped symbols, data types --------------------------------------------------


def _deribit_details() -> dict:
    return _details(
        _entry("BTC-PERPETUAL", "perpetual", types=("trades", "book_snapshot_5", "derivative_ticker")),
        _entry("BTC-27DEC24", "future", since="2024-06-28", to="2024-12-28"),
        _entry(
            "BTC-25DEC24-50000-C", "option", since="2024-11-01", to="2024-12-26", types=("trades", "quotes")
        ),
        _entry("OPTIONS", "option", types=("trades", "quotes", "options_chain")),
        _entry("PERPETUALS", "perpetual", since="2024-12-01", types=("trades", "derivative_ticker")),
    )


def test_without_metadata_rows_come_from_the_symbol_parser() -> None:
    frame = build_instrument_definitions("deribit", date(2024, 12, 2), _deribit_details(), None)
    assert frame.schema == DEFINITIONS_SCHEMA
    rows = {r["instrument_key"]: r for r in frame.iter_rows(named=True)}
    assert set(rows) == {
        "DERIBIT:PERP:BTC-USD",
        "DERIBIT:FUTURE:BTC-USD-241227",
        "DERIBIT:OPTION:BTC-USD-50000-241225-CALL",
    }
    option = rows["DERIBIT:OPTION:BTC-USD-50000-241225-CALL"]
    assert option["key_source"] == "symbol_parse"
    assert option["tick_size"] is None and option["contract_multiplier"] is None
    assert (option["strike"], option["option_type"], option["base"], option["quote"]) == (
        50000.0,
        "call",
        "BTC",
        "USD",
    )
    assert option["expiry"] == datetime(2024, 12, 25, 8, tzinfo=UTC)
    assert option["data_types"] == ["trades", "quotes"]
    assert option["grouped_symbols"] == ["OPTIONS"]
    assert option["dataset_symbol"] == option["symbol_in_csv"] == "BTC-25DEC24-50000-C"
    assert rows["DERIBIT:PERP:BTC-USD"]["grouped_symbols"] == ["PERPETUALS"]
    assert rows["DERIBIT:FUTURE:BTC-USD-241227"]["grouped_symbols"] == []  # no FUTURES group listed
    # PERPETUALS only exists from 2024-12-01
    earlier = build_instrument_definitions("deribit", date(2024, 11, 30), _deribit_details(), None)
    assert earlier.filter(pl.col("instrument_type") == "PERP")["grouped_symbols"].to_list() == [[]]
    for key in frame["instrument_key"]:
        check_instrument_key(key)


def test_metadata_rows_and_extra_dataset_symbols() -> None:
    option = {
        "id": "BTC-25DEC24-50000-C", "datasetId": "BTC-25DEC24-50000-C", "exchange": "deribit",
        "baseCurrency": "BTC", "quoteCurrency": "BTC", "type": "option", "inverse": True,
        "availableSince": "2024-11-01T00:00:00.000Z", "expiry": "2024-12-25T08:00:00.000Z",
        "strikePrice": "50000", "optionType": "call", "priceIncrement": "0.0001", "amountIncrement": 0.1,
        "minTradeAmount": 0.1, "contractMultiplier": 1, "someFieldTardisAddedLater": {"x": 1},
    }  # fmt: skip
    frame = build_instrument_definitions("deribit", date(2024, 12, 2), _deribit_details(), [option])
    rows = {r["exchange_symbol"]: r for r in frame.iter_rows(named=True)}
    meta = rows["BTC-25DEC24-50000-C"]
    assert meta["key_source"] == "metadata"
    assert meta["instrument_key"] == "DERIBIT:OPTION:BTC-USD-50000-241225-CALL"
    assert (meta["tick_size"], meta["strike"], meta["settlement"], meta["tardis_quote_currency"]) == (
        0.0001,
        50000.0,
        "BTC",
        "BTC",
    )
    assert meta["listing"] is None and meta["underlying_index"] is None  # optional fields absent
    # dataset ids the metadata does not cover are still described, from their symbol
    assert rows["BTC-PERPETUAL"]["key_source"] == "symbol_parse"
    assert rows["BTC-27DEC24"]["key_source"] == "symbol_parse"


def test_symbol_in_csv_is_the_upper_cased_native_id() -> None:
    record = {
        "id": "btcusdt", "datasetId": "BTCUSDT", "exchange": "binance-futures", "baseCurrency": "BTC",
        "quoteCurrency": "USDT", "type": "perpetual", "availableSince": "2019-09-08T00:00:00.000Z",
    }  # fmt: skip
    frame = build_instrument_definitions(
        "binance-futures", date(2024, 1, 1), _details(_entry("BTCUSDT", "perpetual")), [record]
    )
    row = frame.row(0, named=True)
    assert (row["exchange_symbol"], row["dataset_symbol"], row["symbol_in_csv"]) == (
        "btcusdt",
        "BTCUSDT",
        "BTCUSDT",
    )
    assert row["instrument_key"] == "BINANCE-FUTURES:PERP:BTC-USDT"


# --- bad input -----------------------------------------------------------------------------------


def _perp(**overrides: object) -> dict:
    record = {
        "id": "BTC-PERPETUAL", "exchange": "deribit", "baseCurrency": "BTC", "quoteCurrency": "USD",
        "type": "perpetual", "availableSince": "2019-01-01T00:00:00.000Z", "priceIncrement": 0.5,
    }  # fmt: skip
    return record | overrides


def _build(records: list, **kw) -> pl.DataFrame:
    return build_instrument_definitions(
        "deribit", date(2024, 1, 2), _details(_entry("BTC-PERPETUAL", "perpetual")), records, **kw
    )


def test_numbers_as_strings_and_unknown_fields_are_read() -> None:
    frame = _build(
        [_perp(priceIncrement="0.5", amountIncrement=" 10 ", inverse="true", brandNewField=[1, 2])]
    )
    row = frame.row(0, named=True)
    assert (row["tick_size"], row["lot_size"], row["inverse"]) == (0.5, 10.0, True)


@pytest.mark.parametrize(
    ("overrides", "pattern"),
    [
        ({"priceIncrement": "abc"}, r"deribit.*'priceIncrement'.*'BTC-PERPETUAL'.*'abc'"),
        ({"priceIncrement": {"v": 1}}, r"deribit.*'BTC-PERPETUAL'.*'priceIncrement'"),
        ({"baseCurrency": None}, r"deribit.*'baseCurrency'.*'BTC-PERPETUAL'"),
        ({"availableSince": "yesterday"}, r"deribit.*'availableSince'.*'BTC-PERPETUAL'"),
        ({"changes": [{"priceIncrement": 1}]}, r"deribit.*without 'until'.*'BTC-PERPETUAL'"),
        ({"changes": "often"}, r"deribit.*'BTC-PERPETUAL'.*'changes'"),
    ],
)
@pytest.mark.slow
def test_bad_metadata_is_refused_naming_exchange_and_symbol(overrides: dict, pattern: str) -> None:
    record = _perp(**overrides)
    record = {k: v for k, v in record.items() if v is not None}
    with pytest.raises(InstrumentMetadataError, match=pattern):
        _build([record])


def test_missing_id_and_non_list_inputs_are_named() -> None:
    record = _perp()
    del record["id"]
    with pytest.raises(InstrumentMetadataError, match="deribit.*'id'"):
        _build([record])
    with pytest.raises(InstrumentMetadataError, match="deribit.*JSON list"):
        _build({"BTC-PERPETUAL": _perp()})  # type: ignore[arg-type]
    with pytest.raises(InstrumentMetadataError, match="deribit.*instruments\\[1\\]"):
        _build([_perp(), "BTC-PERPETUAL"])
    with pytest.raises(InstrumentMetadataError, match="deribit.*datasets.symbols"):
        build_instrument_definitions("deribit", date(2024, 1, 2), {"id": "deribit"}, [_perp()])


@pytest.mark.slow
def test_unknown_type_raises_or_is_skipped_on_request() -> None:
    odd = _perp(id="RAIN-TOMORROW", type="prediction")
    with pytest.raises(UnsupportedInstrumentTypeError, match="deribit.*'RAIN-TOMORROW'"):
        _build([_perp(), odd])
    frame = _build([_perp(), odd], on_bad="skip")
    assert frame["exchange_symbol"].to_list() == ["BTC-PERPETUAL"]


# --- both sources agree on the sandbox's universe ---------------------------------------------------


@pytest.mark.parametrize("exchange", ["binance", "binance-futures", "deribit", "bitmex", "coinbase"])
@pytest.mark.slow
def test_metadata_and_symbol_parse_agree_on_sandbox_universe(exchange: str) -> None:
    """The sandbox's pure universe functions (no HTTP): every key from metadata equals the key the
    symbol parser derives from the public dataset id, so a paid key never renames a file."""
    from market_data_assets.sandbox import SandboxConfig, list_dataset_symbols, list_instruments

    config = SandboxConfig()
    instruments = list_instruments(config, exchange)
    details = {"id": exchange, "datasets": {"symbols": list_dataset_symbols(config, exchange)}}
    for day in (date(2024, 3, 5), date(2024, 9, 10), date(2024, 12, 1)):
        with_meta = build_instrument_definitions(exchange, day, details, instruments)
        parsed = build_instrument_definitions(exchange, day, details, None)
        assert with_meta.height > 0
        assert set(with_meta["key_source"]) == {"metadata"}
        assert set(parsed["key_source"]) == {"symbol_parse"}
        assert (
            with_meta.select("exchange_symbol", "instrument_key")
            .sort("instrument_key")["instrument_key"]
            .to_list()
            == parsed["instrument_key"].to_list()
        )
        assert with_meta["instrument_key"].is_unique().all()
        for key in with_meta["instrument_key"]:
            check_instrument_key(key)


def test_malformed_exchange_details_are_named() -> None:
    bad_types = _details({"id": "BTC-PERPETUAL", "type": "perpetual", "availableSince": "2019-01-01T00:00:00.000Z",
                          "dataTypes": "trades"})  # fmt: skip
    with pytest.raises(InstrumentMetadataError, match="deribit.*'BTC-PERPETUAL'.*'dataTypes'"):
        build_instrument_definitions("deribit", date(2024, 1, 2), bad_types, None)
    no_type = _details({"id": "BTC-PERPETUAL", "availableSince": "2019-01-01T00:00:00.000Z", "dataTypes": []})
    with pytest.raises(InstrumentMetadataError, match="deribit.*without id/type/availableSince"):
        build_instrument_definitions("deribit", date(2024, 1, 2), no_type, None)
    # numbers where strings belong are read leniently (the id 123 becomes "123")
    numeric = _details({"id": 123, "type": "spot", "availableSince": "2019-01-01T00:00:00.000Z"})
    with pytest.raises(Exception, match="deribit.*'123'"):
        build_instrument_definitions(
            "deribit", date(2024, 1, 2), numeric, None
        )  # "123" is no Deribit spot id


def test_empty_inputs_give_typed_empty_frames() -> None:
    nothing = {"datasets": {"symbols": []}}
    for instruments in (None, []):
        frame = build_instrument_definitions("deribit", date(2024, 1, 2), nothing, instruments)
        assert frame.height == 0 and frame.schema == DEFINITIONS_SCHEMA
    only_details = build_instrument_definitions(
        "deribit", date(2024, 1, 2), _details(_entry("BTC-PERPETUAL", "perpetual")), []
    )
    assert only_details["key_source"].to_list() == ["symbol_parse"]
