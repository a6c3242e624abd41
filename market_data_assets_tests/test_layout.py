"""Partition keys and the storage layout: the paths every asset writes, and what they refuse."""

from __future__ import annotations

from datetime import date

import pytest

from market_data_assets.partitions import PartitionKeyError, parse_partition_key
from market_data_assets.storage import layout


def test_partition_keys():
    p = parse_partition_key("2024-01-15|binance-futures")
    assert p.day == date(2024, 1, 15) and p.exchange == "binance-futures"
    for bad in ("2024-01-15", "2024-02-30|binance", "2024-01-15|../etc", "2024-01-15|Binance"):
        with pytest.raises(PartitionKeyError, match="partition key"):
            parse_partition_key(bad)


def test_layout_paths_and_rejections():
    d = date(2024, 1, 15)
    assert layout.raw_ticks_path(d, "trades", "DERIBIT:PERP:BTC-USD") == (
        "raw_tick_data/by_date/day-2024-01-15/data_type-trades/DERIBIT:PERP:BTC-USD.parquet"
    )
    assert layout.instruments_path(d, "deribit") == (
        "instrument_availability/by_date/day-2024-01-15/venue-deribit/instruments.parquet"
    )
    for bad in ("DERIBIT:PERP:../../etc", "DERIBIT:PERP:A/B", "deribit:perp:x", "A:B", "A:B:.."):
        with pytest.raises(layout.LayoutError):
            layout.raw_ticks_path(d, "trades", bad)
    with pytest.raises(layout.LayoutError):
        layout.candles_path(d, "2m", "DERIBIT:PERP:BTC-USD")
    for p in (
        layout.targets_path(d, "x"),
        layout.candles_path(d, "1m", "A:B:C"),
        layout.book_snapshots_path(d, "1h", "A:B:C"),
        layout.features_path(d, "4h", "A:B:C"),
        layout.report_path(d, "x"),
        layout.raw_manifest_path(d, "x"),
    ):
        assert p.count("/") == 4
