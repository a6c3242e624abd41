"""Run tags the orchestration layer reads or writes, and the exchange a run is about.

Dagster tags a single-partition run of a multi-partitioned asset with ``dagster/partition`` and one
``dagster/partition/<dimension>`` tag per dimension, but a multi-partition *range* run (what
``BackfillPolicy.multi_run`` creates) only carries ``dagster/asset_partition_range_start`` and
``..._end``. Per-exchange concurrency limits and VM labels need the exchange for both kinds, so it is
derived here, in one place, from whichever tags the run has.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date

from market_data_assets.storage.layout import is_exchange_id

PARTITION_TAG = "dagster/partition"
EXCHANGE_PARTITION_TAG = "dagster/partition/exchange"
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"

# Set on every run by ExchangeTaggingRunCoordinator; the queue's per-exchange limit keys on it.
EXCHANGE_TAG = "market_data/exchange"
# Per-run override of the launcher's machine type, e.g. {"market_data/machine_type": "n2-highmem-8"}.
MACHINE_TYPE_TAG = "market_data/machine_type"
# Written by GceRunLauncher after it created the run's VM.
GCE_INSTANCE_TAG = "market_data/gce_instance"
GCE_ZONE_TAG = "market_data/gce_zone"
GCE_PROJECT_TAG = "market_data/gce_project"
GCE_MACHINE_TYPE_TAG = "market_data/gce_machine_type"


def exchange_of_partition_key(key: str) -> str | None:
    """The exchange in a ``"2024-01-15|binance"`` key (the part that is not a date), else None."""
    parts = key.split("|")
    if len(parts) != 2:
        return None
    candidates = [p for p in parts if not _is_iso_date(p) and is_exchange_id(p)]
    return candidates[0] if len(candidates) == 1 else None


def exchange_of_run_tags(tags: Mapping[str, str]) -> str | None:
    """The one exchange a run covers, or None when it covers none or several.

    A range run whose start and end keys name different exchanges spans a rectangle of
    exchanges (Dagster ranges over multi-partitions are per-dimension products), so no single
    exchange applies and None is returned.
    """
    if tags.get(EXCHANGE_TAG):
        return tags[EXCHANGE_TAG]
    if tags.get(EXCHANGE_PARTITION_TAG):
        return tags[EXCHANGE_PARTITION_TAG]
    if tags.get(PARTITION_TAG):
        return exchange_of_partition_key(tags[PARTITION_TAG])
    start, end = tags.get(RANGE_START_TAG), tags.get(RANGE_END_TAG)
    if start and end:
        a, b = exchange_of_partition_key(start), exchange_of_partition_key(end)
        return a if a is not None and a == b else None
    return None


def _is_iso_date(value: str) -> bool:
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True
