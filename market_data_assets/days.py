"""UTC days and Tardis time: the one definition of where a day starts and ends, how Tardis spells
an instant, and how far a tick's timestamps may stray from its day.

Partitions, Tardis files, candle grids, timestamp checks, the warehouse slices and the sandbox all
split time at 00:00 UTC; they take the boundaries from here, as datetimes or as microseconds since
the epoch (the unit of every Tardis timestamp).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

US_PER_SECOND = 1_000_000
US_PER_DAY = 86_400 * US_PER_SECOND
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def day_start(day: date) -> datetime:
    """00:00 UTC of ``day``."""
    return datetime.combine(day, time(), tzinfo=UTC)


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """``[start, end)`` of ``day`` in UTC."""
    start = day_start(day)
    return start, start + timedelta(days=1)


def to_us(moment: datetime) -> int:
    """Microseconds since the epoch of an aware ``moment`` (exact, no float rounding)."""
    return (moment - _EPOCH) // timedelta(microseconds=1)


def from_us(us: int) -> datetime:
    """The aware UTC datetime of ``us`` microseconds since the epoch (exact)."""
    return _EPOCH + timedelta(microseconds=us)


def day_start_us(day: date) -> int:
    """Microseconds since the epoch at 00:00 UTC of ``day``."""
    return to_us(day_start(day))


# --- Tardis's spelling of an instant -----------------------------------------------------------

TARDIS_TIME_POLARS_FORMAT = "%Y-%m-%dT%H:%M:%S%.fZ"
"""``2025-01-31T00:00:00.000Z`` as a polars (chrono) format: the vectorized form of the parse below."""


def parse_tardis_time(text: str) -> datetime:
    """``2024-03-05T00:00:00.000Z`` (or any ISO-8601 instant, an offset instead of ``Z``) as an aware
    datetime; an instant without an offset is UTC, as everywhere in Tardis. Raises ValueError."""
    moment = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def format_tardis_time(moment: datetime) -> str:
    """Tardis spelling of a UTC instant: ``2024-03-05T00:00:00.000Z`` (milliseconds)."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


# --- how far a tick may stray from its day -------------------------------------------------------

LOCAL_TIMESTAMP_TOLERANCE = timedelta(minutes=1)
"""Tardis splits daily files by ``local_timestamp``, so it must lie in [day, day+1); the minute of
tolerance on either side absorbs a receiver clock correction at midnight, not a wrong file."""

EXCHANGE_TIMESTAMP_SLACK = timedelta(hours=1)
"""The exchange ``timestamp`` of a row may precede its day (a trade stamped 23:59:59.998 arrives
after midnight and sits in the next day's file) or run slightly ahead of Tardis' clock. An hour
either side is far beyond any real latency or skew yet catches a file of the wrong day and unit
errors (nanoseconds read as microseconds land millennia away). Readers widen a time range by it to
find every file that can hold an instant."""
