"""missing_data_report and the data-quality asset checks: wiring only (the rules are in
``quality/missing.py`` and ``quality/checks.py``)."""

import dagster as dg
import polars as pl

from market_data_assets.defs.candles import RAW_TICKS_KEY, candles_asset_key
from market_data_assets.defs.common import partitioned_asset
from market_data_assets.defs.metadata import markdown_preview
from market_data_assets.defs.resources import MarketDataResource
from market_data_assets.partitions import Partitioning, parse_partition_key, partitions_of_context
from market_data_assets.quality.checks import (
    candle_volume_mismatches,
    candles_outside_day,
    duplicate_instrument_keys,
    raw_ticks_completeness,
    summarize_report,
    targets_allow_empty,
)
from market_data_assets.quality.missing import report_for_day
from market_data_assets.tardis.incidents import Incident, incidents_from_details


def _incidents(market_data: MarketDataResource, exchanges: set[str], log) -> dict[str, list[Incident]]:
    def unavailable(exchange: str, exc: Exception) -> None:
        log.warning(f"{exchange}: incident reports unavailable ({exc}); gaps will not be explained by them")

    details = market_data.exchange_details(exchanges, on_error=unavailable)
    return {ex: incidents_from_details(d) for ex, d in details.items()}


def _check_partitions(context: dg.AssetCheckExecutionContext) -> list:
    return [parse_partition_key(k) for k in context.partition_keys]


def quality_assets(partitioning: Partitioning) -> list[dg.AssetsDefinition]:
    """``missing_data_report``."""

    @partitioned_asset(
        partitioning,
        group="quality",
        kinds={"polars", "parquet"},
        io_manager_key="layout_io_manager",
        deps=[dg.AssetKey("download_targets"), RAW_TICKS_KEY],
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
        summary = summarize_report(report)
        context.add_output_metadata(
            {
                "dagster/row_count": dg.MetadataValue.int(report.height),
                "gaps": dg.MetadataValue.int(summary.gaps),
                **{f"count_{s}": dg.MetadataValue.int(n) for s, n in summary.counts.items()},
                "worst_gaps": markdown_preview(summary.worst, rows=20),
            }
        )
        return frames[parts[0].key] if len(parts) == 1 else frames

    return [missing_data_report]


def quality_checks(partitioning: Partitioning) -> list[dg.AssetChecksDefinition]:
    """The data-quality checks of raw ticks, instrument definitions and candles."""

    @dg.asset_check(
        asset=RAW_TICKS_KEY,
        blocking=True,
        partitions_def=partitioning.partitions_def,
        description="Every download target of the partition is stored and matches its manifest (blocking: candles "
        "are not built on a hole). Empty-at-source and incident-explained gaps pass. A partition without "
        "download targets, or whose targets select nothing (a typo in the targets file looks exactly like "
        "that), fails unless the targets file says `allow_empty: true`.",
    )
    def raw_ticks_complete(
        context: dg.AssetCheckExecutionContext, market_data: MarketDataResource
    ) -> dg.AssetCheckResult:
        settings = market_data.settings
        result = raw_ticks_completeness(
            market_data.store(),
            _check_partitions(context),
            allow_empty=targets_allow_empty(settings.targets_file),
        )
        problems = result.problems
        return dg.AssetCheckResult(
            passed=result.passed,
            metadata={
                "expected_files": result.expected,
                "problems": problems.height,
                "partitions_without_targets": dg.MetadataValue.json(result.unplanned),
                "problem_files": markdown_preview(
                    problems.select("day", "data_type", "instrument_key", "status", "detail")
                    if problems.height
                    else problems,
                    rows=20,
                ),
            },
        )

    @dg.asset_check(
        asset=dg.AssetKey("instrument_definitions"),
        partitions_def=partitioning.partitions_def,
        description="Canonical instrument keys are unique per venue and day.",
    )
    def instrument_keys_unique(
        context: dg.AssetCheckExecutionContext, market_data: MarketDataResource
    ) -> dg.AssetCheckResult:
        rows, duplicates = duplicate_instrument_keys(market_data.store(), _check_partitions(context))
        return dg.AssetCheckResult(
            passed=not duplicates,
            metadata={"instruments": rows, "duplicate_keys": dg.MetadataValue.json(duplicates[:50])},
        )

    @dg.asset_check(
        asset=candles_asset_key("24h"),
        partitions_def=partitioning.partitions_def,
        description="Daily candle volume equals the sum of raw trade amounts with an exchange timestamp on that day "
        "(including the next day's file head), per instrument.",
    )
    def candle_volume_matches_raw_trades(
        context: dg.AssetCheckExecutionContext, market_data: MarketDataResource
    ) -> dg.AssetCheckResult:
        compared, mismatches = candle_volume_mismatches(market_data.store(), _check_partitions(context))
        return dg.AssetCheckResult(
            passed=not mismatches,
            metadata={"instruments_compared": compared, "mismatches": dg.MetadataValue.json(mismatches[:50])},
        )

    @dg.asset_check(
        asset=candles_asset_key("15s"),
        partitions_def=partitioning.partitions_def,
        description="Every candle bucket lies inside its partition day (the day-boundary rule puts pre-midnight "
        "trades from the next day's file into this day, and nothing after midnight).",
    )
    def candle_timestamps_inside_day(
        context: dg.AssetCheckExecutionContext, market_data: MarketDataResource
    ) -> dg.AssetCheckResult:
        files, outside = candles_outside_day(market_data.store(), _check_partitions(context))
        return dg.AssetCheckResult(
            passed=not outside, metadata={"files": files, "outside_day": dg.MetadataValue.json(outside[:50])}
        )

    return [
        raw_ticks_complete,
        instrument_keys_unique,
        candle_volume_matches_raw_trades,
        candle_timestamps_inside_day,
    ]
