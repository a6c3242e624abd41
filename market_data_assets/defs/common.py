"""What every partitioned asset's decorator shares: the settings' partitions and backfill policy,
its UI group and kinds, and the owners. One place, so an asset cannot drift from the others."""

from collections.abc import Callable
from typing import Any

import dagster as dg

from market_data_assets.partitions import Partitioning

OWNERS = ["team:market-data"]


def partitioned_asset(
    partitioning: Partitioning, *, group: str, kinds: set[str], backfill: bool = True, **asset_args: Any
) -> Callable[[Callable[..., Any]], dg.AssetsDefinition]:
    """``@dg.asset`` for a date × exchange asset in ``group`` (``backfill``: with the settings'
    multi-run backfill policy); ``asset_args`` are the asset's own (name, ins, deps, description…)."""
    if backfill:
        asset_args["backfill_policy"] = partitioning.backfill_policy
    return dg.asset(
        partitions_def=partitioning.partitions_def, group_name=group, kinds=kinds, owners=OWNERS, **asset_args
    )
