"""Values the data-type specs refuse, on both conversion routes, and the odd values Tardis really sends.

Bad rows are planted in real Tardis excerpts (../shared/tardis-samples/csv_real) and in the
synthetic book days of ``test_convert_books``; every refusal must name the file, the CSV line, the
column and the value, and leave no file behind.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from market_data_assets.tardis.formats import get_spec
from market_data_assets.ticks.convert import convert_csv_gz
from market_data_assets.ticks.errors import BadValueError, TickFileError
from market_data_assets_tests.test_convert import gz
from market_data_assets_tests.test_convert_books import DAY, KEYS, book_csv, created_by_polars, write

BITMEX_DAY = date(2020, 3, 1)
BITMEX_KEYS = {"XBTUSD": "BITMEX:PERP:BTC-USD"}


def _bitmex_trades(tardis_samples: Path) -> list[str]:
    return (tardis_samples / "csv_real" / "bitmex_trades_XBTUSD.csv").read_text().splitlines()


def _set_cell(lines: list[str], line_no: int, column: str, value: str) -> None:
    """Put ``value`` in ``column`` of file line ``line_no`` (line 1 is the header)."""
    header = lines[0].split(",")
    cells = lines[line_no - 1].split(",")
    cells[header.index(column)] = value
    lines[line_no - 1] = ",".join(cells)


def _refused(tmp_path: Path, src: Path, data_type: str, keys: dict[str, str], day: date) -> str:
    out = tmp_path / "out"
    with pytest.raises(BadValueError) as info:
        convert_csv_gz(src, data_type, out, keys, day, f"test/{src.name}")
    assert not out.exists() or list(out.iterdir()) == [], "no file may remain after a refusal"
    return str(info.value)


@pytest.mark.parametrize(
    ("column", "value", "shown"),
    [
        ("price", "NaN", "nan"),
        ("price", "inf", "inf"),
        ("price", "-8531.5", "-8531.5"),
        ("amount", "-2152", "-2152.0"),
        ("amount", "nan", "nan"),
        ("side", "xyz", "'xyz'"),
    ],
)
def test_trades_refuse_non_finite_negative_and_unknown_values(
    tmp_path: Path, tardis_samples: Path, column: str, value: str, shown: str
) -> None:
    lines = _bitmex_trades(tardis_samples)
    _set_cell(lines, 7, column, value)
    src = gz(tmp_path, "bitmex_trades.csv.gz", ("\n".join(lines) + "\n").encode())
    message = _refused(tmp_path, src, "trades", BITMEX_KEYS, BITMEX_DAY)
    for needle in ("test/bitmex_trades.csv.gz", "line 7", f"column {column!r}", shown):
        assert needle in message, f"{needle!r} not in {message}"


@pytest.mark.parametrize(
    ("column", "value", "shown"),
    [("asks[2].price", "NaN", "nan"), ("bids[0].amount", "-0.5", "-0.5"), ("asks[4].amount", "inf", "inf")],
)
@pytest.mark.slow
def test_book_snapshots_refuse_bad_levels_on_the_polars_route(
    tmp_path: Path, column: str, value: str, shown: str
) -> None:
    lines = book_csv(3_000)
    _set_cell(lines, 2_345, column, value)
    message = _refused(tmp_path, write(tmp_path, lines), "book_snapshot_5", KEYS, DAY)
    for needle in ("line 2345", f"column {column!r}", shown):
        assert needle in message, f"{needle!r} not in {message}"


@pytest.mark.slow
def test_odd_values_tardis_really_sends_are_kept(tmp_path: Path, tardis_samples: Path) -> None:
    """Empty book levels (a thin book), an L2 amount of 0 (level removed), a negative funding rate
    and a negative price on a COMBO (a future spread) are legitimate, and the spec says so."""
    book = get_spec("book_snapshot_5")
    assert all(c.nullable for c in book.float_columns) and "empty" in book.column("ask_price_4").description
    lines = book_csv(2_000)
    _set_cell(lines, 10, "asks[4].price", "")
    _set_cell(lines, 10, "asks[4].amount", "")
    (f,) = convert_csv_gz(write(tmp_path, lines), "book_snapshot_5", tmp_path / "b", KEYS, DAY, "b")
    assert created_by_polars(f.path), "good books stay on the fast route"
    assert pq.read_table(f.path).column("ask_price_4")[8].as_py() is None

    l2 = (
        (tardis_samples / "csv_real" / "deribit_incremental_book_L2_BTC-PERPETUAL.csv")
        .read_text()
        .splitlines()
    )
    _set_cell(l2, 3, "amount", "0")
    src = gz(tmp_path, "l2.csv.gz", ("\n".join(l2) + "\n").encode())
    (f,) = convert_csv_gz(
        src,
        "incremental_book_L2",
        tmp_path / "l2",
        {"BTC-PERPETUAL": "DERIBIT:PERP:BTC-USD"},
        date(2020, 4, 1),
        "l2",
    )
    assert pq.read_table(f.path).column("amount")[1].as_py() == 0.0

    ts = 1583020803145000
    ticker = [
        get_spec("derivative_ticker").csv_header_line,
        f"bitmex,XBTUSD,{ts},{ts + 10},{ts + 3_600_000_000},-0.000375,-0.0001,1000,8531.5,8530,8531",
    ]
    (f,) = convert_csv_gz(
        gz(tmp_path, "t.csv.gz", ("\n".join(ticker) + "\n").encode()),
        "derivative_ticker",
        tmp_path / "t",
        BITMEX_KEYS,
        BITMEX_DAY,
        "t",
    )
    assert pq.read_table(f.path).column("funding_rate")[0].as_py() == -0.000375

    spread = [
        get_spec("trades").csv_header_line,
        f"deribit,BTC-FS-27MAR20_PERP,{ts},{ts + 10},1,buy,-12.5,1000",
    ]
    (f,) = convert_csv_gz(
        gz(tmp_path, "c.csv.gz", ("\n".join(spread) + "\n").encode()),
        "trades",
        tmp_path / "c",
        {"BTC-FS-27MAR20_PERP": "DERIBIT:COMBO:BTC-USD-FS-27MAR20_PERP"},
        BITMEX_DAY,
        "c",
    )
    assert pq.read_table(f.path).column("price")[0].as_py() == -12.5


@pytest.mark.parametrize("route", ["streaming", "polars"])
def test_a_file_of_another_symbol_is_an_error_not_an_empty_day(
    tmp_path: Path, tardis_samples: Path, route: str
) -> None:
    if route == "streaming":
        src = gz(tmp_path, "x.csv.gz", ("\n".join(_bitmex_trades(tardis_samples)) + "\n").encode())
        data_type, keys, day = "trades", {"XBTUSDD": "BITMEX:PERP:BTC-USDD"}, BITMEX_DAY
    else:
        src, data_type, keys, day = (
            write(tmp_path, book_csv(500, symbol="ETH-PERPETUAL")),
            "book_snapshot_5",
            KEYS,
            DAY,
        )
    out = tmp_path / "out"
    with pytest.raises(TickFileError) as info:
        convert_csv_gz(src, data_type, out, keys, day, f"test/{src.name}")
    assert type(info.value).__name__ == "WrongSymbolError"
    message = str(info.value)
    for needle in (f"test/{src.name}", *keys, "requested symbol"):
        assert needle in message, f"{needle!r} not in {message}"
    assert not out.exists() or list(out.iterdir()) == []
