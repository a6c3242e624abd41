"""The README's first command, end to end: ``market-data demo`` in a fresh folder, no network."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import duckdb
import polars as pl
import pytest

from market_data_assets.features.registry import FEATURE_TIMEFRAMES
from market_data_assets.storage import layout

pytestmark = pytest.mark.servers


REPO = Path(__file__).resolve().parents[1]
EXCHANGES = ("binance-futures", "deribit", "bitmex")


def test_demo_runs_the_whole_graph(tmp_path):
    root = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MARKET_DATA_", "TARDIS_", "DAGSTER_"))}
    # No proxy can help: the demo must not need the network at all.
    env.update(
        {"HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9", "NO_PROXY": "127.0.0.1"}
    )
    env["PYTHONPATH"] = str(REPO)  # the checkout under test, also from a worktree of an editable install
    result = subprocess.run(
        [
            str(Path(sys.executable).with_name("market-data")),
            "demo",
            "--root",
            str(root),
            "--days",
            "2",
            "--exchanges",
            ",".join(EXCHANGES),
            "--trades-per-day",
            "300",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]

    # Data in every layout folder, for every exchange and day.
    for area in layout.AREAS:
        assert any((root / area).rglob("*.parquet")), f"nothing under {area}"
    for day in (date(2024, 3, 1), date(2024, 3, 2)):
        for ex in EXCHANGES:
            assert (root / layout.instruments_path(day, ex)).is_file()
            assert (root / layout.report_path(day, ex)).is_file()
            for tf in layout.TIMEFRAMES:
                assert list(
                    (root / layout.candles_dir(day, tf)).glob(
                        f"{layout.key_prefix_for_exchange(ex)}*.parquet"
                    )
                )

    # Rows in the DuckDB tables, one slice per (day, exchange), no duplicates.
    con = duckdb.connect(str(root / "warehouse.duckdb"), read_only=True)
    tables = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    for tf in layout.TIMEFRAMES:
        assert f"candles_{tf}" in tables
    for tf in FEATURE_TIMEFRAMES:
        assert f"features_{tf}" in tables
    features = con.execute(
        "SELECT count(*), count(log_return), count(DISTINCT (instrument_key, timestamp)) FROM features_1h"
    ).fetchone()
    assert features[0] == features[2] > 0 and features[1] > 0
    per_slice = con.execute(
        "SELECT exchange, CAST(timestamp AS DATE) AS d, count(*) AS n, count(DISTINCT (instrument_key, timestamp)) AS u "
        "FROM candles_24h GROUP BY ALL ORDER BY ALL"
    ).fetchall()
    assert {(r[0], str(r[1])) for r in per_slice} == {
        (ex, d) for ex in EXCHANGES for d in ("2024-03-01", "2024-03-02")
    }
    assert all(r[2] == r[3] for r in per_slice)
    con.close()

    # The missing-data report is empty (or every gap is explained).
    reports = pl.concat(
        [
            pl.read_parquet(root / layout.report_path(d, ex))
            for d in (date(2024, 3, 1), date(2024, 3, 2))
            for ex in EXCHANGES
        ]
    )
    assert reports.height > 0
    unexplained = reports.filter(
        ~pl.col("status").is_in(["present", "empty_at_source", "explained_by_incident"])
    )
    assert unexplained.height == 0, unexplained

    # MFT features of every day and exchange, printed too.
    for day in (date(2024, 3, 1), date(2024, 3, 2)):
        for ex in EXCHANGES:
            for tf in FEATURE_TIMEFRAMES:
                assert list(
                    (root / layout.features_dir(day, tf)).glob(
                        f"{layout.key_prefix_for_exchange(ex)}*.parquet"
                    )
                ), (day, ex, tf)
    assert "MFT features at 1h" in output and "realized_vol_20" in output

    # The instance persisted the runs, for `make dev` to show.
    assert (root / "dagster_home" / "dagster.yaml").is_file()
    assert "make dev" in output
