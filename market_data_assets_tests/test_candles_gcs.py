"""Candles and book snapshots with a ``gs://`` root on the GCS emulator: scans in place, atomic writes."""

from __future__ import annotations

import polars as pl
import pytest

from market_data_assets.candles.build import build_base_candles, build_book_snapshots, build_rolled_up_candles
from market_data_assets.storage import open_store
from market_data_assets.storage.layout import TIMEFRAMES, book_snapshots_path, candles_path
from market_data_assets_tests.support.candles import (
    DAY,
    EXCHANGE,
    NEXT,
    assert_rows_equal,
    reference_book_as_of_end,
    reference_candles,
    write_ticks,
)
from market_data_assets_tests.test_candles import (
    BTC,
    BTC_BOOK_D,
    BTC_BOOK_NEXT,
    BTC_TRADES_D,
    BTC_TRADES_NEXT,
)


@pytest.mark.emulator
def test_gs_root_builds_the_same_candles_as_the_reference(gcs_env: str) -> None:
    store = open_store(gcs_env)
    write_ticks(store, "trades", DAY, BTC, BTC_TRADES_D)
    write_ticks(store, "trades", NEXT, BTC, BTC_TRADES_NEXT)
    write_ticks(store, "book_snapshot_5", DAY, BTC, BTC_BOOK_D)
    write_ticks(store, "book_snapshot_5", NEXT, BTC, BTC_BOOK_NEXT)

    summary = build_base_candles(store, DAY, EXCHANGE)
    assert summary.instruments == [BTC] and summary.complete_through_midnight
    for tf in TIMEFRAMES[1:]:
        build_rolled_up_candles(store, DAY, EXCHANGE, tf)
    build_book_snapshots(store, DAY, EXCHANGE)

    for tf in ("15s", "1h", "24h"):
        actual = pl.from_arrow(store.read_parquet(candles_path(DAY, tf, BTC))).to_dicts()
        expected = reference_candles(BTC_TRADES_D + BTC_TRADES_NEXT, tf, book=BTC_BOOK_D + BTC_BOOK_NEXT)
        assert_rows_equal(actual, expected, f"gs:// {tf}")
    books = pl.from_arrow(store.read_parquet(book_snapshots_path(DAY, "1h", BTC))).to_dicts()
    expected_books = reference_book_as_of_end(BTC_BOOK_D + BTC_BOOK_NEXT, "1h", 5)
    assert_rows_equal(books, expected_books, "gs:// book 1h", rel=0.0)
