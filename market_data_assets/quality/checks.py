"""The data-quality rules behind the asset checks and the report's summary, as plain functions.

``defs/quality.py`` only turns these results into Dagster objects (``AssetCheckResult``, metadata);
the rules themselves (what counts as a problem, which statuses pass, how gaps are ranked) live
here, next to the missing-data report they read, and are tested without Dagster.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Protocol

import polars as pl

from market_data_assets.days import day_bounds
from market_data_assets.instruments.targets import load_targets_config
from market_data_assets.polars_arrow import to_polars
from market_data_assets.quality.missing import (
    ACCEPTABLE_STATUSES,
    GAP_STATUSES,
    NO_TARGETS_FILE,
    STATUSES,
    report_for_day,
)
from market_data_assets.storage import layout
from market_data_assets.storage.base import ObjectStore
from market_data_assets.storage.frames import scan_files

VOLUME_RELATIVE_TOLERANCE = 1e-9
"""Candle volume and the raw trades' sum may differ by float rounding only (relative, at least 1.0)."""


class Partition(Protocol):
    """A (day, exchange) partition as the checks see it (``partitions.DayExchange`` is one)."""

    @property
    def day(self) -> date: ...

    @property
    def exchange(self) -> str: ...

    @property
    def key(self) -> str: ...


# --- the missing-data report's summary ------------------------------------------------------


@dataclass(frozen=True)
class ReportSummary:
    counts: dict[str, int]
    """Rows per status, every status present (0 when none)."""
    gaps: int
    """Rows whose status is a gap (``GAP_STATUSES``)."""
    worst: pl.DataFrame
    """The gaps, worst status first (the order of ``GAP_STATUSES``), then day and instrument."""


def summarize_report(report: pl.DataFrame) -> ReportSummary:
    counts = dict.fromkeys(STATUSES, 0)
    counts.update({status: int(n) for status, n in report.group_by("status").len().iter_rows()})
    gaps = report.filter(pl.col("status").is_in(GAP_STATUSES))
    worst = (
        gaps.with_columns(
            pl.col("status").replace_strict({s: i for i, s in enumerate(GAP_STATUSES)}).alias("_rank")
        )
        .sort("_rank", "day", "instrument_key")
        .select("day", "data_type", "instrument_key", "status", "detail")
    )
    return ReportSummary(counts, gaps.height, worst)


# --- raw_ticks_complete -------------------------------------------------------------------------


def targets_allow_empty(targets_file: str | Path) -> bool:
    """Whether the targets file says ``allow_empty: true`` (an unreadable file allows nothing)."""
    try:
        return load_targets_config(targets_file).allow_empty
    except ValueError:
        return False


@dataclass(frozen=True)
class Completeness:
    expected: int
    """Download targets (expected files) of the partitions."""
    problems: pl.DataFrame
    """Report rows whose status does not pass (``ACCEPTABLE_STATUSES``)."""
    unplanned: list[str] = field(default_factory=list)
    """``DAY|EXCHANGE: why`` for partitions without targets, or whose targets select nothing
    (a typo in the targets file looks exactly like that) unless ``allow_empty``."""

    @property
    def passed(self) -> bool:
        return self.problems.height == 0 and not self.unplanned


def raw_ticks_completeness(
    store: ObjectStore, parts: Sequence[Partition], *, allow_empty: bool
) -> Completeness:
    """Every download target stored and matching its manifest; empty-at-source and incident-explained
    gaps pass."""
    problems: list[pl.DataFrame] = []
    expected = 0
    unplanned: list[str] = []

    def no_targets(day: date, exchange: str, why: str) -> None:
        if why == NO_TARGETS_FILE or not allow_empty:
            unplanned.append(f"{day}|{exchange}: {why}")

    for p in parts:
        report = report_for_day(store, p.day, p.exchange, on_no_targets=no_targets)
        expected += report.height
        problems.append(report.filter(~pl.col("status").is_in(ACCEPTABLE_STATUSES)))
    return Completeness(expected, pl.concat(problems) if problems else pl.DataFrame(), unplanned)


# --- instrument_keys_unique ---------------------------------------------------------------------


