"""CSV.gz -> Parquet conversion: values round-trip for every data type, and bad files fail clearly.

The expected values come from an independent parse written here (the ``csv`` module with Python's
``int``/``float``), not from the converter's spec, so a wrong type, a lost row, a reordered row or
a mangled column name shows up as a difference.
"""

from __future__ import annotations

import csv
import gzip
import io
import re
import zlib
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from market_data_assets.sandbox import SandboxConfig, generate_csv
from market_data_assets.ticks.convert import convert_csv_gz
from market_data_assets.ticks.errors import (
    BadValueError,
    CorruptGzipError,
    HeaderError,
    TickFileError,
    TimestampWindowError,
)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
TIMESTAMPS = {"timestamp", "local_timestamp", "funding_timestamp", "expiration"}
BOOLS = {"is_snapshot"}
TEXT = {"exchange", "symbol", "id", "side", "type", "underlying_index"}


# --- the independent reference ------------------------------------------------------------------


def parquet_name(csv_name: str) -> str:
    """``asks[3].price`` -> ``ask_price_3``; other names are kept."""
    m = re.fullmatch(r"(asks|bids)\[(\d+)\]\.(price|amount)", csv_name)
    return f"{m[1][:-1]}_{m[3]}_{m[2]}" if m else csv_name


def reference_value(name: str, text: str) -> object:
    if text == "":
        return None
    if name in TIMESTAMPS:
        return int(text)
    if name in BOOLS:
        return {"true": True, "false": False}[text]
    if name in TEXT:
        return text
    return float(text)


def reference_rows(csv_text: str) -> list[dict[str, object]]:
    reader = csv.reader(io.StringIO(csv_text))
    header = [parquet_name(h) for h in next(reader)]
    return [{h: reference_value(h, v) for h, v in zip(header, row, strict=True)} for row in reader]


def parquet_rows(path: Path) -> list[dict[str, object]]:
    """Rows of a converted file with timestamps as integer microseconds (exact, via timedelta)."""
    rows = pq.read_table(path).to_pylist()
    for row in rows:
        for name, value in row.items():
            if isinstance(value, datetime):
                row[name] = (value - EPOCH) // timedelta(microseconds=1)
    return rows


