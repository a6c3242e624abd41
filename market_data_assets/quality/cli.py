"""``market-data missing``: what is missing over any date range, without running Dagster.

Made to be scripted:

- exit status 0 when every expected file is accounted for (present, empty at the source or
  explained by a Tardis incident), 1 when anything is missing, failed, incomplete or corrupt, or
  an exchange-day has no download targets (unless the targets file says ``allow_empty: true``),
  2 on a usage error;
- every argument (dates, exchanges, ``--output``) is checked before any work, and a bad one is
  one line on stderr;
- ``--format``: ``table`` for a person (the default on a terminal), ``csv`` (the default when
  piped) or ``jsonl``: one row per expected file, every column in full, including the location of
  the file; the summary then goes to stderr so stdout holds only data.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

import polars as pl

from market_data_assets.errors import MarketDataError
from market_data_assets.quality.missing import (
    ACCEPTABLE_STATUSES,
    GAP_STATUSES,
    NO_TARGETS_FILE,
    report_for_range,
    summarize,
    with_paths,
)
from market_data_assets.settings import Settings, SettingsError
from market_data_assets.storage.layout import LayoutError, check_exchange
from market_data_assets.tardis.formats import DATA_TYPE_NAMES

FORMATS = ("table", "csv", "jsonl")
OUTPUT_SUFFIXES = (".csv", ".parquet", ".jsonl")
EXIT_OK, EXIT_GAPS, EXIT_USAGE = 0, 1, 2


class UsageError(MarketDataError, ValueError):
    """A bad argument, reported in one line with exit status 2."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--start", required=True, help="first day, YYYY-MM-DD")
    parser.add_argument("--end", required=True, help="last day (inclusive), YYYY-MM-DD")
    parser.add_argument(
        "--exchange", action="append", help="Tardis exchange id (repeatable; default: MARKET_DATA_EXCHANGES)"
    )
    parser.add_argument("--data-type", choices=DATA_TYPE_NAMES, help="only this data type")
    parser.add_argument("--root", help="storage root (default: MARKET_DATA_ROOT)")
    parser.add_argument(
        "--verify",
        action="store_true",
        help="also read every file: row counts from the Parquet footer, SHA-256 against the manifest",
    )
    parser.add_argument(
        "--format",
        choices=FORMATS,
        help="table (default on a terminal), csv (default when piped) or jsonl: one row per expected file",
    )
    parser.add_argument(
        "--output", type=Path, help="also write every report row to this .csv, .jsonl or .parquet file"
    )
    parser.add_argument("--worst", type=int, default=20, help="gap rows shown by --format table (default 20)")


def _day(name: str, value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise UsageError(f"{name} {value!r} is not a date in YYYY-MM-DD form") from None


def _check_output(path: Path) -> None:
    if path.suffix not in OUTPUT_SUFFIXES:
        raise UsageError(f"--output {path}: use a file name ending in {', '.join(OUTPUT_SUFFIXES)}")
    if path.is_dir():
        raise UsageError(f"--output {path} is a folder")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(f"--output {path}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise UsageError(f"--output {path}: not writable")


def _checked(args: argparse.Namespace) -> tuple[date, date, list[str], Settings, str]:
    start, end = _day("--start", args.start), _day("--end", args.end)
    if end < start:
        raise UsageError(f"--end {end} is before --start {start}")
    if args.worst < 0:
        raise UsageError(f"--worst {args.worst} must be >= 0")
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        raise UsageError(str(exc)) from None
    exchanges = args.exchange or list(settings.exchanges)
    for exchange in exchanges:
        try:
            check_exchange(exchange)
        except LayoutError as exc:
            raise UsageError(f"--exchange: {exc}") from None
    if args.output is not None:
        _check_output(args.output)
    fmt = args.format or ("table" if sys.stdout.isatty() else "csv")
    return start, end, exchanges, settings, fmt


def _allow_empty(settings: Settings) -> bool:
    from market_data_assets.instruments.targets import load_targets_config

    try:
        return load_targets_config(settings.targets_file).allow_empty
    except ValueError:
        return False


def run(args: argparse.Namespace) -> int:
    try:
        start, end, exchanges, settings, fmt = _checked(args)
    except UsageError as exc:
        print(f"market-data missing: error: {exc}", file=sys.stderr)
        return EXIT_USAGE

    from market_data_assets.storage import open_store

    store = open_store(args.root or settings.root)
    without_targets: list[tuple[date, str, str]] = []
    started = time.perf_counter()
    report = report_for_range(
        store,
        start,
        end,
        exchanges,
        data_type=args.data_type,
        verify_rows=args.verify,
        verify_hashes=args.verify,
        on_no_targets=lambda day, exchange, why: without_targets.append((day, exchange, why)),
    )
    elapsed = time.perf_counter() - started
    gaps = report.filter(pl.col("status").is_in(GAP_STATUSES))
    problems = report.filter(~pl.col("status").is_in(ACCEPTABLE_STATUSES)).height
    allow_empty = _allow_empty(settings)
    unplanned = sorted(w for w in without_targets if w[2] == NO_TARGETS_FILE or not allow_empty)

    say: Callable[[str], None] = print if fmt == "table" else (lambda s: print(s, file=sys.stderr))
    if fmt == "table":
        with pl.Config(
            tbl_rows=200, tbl_cols=-1, tbl_hide_dataframe_shape=True, tbl_hide_column_data_types=True
        ):
            say(f"missing-data report {start}..{end} for {', '.join(exchanges)} ({store.root})")
            say(str(summarize(report)))
            if gaps.height:
                say(
                    str(
                        gaps.select(
                            "day", "exchange", "data_type", "instrument_key", "status", "detail"
                        ).head(args.worst)
                    )
                )
    else:
        full = with_paths(report, store).sort("exchange", "day", "data_type", "instrument_key")
        if fmt == "csv":
            full.write_csv(sys.stdout)
        else:
            full.write_ndjson(sys.stdout)
        sys.stdout.flush()
    for day, exchange, why in unplanned:
        say(f"{day} {exchange}: {why}")
    say(
        f"{report.height} expected files, {gaps.height} gaps ({problems} problems), "
        f"{len(unplanned)} exchange-days without targets, computed in {elapsed:.2f} s"
    )
    if args.output:
        out = with_paths(report, store)
        if args.output.suffix == ".parquet":
            out.write_parquet(args.output)
        elif args.output.suffix == ".jsonl":
            out.write_ndjson(args.output)
        else:
            out.write_csv(args.output)
        say(f"wrote {report.height} rows to {args.output}")
    return EXIT_GAPS if problems or unplanned else EXIT_OK
