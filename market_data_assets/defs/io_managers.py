"""An IO manager for the one-file-per-partition tables (definitions, targets, reports).

Dagster's UPath IO managers store one pickle-or-Parquet object per partition under their own
naming scheme and cannot write the seed layout, nor a run that covers several partitions
(``BackfillPolicy.multi_run``). This one writes and reads exactly ``storage/layout.py``'s paths
through the project's object store, so the same code writes a local folder or ``gs://``.

Protocol: a run for ONE partition returns a ``polars.DataFrame``; a run covering SEVERAL
partitions returns ``dict[partition_key, DataFrame]``. Loading gives the same shapes back.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

import dagster as dg
import polars as pl

from market_data_assets.defs.resources import MarketDataResource
from market_data_assets.partitions import parse_partition_key
from market_data_assets.storage import layout

PathFn = Callable[[date, str], str]

TABLE_PATHS: dict[str, PathFn] = {
    "instrument_definitions": layout.instruments_path,
    "download_targets": layout.targets_path,
    "missing_data_report": layout.report_path,
}


def _path_fn(asset_key: dg.AssetKey) -> PathFn:
    name = asset_key.path[-1]
    try:
        return TABLE_PATHS[name]
    except KeyError:
        raise dg.DagsterInvariantViolationError(
            f"layout_io_manager has no layout path for asset {name!r}; known: {sorted(TABLE_PATHS)}"
        ) from None


class LayoutIOManager(dg.ConfigurableIOManager):
    """polars DataFrames <-> ``<area>/by_date/day-D/venue-EX/<name>.parquet`` in the object store."""

    market_data: MarketDataResource

    def handle_output(self, context: dg.OutputContext, obj: pl.DataFrame | dict[str, pl.DataFrame]) -> None:
        keys = list(context.asset_partition_keys)
        frames = obj if isinstance(obj, dict) else {keys[0]: obj} if len(keys) == 1 else None
        if frames is None:
            raise dg.DagsterInvariantViolationError(
                f"{context.asset_key.to_user_string()}: a run covering {len(keys)} partitions must return "
                "dict[partition_key, DataFrame]"
            )
        missing = set(keys) - set(frames)
        if missing:
            raise dg.DagsterInvariantViolationError(
                f"{context.asset_key.to_user_string()}: no output for partitions {sorted(missing)}"
            )
        store = self.market_data.store()
        path_fn = _path_fn(context.asset_key)
        total_rows = total_bytes = 0
        for key in keys:
            part = parse_partition_key(key)
            df = frames[key]
            total_bytes += store.write_parquet(df.to_arrow(), path_fn(part.day, part.exchange))
            total_rows += df.height
        context.add_output_metadata(
            {
                "paths": dg.MetadataValue.json(
                    [
                        store.uri(path_fn(parse_partition_key(k).day, parse_partition_key(k).exchange))
                        for k in keys[:20]
                    ]
                ),
                "stored_rows": total_rows,
                "stored_bytes": total_bytes,
            }
        )

    def load_input(self, context: dg.InputContext) -> pl.DataFrame | dict[str, pl.DataFrame]:
        store = self.market_data.store()
        path_fn = _path_fn(context.asset_key)
        keys = list(context.asset_partition_keys)
        frames: dict[str, pl.DataFrame] = {}
        for key in keys:
            part = parse_partition_key(key)
            path = path_fn(part.day, part.exchange)
            if not store.exists(path):
                raise dg.Failure(
                    f"{context.asset_key.to_user_string()} for partition {key} is not materialized: "
                    f"{store.uri(path)} does not exist"
                )
            frames[key] = pl.from_arrow(store.read_parquet(path))  # type: ignore[assignment]
        return frames[keys[0]] if len(keys) == 1 else frames


def by_partition(
    obj: pl.DataFrame | dict[str, pl.DataFrame], partition_keys: list[str]
) -> dict[str, pl.DataFrame]:
    """Normalize what ``load_input`` gave (one frame, or a dict for several partitions) to a dict."""
    if isinstance(obj, dict):
        return obj
    if len(partition_keys) != 1:
        raise dg.DagsterInvariantViolationError(f"expected one partition, got {len(partition_keys)}")
    return {partition_keys[0]: obj}
