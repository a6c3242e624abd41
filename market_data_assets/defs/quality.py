"""missing_data_report and the data-quality asset checks."""

from datetime import date, timedelta

import dagster as dg
import polars as pl

from market_data_assets.days import day_bounds
from market_data_assets.defs.candles import CANDLE_ASSET_BY_TIMEFRAME
from market_data_assets.defs.instruments import download_targets, instrument_definitions
from market_data_assets.defs.metadata import markdown_preview
from market_data_assets.defs.raw_ticks import raw_ticks
from market_data_assets.defs.resources import MarketDataResource
from market_data_assets.instruments.targets import load_targets_config
from market_data_assets.partitions import (
    backfill_policy,
    date_exchange_partitions,
    parse_partition_key,
    partitions_of_context,
)
from market_data_assets.polars_arrow import to_polars
from market_data_assets.quality.missing import (
    ACCEPTABLE_STATUSES,
    GAP_STATUSES,
    NO_TARGETS_FILE,
    STATUSES,
    report_for_day,
)
from market_data_assets.storage import layout
from market_data_assets.storage.frames import scan_files
from market_data_assets.tardis.incidents import Incident, incidents_from_details


def _incidents(market_data: MarketDataResource, exchanges: set[str], log) -> dict[str, list[Incident]]:
    def unavailable(exchange: str, exc: Exception) -> None:
        log.warning(f"{exchange}: incident reports unavailable ({exc}); gaps will not be explained by them")

    details = market_data.exchange_details(exchanges, on_error=unavailable)
    return {ex: incidents_from_details(d) for ex, d in details.items()}


@dg.asset(
    partitions_def=date_exchange_partitions,
    io_manager_key="layout_io_manager",
    deps=[download_targets, raw_ticks],
    group_name="quality",
    kinds={"polars", "parquet"},
    backfill_policy=backfill_policy,
    owners=["team:market-data"],
    description=(
        "Every expected raw tick file (the day's download targets) with its status: present, missing, "
        "empty_at_source, failed_download, incomplete (size/rows differ from the manifest, or unreadable) or "
        "explained_by_incident (Tardis incident report quoted). "
        "`missing_data_reports/by_date/day-D/venue-EX/report.parquet`."
    ),
)
def missing_data_report(
    context: dg.AssetExecutionContext, market_data: MarketDataResource
):  # one DataFrame, or dict[partition_key, DataFrame] for a multi-partition run
    parts = partitions_of_context(context)
    store = market_data.store()
    incidents = _incidents(market_data, {p.exchange for p in parts}, context.log)
    frames = {
        p.key: report_for_day(store, p.day, p.exchange, incidents=incidents[p.exchange], verify_rows=True)
        for p in parts
    }
    report = pl.concat(list(frames.values()))
    counts = dict.fromkeys(STATUSES, 0)
    counts.update(dict(report.group_by("status").len().iter_rows()))
    gaps = report.filter(pl.col("status").is_in(GAP_STATUSES))
    worst = (
        gaps.with_columns(
            pl.col("status").replace_strict({s: i for i, s in enumerate(GAP_STATUSES)}).alias("_rank")
        )
        .sort("_rank", "day", "instrument_key")
        .select("day", "data_type", "instrument_key", "status", "detail")
    )
    context.add_output_metadata(
        {
            "dagster/row_count": dg.MetadataValue.int(report.height),
            "gaps": dg.MetadataValue.int(gaps.height),
            **{f"count_{s}": dg.MetadataValue.int(int(n)) for s, n in counts.items()},
            "worst_gaps": markdown_preview(worst, rows=20),
        }
    )
    return frames[parts[0].key] if len(parts) == 1 else frames


# --- asset checks ----------------------------------------------------------------------------


def _check_partitions(context: dg.AssetCheckExecutionContext) -> list:
    return [parse_partition_key(k) for k in context.partition_keys]


def _allow_empty(market_data: MarketDataResource) -> bool:
    try:
        return load_targets_config(market_data.settings().targets_file).allow_empty
    except ValueError:
        return False


@dg.asset_check(
    asset=raw_ticks,
    blocking=True,
    partitions_def=date_exchange_partitions,
    description="Every download target of the partition is stored and matches its manifest (blocking: candles "
    "are not built on a hole). Empty-at-source and incident-explained gaps pass. A partition without "
    "download targets, or whose targets select nothing (a typo in the targets file looks exactly like "
    "that), fails unless the targets file says `allow_empty: true`.",
)
def raw_ticks_complete(
    context: dg.AssetCheckExecutionContext, market_data: MarketDataResource
) -> dg.AssetCheckResult:
    store = market_data.store()
    bad: list[pl.DataFrame] = []
    expected = 0
    no_targets: list[str] = []
    allow_empty = _allow_empty(market_data)

    def unplanned(day: date, exchange: str, why: str) -> None:
        if why == NO_TARGETS_FILE or not allow_empty:
            no_targets.append(f"{day}|{exchange}: {why}")

    for p in _check_partitions(context):
        report = report_for_day(store, p.day, p.exchange, on_no_targets=unplanned)
        expected += report.height
        bad.append(report.filter(~pl.col("status").is_in(ACCEPTABLE_STATUSES)))
    failures = pl.concat(bad) if bad else pl.DataFrame()
    return dg.AssetCheckResult(
        passed=failures.height == 0 and not no_targets,
        metadata={
            "expected_files": expected,
            "problems": failures.height,
            "partitions_without_targets": dg.MetadataValue.json(no_targets),
            "problem_files": markdown_preview(
                failures.select("day", "data_type", "instrument_key", "status", "detail")
                if failures.height
                else failures,
                rows=20,
            ),
        },
    )


