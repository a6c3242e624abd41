"""The reader library returns what the pipeline wrote, touching only the files a request needs."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import polars as pl
import pyarrow.parquet as pq
import pytest

from market_data_assets import reader
from market_data_assets.storage import layout

KEY = "BITMEX:PERP:BTC-USD"


def _sources(lf: pl.LazyFrame) -> list[str]:
    """The files in the optimized plan's Parquet scan (what polars will actually open)."""
    plan = lf.explain()
    match = re.search(r"Parquet SCAN \[(.*?)\]", plan)
    assert match, plan
    return [s.strip() for s in match.group(1).split(",")]


def test_instruments_filters(pipeline_lake):
    root = str(pipeline_lake.root)
    stored = pq.read_table(
        pipeline_lake.root / layout.instruments_path(pipeline_lake.day, "bitmex")
    ).to_pylist()
    got = reader.instruments("2024-03-01", "bitmex", root=root)
    assert sorted(got["instrument_key"].to_list()) == sorted(r["instrument_key"] for r in stored)
    btc = reader.instruments("2024-03-01", root=root, base="BTC", instrument_type="PERP")
    assert sorted(btc["instrument_key"].to_list()) == sorted(
        r["instrument_key"] for r in stored if r["base"] == "BTC" and r["instrument_type"] == "PERP"
    )
    assert reader.instruments("2023-01-01", "bitmex", root=root).height == 0


def test_ticks_in_a_range_equal_the_stored_rows(pipeline_lake):
    root = str(pipeline_lake.root)
    start, end = datetime(2024, 3, 1, 10, tzinfo=UTC), datetime(2024, 3, 1, 14, tzinfo=UTC)
    lf = reader.scan_ticks("trades", [KEY], start, end, root=root)
    # A mid-day range touches one file, and the time filter is pushed into the scan.
    assert _sources(lf) == [str(pipeline_lake.root / layout.raw_ticks_path(pipeline_lake.day, "trades", KEY))]
    assert "SELECTION" in lf.explain()
    got = lf.collect()
    # Independent: read the raw file with pyarrow and filter in Python.
    rows = pq.read_table(
        pipeline_lake.root / layout.raw_ticks_path(pipeline_lake.day, "trades", KEY)
    ).to_pylist()
    expected = [r for r in rows if start <= r["timestamp"] < end]
    assert len(expected) > 0
    assert got["id"].to_list() == [r["id"] for r in expected]
    assert got["price"].to_list() == [r["price"] for r in expected]


def test_ticks_near_midnight_include_the_next_days_file(pipeline_lake):
    root = str(pipeline_lake.root)
    start, end = datetime(2024, 3, 1, 23, 0, tzinfo=UTC), datetime(2024, 3, 2, tzinfo=UTC)
    lf = reader.scan_ticks("trades", [KEY], start, end, root=root)
    assert len(_sources(lf)) == 2
    got = lf.collect()
    rows = []
    for day in ("2024-03-01", "2024-03-02"):
        path = pipeline_lake.root / layout.raw_ticks_path(datetime.fromisoformat(day).date(), "trades", KEY)
        rows += [r for r in pq.read_table(path).to_pylist() if start <= r["timestamp"] < end]
    assert sorted(got["id"].to_list()) == sorted(r["id"] for r in rows)


def test_candles_and_book_snapshots(pipeline_lake):
    root = str(pipeline_lake.root)
    lf = reader.scan_candles("1m", [KEY], "2024-03-01T10:00", "2024-03-01T11:00", root=root)
    assert len(_sources(lf)) == 1
    candles = lf.collect()
    assert candles.height == 60
    assert candles["timestamp"].min() == datetime(2024, 3, 1, 10, tzinfo=UTC)
    stored = pq.read_table(pipeline_lake.root / layout.candles_path(pipeline_lake.day, "1m", KEY)).to_pylist()
    by_ts = {r["timestamp"]: r for r in stored}
    for row in candles.iter_rows(named=True):
        assert row["close"] == by_ts[row["timestamp"]]["close"]
        assert row["volume"] == by_ts[row["timestamp"]]["volume"]
    # A day that was not processed contributes nothing (and is not an error).
    assert reader.scan_candles("1h", [KEY], "2024-03-05", "2024-03-06", root=root).collect().height == 0

    books = reader.scan_book_snapshots("1h", [KEY], "2024-03-01", "2024-03-02", root=root).collect()
    assert books.height == 24
    assert (books["ask_price_0"] > books["bid_price_0"]).all()


def test_missing_data_matches_the_report_asset(pipeline_lake):
    root = str(pipeline_lake.root)
    gaps = reader.missing_data("2024-03-01", "2024-03-01", "bitmex", root=root)
    stored = pl.read_parquet(pipeline_lake.root / layout.report_path(pipeline_lake.day, "bitmex"))
    assert sorted(zip(gaps["data_type"], gaps["instrument_key"], gaps["status"], strict=True)) == sorted(
        zip(stored["data_type"], stored["instrument_key"], stored["status"], strict=True)
    )
    assert gaps.height > 0


def test_hostile_keys_are_refused(pipeline_lake):
    with pytest.raises(layout.LayoutError):
        reader.scan_candles(
            "1m", ["../../etc/passwd"], "2024-03-01", "2024-03-02", root=str(pipeline_lake.root)
        )
    with pytest.raises(layout.LayoutError):
        reader.scan_ticks("nope", [KEY], "2024-03-01", "2024-03-02", root=str(pipeline_lake.root))
