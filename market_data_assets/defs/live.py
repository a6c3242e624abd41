"""live_reconciliation: the live 15s candles of (day, exchange) against the batch ones, with a check.

The live service itself is not a Dagster run (``market-data live``, docs/LIVE.md); this asset only
audits what it left in the lake once the batch candles of the day exist.

No ``from __future__ import annotations``: Dagster inspects the asset's signature at definition time.
"""

from datetime import UTC, datetime

import dagster as dg
import polars as pl

from market_data_assets.defs.candles import candles_asset_key
from market_data_assets.defs.common import partitioned_asset
from market_data_assets.defs.resources import MarketDataResource
from market_data_assets.live.freshness import live_lag_seconds, stale
from market_data_assets.live.reconcile import reconcile_lake
from market_data_assets.partitions import Partitioning, partitions_of_context
from market_data_assets.storage import layout

CHECK_NAME = "no_unexplained_live_differences"


def live_assets(partitioning: Partitioning) -> list[dg.AssetsDefinition]:
    """``live_reconciliation`` (with its check)."""

    @partitioned_asset(
        partitioning,
        group="live",
        kinds={"polars"},
        backfill=False,
        deps=[candles_asset_key("15s")],
        check_specs=[dg.AssetCheckSpec(CHECK_NAME, asset="live_reconciliation")],
        description=(
            "Live vs batch 15s candles of the partition, bucket by bucket: equal buckets, differing buckets "
            "with the columns that differ, and whether a recorded live gap covers them. Report at "
            "`live_reconciliation/by_date/day-D/venue-EX/report.parquet`. The check fails when a bucket "
            "outside every recorded gap differs (docs/LIVE.md)."
        ),
    )
    def live_reconciliation(context: dg.AssetExecutionContext, market_data: MarketDataResource):
        store = market_data.store()
        summaries: dict[str, dict[str, int]] = {}
        unexplained: list[str] = []
        for part in partitions_of_context(context):
            result = reconcile_lake(store, part.day, part.exchange, "15s")
            store.write_parquet(
                result.report.to_arrow(), layout.live_reconciliation_path(part.day, part.exchange)
            )
            summaries[part.key] = result.summary()
            bad = result.report.filter(~pl.col("in_gap"))
            unexplained += [
                f"{part.key} {k} {t:%H:%M:%S} {s} {c}"
                for k, t, s, c in bad.head(20)
                .select("instrument_key", "timestamp", "status", "columns")
                .iter_rows()
            ]
            context.log.info(f"{part.key}: {result.summary()}")
        total = {k: sum(s[k] for s in summaries.values()) for k in next(iter(summaries.values()), {})}
        yield dg.MaterializeResult(
            metadata={
                "summary": dg.MetadataValue.json(summaries),
                "dagster/row_count": dg.MetadataValue.int(total.get("differing", 0)),
            }
        )
        yield dg.AssetCheckResult(
            check_name=CHECK_NAME,
            passed=total.get("unexplained", 0) == 0,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={
                "unexplained": dg.MetadataValue.int(total.get("unexplained", 0)),
                "explained_by_gaps": dg.MetadataValue.int(total.get("explained_by_gaps", 0)),
                "examples": dg.MetadataValue.json(unexplained[:20]),
            },
        )

    return [live_reconciliation]


def live_sensors() -> list[dg.SensorDefinition]:
    """``live_freshness``."""

    @dg.sensor(
        name="live_freshness",
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.STOPPED,
        description=(
            "Warns (log + skip reason) when an exchange's newest live 15s candle in the warehouse is older "
            "than MARKET_DATA_LIVE_MAX_LAG_S: the live streamer is down, disconnected or cannot write."
        ),
    )
    def live_freshness(context: dg.SensorEvaluationContext, market_data: MarketDataResource):
        settings = market_data.settings
        warehouse = market_data.warehouse()
        lags = live_lag_seconds(warehouse, datetime.now(UTC))
        late = stale(lags, settings.live_max_lag_s)
        if not late:
            return dg.SkipReason(f"live candles fresh: {lags or 'no live rows yet'}")
        message = ", ".join(f"{ex} {lag:.0f} s behind" for ex, lag in late.items())
        context.log.warning(f"live candles stale (max {settings.live_max_lag_s:.0f} s): {message}")
        return dg.SkipReason(f"STALE live candles (max {settings.live_max_lag_s:.0f} s): {message}")

    return [live_freshness]