def duplicate_instrument_keys(store: ObjectStore, parts: Sequence[Partition]) -> tuple[int, list[str]]:
    """(instruments read, ``PARTITION: KEY`` for every key defined twice on a venue and day)."""
    duplicates: list[str] = []
    rows = 0
    for p in parts:
        keys = to_polars(
            store.read_parquet(layout.instruments_path(p.day, p.exchange), columns=["instrument_key"])
        )
        rows += keys.height
        dup = keys.filter(pl.col("instrument_key").is_duplicated())["instrument_key"].unique().to_list()
        duplicates.extend(f"{p.key}: {k}" for k in dup)
    return rows, duplicates


# --- candle_volume_matches_raw_trades -----------------------------------------------------------


def _exchange_paths(store: ObjectStore, folder: str, exchange: str) -> list[str]:
    return [o.path for o in layout.exchange_files(store, folder, exchange)]


def _volume_by_key(
    store: ObjectStore, paths: list[str], column: str, alias: str, day: date | None = None
) -> pl.DataFrame:
    """Σ ``column`` per instrument over ``paths`` (rows with a timestamp on ``day`` only, if given):
    one polars scan over every file (local or ``gs://``), the day filter pushed into the footers."""
    if not paths:
        return pl.DataFrame(schema={"instrument_key": pl.String, alias: pl.Float64})
    scan = scan_files(store, paths, ["timestamp", column, "instrument_key"])
    if day is not None:
        start, end = day_bounds(day)
        scan = scan.filter((pl.col("timestamp") >= start) & (pl.col("timestamp") < end))
    return (
        scan.group_by(pl.col("instrument_key").cast(pl.String))
        .agg(pl.col(column).sum().alias(alias))
        .collect()
    )


def candle_volume_mismatches(store: ObjectStore, parts: Sequence[Partition]) -> tuple[int, list[dict]]:
    """(instruments compared, one row per instrument whose 24h candle volume is not the sum of its raw
    trade amounts stamped on the day)."""
    mismatches: list[dict] = []
    compared = 0
    for p in parts:
        # Trades of day D sit in file D and at the top of file D+1 (Tardis splits by local_timestamp).
        trade_files = [
            path
            for file_day in (p.day, p.day + timedelta(days=1))
            for path in _exchange_paths(store, layout.raw_ticks_dir(file_day, "trades"), p.exchange)
        ]
        raw = _volume_by_key(store, trade_files, "amount", "raw_volume", day=p.day)
        candle_files = _exchange_paths(store, layout.candles_dir(p.day, "24h"), p.exchange)
        candles = _volume_by_key(store, candle_files, "volume", "candle_volume")
        joined = raw.join(candles, on="instrument_key", how="full", coalesce=True).fill_null(0.0)
        compared += joined.height
        bad = joined.filter(
            (pl.col("raw_volume") - pl.col("candle_volume")).abs()
            > VOLUME_RELATIVE_TOLERANCE * pl.col("raw_volume").abs().clip(1.0)
        )
        mismatches.extend({"partition": p.key, **r} for r in bad.iter_rows(named=True))
    return compared, mismatches


# --- candle_timestamps_inside_day -----------------------------------------------------------------


def candles_outside_day(store: ObjectStore, parts: Sequence[Partition]) -> tuple[int, list[str]]:
    """(15s candle files read, ``FILE: LO .. HI`` for each file with a bucket outside its day)."""
    outside: list[str] = []
    files = 0
    for p in parts:
        start, end = day_bounds(p.day)
        paths = _exchange_paths(store, layout.candles_dir(p.day, "15s"), p.exchange)
        files += len(paths)
        if not paths:
            continue
        ranges = (
            scan_files(store, paths, ["timestamp"], path_column="file")
            .group_by("file")
            .agg(pl.col("timestamp").min().alias("lo"), pl.col("timestamp").max().alias("hi"))
            .filter((pl.col("lo") < start) | (pl.col("hi") >= end))
            .sort("file")
            .collect()
        )
        outside.extend(f"{r['file']}: {r['lo']} .. {r['hi']}" for r in ranges.iter_rows(named=True))
    return files, outside