@dg.asset_check(
    asset=instrument_definitions,
    partitions_def=date_exchange_partitions,
    description="Canonical instrument keys are unique per venue and day.",
)
def instrument_keys_unique(
    context: dg.AssetCheckExecutionContext, market_data: MarketDataResource
) -> dg.AssetCheckResult:
    store = market_data.store()
    duplicates: list[str] = []
    rows = 0
    for p in _check_partitions(context):
        keys = to_polars(
            store.read_parquet(layout.instruments_path(p.day, p.exchange), columns=["instrument_key"])
        )
        rows += keys.height
        dup = keys.filter(pl.col("instrument_key").is_duplicated())["instrument_key"].unique().to_list()
        duplicates.extend(f"{p.key}: {k}" for k in dup)
    return dg.AssetCheckResult(
        passed=not duplicates,
        metadata={"instruments": rows, "duplicate_keys": dg.MetadataValue.json(duplicates[:50])},
    )


def _exchange_files(store, folder: str, exchange: str) -> list[str]:
    """The exchange's files in one layout folder: one listing, keys filtered by the venue prefix."""
    return [o.path for o in layout.exchange_files(store, folder, exchange)]


def _volume_by_key(store, paths: list[str], column: str, alias: str, day: date | None = None) -> pl.DataFrame:
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


@dg.asset_check(
    asset=CANDLE_ASSET_BY_TIMEFRAME["24h"],
    partitions_def=date_exchange_partitions,
    description="Daily candle volume equals the sum of raw trade amounts with an exchange timestamp on that day "
    "(including the next day's file head), per instrument.",
)
def candle_volume_matches_raw_trades(
    context: dg.AssetCheckExecutionContext, market_data: MarketDataResource
) -> dg.AssetCheckResult:
    store = market_data.store()
    mismatches: list[dict] = []
    compared = 0
    for p in _check_partitions(context):
        # Trades of day D sit in file D and at the top of file D+1 (Tardis splits by local_timestamp).
        trade_files = [
            path
            for file_day in (p.day, p.day + timedelta(days=1))
            for path in _exchange_files(store, layout.raw_ticks_dir(file_day, "trades"), p.exchange)
        ]
        raw = _volume_by_key(store, trade_files, "amount", "raw_volume", day=p.day)
        candle_files = _exchange_files(store, layout.candles_dir(p.day, "24h"), p.exchange)
        candles = _volume_by_key(store, candle_files, "volume", "candle_volume")
        joined = raw.join(candles, on="instrument_key", how="full", coalesce=True).fill_null(0.0)
        compared += joined.height
        bad = joined.filter(
            (pl.col("raw_volume") - pl.col("candle_volume")).abs()
            > 1e-9 * pl.col("raw_volume").abs().clip(1.0)
        )
        mismatches.extend({"partition": p.key, **r} for r in bad.iter_rows(named=True))
    return dg.AssetCheckResult(
        passed=not mismatches,
        metadata={"instruments_compared": compared, "mismatches": dg.MetadataValue.json(mismatches[:50])},
    )


@dg.asset_check(
    asset=CANDLE_ASSET_BY_TIMEFRAME["15s"],
    partitions_def=date_exchange_partitions,
    description="Every candle bucket lies inside its partition day (the day-boundary rule puts pre-midnight "
    "trades from the next day's file into this day, and nothing after midnight).",
)
def candle_timestamps_inside_day(
    context: dg.AssetCheckExecutionContext, market_data: MarketDataResource
) -> dg.AssetCheckResult:
    store = market_data.store()
    outside: list[str] = []
    files = 0
    for p in _check_partitions(context):
        start, end = day_bounds(p.day)
        paths = _exchange_files(store, layout.candles_dir(p.day, "15s"), p.exchange)
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
    return dg.AssetCheckResult(
        passed=not outside, metadata={"files": files, "outside_day": dg.MetadataValue.json(outside[:50])}
    )


QUALITY_ASSETS = [missing_data_report]
QUALITY_CHECKS = [
    raw_ticks_complete,
    instrument_keys_unique,
    candle_volume_matches_raw_trades,
    candle_timestamps_inside_day,
]
