"""Which runs a newly exported Tardis day calls for: the planner behind the ``tardis_new_days`` sensor.

Tardis exports a day's files around 06:00 UTC the next day, but the clock is not trusted:
``datasets.exportedUntil`` in each exchange's details says how far exports reach. A day D is
complete once ``exportedUntil`` reaches D+1 00:00.

For each newly complete day D of an exchange two runs are planned:
- ``ingest|D|EX``: definitions, targets and raw ticks of D;
- ``process|D-1|EX``: candles, book snapshots, warehouse and missing-data report of D-1, which
  could not be final before D's files arrived (they hold D-1's last trades, see docs/CANDLES.md).
The cursor (exchange -> last day requested) makes every day planned once. Plain Python (no
Dagster), so the rule is tested without a server; ``defs/sensors.py`` turns the plan into runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Literal

from market_data_assets.days import parse_tardis_time
from market_data_assets.settings import Settings

Stage = Literal["ingest", "process"]


@dataclass(frozen=True)
class PlannedRun:
    stage: Stage
    day: date
    exchange: str

    @property
    def run_key(self) -> str:
        """Unique per stage, day and exchange: Dagster never launches a run key twice for a sensor,
        so a lost cursor cannot launch a day twice either."""
        return f"{self.stage}|{self.day}|{self.exchange}"


def last_complete_day(exchange_details: dict) -> date | None:
    """The last day whose files are all exported, from ``datasets.exportedUntil``."""
    raw = (exchange_details.get("datasets") or {}).get("exportedUntil")
    if not raw:
        return None
    return parse_tardis_time(raw).date() - timedelta(days=1)


def plan_new_days(
    settings: Settings, cursor: dict[str, str], available: dict[str, date | None], today: date
) -> tuple[list[PlannedRun], dict[str, str]]:
    """The runs for the days newly complete since ``cursor``, and the advanced cursor.

    ``available`` is each exchange's last complete day (None: unknown this tick, skipped). A first
    tick of an exchange looks back ``sensor_lookback_days`` (never before ``start_date``); no day
    after ``end_date`` (or ``today``) is planned.
    """
    planned: list[PlannedRun] = []
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
            planned.append(PlannedRun("ingest", day, exchange))
            previous = day - timedelta(days=1)
            if previous >= process_from:
                planned.append(PlannedRun("process", previous, exchange))
            day += timedelta(days=1)
        if last >= first:
            new_cursor[exchange] = last.isoformat()
    return planned, new_cursor
