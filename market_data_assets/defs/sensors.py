"""tardis_new_days: request runs for the days Tardis has newly exported, and a daily fallback schedule.

Tardis exports a day's files around 06:00 UTC the next day, but the clock is not trusted:
``datasets.exportedUntil`` in each exchange's details says how far exports reach. A day D is
complete once ``exportedUntil`` reaches D+1 00:00.

For each newly complete day D of an exchange the sensor requests two runs:
- ``ingest|D|EX``: definitions, targets and raw ticks of D;
- ``process|D-1|EX``: candles, book snapshots, warehouse and missing-data report of D-1, which
  could not be final before D's files arrived (they hold D-1's last trades, see docs/CANDLES.md).
The cursor (JSON: exchange -> last day requested) makes every day requested once; the run keys
make a lost cursor harmless too (Dagster never launches a run key twice for a sensor).
"""

import json
from datetime import date, datetime, timedelta

import dagster as dg

from market_data_assets.defs.jobs import INGEST_KEYS, PROCESS_KEYS, daily_job
from market_data_assets.defs.resources import MarketDataResource
from market_data_assets.partitions import partition_key
from market_data_assets.settings import Settings


def last_complete_day(exchange_details: dict) -> date | None:
    """The last day whose files are all exported, from ``datasets.exportedUntil``."""
    raw = (exchange_details.get("datasets") or {}).get("exportedUntil")
    if not raw:
        return None
    until = datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    return until.date() - timedelta(days=1)


def plan_requests(
    settings: Settings, cursor: dict[str, str], available: dict[str, date | None], today: date
) -> tuple[list[dg.RunRequest], dict[str, str]]:
    """Pure planning: the run requests for newly complete days, and the advanced cursor."""
    requests: list[dg.RunRequest] = []
    new_cursor = dict(cursor)
    last_partition = settings.end_date or today
    for exchange in settings.exchanges:
        last = available.get(exchange)
        if last is None:
            continue
        last = min(last, last_partition)
        if exchange in cursor:
            first = date.fromisoformat(cursor[exchange]) + timedelta(days=1)
            process_from = first - timedelta(days=1)  # the cursor's day was ingested by an earlier tick
        else:
            first = max(settings.start_date, last - timedelta(days=settings.sensor_lookback_days - 1))
            process_from = first
        day = first
        while day <= last:
            requests.append(
                dg.RunRequest(
                    run_key=f"ingest|{day}|{exchange}",
                    partition_key=partition_key(day, exchange),
                    asset_selection=INGEST_KEYS,
                    tags={"market_data/stage": "ingest", "market_data/exchange": exchange},
                )
            )
            previous = day - timedelta(days=1)
            if previous >= process_from:
                requests.append(
                    dg.RunRequest(
                        run_key=f"process|{previous}|{exchange}",
                        partition_key=partition_key(previous, exchange),
                        asset_selection=PROCESS_KEYS,
                        tags={"market_data/stage": "process", "market_data/exchange": exchange},
                    )
                )
            day += timedelta(days=1)
        if last >= first:
            new_cursor[exchange] = last.isoformat()
    return requests, new_cursor


@dg.sensor(
    job=daily_job,
    minimum_interval_seconds=15 * 60,
    description="Polls each exchange's datasets.exportedUntil and requests the newly exported days "
    "(ingest D, then process D-1). Cursor: exchange -> last day requested.",
    default_status=dg.DefaultSensorStatus.STOPPED,
)
def tardis_new_days(context: dg.SensorEvaluationContext, market_data: MarketDataResource) -> dg.SensorResult:
    settings = market_data.settings()
    cursor = json.loads(context.cursor) if context.cursor else {}

    def skipped(exchange: str, exc: Exception) -> None:
        context.log.warning(f"{exchange}: exchange details unavailable ({exc}); skipped this tick")

    details = market_data.exchange_details(settings.exchanges, on_error=skipped)
    available = {ex: last_complete_day(d) if d is not None else None for ex, d in details.items()}
    requests, new_cursor = plan_requests(settings, cursor, available, today=datetime.utcnow().date())
    if not requests:
        return dg.SensorResult(
            skip_reason=dg.SkipReason("no newly exported day"), cursor=json.dumps(new_cursor)
        )
    return dg.SensorResult(run_requests=requests, cursor=json.dumps(new_cursor, sort_keys=True))


daily_schedule = dg.build_schedule_from_partitioned_job(
    daily_job,
    hour_of_day=7,
    minute_of_hour=0,
    name="daily_fallback_schedule",
    description="Fallback if the sensor is off: every day at 07:00 UTC, the whole graph for yesterday on every "
    "exchange (Tardis exports a day around 06:00 UTC the next day).",
)

SENSORS = [tardis_new_days]
SCHEDULES = [daily_schedule]
