"""The date × exchange partitions every asset shares, and parsing of their keys.

Keys are spelled ``"2024-01-15|binance"`` (Dagster sorts dimension names: date, exchange).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import dagster as dg

from market_data_assets.errors import MarketDataError
from market_data_assets.settings import Settings
from market_data_assets.storage.layout import LayoutError, check_exchange

DATE_DIM = "date"
EXCHANGE_DIM = "exchange"


@dataclass(frozen=True)
class Partitioning:
    """The partitions and backfill policy every partitioned asset shares, built once from the
    settings by ``build_definitions`` and handed to each asset factory."""

    partitions_def: dg.MultiPartitionsDefinition
    backfill_policy: dg.BackfillPolicy
    """A backfill becomes runs of MARKET_DATA_BACKFILL_DAYS_PER_RUN partitions each (one GCE VM per
    run in production; see docs/ORCHESTRATION.md for the sharding)."""

    @classmethod
    def of(cls, settings: Settings) -> Partitioning:
        return cls(
            build_partitions_def(settings), dg.BackfillPolicy.multi_run(settings.backfill_days_per_run)
        )


def build_partitions_def(settings: Settings) -> dg.MultiPartitionsDefinition:
    """Days from MARKET_DATA_START_DATE to MARKET_DATA_END_DATE (or today, UTC) × MARKET_DATA_EXCHANGES."""
    end = settings.end_date + timedelta(days=1) if settings.end_date else None
    return dg.MultiPartitionsDefinition(
        {
            DATE_DIM: dg.DailyPartitionsDefinition(
                start_date=settings.start_date.isoformat(),
                end_date=end.isoformat() if end else None,
                end_offset=0 if end else 1,
            ),
            EXCHANGE_DIM: dg.StaticPartitionsDefinition(list(settings.exchanges)),
        }
    )


def partition_key(day: date, exchange: str) -> str:
    """The partition key of ``(day, exchange)``: ``"2024-01-15|binance"``."""
    return f"{day.isoformat()}|{exchange}"


@dataclass(frozen=True)
class DayExchange:
    day: date
    exchange: str

    @property
    def key(self) -> str:
        return partition_key(self.day, self.exchange)


class PartitionKeyError(MarketDataError, ValueError):
    pass


def parse_partition_key(key: str | dg.MultiPartitionKey) -> DayExchange:
    """``"2024-01-15|binance"`` -> DayExchange; a clear error naming a malformed key."""
    if isinstance(key, dg.MultiPartitionKey):
        dims = key.keys_by_dimension
        day_s, exchange = dims.get(DATE_DIM, ""), dims.get(EXCHANGE_DIM, "")
    else:
        parts = str(key).split("|")
        if len(parts) != 2:
            raise PartitionKeyError(f"partition key {key!r} is not 'YYYY-MM-DD|exchange'")
        day_s, exchange = parts
    try:
        day = date.fromisoformat(day_s)
    except ValueError:
        raise PartitionKeyError(f"partition key {key!r}: {day_s!r} is not a YYYY-MM-DD date") from None
    try:
        check_exchange(exchange)
    except LayoutError as exc:
        raise PartitionKeyError(f"partition key {key!r}: {exc}") from None
    return DayExchange(day, exchange)


def partitions_of_context(context: dg.AssetExecutionContext) -> list[DayExchange]:
    """Every (day, exchange) a run covers: one for a single partition, many for a backfill run."""
    if not context.has_partition_key_range and context.has_partition_key:
        return [parse_partition_key(context.partition_key)]
    return sorted((parse_partition_key(k) for k in context.partition_keys), key=lambda p: (p.day, p.exchange))
