"""Book snapshots per timeframe: the book as of each bucket END against a plain-Python as-of reference."""

from __future__ import annotations

import random
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

from market_data_assets.candles.build import COMPLETE_META_KEY, build_book_snapshots
from market_data_assets.candles.schema import book_snapshot_schema
from market_data_assets.storage.layout import TIMEFRAMES, book_snapshots_path
from market_data_assets.storage.local import LocalStore
from market_data_assets_tests.support.candles import (
    DAY,
    EXCHANGE,
    NEXT,
    WIDTHS,
    assert_rows_equal,
    at,
    reference_book_as_of_end,
    write_ticks,
)

BTC = "BINANCE:SPOT_PAIR:BTC-USDT"
ETH = "BINANCE:SPOT_PAIR:ETH-USDT"


def _levels(rng: random.Random, depth: int, ts: int) -> dict:
    row: dict = {"timestamp": ts}
    present = rng.randint(1, depth)  # thinner books leave the deeper levels empty
    for i in range(depth):
        for name in (f"ask_price_{i}", f"ask_amount_{i}", f"bid_price_{i}", f"bid_amount_{i}"):
            row[name] = round(rng.uniform(1, 100), 4) if i < present else None
    return row


def _book(seed: int, depth: int) -> tuple[list[dict], list[dict]]:
    rng = random.Random(seed)
    stamps = [at(0)]  # exactly midnight
    stamps += [at(0, 0, 15)] * 2  # two snapshots exactly at a bucket end: neither is "before" it
    stamps += [at(0, 0, 14, 999_999)]  # stamped just before that end, filed after
    stamps += sorted(rng.randrange(at(0), at(0, day=NEXT)) for _ in range(300))
    stamps += [at(4, 0, 0)] * 3  # ties on a 4h boundary
    day_rows = [_levels(rng, depth, ts) for ts in stamps]
    day_rows.insert(0, _levels(rng, depth, at(0) - 1))  # D-1's last microsecond at the top of file D
    next_rows = [_levels(rng, depth, at(23, 59, 59, 999_999)), _levels(rng, depth, at(0, day=NEXT))]
    return day_rows, next_rows


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[LocalStore, dict]:
    store = LocalStore(tmp_path_factory.mktemp("books") / "lake")
    btc_d, btc_n = _book(1, 5)
    eth_d, eth_n = _book(2, 25)
    write_ticks(store, "book_snapshot_5", DAY, BTC, btc_d)
    write_ticks(store, "book_snapshot_5", NEXT, BTC, btc_n)
    write_ticks(store, "book_snapshot_25", DAY, ETH, eth_d)
    write_ticks(store, "book_snapshot_25", NEXT, ETH, eth_n)
    write_ticks(store, "book_snapshot_5", DAY, ETH, _book(3, 5)[0])  # 25 levels win over 5
    summary = build_book_snapshots(store, DAY, EXCHANGE)
    assert summary.instruments == [BTC, ETH] and summary.files == 14
    return store, {BTC: (btc_d + btc_n, 5), ETH: (eth_d + eth_n, 25)}


@pytest.mark.parametrize("timeframe", TIMEFRAMES)
@pytest.mark.slow
def test_book_as_of_bucket_end_equals_reference(built: tuple[LocalStore, dict], timeframe: str) -> None:
    store, inputs = built
    for key, (rows, depth) in inputs.items():
        path = store.uri(book_snapshots_path(DAY, timeframe, key))
        actual = pl.read_parquet(path).to_dicts()
        expected = reference_book_as_of_end(rows, timeframe, depth)
        assert_rows_equal(actual, expected, f"{key} {timeframe}", rel=0.0)
        assert len(actual) == 86_400 // WIDTHS[timeframe]
        assert {(r["timeframe"], r["book_depth"], r["exchange"]) for r in actual} == {
            (timeframe, depth, EXCHANGE)
        }
        assert pq.read_schema(path).remove_metadata() == book_snapshot_schema(depth)
        assert pq.read_schema(path).metadata[COMPLETE_META_KEY] == b"true"


def test_boundary_snapshot_belongs_to_the_next_bucket(built: tuple[LocalStore, dict]) -> None:
    """By hand: the 00:00:15 snapshots are not 'before the end' of bucket 0; 00:00:14.999999 is."""
    store, inputs = built
    rows, _ = inputs[BTC]
    first = pl.read_parquet(store.uri(book_snapshots_path(DAY, "15s", BTC))).row(0, named=True)
    assert first["snapshot_timestamp"].second == 14 and first["snapshot_timestamp"].microsecond == 999_999
    assert first["ask_price_0"] == rows[4]["ask_price_0"]
    last_24h = pl.read_parquet(store.uri(book_snapshots_path(DAY, "24h", BTC))).row(0, named=True)
    assert last_24h["ask_price_0"] == inputs[BTC][0][-2]["ask_price_0"]  # 23:59:59.999999 from file D+1


@pytest.mark.slow
def test_missing_next_day_is_flagged(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "lake")
    write_ticks(store, "book_snapshot_5", DAY, BTC, _book(4, 5)[0])
    summary = build_book_snapshots(store, DAY, EXCHANGE)
    assert summary.complete_through_midnight is False
    meta = pq.read_schema(store.uri(book_snapshots_path(DAY, "1h", BTC))).metadata
    assert meta[COMPLETE_META_KEY] == b"false"
