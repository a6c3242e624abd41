"""The data-quality rules (quality/checks.py) without Dagster or a server."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl
import pyarrow as pa

from market_data_assets.partitions import DayExchange as Part
from market_data_assets.quality.checks import (
    duplicate_instrument_keys,
    raw_ticks_completeness,
    summarize_report,
    targets_allow_empty,
)
from market_data_assets.quality.missing import NO_TARGETS_FILE, STATUSES
from market_data_assets.storage import layout
from market_data_assets.storage.local import LocalStore

DAY = date(2024, 3, 5)


def test_report_summary_counts_every_status_and_ranks_the_worst_gaps_first():
    report = pl.DataFrame(
        {
            "day": [DAY] * 4,
            "data_type": ["trades"] * 4,
            "instrument_key": ["A:B:D", "A:B:C", "A:B:E", "A:B:F"],
            "status": ["present", "incomplete", "missing", "missing"],
            "detail": [None, "size differs", None, None],
        }
    )
    summary = summarize_report(report)
    assert set(summary.counts) == set(STATUSES) and sum(summary.counts.values()) == 4
    assert (summary.counts["present"], summary.counts["missing"], summary.gaps) == (1, 2, 3)
    # missing before incomplete (the order of GAP_STATUSES), then by instrument
    assert summary.worst["instrument_key"].to_list() == ["A:B:E", "A:B:F", "A:B:C"]


def test_a_partition_without_targets_never_passes_whatever_allow_empty_says(tmp_path: Path):
    store = LocalStore(tmp_path)
    for allow_empty in (False, True):
        result = raw_ticks_completeness(store, [Part(DAY, "deribit")], allow_empty=allow_empty)
        assert not result.passed and result.expected == 0
        assert result.unplanned == [f"{DAY}|deribit: {NO_TARGETS_FILE}"]


def test_targets_allow_empty_reads_the_file_and_refuses_an_unreadable_one(tmp_path: Path):
    good = tmp_path / "targets.yaml"
    good.write_text("allow_empty: true\nexchanges: {}\n")
    assert targets_allow_empty(good)
    assert not targets_allow_empty(tmp_path / "missing.yaml")


def test_duplicate_keys_are_named_with_their_partition(tmp_path: Path):
    store = LocalStore(tmp_path)
    keys = pa.table(
        {"instrument_key": ["DERIBIT:PERP:BTC-USD", "DERIBIT:PERP:BTC-USD", "DERIBIT:PERP:ETH-USD"]}
    )
    store.write_parquet(keys, layout.instruments_path(DAY, "deribit"))
    rows, duplicates = duplicate_instrument_keys(store, [Part(DAY, "deribit")])
    assert rows == 3 and duplicates == [f"{DAY}|deribit: DERIBIT:PERP:BTC-USD"]
