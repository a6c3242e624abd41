"""tardis_new_days: runs for the days Tardis has newly exported (planned by ``new_days.py``), and a
daily fallback schedule."""

import json
from datetime import datetime

import dagster as dg
from dagster._core.definitions.partitions.partitioned_schedule import (
    UnresolvedPartitionedAssetScheduleDefinition,
)

from market_data_assets.defs.jobs import AssetJobs
from market_data_assets.defs.resources import MarketDataResource
from market_data_assets.new_days import PlannedRun, last_complete_day, plan_new_days
from market_data_assets.partitions import partition_key


def sensors_and_schedules(
    jobs: AssetJobs,
) -> tuple[
    list[dg.SensorDefinition], list[UnresolvedPartitionedAssetScheduleDefinition | dg.ScheduleDefinition]
]:
    """``tardis_new_days`` and ``daily_fallback_schedule``, both over ``jobs``."""

    def _run_request(run: PlannedRun) -> dg.RunRequest:
        return dg.RunRequest(
            run_key=run.run_key,
            partition_key=partition_key(run.day, run.exchange),
            asset_selection=jobs.ingest_keys if run.stage == "ingest" else jobs.process_keys,
            tags={"market_data/stage": run.stage, "market_data/exchange": run.exchange},
        )

    @dg.sensor(
        job=jobs.daily,
        minimum_interval_seconds=15 * 60,
        description="Polls each exchange's datasets.exportedUntil and requests the newly exported days "
        "(ingest D, then process D-1). Cursor: exchange -> last day requested.",
        default_status=dg.DefaultSensorStatus.STOPPED,
    )
    def tardis_new_days(
        context: dg.SensorEvaluationContext, market_data: MarketDataResource
    ) -> dg.SensorResult:
        settings = market_data.settings
        cursor = json.loads(context.cursor) if context.cursor else {}

        def skipped(exchange: str, exc: Exception) -> None:
            context.log.warning(f"{exchange}: exchange details unavailable ({exc}); skipped this tick")

        details = market_data.exchange_details(settings.exchanges, on_error=skipped)
        available = {ex: last_complete_day(d) if d is not None else None for ex, d in details.items()}
        planned, new_cursor = plan_new_days(settings, cursor, available, today=datetime.utcnow().date())
        requests = [_run_request(run) for run in planned]
        if not requests:
            return dg.SensorResult(
                skip_reason=dg.SkipReason("no newly exported day"), cursor=json.dumps(new_cursor)
            )
        return dg.SensorResult(run_requests=requests, cursor=json.dumps(new_cursor, sort_keys=True))

    daily_schedule = dg.build_schedule_from_partitioned_job(
        jobs.daily,
        hour_of_day=7,
        minute_of_hour=0,
        name="daily_fallback_schedule",
        description="Fallback if the sensor is off: every day at 07:00 UTC, the whole graph for yesterday on every "
        "exchange (Tardis exports a day around 06:00 UTC the next day).",
    )

    return [tardis_new_days], [daily_schedule]
