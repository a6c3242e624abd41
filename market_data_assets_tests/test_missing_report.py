"""The missing-data report finds exactly the gaps of a storage state built to contain each class."""

from __future__ import annotations

from datetime import UTC, date, datetime

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from market_data_assets.quality.missing import (
    report_for_day,
    report_for_range,
    summarize,
)
from market_data_assets.storage import layout
from market_data_assets.storage.local import LocalStore
from market_data_assets.tardis.incidents import Incident, incidents_from_details
from market_data_assets.ticks.manifest import MANIFEST_SCHEMA

DAY = date(2024, 3, 5)
EX = "deribit"


def _write_ticks(store: LocalStore, data_type: str, key: str, rows: int) -> tuple[str, int]:
    path = layout.raw_ticks_path(DAY, data_type, key)
    table = pa.table({"price": [float(i) for i in range(rows)], "instrument_key": [key] * rows})
    store.write_parquet(table, path)
    return path, (store._root / path).stat().st_size  # noqa: SLF001 - test inspects the real file


def _manifest_row(data_type, dataset_symbol, key, status, rows=0, size=0, path=None, error=None):
    return {
        "exchange": EX,
        "day": DAY,
        "data_type": data_type,
        "dataset_symbol": dataset_symbol,
        "instrument_key": key,
        "path": path,
        "status": status,
        "rows": rows,
        "bytes": size,
        "source_bytes": 100,
        "sha256": None,
        "min_timestamp": None,
        "max_timestamp": None,
        "error": error,
        "written_at": datetime(2024, 3, 6, tzinfo=UTC),
    }


