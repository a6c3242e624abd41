"""Book snapshots take polars' own sink (``ticks.polars_sink``): same values, schema and errors.

The round trips of every data type in ``test_convert`` already cover book snapshot files of one
instrument (the polars route). Here: a file of several row groups against the independent reference, the two
routes against each other, and every kind of bad input on the polars route, which must fall back
to the row-by-row path and fail there with the file and line, leaving nothing behind.
"""

from __future__ import annotations

import gzip
import hashlib
from datetime import UTC, date, datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from market_data_assets.sandbox import generate_csv
from market_data_assets.tardis.formats import get_spec
from market_data_assets.ticks.convert import TimestampWindow, _convert_streaming, convert_csv_gz
from market_data_assets.ticks.errors import BadValueError, CorruptGzipError, TimestampWindowError
from market_data_assets_tests.test_convert import (
    SANDBOX,
    SANDBOX_DAY,
    SANDBOX_FILES,
    assert_round_trip,
    gz,
    reference_rows,
)

DAY = date(2024, 3, 5)
KEY = "DERIBIT:PERP:BTC-USD"
KEYS = {"BTC-PERPETUAL": KEY}


def book_csv(rows: int, depth: int = 5, symbol: str = "BTC-PERPETUAL") -> list[str]:
    """Lines (header first) of a ``book_snapshot_{depth}`` day: enough rows for several row groups."""
    start = int(datetime(DAY.year, DAY.month, DAY.day, tzinfo=UTC).timestamp()) * 1_000_000
    lines = [get_spec(f"book_snapshot_{depth}").csv_header_line]
    for i in range(rows):
        ts = start + i * 400_000
        levels = []
        for lvl in range(depth):
            levels += [f"{40000.5 + lvl + i % 31}", f"{(i + lvl) % 17 / 4}"]
            levels += [f"{40000 - lvl - i % 29}", "" if (i + lvl) % 53 == 0 else f"{(i * lvl) % 11 / 8}"]
        lines.append(f"deribit,{symbol},{ts},{ts + 1_500}," + ",".join(levels))
    return lines


def write(tmp_path: Path, lines: list[str], name: str = "book.csv.gz") -> Path:
    return gz(tmp_path, name, ("\n".join(lines) + "\n").encode())


def created_by_polars(path: Path) -> bool:
    return "polars" in pq.read_metadata(path).created_by.lower()


@pytest.mark.slow
def test_multi_row_group_book_file_round_trips_through_polars(tmp_path: Path) -> None:
    lines = book_csv(140_000)
    rows = assert_round_trip(tmp_path, "\n".join(lines) + "\n", "book_snapshot_5", DAY)
    assert rows == 140_000
    (written,) = (tmp_path / "out").glob("*.parquet")
    assert created_by_polars(written), "a one-instrument book file takes the polars route"
    assert pq.read_metadata(written).num_row_groups == 2
    assert pq.read_schema(written).remove_metadata() == get_spec("book_snapshot_5").arrow_schema


@pytest.mark.parametrize("data_type", sorted(SANDBOX_FILES))
@pytest.mark.slow
def test_each_data_type_takes_the_writer_its_spec_names(tmp_path: Path, data_type: str) -> None:
    exchange, symbol = SANDBOX_FILES[data_type]
    text = generate_csv(SANDBOX, exchange, data_type, SANDBOX_DAY, symbol)
    keys = {
        s: f"{exchange.upper()}:X:{s}"
        for s in dict.fromkeys(r["symbol"] for r in reference_rows(text.decode()))
    }
    files = convert_csv_gz(
        gz(tmp_path, "in.csv.gz", text), data_type, tmp_path / "out", keys, SANDBOX_DAY, "s"
    )
    polars_route = get_spec(data_type).parquet_writer == "polars" and len(keys) == 1
    assert files and all(created_by_polars(f.path) == polars_route for f in files)
    assert data_type not in ("book_snapshot_5", "book_snapshot_25") or polars_route