def gz(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(gzip.compress(data))
    return path


def key_of(exchange: str, symbol: str) -> str:
    return f"{exchange.upper()}:PERP:{re.sub(r'[^A-Z0-9._-]', '-', symbol.upper())}"


def day_of(csv_text: str) -> date:
    first = next(iter(reference_rows(csv_text)))
    return datetime.fromtimestamp(first["local_timestamp"] / 1e6, UTC).date()  # type: ignore[operator]


def assert_round_trip(tmp_path: Path, csv_text: str, data_type: str, day: date | None = None) -> int:
    """Convert ``csv_text`` and compare every value with the reference, per symbol, in file order."""
    expected = reference_rows(csv_text)
    assert expected, "the input must have rows"
    symbols = list(dict.fromkeys(r["symbol"] for r in expected))
    keys = {s: key_of(str(expected[0]["exchange"]), str(s)) for s in symbols}
    src = gz(tmp_path, f"{data_type}.csv.gz", csv_text.encode())
    out = tmp_path / "out"
    files = convert_csv_gz(src, data_type, out, keys, day or day_of(csv_text), f"test/{data_type}.csv.gz")

    assert sorted(f.instrument_key for f in files) == sorted(keys.values())
    assert files.dropped_rows == 0 and not files.empty
    for f in files:
        symbol = next(s for s, k in keys.items() if k == f.instrument_key)
        want = [r | {"instrument_key": f.instrument_key} for r in expected if r["symbol"] == symbol]
        got = parquet_rows(f.path)
        assert len(got) == f.rows == len(want)
        assert list(got[0]) == list(want[0]), "columns and their order"
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            assert g == w, f"{data_type} {symbol} row {i}: {g} != {w}"
        ts = [w["timestamp"] for w in want]
        assert (f.min_timestamp - EPOCH) // timedelta(microseconds=1) == min(ts)  # type: ignore[operator]
        assert (f.max_timestamp - EPOCH) // timedelta(microseconds=1) == max(ts)  # type: ignore[operator]
        assert f.bytes == f.path.stat().st_size and f.source_bytes == src.stat().st_size
        assert len(f.sha256) == 64
    return len(expected)


# --- round trips --------------------------------------------------------------------------------

REAL = {
    "binance-futures_book_snapshot_25_BTCUSDT.csv": "book_snapshot_25",
    "binance-futures_book_snapshot_5_BTCUSDT.csv": "book_snapshot_5",
    "bitmex_trades_XBTUSD.csv": "trades",
    "deribit_incremental_book_L2_BTC-PERPETUAL.csv": "incremental_book_L2",
    "huobi-dm-swap_quotes_BTC-USD.csv": "quotes",
}
SYNTHETIC = {
    "derivative_ticker_1.csv": "derivative_ticker",
    "options_chain.csv": "options_chain",
    "deltas_with_snapshot.csv": "incremental_book_L2",
}


@pytest.mark.parametrize("name", sorted(REAL))
def test_real_tardis_excerpts_round_trip(tmp_path: Path, tardis_samples: Path, name: str) -> None:
    text = (tardis_samples / "csv_real" / name).read_text()
    assert assert_round_trip(tmp_path, text, REAL[name]) >= 10


@pytest.mark.parametrize("name", sorted(SYNTHETIC))
def test_synthetic_excerpts_round_trip(tmp_path: Path, tardis_samples: Path, name: str) -> None:
    text = (tardis_samples / "csv_synthetic_tardis_format" / name).read_text()
    assert assert_round_trip(tmp_path, text, SYNTHETIC[name]) >= 2


SANDBOX = SandboxConfig(trades_per_day=300)
SANDBOX_DAY = date(2024, 3, 5)
SANDBOX_FILES = {
    "trades": ("deribit", "BTC-PERPETUAL"),
    "liquidations": ("deribit", "PERPETUALS"),
    "incremental_book_L2": ("deribit", "BTC-PERPETUAL"),
    "quotes": ("deribit", "BTC-PERPETUAL"),
    "book_ticker": ("binance", "BTCUSDT"),
    "derivative_ticker": ("deribit", "BTC-PERPETUAL"),
    "options_chain": ("deribit", "OPTIONS"),
    "book_snapshot_5": ("deribit", "BTC-PERPETUAL"),
    "book_snapshot_25": ("deribit", "BTC-PERPETUAL"),
}


@pytest.mark.parametrize("data_type", sorted(SANDBOX_FILES))
@pytest.mark.slow
def test_sandbox_files_round_trip_for_every_data_type(tmp_path: Path, data_type: str) -> None:
    exchange, symbol = SANDBOX_FILES[data_type]
    text = generate_csv(SANDBOX, exchange, data_type, SANDBOX_DAY, symbol).decode()
    assert assert_round_trip(tmp_path, text, data_type, SANDBOX_DAY) > 0


@pytest.mark.slow
def test_grouped_options_file_is_split_per_instrument_and_unknown_symbols_are_counted(tmp_path: Path) -> None:
    text = generate_csv(SANDBOX, "deribit", "options_chain", SANDBOX_DAY, "OPTIONS").decode()
    rows = reference_rows(text)
    symbols = list(dict.fromkeys(str(r["symbol"]) for r in rows))
    assert len(symbols) > 10
    wanted = {s: f"DERIBIT:OPTION:{s}" for s in symbols[: len(symbols) // 2]}
    src = gz(tmp_path, "OPTIONS.csv.gz", text.encode())
    files = convert_csv_gz(src, "options_chain", tmp_path / "out", wanted, SANDBOX_DAY, "OPTIONS")

    assert {f.instrument_key for f in files} == set(wanted.values())
    unwanted_rows = [r for r in rows if r["symbol"] not in wanted]
    assert files.dropped_rows == len(unwanted_rows) > 0
    assert files.unknown_symbols == {
        s: sum(1 for r in unwanted_rows if r["symbol"] == s) for s in symbols if s not in wanted
    }
    for f in files:
        got = parquet_rows(f.path)
        assert {r["instrument_key"] for r in got} == {f.instrument_key}
        assert [r["local_timestamp"] for r in got] == [
            r["local_timestamp"] for r in rows if wanted.get(str(r["symbol"])) == f.instrument_key
        ]


def big_trades_csv(rows: int, symbols: tuple[str, ...], day: date) -> str:
    """Many row groups' worth of interleaved trades of several symbols (exercises batching)."""
    start = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()) * 1_000_000
    lines = ["exchange,symbol,timestamp,local_timestamp,id,side,price,amount"]
    for i in range(rows):
        ts = start + i * 500
        sym = symbols[i % len(symbols)] if i % 7 else symbols[0]
        lines.append(
            f"deribit,{sym},{ts},{ts + 250},{i},{'buy' if i % 3 else 'sell'},{40000 + i % 97 * 0.5},{(i % 13) / 10}"
        )
    return "\n".join(lines) + "\n"


@pytest.mark.slow
def test_large_multi_batch_grouped_file_keeps_every_row_in_order(tmp_path: Path) -> None:
    day = date(2024, 3, 5)
    symbols = ("BTC-PERPETUAL", "ETH-PERPETUAL", "SOL-PERPETUAL")
    text = big_trades_csv(160_000, symbols, day)
    keys = {s: key_of("deribit", s) for s in symbols}
    files = convert_csv_gz(
        gz(tmp_path, "big.csv.gz", text.encode()), "trades", tmp_path / "out", keys, day, "big"
    )
    expected = reference_rows(text)
    assert sum(f.rows for f in files) == len(expected)
    for f in files:
        table = pq.read_table(f.path, columns=["id", "price"])
        want = [r for r in expected if keys[str(r["symbol"])] == f.instrument_key]
        assert table.column("id").to_pylist() == [r["id"] for r in want]
        assert table.column("price").to_pylist() == [r["price"] for r in want]
        meta = pq.ParquetFile(f.path).metadata
        assert meta.num_row_groups >= 1
        assert all(meta.row_group(i).num_rows <= 131_072 for i in range(meta.num_row_groups))


def test_parquet_file_is_tuned_typed_and_has_statistics(tmp_path: Path, tardis_samples: Path) -> None:
    text = (tardis_samples / "csv_real" / "bitmex_trades_XBTUSD.csv").read_text()
    src = gz(tmp_path, "t.csv.gz", text.encode())
    (f,) = convert_csv_gz(
        src, "trades", tmp_path / "out", {"XBTUSD": "BITMEX:PERP:BTC-USD"}, date(2020, 3, 1), "t"
    )
    schema = pq.read_schema(f.path)
    assert schema.field("timestamp").type == pa.timestamp("us", tz="UTC")
    assert schema.field("side").type == pa.dictionary(pa.uint32(), pa.string())
    assert schema.field("id").type == pa.string_view()
    col = {pq.ParquetFile(f.path).metadata.row_group(0).column(i).path_in_schema: i for i in range(9)}
    meta = pq.ParquetFile(f.path).metadata.row_group(0)
    assert "DELTA_BINARY_PACKED" in meta.column(col["local_timestamp"]).encodings
    assert "DELTA_BYTE_ARRAY" in meta.column(col["id"]).encodings
    assert "RLE_DICTIONARY" not in meta.column(col["id"]).encodings
    assert "RLE_DICTIONARY" in meta.column(col["side"]).encodings
    assert meta.column(col["price"]).compression == "ZSTD"
    assert meta.column(col["price"]).statistics.has_min_max
    for name in ("timestamp", "local_timestamp", "amount"):
        assert meta.column(col[name]).statistics.has_min_max, name


# --- empty and bad input -------------------------------------------------------------------------


def test_empty_gzip_and_empty_body_mean_no_data(tmp_path: Path) -> None:
    for name, data in (("empty-gzip.csv.gz", gzip.compress(b"")), ("no-body.csv.gz", b"")):
        src = tmp_path / name
        src.write_bytes(data)
        files = convert_csv_gz(src, "trades", tmp_path / "out", {"X": "A:PERP:X"}, date(2024, 1, 1), name)
        assert list(files) == [] and files.empty
    header_only = gz(
        tmp_path, "header.csv.gz", b"exchange,symbol,timestamp,local_timestamp,id,side,price,amount\n"
    )
    files = convert_csv_gz(header_only, "trades", tmp_path / "out", {"X": "A:PERP:X"}, date(2024, 1, 1), "h")
    assert list(files) == [] and files.empty
    assert not any((tmp_path / "out").iterdir())


def assert_fails_cleanly(
    tmp_path: Path, src: Path, data_type: str, day: date, error: type, *needles: str
) -> None:
    out = tmp_path / "out"
    keys = {"BTC-PERPETUAL": "DERIBIT:PERP:BTC-USD", "XBTUSD": "BITMEX:PERP:BTC-USD"}
    with pytest.raises(error) as info:
        convert_csv_gz(src, data_type, out, keys, day, f"deribit/{src.name}")
    message = str(info.value)
    assert isinstance(info.value, TickFileError)
    for needle in (f"deribit/{src.name}", *needles):
        assert needle in message, f"{needle!r} not in {message!r}"
    assert not out.exists() or list(out.iterdir()) == [], "no file may remain after a failure"


def test_wrong_header_names_the_file_and_the_columns(tmp_path: Path) -> None:
    text = generate_csv(SANDBOX, "deribit", "trades", SANDBOX_DAY, "BTC-PERPETUAL").decode()
    bad = text.replace("price,amount", "amount,price", 1)
    src = gz(tmp_path, "header.csv.gz", bad.encode())
    assert_fails_cleanly(tmp_path, src, "trades", SANDBOX_DAY, HeaderError, "line 1", "out of order")
    quotes = gz(tmp_path, "quotes.csv.gz", text.encode())
    assert_fails_cleanly(tmp_path, quotes, "quotes", SANDBOX_DAY, HeaderError, "line 1", "missing")


@pytest.mark.slow
def test_truncated_gzip_is_a_clear_error(tmp_path: Path) -> None:
    text = big_trades_csv(140_000, ("BTC-PERPETUAL",), SANDBOX_DAY)
    data = gzip.compress(text.encode())
    src = tmp_path / "truncated.csv.gz"
    src.write_bytes(data[: len(data) * 2 // 3])
    assert_fails_cleanly(
        tmp_path, src, "trades", SANDBOX_DAY, CorruptGzipError, "truncated or corrupt gzip", "line "
    )
    err = pytest.raises(CorruptGzipError, convert_csv_gz, src, "trades", tmp_path / "o", {}, SANDBOX_DAY, "t")
    inflated = zlib.decompressobj(wbits=31).decompress(src.read_bytes())  # all that survived the cut
    assert 50_000 < inflated.count(b"\n") < 140_000
    assert err.value.line == inflated.count(b"\n") + 1


@pytest.mark.slow
def test_non_numeric_price_names_file_line_and_value(tmp_path: Path) -> None:
    text = big_trades_csv(135_000, ("BTC-PERPETUAL",), SANDBOX_DAY)
    lines = text.splitlines()
    parts = lines[134_000].split(",")
    parts[6] = "12x.5"
    lines[134_000] = ",".join(parts)  # file line 134001 (line 1 is the header), in the second batch
    src = gz(tmp_path, "price.csv.gz", ("\n".join(lines) + "\n").encode())
    assert_fails_cleanly(
        tmp_path, src, "trades", SANDBOX_DAY, BadValueError, "line 134001", "'price'", "'12x.5'"
    )


@pytest.mark.slow
def test_missing_required_value_names_the_line(tmp_path: Path) -> None:
    text = big_trades_csv(100_000, ("BTC-PERPETUAL",), SANDBOX_DAY)
    lines = text.splitlines()
    parts = lines[90_000].split(",")
    parts[6] = ""
    lines[90_000] = ",".join(parts)
    src = gz(tmp_path, "noprice.csv.gz", ("\n".join(lines) + "\n").encode())
    assert_fails_cleanly(tmp_path, src, "trades", SANDBOX_DAY, BadValueError, "line 90001", "'price'")


def test_nanosecond_timestamps_are_outside_the_window(tmp_path: Path, tardis_samples: Path) -> None:
    text = (tardis_samples / "csv_synthetic_tardis_format" / "trades_1.csv").read_bytes()
    src = gz(tmp_path, "trades_1.csv.gz", text)
    assert_fails_cleanly(
        tmp_path,
        src,
        "trades",
        date(2020, 3, 1),
        TimestampWindowError,
        "line 2",
        "local_timestamp",
        "microseconds",
    )


def test_file_of_another_day_and_exchange_timestamp_slack(tmp_path: Path, tardis_samples: Path) -> None:
    text = (tardis_samples / "csv_real" / "bitmex_trades_XBTUSD.csv").read_bytes()
    src = gz(tmp_path, "bitmex.csv.gz", text)
    assert_fails_cleanly(
        tmp_path, src, "trades", date(2020, 3, 2), TimestampWindowError, "line 2", "2020-03-02"
    )

    # An exchange timestamp a few seconds before midnight in the next day's file is normal...
    options = (tardis_samples / "csv_synthetic_tardis_format" / "options_chain.csv").read_text()
    assert options.splitlines()[1].split(",")[2] == "1591574399413000"  # 2020-06-07T23:59:59.413
    (tmp_path / "ok").mkdir()
    assert_round_trip(tmp_path / "ok", options, "options_chain", date(2020, 6, 8))
    # ...one two hours early is not.
    shifted = options.replace("1591574399413000", str(1591574399413000 - 2 * 3600 * 10**6), 1)
    src = gz(tmp_path, "early.csv.gz", shifted.encode())
    assert_fails_cleanly(
        tmp_path, src, "options_chain", date(2020, 6, 8), TimestampWindowError, "line 2", "timestamp"
    )


def test_sink_flushes_early_under_its_row_budget_and_keeps_order(tmp_path: Path) -> None:
    """Thousands of thin instruments: buffers are written early as small row groups, in order."""
    from market_data_assets.tardis.formats import get_spec
    from market_data_assets.ticks.parquet_writer import KeyedParquetSink, constant_dictionary_array

    spec = get_spec("trades")
    sink = KeyedParquetSink(spec, tmp_path, max_buffered_rows=50)
    keys = [f"DERIBIT:OPTION:O-{i}" for i in range(7)]
    sent: dict[str, list[str]] = {k: [] for k in keys}
    start = datetime(2024, 3, 5, tzinfo=UTC)
    for step in range(60):
        key = keys[step * 5 % 7]
        ids = [f"{step}-{j}" for j in range(step % 4 + 1)]
        sent[key] += ids
        n = len(ids)
        table = pa.Table.from_arrays(
            [
                pa.array(["deribit"] * n).dictionary_encode().cast(pa.dictionary(pa.uint32(), pa.string())),
                pa.array([key] * n).dictionary_encode().cast(pa.dictionary(pa.uint32(), pa.string())),
                pa.array([start + timedelta(seconds=step)] * n, pa.timestamp("us", tz="UTC")),
                pa.array([start + timedelta(seconds=step)] * n, pa.timestamp("us", tz="UTC")),
                pa.array(ids),
                pa.array(["buy"] * n).dictionary_encode().cast(pa.dictionary(pa.uint32(), pa.string())),
                pa.array([1.5] * n),
                pa.array([2.0] * n),
                constant_dictionary_array(key, n),
            ],
            schema=spec.arrow_schema,
        )
        sink.append(key, table, step, step)
    files = sink.close()
    assert [f.instrument_key for f in files] == list(dict.fromkeys(keys[s * 5 % 7] for s in range(60)))
    for f in files:
        assert pq.read_table(f.path).column("id").to_pylist() == sent[f.instrument_key]
        assert f.rows == len(sent[f.instrument_key])
    groups = sum(pq.ParquetFile(f.path).metadata.num_row_groups for f in files)
    assert groups > len(files), "the budget forced early, smaller row groups"


@pytest.mark.slow
def test_corrupt_gzip_bytes_are_a_clear_error(tmp_path: Path) -> None:
    data = bytearray(gzip.compress(big_trades_csv(20_000, ("BTC-PERPETUAL",), SANDBOX_DAY).encode()))
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the deflate stream
    src = tmp_path / "corrupt.csv.gz"
    src.write_bytes(bytes(data))
    assert_fails_cleanly(tmp_path, src, "trades", SANDBOX_DAY, CorruptGzipError, "corrupt gzip", "line ")
    not_gzip = tmp_path / "plain.csv.gz"
    not_gzip.write_bytes(b"exchange,symbol,timestamp,local_timestamp,id,side,price,amount\n")
    assert_fails_cleanly(
        tmp_path, not_gzip, "trades", SANDBOX_DAY, CorruptGzipError, "not a readable gzip", "line 1"
    )
