"""Tardis incident reports (``incidentReports`` in exchange details): known gaps and why.

One type for both sides: the sandbox serves them (``as_json``) and the missing-data report reads
them (``incidents_from_details``) to explain gaps.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from market_data_assets.days import day_bounds, format_tardis_time, parse_tardis_time


@dataclass(frozen=True)
class Incident:
    start: datetime
    end: datetime
    status: str
    """resolved, wontfix or unresolved."""
    details: str

    def overlaps(self, day: date) -> bool:
        start, end = day_bounds(day)
        return self.start < end and self.end > start

    def as_json(self) -> dict[str, str]:
        return {
            "from": format_tardis_time(self.start),
            "to": format_tardis_time(self.end),
            "status": self.status,
            "details": self.details,
        }


def incidents_from_details(exchange_details: dict | None) -> list[Incident]:
    """Tardis ``incidentReports`` -> Incident list (malformed entries are skipped, not fatal)."""
    out: list[Incident] = []
    for raw in (exchange_details or {}).get("incidentReports") or []:
        try:
            start = parse_tardis_time(raw["from"])
            end = parse_tardis_time(raw["to"])
        except (KeyError, ValueError, TypeError):
            continue
        out.append(Incident(start, end, str(raw.get("status", "")), str(raw.get("details", ""))))
    return out
