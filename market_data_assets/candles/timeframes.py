"""The timeframe table: one row per candle timeframe, with its duration and the timeframe it rolls up.

Seven assets, seven output folders and the roll-up edges are all generated from this table, so
adding a timeframe is one line here (``TIMEFRAMES``, which the storage layout validates against,
follows). Every
duration divides the next coarser one and divides a UTC day, which is what lets a coarser bucket
be exactly the union of the finer buckets inside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from market_data_assets.days import US_PER_DAY, US_PER_SECOND


@dataclass(frozen=True)
class Timeframe:
    name: str
    seconds: int
    finer: str | None
    """The timeframe this one is rolled up from; ``None`` for the one computed from ticks."""

    @property
    def duration(self) -> timedelta:
        return timedelta(seconds=self.seconds)

    @property
    def us(self) -> int:
        """Bucket width in microseconds: buckets are ``epoch_us // us * us``."""
        return self.seconds * US_PER_SECOND

    @property
    def buckets_per_day(self) -> int:
        return US_PER_DAY // self.us


TIMEFRAME_TABLE: tuple[Timeframe, ...] = (
    Timeframe("15s", 15, None),
    # Every roll-up reads the 15s slice: a roll-up's cost is per file (read and write), not per row,
    # so reading 15s instead of the next finer slice costs nothing, and the six roll-ups are
    # independent steps that a run executes side by side instead of a chain of six.
    Timeframe("1m", 60, "15s"),
    Timeframe("5m", 300, "15s"),
    Timeframe("15m", 900, "15s"),
    Timeframe("1h", 3_600, "15s"),
    Timeframe("4h", 14_400, "15s"),
    Timeframe("24h", 86_400, "15s"),
)
TIMEFRAMES: tuple[str, ...] = tuple(tf.name for tf in TIMEFRAME_TABLE)
"""The timeframe names, finest first."""
BY_NAME: dict[str, Timeframe] = {tf.name: tf for tf in TIMEFRAME_TABLE}
BASE_TIMEFRAME: Timeframe = TIMEFRAME_TABLE[0]


def get_timeframe(name: str) -> Timeframe:
    try:
        return BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown timeframe {name!r}; known: {', '.join(BY_NAME)}") from None


def _check_table() -> None:
    """Fail at import if a duration does not nest."""
    for tf in TIMEFRAME_TABLE:
        if US_PER_DAY % tf.us:
            raise RuntimeError(f"timeframe {tf.name} does not divide a day")
        if tf.finer is not None and tf.us % BY_NAME[tf.finer].us:
            raise RuntimeError(f"timeframe {tf.name} is not a multiple of its finer {tf.finer}")


_check_table()
