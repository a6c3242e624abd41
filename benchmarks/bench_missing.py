"""Missing-data report over one year × one exchange × 1,000 instruments × 3 data types (local folder).

Builds the storage state once (cached under benchmarks/.work/missing): targets, manifests and
~1.1M small raw files, with a known number of gaps of each class. Then times, in one run:
  - the project: ``report_for_range`` (one listing per day and data type + the manifests);
  - the peer: polars over the same targets/manifests, with one ``os.stat`` per expected file,
    the straightforward way to answer "which expected files are missing".
Prints both times and the ratio, and checks both found the same gaps. Bar: project ≤ 10 s.

    .venv/bin/python benchmarks/bench_missing.py [--days 365] [--instruments 1000]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from market_data_assets.quality.missing import report_for_range  # noqa: E402
from market_data_assets.storage import layout  # noqa: E402
from market_data_assets.storage.local import LocalStore  # noqa: E402
from market_data_assets.ticks.manifest import MANIFEST_SCHEMA  # noqa: E402

EXCHANGE = "deribit"
DATA_TYPES = ("trades", "quotes", "book_snapshot_5")
PAYLOAD = b"PAR1" + b"\0" * 200 + b"PAR1"  # size-checked only; the deep check is not part of the range query


def build(root: Path, start: date, days: int, instruments: int) -> int:
    """Write the storage state; returns the number of planted gaps (deterministic)."""
    marker = (
        root / f".built-v2-{start}-{days}-{instruments}"
    )  # v2: manifests carry every MANIFEST_SCHEMA column
    store = LocalStore(root)
    keys = [f"DERIBIT:OPTION:BTC-USD-{10000 + 500 * i}-241227-CALL" for i in range(instruments)]
    gaps = 0
    for d in range(days):
        day = start + timedelta(days=d)
        gaps += sum(1 for i in range(len(DATA_TYPES)) if (d + i) % 50 == 0)  # one gap every 50 day×type
        if marker.exists():
            continue
        targets = pl.DataFrame(
            {
                "exchange": EXCHANGE,
                "data_type": [dt for dt in DATA_TYPES for _ in keys],
                "instrument_key": keys * len(DATA_TYPES),
                "symbol_in_csv": [k.split(":")[2] for k in keys] * len(DATA_TYPES),
                "dataset_symbol": "OPTIONS",
                "grouped": False,
            }
        )
        store.write_parquet(targets.to_arrow(), layout.targets_path(day, EXCHANGE))
        manifest_rows = []
        for i, dt in enumerate(DATA_TYPES):
            folder = root / layout.raw_ticks_dir(day, dt)
            folder.mkdir(parents=True, exist_ok=True)
            for j, key in enumerate(keys):
                skip = (d + i) % 50 == 0 and j == 0
                path = layout.raw_ticks_path(day, dt, key)
                if not skip:
                    with open(root / path, "wb") as fh:
                        fh.write(PAYLOAD)
                manifest_rows.append((dt, key, path, len(PAYLOAD)))
        manifest = pl.DataFrame(
            manifest_rows, schema=["data_type", "instrument_key", "path", "bytes"], orient="row"
        ).with_columns(
            exchange=pl.lit(EXCHANGE),
            day=pl.lit(day),
            dataset_symbol=pl.lit("OPTIONS"),
            status=pl.lit("ok"),
            rows=pl.lit(1, dtype=pl.Int64),
            source_bytes=pl.col("bytes"),
            sha256=pl.lit(None, dtype=pl.String),
            min_timestamp=pl.lit(None, dtype=pl.Datetime("us", "UTC")),
            max_timestamp=pl.lit(None, dtype=pl.Datetime("us", "UTC")),
            error=pl.lit(None, dtype=pl.String),
            written_at=pl.lit(datetime(2025, 1, 1, tzinfo=UTC)),
        )
        table = manifest.to_arrow().select(MANIFEST_SCHEMA.names).cast(MANIFEST_SCHEMA)
        store.write_parquet(table, layout.raw_manifest_path(day, EXCHANGE))
    marker.touch()
    return gaps


def peer_stat_each_file(root: Path, start: date, days: int) -> int:
    """The naive way: read each day's targets and stat every expected file."""
    missing = 0
    for d in range(days):
        day = start + timedelta(days=d)
        targets = pl.read_parquet(root / layout.targets_path(day, EXCHANGE))
        for dt, key in targets.select("data_type", "instrument_key").iter_rows():
            if not os.path.exists(root / layout.raw_ticks_path(day, dt, key)):
                missing += 1
    return missing


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--instruments", type=int, default=1000)
    parser.add_argument("--work", type=Path, default=Path(__file__).with_name(".work") / "missing")
    args = parser.parse_args()
    start = date(2024, 1, 1)
    t0 = time.perf_counter()
    planted = build(args.work, start, args.days, args.instruments)
    print(f"storage state ready in {time.perf_counter() - t0:.1f} s ({args.work})")

    t0 = time.perf_counter()
    report = report_for_range(LocalStore(args.work), start, start + timedelta(days=args.days - 1), [EXCHANGE])
    ours = time.perf_counter() - t0
    found = report.filter(pl.col("status") != "present").height

    t0 = time.perf_counter()
    peer_missing = peer_stat_each_file(args.work, start, args.days)
    peer = time.perf_counter() - t0

    print(
        f"expected files: {report.height:,}; planted gaps: {planted}; project found {found}, peer found {peer_missing}"
    )
    print(f"project report_for_range : {ours:6.2f} s  (bar: <= 10 s)")
    print(f"peer stat-per-file       : {peer:6.2f} s")
    print(f"ratio peer/project       : {peer / ours:6.2f}x")
    ok = found == planted == peer_missing and ours <= 10.0
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