@pytest.mark.parametrize("data_type", ["book_snapshot_5", "book_snapshot_25"])
def test_both_routes_write_the_same_table(tmp_path: Path, tardis_samples: Path, data_type: str) -> None:
    name = f"binance-futures_{data_type}_BTCUSDT.csv"
    text = (tardis_samples / "csv_real" / name).read_text()
    first = reference_rows(text)[0]
    day = datetime.fromtimestamp(int(first["local_timestamp"]) / 1e6, UTC).date()  # type: ignore[arg-type]
    keys = {str(first["symbol"]): "X:PERP:BTC-USDT"}
    src = gz(tmp_path, "in.csv.gz", text.encode())

    (tmp_path / "slow").mkdir()
    (fast,) = convert_csv_gz(src, data_type, tmp_path / "fast", keys, day, name)
    (slow,) = _convert_streaming(
        src, get_spec(data_type), tmp_path / "slow", keys, TimestampWindow(day), name
    )

    assert created_by_polars(fast.path) and not created_by_polars(slow.path)
    assert pq.read_table(fast.path).equals(pq.read_table(slow.path), check_metadata=False)
    assert pq.read_schema(fast.path).remove_metadata() == get_spec(data_type).arrow_schema
    assert fast.sha256 == hashlib.sha256(fast.path.read_bytes()).hexdigest(), "hashed as written"
    assert (fast.rows, fast.min_timestamp, fast.max_timestamp) == (
        slow.rows,
        slow.min_timestamp,
        slow.max_timestamp,
    )


def _assert_fails_cleanly(tmp_path: Path, src: Path, error: type, *needles: str) -> None:
    out = tmp_path / "out"
    with pytest.raises(error) as info:
        convert_csv_gz(src, "book_snapshot_5", out, KEYS, DAY, f"deribit/{src.name}")
    for needle in (f"deribit/{src.name}", *needles):
        assert needle in str(info.value), f"{needle!r} not in {info.value}"
    assert not out.exists() or list(out.iterdir()) == [], "no file may remain after a failure"


def test_non_numeric_level_names_the_line(tmp_path: Path) -> None:
    lines = book_csv(1_000)
    cells = lines[700].split(",")
    cells[4] = "4x0001"  # asks[0].price of file line 701
    lines[700] = ",".join(cells)
    _assert_fails_cleanly(
        tmp_path, write(tmp_path, lines), BadValueError, "line 701", "asks[0].price", "4x0001"
    )


def test_missing_timestamp_names_the_line(tmp_path: Path) -> None:
    lines = book_csv(1_000)
    cells = lines[321].split(",")
    cells[3] = ""
    lines[321] = ",".join(cells)
    _assert_fails_cleanly(tmp_path, write(tmp_path, lines), BadValueError, "line 322", "local_timestamp")


def test_timestamp_of_another_day_names_the_line(tmp_path: Path) -> None:
    lines = book_csv(1_000)
    cells = lines[999].split(",")
    cells[2] = cells[3] = str(int(cells[3]) + 2 * 86_400 * 1_000_000)
    lines[999] = ",".join(cells)
    _assert_fails_cleanly(tmp_path, write(tmp_path, lines), TimestampWindowError, "line 1000", "timestamp")


@pytest.mark.slow
def test_truncated_gzip_fails_on_the_polars_route_too(tmp_path: Path) -> None:
    data = gzip.compress(("\n".join(book_csv(20_000)) + "\n").encode())
    src = tmp_path / "cut.csv.gz"
    src.write_bytes(data[: len(data) // 2])
    _assert_fails_cleanly(tmp_path, src, CorruptGzipError, "truncated or corrupt gzip", "line ")


def test_rows_of_another_symbol_are_dropped_and_counted(tmp_path: Path) -> None:
    lines = book_csv(500)
    stray = book_csv(3, symbol="ETH-PERPETUAL")[1:]
    lines[200:200] = stray
    files = convert_csv_gz(write(tmp_path, lines), "book_snapshot_5", tmp_path / "out", KEYS, DAY, "b")
    assert files.unknown_symbols == {"ETH-PERPETUAL": 3}
    (f,) = files
    assert f.rows == 500
    assert set(pq.read_table(f.path, columns=["symbol"]).column("symbol").to_pylist()) == {"BTC-PERPETUAL"}
    assert [p.name for p in (tmp_path / "out").iterdir()] == [f.path.name], "the rejected polars file is gone"