@pytest.fixture
def gap_store(tmp_path) -> LocalStore:
    store = LocalStore(tmp_path / "lake")
    targets = pl.DataFrame(
        [
            ("trades", "DERIBIT:PERP:BTC-USD", "BTC-PERPETUAL", False),
            ("trades", "DERIBIT:PERP:ETH-USD", "ETH-PERPETUAL", False),
            ("quotes", "DERIBIT:PERP:BTC-USD", "BTC-PERPETUAL", False),
            ("book_snapshot_5", "DERIBIT:PERP:BTC-USD", "BTC-PERPETUAL", False),
            ("trades", "DERIBIT:FUTURE:BTC-USD-240329", "BTC-29MAR24", False),
            ("quotes", "DERIBIT:PERP:ETH-USD", "ETH-PERPETUAL", False),
            ("trades", "DERIBIT:OPTION:BTC-USD-60000-240329-CALL", "OPTIONS", True),
            ("trades", "DERIBIT:OPTION:BTC-USD-50000-240329-PUT", "OPTIONS", True),
            ("trades", "DERIBIT:PERP:SOL-USDC", "SOL_USDC-PERPETUAL", False),
        ],
        schema=["data_type", "instrument_key", "dataset_symbol", "grouped"],
        orient="row",
    ).with_columns(exchange=pl.lit(EX), symbol_in_csv=pl.col("dataset_symbol"))
    store.write_parquet(targets.to_arrow(), layout.targets_path(DAY, EX))

    manifest = []
    # present: file + matching manifest entry
    p, size = _write_ticks(store, "trades", "DERIBIT:PERP:BTC-USD", 10)
    manifest.append(_manifest_row("trades", "BTC-PERPETUAL", "DERIBIT:PERP:BTC-USD", "ok", 10, size, p))
    # empty at source
    manifest.append(_manifest_row("quotes", "BTC-PERPETUAL", None, "empty", 0, 0))
    # failed download
    manifest.append(
        _manifest_row("book_snapshot_5", "BTC-PERPETUAL", None, "failed", error="HTTP 503 after 8 retries")
    )
    # truncated Parquet: the stored file is shorter than what the manifest recorded
    p, size = _write_ticks(store, "trades", "DERIBIT:FUTURE:BTC-USD-240329", 50)
    manifest.append(
        _manifest_row("trades", "BTC-29MAR24", "DERIBIT:FUTURE:BTC-USD-240329", "ok", 50, size, p)
    )
    full = (store._root / p).read_bytes()  # noqa: SLF001
    (store._root / p).write_bytes(full[: len(full) // 2])  # noqa: SLF001
    # wrong row count: same size, different rows than recorded
    p, size = _write_ticks(store, "quotes", "DERIBIT:PERP:ETH-USD", 3)
    manifest.append(_manifest_row("quotes", "ETH-PERPETUAL", "DERIBIT:PERP:ETH-USD", "ok", 5, size, p))
    # grouped file had data for one option only
    p, size = _write_ticks(store, "trades", "DERIBIT:OPTION:BTC-USD-60000-240329-CALL", 4)
    manifest.append(
        _manifest_row("trades", "OPTIONS", "DERIBIT:OPTION:BTC-USD-60000-240329-CALL", "ok", 4, size, p)
    )
    # recorded as written, but deleted since
    manifest.append(
        _manifest_row(
            "trades",
            "SOL_USDC-PERPETUAL",
            "DERIBIT:PERP:SOL-USDC",
            "ok",
            7,
            999,
            layout.raw_ticks_path(DAY, "trades", "DERIBIT:PERP:SOL-USDC"),
        )
    )
    store.write_parquet(
        pa.Table.from_pylist(manifest, schema=MANIFEST_SCHEMA), layout.raw_manifest_path(DAY, EX)
    )
    # A file of another venue with a shared prefix must not be counted for deribit.
    store.write_parquet(pa.table({"x": [1]}), layout.raw_ticks_path(DAY, "trades", "DERIBIT-X:PERP:BTC-USD"))
    return store


EXPECTED = {
    ("trades", "DERIBIT:PERP:BTC-USD"): "present",
    ("trades", "DERIBIT:PERP:ETH-USD"): "missing",
    ("quotes", "DERIBIT:PERP:BTC-USD"): "empty_at_source",
    ("book_snapshot_5", "DERIBIT:PERP:BTC-USD"): "failed_download",
    ("trades", "DERIBIT:FUTURE:BTC-USD-240329"): "incomplete",
    ("quotes", "DERIBIT:PERP:ETH-USD"): "incomplete",
    ("trades", "DERIBIT:OPTION:BTC-USD-60000-240329-CALL"): "present",
    ("trades", "DERIBIT:OPTION:BTC-USD-50000-240329-PUT"): "empty_at_source",
    ("trades", "DERIBIT:PERP:SOL-USDC"): "missing",
}


def _statuses(report: pl.DataFrame) -> dict[tuple[str, str], str]:
    return {(r["data_type"], r["instrument_key"]): r["status"] for r in report.iter_rows(named=True)}


def test_each_gap_class_is_found_and_classified(gap_store):
    report = report_for_day(gap_store, DAY, EX, verify_rows=True)
    assert _statuses(report) == EXPECTED
    details = {(r["data_type"], r["instrument_key"]): r["detail"] for r in report.iter_rows(named=True)}
    assert "503" in details[("book_snapshot_5", "DERIBIT:PERP:BTC-USD")]
    assert "3 rows stored" in details[("quotes", "DERIBIT:PERP:ETH-USD")]
    assert "no longer stored" in details[("trades", "DERIBIT:PERP:SOL-USDC")]


def test_without_footer_check_only_size_differences_are_flagged(gap_store):
    statuses = _statuses(report_for_day(gap_store, DAY, EX, verify_rows=False))
    # The truncated file differs in size; the wrong-row-count file needs the footer check.
    assert statuses[("trades", "DERIBIT:FUTURE:BTC-USD-240329")] == "incomplete"
    assert statuses[("quotes", "DERIBIT:PERP:ETH-USD")] == "present"


def test_incident_explains_missing_files(gap_store):
    details = {
        "incidentReports": [
            {
                "from": "2024-03-05T10:00:00.000Z",
                "to": "2024-03-05T12:00:00.000Z",
                "status": "wontfix",
                "details": "exchange API outage",
            },
            {
                "from": "2023-01-01T00:00:00.000Z",
                "to": "2023-01-02T00:00:00.000Z",
                "status": "resolved",
                "details": "unrelated",
            },
            {"from": "not a date", "to": "x"},
        ]
    }
    incidents = incidents_from_details(details)
    assert len(incidents) == 2
    report = report_for_day(gap_store, DAY, EX, incidents=incidents)
    row = report.filter(
        pl.col("instrument_key") == "DERIBIT:PERP:ETH-USD", pl.col("data_type") == "trades"
    ).row(0, named=True)
    assert row["status"] == "explained_by_incident"
    assert "exchange API outage" in row["detail"] and "unrelated" not in row["detail"]
    # An explained gap never hides a failure the manifest recorded.
    assert _statuses(report)[("book_snapshot_5", "DERIBIT:PERP:BTC-USD")] == "failed_download"


def test_range_and_summary(gap_store):
    report = report_for_range(gap_store, date(2024, 3, 4), date(2024, 3, 6), [EX], verify_rows=True)
    assert report.height == len(EXPECTED)  # days without targets contribute nothing
    assert _statuses(report) == EXPECTED
    summary = summarize(report)
    assert summary.height == 3  # one row per data type
    expected_counts: dict[str, int] = {}
    for status in EXPECTED.values():
        expected_counts[status] = expected_counts.get(status, 0) + 1
    for status, n in expected_counts.items():
        assert summary[status].sum() == n
    only_quotes = report_for_range(gap_store, DAY, DAY, [EX], data_type="quotes")
    assert set(only_quotes["data_type"]) == {"quotes"}


def test_incident_overlap_is_day_exact():
    inc = Incident(
        datetime(2024, 3, 5, 23, 0, tzinfo=UTC),
        datetime(2024, 3, 6, 0, 0, tzinfo=UTC),
        "x",
        "d",
    )
    assert inc.overlaps(date(2024, 3, 5)) and not inc.overlaps(date(2024, 3, 6))


def test_bad_range_is_refused(gap_store):
    with pytest.raises(ValueError, match="before start"):
        report_for_range(gap_store, date(2024, 3, 6), date(2024, 3, 5), [EX])


def test_parquet_footer_reader_flags_garbage(tmp_path):
    from market_data_assets.quality.missing import parquet_row_counts

    store = LocalStore(tmp_path)
    store.put_bytes(b"not parquet at all", "a/b.parquet")
    pq.write_table(pa.table({"x": [1, 2]}), tmp_path / "c.parquet")
    assert parquet_row_counts(store, ["a/b.parquet", "c.parquet"]) == {"a/b.parquet": None, "c.parquet": 2}
