"""UTC days as the lake cuts them: the one definition of where a day starts and ends.

Partitions, Tardis files, candle grids, timestamp checks and the sandbox all split time at 00:00
UTC; they take the boundaries from here, as datetimes or as microseconds since the epoch (the
unit of every Tardis timestamp).
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


def day_start_us(day: date) -> int:
    """Microseconds since the epoch at 00:00 UTC of ``day``."""
    return to_us(day_start(day))
