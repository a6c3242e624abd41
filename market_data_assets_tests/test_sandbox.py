"""The bundled Tardis sandbox, exercised over real HTTP (urllib) against a started server.

Format expectations are derived from the real Tardis excerpts in ../shared/tardis-samples (read
in place), not from the sandbox's own code: each column's value pattern is the first candidate
pattern that matches every value of that column in the real file.
"""

from __future__ import annotations

import asyncio
import csv
import gzip
import http.client
import io
import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest

from market_data_assets.sandbox import RunningSandbox, SandboxConfig, generate_csv

KEY = "sandbox-key"  # the default SandboxConfig's key


# ----------------------------------------------------------------------------------------------
# helpers


def _get(
    sandbox: RunningSandbox, path: str, key: str | None = None, timeout: float = 30
) -> tuple[int, dict[str, str], bytes]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    request = urllib.request.Request(sandbox.url + path, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, dict(exc.headers), exc.read()


def _dataset_path(exchange: str, data_type: str, day: date, symbol: str) -> str:
    return f"/v1/{exchange}/{data_type}/{day:%Y/%m/%d}/{urllib.parse.quote(symbol, safe='')}.csv.gz"


def _rows(sandbox: RunningSandbox, exchange: str, data_type: str, day: date, symbol: str) -> list[list[str]]:
    status, _, body = _get(sandbox, _dataset_path(exchange, data_type, day, symbol), KEY)
    assert status == 200, body
    text = gzip.decompress(body).decode()
    return list(csv.reader(io.StringIO(text)))


def _json(sandbox: RunningSandbox, path: str, key: str | None = KEY) -> object:
    status, _, body = _get(sandbox, path, key)
    assert status == 200, body
    return json.loads(body)


def _us(moment: datetime) -> int:
    return int(moment.timestamp()) * 1_000_000


def _midnight_us(day: date) -> int:
    return _us(datetime(day.year, day.month, day.day, tzinfo=UTC))


# ----------------------------------------------------------------------------------------------
# CSV formats against the real excerpts

# Candidate value patterns, most specific first; a column's pattern is the first matching every
# real value of that column.
_CANDIDATES: tuple[tuple[str, str], ...] = (
    ("us_timestamp", r"\d{16}"),
    ("bool", r"true|false"),
    ("side", r"buy|sell|bid|ask|unknown"),
    ("decimal", r"-?(0|[1-9]\d*)(\.\d*[1-9])?"),  # no exponent, no trailing zeros, no ".0"
    ("identifier", r"[0-9A-Za-z][0-9A-Za-z-]*"),
    ("text", r"[^,]+"),
)
_US_TIMESTAMP = re.compile(dict(_CANDIDATES)["us_timestamp"])
_DECIMAL = re.compile(dict(_CANDIDATES)["decimal"])
_REAL_FILES = {
    "trades": ("bitmex_trades_XBTUSD.csv", "bitmex", "XBTUSD"),
    "quotes": ("huobi-dm-swap_quotes_BTC-USD.csv", "bitmex", "XBTUSD"),
    "incremental_book_L2": ("deribit_incremental_book_L2_BTC-PERPETUAL.csv", "deribit", "BTC-PERPETUAL"),
    "book_snapshot_5": ("binance-futures_book_snapshot_5_BTCUSDT.csv", "binance-futures", "BTCUSDT"),
    "book_snapshot_25": ("binance-futures_book_snapshot_25_BTCUSDT.csv", "binance-futures", "BTCUSDT"),
}


def _empty_allowed(column: str) -> bool:
    """Where Tardis leaves a cell empty: missing book levels, missing quote sides, trade ids."""
    return column.startswith(("asks[", "bids[")) or column in {
        "ask_amount",
        "ask_price",
        "bid_price",
        "bid_amount",
        "id",
    }


def _column_patterns(real_rows: list[list[str]], header: list[str]) -> dict[str, tuple[str, re.Pattern[str]]]:
    out = {}
    for j, column in enumerate(header):
        values = [row[j] for row in real_rows if row[j] != ""]
        assert values, f"real file has no values for {column}"
        for name, pattern in _CANDIDATES:
            compiled = re.compile(pattern)
            if all(compiled.fullmatch(v) for v in values):
                out[column] = (name, compiled)
                break
    return out


@pytest.mark.parametrize("data_type", sorted(_REAL_FILES))
def test_csv_matches_the_real_tardis_excerpt(
    sandbox: RunningSandbox, tardis_samples: Path, data_type: str
) -> None:
    file_name, exchange, symbol = _REAL_FILES[data_type]
    with (tardis_samples / "csv_real" / file_name).open(newline="") as f:
        real_header, *real_rows = list(csv.reader(f))
    patterns = _column_patterns(real_rows, real_header)
    # the independent derivation found what we expect of Tardis files
    assert patterns["timestamp"][0] == patterns["local_timestamp"][0] == "us_timestamp"
    assert all(patterns[c][0] == "decimal" for c in real_header if c.endswith(("price", "amount")))

    day = date(2024, 6, 1)  # first of month: also works without a key
    header, *rows = _rows(sandbox, exchange, data_type, day, symbol)
    assert header == real_header
    assert len(rows) > 50
    for row in rows:
        assert len(row) == len(header), row
        assert row[0] == exchange and row[1] == symbol
        for column, value in zip(header, row, strict=True):
            if value == "":
                assert _empty_allowed(column), f"{column} empty in {row}"
                continue
            kind, pattern = patterns[column]
            if column in ("exchange", "symbol"):
                continue
            assert pattern.fullmatch(value), f"{data_type}.{column}={value!r} is not {kind}"
    local = [int(r[3]) for r in rows]
    assert local == sorted(local), "rows must be ordered by local_timestamp"
    assert _midnight_us(day) <= local[0] and local[-1] < _midnight_us(day + timedelta(days=1))


def test_integer_valued_numbers_are_printed_without_a_fraction(sandbox: RunningSandbox) -> None:
    """Deribit BTC-PERPETUAL: 0.5 ticks, amounts in 10 USD lots -> '6422' and '6421.5', never '6422.0'."""
    _, *rows = _rows(sandbox, "deribit", "incremental_book_L2", date(2024, 6, 1), "BTC-PERPETUAL")
    prices = [r[6] for r in rows]
    amounts = [r[7] for r in rows]
    assert any(p.endswith(".5") for p in prices) and any("." not in p for p in prices)
    assert not any(v.endswith(".0") for v in prices + amounts)
    assert all(int(a) % 10 == 0 for a in amounts)


def test_every_data_type_file_has_the_spec_header_and_consistent_rows(sandbox: RunningSandbox) -> None:
    day = date(2024, 6, 1)
    offered = {
        ("binance-futures", "BTCUSDT"): [
            "trades",
            "quotes",
            "book_ticker",
            "derivative_ticker",
            "liquidations",
        ],
        ("deribit", "OPTIONS"): ["options_chain", "trades", "quotes"],
        ("deribit", "FUTURES"): ["derivative_ticker"],
    }
    expected_headers = {  # spelled out here, from TARDIS.md, independently of formats.py
        "trades": "exchange,symbol,timestamp,local_timestamp,id,side,price,amount",
        "liquidations": "exchange,symbol,timestamp,local_timestamp,id,side,price,amount",
        "quotes": "exchange,symbol,timestamp,local_timestamp,ask_amount,ask_price,bid_price,bid_amount",
        "book_ticker": "exchange,symbol,timestamp,local_timestamp,ask_amount,ask_price,bid_price,bid_amount",
        "derivative_ticker": "exchange,symbol,timestamp,local_timestamp,funding_timestamp,funding_rate,"
        "predicted_funding_rate,open_interest,last_price,index_price,mark_price",
        "options_chain": "exchange,symbol,timestamp,local_timestamp,type,strike_price,expiration,open_interest,"
        "last_price,bid_price,bid_amount,bid_iv,ask_price,ask_amount,ask_iv,mark_price,mark_iv,"
        "underlying_index,underlying_price,delta,gamma,vega,theta,rho",
    }
    for (exchange, symbol), data_types in offered.items():
        for data_type in data_types:
            header, *rows = _rows(sandbox, exchange, data_type, day, symbol)
            assert ",".join(header) == expected_headers[data_type]
            assert rows, (exchange, data_type)
            assert all(len(r) == len(header) for r in rows)
            for row in rows:
                for column, value in zip(header[2:], row[2:], strict=True):
                    if column in ("id", "side", "type", "underlying_index") or value == "":
                        continue
                    if column in ("timestamp", "local_timestamp", "funding_timestamp", "expiration"):
                        assert _US_TIMESTAMP.fullmatch(value), (data_type, column, value)
                    else:
                        assert _DECIMAL.fullmatch(value), (data_type, column, value)
            if data_type in ("quotes", "book_ticker"):
                assert all(float(r[5]) > float(r[6]) for r in rows), "ask above bid"


def test_book_snapshots_are_ordered_and_uncrossed(sandbox: RunningSandbox) -> None:
    header, *rows = _rows(sandbox, "binance-futures", "book_snapshot_25", date(2024, 6, 1), "BTCUSDT")
    col = {name: i for i, name in enumerate(header)}
    for row in rows:
        asks = [float(row[col[f"asks[{i}].price"]]) for i in range(25)]
        bids = [float(row[col[f"bids[{i}].price"]]) for i in range(25)]
        assert asks == sorted(asks) and len(set(asks)) == 25
        assert bids == sorted(bids, reverse=True) and len(set(bids)) == 25
        assert asks[0] > bids[0]


def _replay(rows: list[list[str]]) -> list[int]:
    """Apply L2 rows (a snapshot after updates resets the book); return each snapshot's local time.

    Asserts the book is uncrossed after every message (rows sharing a local_timestamp).
    """
    book: dict[str, dict[float, float]] = {"bid": {}, "ask": {}}
    snapshots: list[int] = []
    previous_snapshot = False
    for i, (_, _, _, local, is_snapshot, side, price, amount) in enumerate(rows):
        snapshot = is_snapshot == "true"
        if snapshot and not previous_snapshot:
            book = {"bid": {}, "ask": {}}
            snapshots.append(int(local))
        previous_snapshot = snapshot
        if float(amount) == 0:
            book[side].pop(float(price), None)
        else:
            book[side][float(price)] = float(amount)
        last_of_message = i + 1 == len(rows) or rows[i + 1][3] != local
        if last_of_message and book["bid"] and book["ask"]:
            assert max(book["bid"]) < min(book["ask"]), f"crossed book after local_timestamp {local}"
    return snapshots


def test_incremental_book_replays_into_an_uncrossed_book(sandbox: RunningSandbox) -> None:
    day = date(2024, 6, 1)
    _, *rows = _rows(sandbox, "binance-futures", "incremental_book_L2", day, "BTCUSDT")
    assert rows[0][4] == "true"
    assert sum(r[4] == "true" for r in rows) == 50  # 25 levels a side
    assert _replay(rows) == [int(rows[0][3])]
    assert int(rows[0][3]) - _midnight_us(day) < 1_000_000, "the day opens with a snapshot"


def test_book_restarts_with_a_snapshot_after_an_outage(sandbox: RunningSandbox) -> None:
    details = _json(sandbox, "/v1/exchanges/binance-futures", key=None)
    report = next(r for r in details["incidentReports"] if r["from"].startswith("2024-06-03"))
    end = _us(datetime.strptime(report["to"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC))
    _, *rows = _rows(sandbox, "binance-futures", "incremental_book_L2", date(2024, 6, 3), "BTCUSDT")
    first, after_outage = _replay(rows)
    assert first < end <= after_outage < end + 10 * 60 * 1_000_000


# ----------------------------------------------------------------------------------------------
# instruments metadata


_OPTIONAL = {
    "availableTo", "listing", "expiry", "inverse", "contractType", "contractMultiplier", "settlementCurrency",
    "underlyingIndex", "strikePrice", "optionType", "changes",
}  # fmt: skip


def test_instruments_have_the_fields_of_the_real_responses(
    sandbox: RunningSandbox, tardis_samples: Path
) -> None:
    samples = {
        p.stem.removeprefix("instrument_"): json.loads(p.read_text())
        for p in (tardis_samples / "instruments_api").glob("instrument_*.json")
    }
    # availableTo is in no sample (they are all live instruments) but documented for expired ones
    known_keys = set().union(*(s.keys() for s in samples.values())) | {"availableTo"}
    value_types = {k: type(v) for s in samples.values() for k, v in s.items()} | {"availableTo": str}
    seen_types = set()
    for exchange in sandbox.config.exchanges:
        for item in _json(sandbox, f"/v1/instruments/{exchange}"):
            itype = item["type"]
            seen_types.add(itype)
            real = samples[itype]
            assert set(item) <= known_keys, set(item) - known_keys
            assert set(real) - _OPTIONAL <= set(item), (item["id"], set(real) - _OPTIONAL - set(item))
            for key, value in item.items():
                expected = value_types[key]
                if expected in (int, float):
                    assert isinstance(value, int | float) and not isinstance(value, bool), (key, value)
                else:
                    assert isinstance(value, expected), (key, value)
            if itype in ("future", "option"):
                assert "expiry" in item
            if itype == "option":
                assert {"strikePrice", "optionType"} <= set(item)
    assert seen_types == {"spot", "perpetual", "future", "option"}


def test_instrument_changes_history_drives_the_data(sandbox: RunningSandbox) -> None:
    """XBTUSD ticks at 0.5 before 2024-07-31 04:00 (its `changes` say so) and at 0.1 after."""
    xbt = _json(sandbox, "/v1/instruments/bitmex/XBTUSD", key=None)
    assert xbt["priceIncrement"] == 0.1
    change = next(c for c in xbt["changes"] if "priceIncrement" in c)
    assert change == {"until": "2024-07-31T04:00:00.000Z", "priceIncrement": 0.5}
    until_us = _us(datetime(2024, 7, 31, 4, tzinfo=UTC))
    _, *rows = _rows(sandbox, "bitmex", "trades", date(2024, 7, 31), "XBTUSD")
    before = [float(r[6]) for r in rows if int(r[2]) < until_us]
    after = [float(r[6]) for r in rows if int(r[2]) >= until_us]
    assert len(before) > 20 and len(after) > 20
    assert all((p * 2).is_integer() for p in before)
    assert any(not (p * 2).is_integer() for p in after)

    eth = _json(sandbox, "/v1/instruments/deribit/ETH-PERPETUAL")
    assert eth["contractMultiplier"] == 1
    assert eth["changes"][0]["contractMultiplier"] == 10
    _, *rows = _rows(sandbox, "deribit", "trades", date(2024, 6, 1), "ETH-PERPETUAL")
    cut = _us(datetime(2024, 6, 1, 8, tzinfo=UTC))
    assert all(float(r[7]) % 10 == 0 for r in rows if int(r[2]) < cut)
    assert any(float(r[7]) % 10 != 0 for r in rows if int(r[2]) >= cut)


def test_instruments_filter_and_single_instrument(sandbox: RunningSandbox) -> None:
    everything = _json(sandbox, "/v1/instruments/deribit")
    wanted = {"type": "option", "baseCurrency": ["ETH"], "optionType": "call"}
    query = urllib.parse.quote(json.dumps(wanted))
    filtered = _json(sandbox, f"/v1/instruments/deribit?filter={query}")
    expected = [
        i
        for i in everything
        if i["type"] == "option" and i["baseCurrency"] == "ETH" and i.get("optionType") == "call"
    ]
    assert filtered == expected and len(expected) > 50
    one = _json(sandbox, f"/v1/instruments/deribit/{expected[0]['id']}")
    assert one == expected[0]
    status, _, body = _get(sandbox, "/v1/instruments/deribit/NOPE-1", KEY)
    assert status == 404 and set(json.loads(body)) == {"code", "message"}


# ----------------------------------------------------------------------------------------------
# exchanges


def test_exchange_list_and_details_shapes(sandbox: RunningSandbox, tardis_samples: Path) -> None:
    real = json.loads((tardis_samples / "exchanges_api" / "exchanges_2025-09-17.json").read_text())
    real_keys = set().union(*(e.keys() for e in real))
    listed = _json(sandbox, "/v1/exchanges", key=None)
    assert [e["id"] for e in listed] == list(sandbox.config.exchanges)
    for entry in listed:
        assert {"id", "name", "enabled", "supportsDatasets", "availableSince", "availableChannels"} <= set(
            entry
        )
        assert set(entry) <= real_keys

    details = _json(sandbox, "/v1/exchanges/deribit", key=None)
    assert {"id", "name", "enabled", "availableSince", "availableChannels", "availableSymbols",
            "incidentReports", "datasets"} <= set(details)  # fmt: skip
    datasets = details["datasets"]
    assert datasets["formats"] == ["csv"]
    assert datasets["exportedUntil"] == "2024-12-31T00:00:00.000Z"
    assert set(datasets["stats"]) == {"trades", "bookChanges"}
    for report in details["incidentReports"]:
        assert set(report) == {"from", "to", "status", "details"}
        assert report["status"] in ("resolved", "wontfix", "unresolved")
    symbols = {s["id"]: s for s in datasets["symbols"]}
    assert {"OPTIONS", "FUTURES", "PERPETUALS"} <= set(symbols)
    book_types = {"incremental_book_L2", "book_snapshot_5", "book_snapshot_25"}
    for group in ("OPTIONS", "FUTURES", "PERPETUALS"):
        assert not book_types & set(symbols[group]["dataTypes"])
        assert "trades" in symbols[group]["dataTypes"]
    assert "options_chain" in symbols["OPTIONS"]["dataTypes"]
    options = [s for s in symbols.values() if s["type"] == "option" and s["id"] != "OPTIONS"]
    assert len(options) > 1000
    assert all(
        set(s) <= {"id", "type", "availableSince", "availableTo", "dataTypes"} for s in symbols.values()
    )
    assert all("availableTo" in s for s in options)


# ----------------------------------------------------------------------------------------------
# auth, 404s, empty days


def test_auth_rule_for_datasets_and_instruments(sandbox: RunningSandbox) -> None:
    first = _dataset_path("bitmex", "trades", date(2024, 5, 1), "XBTUSD")
    second = _dataset_path("bitmex", "trades", date(2024, 5, 2), "XBTUSD")
    assert _get(sandbox, first)[0] == 200
    status, _, body = _get(sandbox, second)
    assert status == 401
    assert set(json.loads(body)) == {"code", "message"}
    assert _get(sandbox, second, "wrong-key")[0] == 401
    assert _get(sandbox, second, KEY)[0] == 200

    assert _get(sandbox, "/v1/instruments/deribit")[0] == 401
    assert _get(sandbox, "/v1/instruments/binance/btcusdt")[0] == 401
    assert _get(sandbox, "/v1/instruments/bitmex")[0] == 200  # free on Tardis too
    assert _get(sandbox, "/v1/instruments/deribit", KEY)[0] == 200


def test_no_key_and_an_exchange_subset(make_sandbox) -> None:
    free = make_sandbox(SandboxConfig(api_key=None, trades_per_day=10, exchanges=("bitmex", "deribit")))
    assert _get(free, _dataset_path("bitmex", "trades", date(2024, 5, 2), "XBTUSD"))[0] == 200
    assert _get(free, "/v1/instruments/deribit")[0] == 200
    assert [e["id"] for e in _json(free, "/v1/exchanges")] == ["bitmex", "deribit"]
    assert _get(free, "/v1/exchanges/binance")[0] == 404
    assert _get(free, _dataset_path("binance", "trades", date(2024, 5, 1), "BTCUSDT"))[0] == 404


@pytest.mark.parametrize(
    "path",
    [
        _dataset_path("kraken", "trades", date(2024, 5, 2), "XBTUSD"),
        _dataset_path("bitmex", "tradez", date(2024, 5, 2), "XBTUSD"),
        _dataset_path("bitmex", "trades", date(2024, 5, 2), "NOSUCH"),
        _dataset_path("binance", "derivative_ticker", date(2024, 5, 2), "BTCUSDT"),  # spot: no such type
        _dataset_path("deribit", "options_chain", date(2024, 5, 2), "BTC-PERPETUAL"),
        _dataset_path("deribit", "incremental_book_L2", date(2024, 5, 2), "OPTIONS"),  # groups: no books
        _dataset_path("bitmex", "trades", date(2025, 2, 3), "XBTUSD"),  # not exported yet
        "/v1/exchanges/kraken",
    ],
)
def test_unknown_things_are_404_with_a_json_body(sandbox: RunningSandbox, path: str) -> None:
    status, _, body = _get(sandbox, path, KEY)
    assert status == 404
    payload = json.loads(body)
    assert set(payload) == {"code", "message"} and payload["message"]


@pytest.mark.parametrize(
    ("exchange", "symbol", "day", "why"),
    [
        ("binance", "WIFUSDT", date(2024, 3, 4), "before listing"),
        ("binance", "MATICUSDT", date(2024, 10, 2), "after delisting"),
        ("coinbase", "BTC-USD", date(2024, 2, 14), "whole-day incident"),
        ("deribit", "BTC-PERPETUAL", date(2024, 4, 7), "whole-day incident"),
    ],
)
def test_day_without_data_is_200_with_an_empty_gzip(
    sandbox: RunningSandbox, exchange: str, symbol: str, day: date, why: str
) -> None:
    status, headers, body = _get(sandbox, _dataset_path(exchange, "trades", day, symbol), KEY)
    assert status == 200, why
    assert body[:2] == b"\x1f\x8b"
    assert gzip.decompress(body) == b"", why


def test_listing_day_has_data_only_after_the_listing_time(sandbox: RunningSandbox) -> None:
    wif = _json(sandbox, "/v1/instruments/binance/wifusdt")
    listing = datetime.strptime(wif["listing"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert listing.date() == date(2024, 3, 5) and listing.hour > 0
    _, *rows = _rows(sandbox, "binance", "quotes", listing.date(), "WIFUSDT")
    assert rows and min(int(r[2]) for r in rows) >= _us(listing)


def test_partial_incident_leaves_a_hole(sandbox: RunningSandbox) -> None:
    details = _json(sandbox, "/v1/exchanges/binance-futures", key=None)
    report = next(r for r in details["incidentReports"] if r["from"].startswith("2024-06-03"))
    start = datetime.strptime(report["from"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    end = datetime.strptime(report["to"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    _, *rows = _rows(sandbox, "binance-futures", "quotes", date(2024, 6, 3), "BTCUSDT")
    local = [int(r[3]) for r in rows]
    assert not [t for t in local if _us(start) <= t < _us(end)]
    assert any(t < _us(start) for t in local) and any(t >= _us(end) for t in local)


# ----------------------------------------------------------------------------------------------
# grouped files and day boundaries


def test_grouped_options_file_mixes_many_instruments(sandbox: RunningSandbox) -> None:
    day = date(2024, 6, 4)
    details = _json(sandbox, "/v1/exchanges/deribit", key=None)
    alive = {
        s["id"]
        for s in details["datasets"]["symbols"]
        if s["type"] == "option" and s["id"] != "OPTIONS"
        and s["availableSince"] < f"{day + timedelta(days=1)}" and s["availableTo"] > f"{day}"
    }  # fmt: skip
    for data_type in ("options_chain", "quotes"):
        header, *rows = _rows(sandbox, "deribit", data_type, day, "OPTIONS")
        in_file = {r[1] for r in rows}
        assert len(in_file) >= 10, data_type
        assert in_file <= alive
        assert all(s == s.upper() for s in in_file)
    header, *rows = _rows(sandbox, "deribit", "options_chain", day, "OPTIONS")
    col = {name: i for i, name in enumerate(header)}
    for row in rows:
        _, _, strike, kind = row[1].split("-")
        assert float(row[col["strike_price"]]) == float(strike)
        assert row[col["type"]] == {"C": "call", "P": "put"}[kind]


def test_next_day_file_starts_with_pre_midnight_trades(sandbox: RunningSandbox) -> None:
    day = date(2024, 6, 4)
    midnight = _midnight_us(day + timedelta(days=1))
    _, *today = _rows(sandbox, "binance-futures", "trades", day, "BTCUSDT")
    _, *tomorrow = _rows(sandbox, "binance-futures", "trades", day + timedelta(days=1), "BTCUSDT")
    assert all(int(r[3]) < midnight for r in today)
    carried = [r for r in tomorrow if int(r[2]) < midnight]
    assert carried, "the next file must carry the trades stamped before midnight"
    assert tomorrow[0] in carried
    assert all(int(r[3]) >= midnight for r in carried)
    today_ids = {r[4] for r in today}
    assert not today_ids & {r[4] for r in carried}, "a trade appears in exactly one file"


# ----------------------------------------------------------------------------------------------
# determinism


def test_same_request_same_bytes_and_matches_the_pure_generator(
    sandbox: RunningSandbox, make_sandbox
) -> None:
    path = _dataset_path("deribit", "trades", date(2024, 6, 1), "OPTIONS")
    first = _get(sandbox, path)[2]
    again = _get(sandbox, path)[2]
    other = make_sandbox(SandboxConfig())  # a separate server, nothing cached
    assert _get(other, path)[2] == first == again
    assert gzip.decompress(first) == generate_csv(
        sandbox.config, "deribit", "trades", date(2024, 6, 1), "OPTIONS"
    )
    reseeded = make_sandbox(SandboxConfig(seed=7))
    assert gzip.decompress(_get(reseeded, path)[2]) != gzip.decompress(first)


def test_size_knob_scales_trades(make_sandbox) -> None:
    small = make_sandbox(SandboxConfig(trades_per_day=50))
    big = make_sandbox(SandboxConfig(trades_per_day=500))
    day = date(2024, 6, 1)
    n_small = len(_rows(small, "bitmex", "trades", day, "XBTUSD")) - 1
    n_big = len(_rows(big, "bitmex", "trades", day, "XBTUSD")) - 1
    assert 40 <= n_small <= 60 and 450 <= n_big <= 550


# ----------------------------------------------------------------------------------------------
# faults, request log, exportedUntil


def test_error_faults_fire_exactly_n_times(sandbox_fresh: RunningSandbox) -> None:
    sb = sandbox_fresh
    sb.add_fault(path_glob="/v1/exchanges", kind="429", times=2, retry_after=3)
    sb.add_fault(path_glob="/v1/bitmex/*", kind="500", times=1)
    sb.add_fault(path_glob="/v1/deribit/*", kind="503", times=1)
    status, headers, body = _get(sb, "/v1/exchanges")
    assert status == 429 and headers["Retry-After"] == "3"
    assert json.loads(body)["code"] == 429
    assert _get(sb, "/v1/exchanges")[0] == 429
    assert _get(sb, "/v1/exchanges")[0] == 200
    path = _dataset_path("bitmex", "trades", date(2024, 6, 1), "XBTUSD")
    assert [_get(sb, path)[0] for _ in range(2)] == [500, 200]
    path = _dataset_path("deribit", "trades", date(2024, 6, 1), "BTC-PERPETUAL")
    assert [_get(sb, path)[0] for _ in range(2)] == [503, 200]
    sb.add_fault(path_glob="/v1/exchanges/*", kind="500", status=502, times=1)
    assert _get(sb, "/v1/exchanges/bitmex")[0] == 502
    log = sb.requests
    assert [r.status for r in log] == [429, 429, 200, 500, 200, 503, 200, 502]
    assert [r.fault for r in log][:3] == ["429", "429", None]
    assert not any(r.had_auth for r in log)


def test_reset_fault_drops_the_connection(sandbox: RunningSandbox) -> None:
    path = _dataset_path("bitmex", "trades", date(2024, 6, 1), "XBTUSD")
    sandbox.add_fault(path_glob="/v1/exchanges", kind="reset", times=1)
    sandbox.add_fault(path_glob=path, kind="reset", times=1)
    for target in ("/v1/exchanges", path):
        # a reset surfaces as a connection error (RemoteDisconnected is a ConnectionResetError)
        # or, if the headers got through first, as a body cut short
        with pytest.raises((ConnectionError, http.client.IncompleteRead, urllib.error.URLError)):
            _get(sandbox, target)
        assert _get(sandbox, target)[0] == 200
    assert [(r.status, r.fault) for r in sandbox.requests] == [(0, "reset"), (200, None)] * 2


def test_truncate_fault_sends_a_prefix_of_a_valid_gzip(sandbox: RunningSandbox) -> None:
    path = _dataset_path("bitmex", "trades", date(2024, 6, 1), "XBTUSD")
    full = _get(sandbox, path)[2]
    sandbox.add_fault(path_glob="*/bitmex/trades/*", kind="truncate", times=1)
    connection = http.client.HTTPConnection("127.0.0.1", sandbox.port, timeout=30)
    connection.request("GET", path)
    response = connection.getresponse()
    assert response.status == 200
    assert int(response.getheader("Content-Length")) == len(full)
    with pytest.raises(http.client.IncompleteRead) as caught:
        response.read()
    partial = caught.value.partial
    assert 0 < len(partial) < len(full) and full.startswith(partial)
    connection.close()
    with pytest.raises(EOFError):
        gzip.decompress(partial)
    assert _get(sandbox, path)[2] == full


def test_slow_fault_delivers_the_full_body_late(sandbox: RunningSandbox) -> None:
    path = _dataset_path("bitmex", "quotes", date(2024, 6, 1), "XBTUSD")
    full = _get(sandbox, path)[2]

    async def fetch(total_timeout: float) -> bytes:
        timeout = aiohttp.ClientTimeout(total=total_timeout)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(sandbox.url + path) as response,
        ):
            assert response.status == 200
            return await response.read()

    # a client with a short deadline gives up on a body trickled over 3 s...
    sandbox.add_fault(path_glob=path, kind="slow", times=1, delay=3.0)
    with pytest.raises(asyncio.TimeoutError):
        asyncio.run(fetch(0.5))
    deadline = time.monotonic() + 10  # the server saw (and spent the rule on) that request
    while not any(r.fault == "slow" for r in sandbox.requests) and time.monotonic() < deadline:
        time.sleep(0.01)
    # ...a patient one gets every byte
    sandbox.add_fault(path_glob=path, kind="slow", times=1, delay=0.3)
    assert asyncio.run(fetch(30)) == full
    assert [r.fault for r in sandbox.requests if r.path == path][-2:] == ["slow", "slow"]


def test_probability_faults_are_seeded_and_independent_of_arrival_order(make_sandbox) -> None:
    paths = [f"/v1/exchanges/{ex}" for ex in ("bitmex", "deribit", "coinbase")]
    outcomes = []
    for order in (paths, paths[::-1]):  # concurrent clients interleave differently on every run
        sb = make_sandbox(SandboxConfig(seed=5, trades_per_day=10))
        sb.add_fault(path_glob="/v1/exchanges/*", kind="503", probability=0.5)
        seen = {p: [_get(sb, p)[0] for _ in range(8)] for p in order}
        outcomes.append({p: seen[p] for p in paths})
    assert outcomes[0] == outcomes[1]
    assert {s for statuses in outcomes[0].values() for s in statuses} == {200, 503}
    other_seed = make_sandbox(SandboxConfig(seed=6, trades_per_day=10))
    other_seed.add_fault(path_glob="/v1/exchanges/*", kind="503", probability=0.5)
    assert {p: [_get(other_seed, p)[0] for _ in range(8)] for p in paths} != outcomes[0]


def _control(sandbox: RunningSandbox, method: str, path: str, payload: object = None) -> tuple[int, bytes]:
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(sandbox.url + path, data=data, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read()


def test_faults_and_log_over_http(sandbox_fresh: RunningSandbox) -> None:
    sb = sandbox_fresh
    spec = {"kind": "500", "path_glob": "/v1/exchanges", "times": 1}
    assert _control(sb, "POST", "/_sandbox/faults", spec)[0] == 201
    assert _control(sb, "POST", "/_sandbox/faults", {"kind": "teapot"})[0] == 400
    assert _get(sb, "/v1/exchanges")[0] == 500
    sb.add_fault(kind="503")  # every request, until cleared
    assert _get(sb, "/v1/exchanges")[0] == 503
    assert _control(sb, "DELETE", "/_sandbox/faults")[0] == 204
    assert _get(sb, "/v1/exchanges", KEY)[0] == 200
    log = json.loads(_control(sb, "GET", "/_sandbox/requests")[1])
    assert [(r["path"], r["status"], r["had_auth"]) for r in log] == [
        ("/v1/exchanges", 500, False),
        ("/v1/exchanges", 503, False),
        ("/v1/exchanges", 200, True),
    ]
    assert KEY not in json.dumps(log)
    assert _control(sb, "DELETE", "/_sandbox/requests")[0] == 204
    assert sb.requests == []


def test_exported_until_moves_at_runtime(sandbox: RunningSandbox) -> None:
    day = date(2024, 12, 31)
    path = _dataset_path("bitmex", "trades", day, "XBTUSD")
    assert _get(sandbox, path, KEY)[0] == 404
    before = {s["id"] for s in _json(sandbox, "/v1/exchanges/deribit")["datasets"]["symbols"]}
    sandbox.set_exported_until(date(2025, 1, 4))  # weeklies are listed on Fridays: 2025-01-03
    details = _json(sandbox, "/v1/exchanges/deribit")
    assert details["datasets"]["exportedUntil"] == "2025-01-04T00:00:00.000Z"
    assert _get(sandbox, path, KEY)[0] == 200
    after = {s["id"] for s in details["datasets"]["symbols"]}
    assert before < after, "options listed in the new days appear"
    # and over HTTP
    assert _control(sandbox, "POST", "/_sandbox/exported-until", {"exportedUntil": "2025-01-10"})[0] == 200
    assert _control(sandbox, "POST", "/_sandbox/exported-until", {"exportedUntil": "soon"})[0] == 400
    assert _json(sandbox, "/v1/exchanges/bitmex")["datasets"]["exportedUntil"] == "2025-01-10T00:00:00.000Z"
    assert sandbox.exported_until == date(2025, 1, 10)


def test_sandbox_env_points_the_settings_at_the_sandbox(sandbox_env: RunningSandbox) -> None:
    from market_data_assets.settings import Settings

    settings = Settings.from_env()
    assert settings.tardis_api_url == sandbox_env.api_url
    assert settings.tardis_datasets_url == sandbox_env.datasets_url
    assert settings.tardis_api_key.reveal() == KEY
    listed = _json(sandbox_env, "/v1/exchanges", key=None)
    assert listed and "sandbox-key" not in repr(sandbox_env) + repr(sandbox_env.config)


def test_response_cache_is_bounded_by_bytes_and_keeps_recent_entries() -> None:
    from market_data_assets.sandbox.state import ByteLru

    cache = ByteLru(max_bytes=100)
    cache.put(("a",), b"x" * 40)
    cache.put(("b",), b"x" * 40)
    assert cache.get(("a",)) is not None  # "a" is now the most recent
    cache.put(("c",), b"x" * 40)  # 120 bytes: the least recent ("b") goes
    assert cache.get(("b",)) is None
    assert cache.get(("a",)) == b"x" * 40 and cache.get(("c",)) == b"x" * 40
    cache.put(("huge",), b"x" * 500)  # bigger than the bound: kept alone, everything else evicted
    assert cache.get(("huge",)) is not None and cache.get(("a",)) is None and cache.get(("c",)) is None


@pytest.mark.parametrize("rows", [7, 2000])  # the plain-Python path and the polars path
def test_number_text_is_exact_shortest_decimal(rows: int) -> None:
    from decimal import Decimal

    import numpy as np

    from market_data_assets.sandbox.textformat import Cells, join_cells

    rng = np.random.default_rng(rows)
    units = rng.integers(0, 10**10, rows)
    units[:3] = [0, 10**5, 123_450_000]
    floats = rng.normal(0, 50, rows)
    present = rng.random(rows) > 0.3
    got = join_cells([Cells("call"), Cells(units, 5), Cells(floats, 3, present=present)], rows)

    def expected(value: Decimal) -> str:
        text = format(value, "f")
        text = text.rstrip("0").rstrip(".") if "." in text else text
        return "0" if text in ("-0", "") else text

    for i, line in enumerate(got):
        kind, unit_text, float_text = line.split(",")
        assert kind == "call"
        assert unit_text == expected(Decimal(int(units[i])).scaleb(-5))
        want = expected(Decimal(round(float(floats[i]) * 1000)).scaleb(-3)) if present[i] else ""
        assert float_text == want
    assert got[0].split(",")[1] == "0" and got[1].split(",")[1] == "1" and got[2].split(",")[1] == "1234.5"
