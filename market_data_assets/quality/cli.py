"""``market-data missing``: what is missing over any date range, without running Dagster."""

from __future__ import annotations

import argparse
import sys
import time
from datetime import date
from pathlib import Path

import polars as pl

from market_data_assets.quality.missing import GAP_STATUSES, report_for_range, summarize
from market_data_assets.settings import Settings
from market_data_assets.storage.store import open_store
from market_data_assets.tardis.formats import DATA_TYPE_NAMES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--start", required=True, type=date.fromisoformat, help="first day, YYYY-MM-DD")
    parser.add_argument(
        "--end", required=True, type=date.fromisoformat, help="last day (inclusive), YYYY-MM-DD"
    )
    parser.add_argument(
        "--exchange", action="append", help="Tardis exchange id (repeatable; default: MARKET_DATA_EXCHANGES)"
    )
    parser.add_argument("--data-type", choices=DATA_TYPE_NAMES, help="only this data type")
    parser.add_argument("--root", help="storage root (default: MARKET_DATA_ROOT)")
    parser.add_argument(
        "--verify", action="store_true", help="also read Parquet footers to compare row counts"
    )
    parser.add_argument("--output", type=Path, help="write every report row to this .csv or .parquet file")
    parser.add_argument("--worst", type=int, default=20, help="how many gap rows to print (default 20)")


def run(args: argparse.Namespace) -> int:
    if args.end < args.start:
        print(f"error: --end {args.end} is before start {args.start}", file=sys.stderr)
        return 2
    settings = Settings.from_env()
    store = open_store(args.root or settings.root)
    exchanges = args.exchange or list(settings.exchanges)
    started = time.perf_counter()
    report = report_for_range(
        store, args.start, args.end, exchanges, data_type=args.data_type, verify_rows=args.verify
    )
    elapsed = time.perf_counter() - started
    with pl.Config(tbl_rows=200, tbl_cols=-1, tbl_hide_dataframe_shape=True, tbl_hide_column_data_types=True):
        print(f"missing-data report {args.start}..{args.end} for {', '.join(exchanges)} ({store.root})")
        print(summarize(report))
        gaps = report.filter(pl.col("status").is_in(GAP_STATUSES))
        print(f"{report.height} expected files, {gaps.height} gaps, computed in {elapsed:.2f} s")
        if gaps.height:
            print(
                gaps.select("day", "exchange", "data_type", "instrument_key", "status", "detail").head(
                    args.worst
                )
            )
    if args.output:
        if args.output.suffix == ".parquet":
            report.write_parquet(args.output)
        elif args.output.suffix == ".csv":
            report.write_csv(args.output)
        else:
            print(f"--output {args.output}: use a .csv or .parquet file name", file=sys.stderr)
            return 2
        print(f"wrote {report.height} rows to {args.output}")
    return 0
