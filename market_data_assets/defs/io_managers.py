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
from typing import Any

import dagster as dg
import polars as pl

from market_data_assets.defs.metadata import markdown_preview
from market_data_assets.defs.resources import MarketDataResource
from market_data_assets.features.registry import FEATURE_TIMEFRAMES
from market_data_assets.partitions import parse_partition_key
from market_data_assets.polars_arrow import to_polars
from market_data_assets.storage import layout
from market_data_assets.storage.slices import SliceRef, SlicesOutput, SliceSummary, StoredSlice, write_output

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
            frames[key] = to_polars(store.read_parquet(path))
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


# --- per-instrument slices (candles, book snapshots) ---------------------------------------------------

SLICE_ASSETS: dict[str, tuple[str, tuple[str, ...]]] = {
    **{f"candles_{tf}": (layout.CANDLES_AREA, (tf,)) for tf in layout.TIMEFRAMES},
    "book_snapshots": (layout.BOOK_SNAPSHOTS_AREA, layout.TIMEFRAMES),
    **{f"features_{tf}": (layout.FEATURES_AREA, (tf,)) for tf in FEATURE_TIMEFRAMES},
}
"""Asset name -> (layout area, timeframe folders) for every asset that writes one file per instrument."""

ALLOW_MISSING_PARTITIONS = "allow_missing_partitions"
"""Input metadata: upstream partitions never materialized are left out instead of failing the
step (a feature asset's earlier days: the windows that need them become null)."""

StoredSlices = dict[str, StoredSlice]
"""What a downstream asset receives for one partition: timeframe -> the stored slice."""


def _slice_layout(asset_key: dg.AssetKey) -> tuple[str, tuple[str, ...]]:
    name = asset_key.path[-1]
    try:
        return SLICE_ASSETS[name]
    except KeyError:
        raise dg.DagsterInvariantViolationError(
            f"slices_io_manager has no layout for asset {name!r}; known: {sorted(SLICE_ASSETS)}"
        ) from None


def _by_key(context: dg.OutputContext, obj: object) -> dict[str, object]:
    keys = list(context.asset_partition_keys)
    outputs = obj if isinstance(obj, dict) else {keys[0]: obj} if len(keys) == 1 else None
    if outputs is None or set(keys) - set(outputs):
        raise dg.DagsterInvariantViolationError(
            f"{context.asset_key.to_user_string()}: a run covering partitions {keys} must return "
            "one SlicesOutput per partition key"
        )
    return {k: outputs[k] for k in keys}


_PREVIEW_COLUMNS = (
    "instrument_key",
    "timestamp",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "trade_count",
    "vwap",
)


def _preview_rows(summaries: dict[str, SliceSummary]) -> pl.DataFrame | None:
    """A few rows of the first timeframe written: traded candles where there are, book levels otherwise."""
    sample = next((s.sample for s in summaries.values() if s.sample is not None), None)
    if sample is None:
        return None
    if "available_at" in sample.columns:  # features
        return sample.select(sample.columns[:1] + sample.columns[5:10])
    if "trade_count" in sample.columns:
        traded = sample.filter(pl.col("trade_count") > 0)
        return (traded if traded.height else sample).select(_PREVIEW_COLUMNS)
    return sample.select(sample.columns[4:11])


def io_managers_for(market_data: MarketDataResource) -> dict[str, dg.ConfigurableIOManager]:
    """Every IO manager of the project, keyed as the assets ask for them (Definitions and tests)."""
    return {
        "layout_io_manager": LayoutIOManager(market_data=market_data),
        "slices_io_manager": SlicesIOManager(market_data=market_data),
    }


class SlicesIOManager(dg.ConfigurableIOManager):
    """``SlicesOutput`` -> ``<area>/by_date/day-D/timeframe-TF/KEY.parquet``, one file per instrument.

    Writing consumes the asset's lazily computed chunks (so the heavy work happens here, one chunk
    in memory at a time), writes every instrument's file atomically on a bounded pool, removes the
    slice's stale files and writes the slice marker last. Loading gives each partition's stored
    slices (files + marker) per timeframe; a partition never materialized fails naming its marker.
    Protocol for several partitions (``BackfillPolicy.multi_run``): ``dict[partition_key, ...]``.
    """

    market_data: MarketDataResource

    def handle_output(self, context: dg.OutputContext, obj: SlicesOutput | dict[str, SlicesOutput]) -> None:
        store = self.market_data.store()
        settings = self.market_data.settings
        by_tf: dict[str, dict[str, int]] = {}
        totals = {"instruments": set(), "skipped": set(), "objects_read": 0, "stale": 0}
        incomplete = []
        lookback_incomplete: list[str] | None = None
        clock = None
        sample = None
        outputs = _by_key(context, obj)
        for key, output in outputs.items():
            if not isinstance(output, SlicesOutput):
                raise dg.DagsterInvariantViolationError(
                    f"{context.asset_key.to_user_string()}: expected SlicesOutput for {key}, got {type(output).__name__}"
                )
            clock = clock or output.clock
            summaries = write_output(store, output, settings.io_concurrency)
            sample = sample if sample is not None else _preview_rows(summaries)
            for tf, s in summaries.items():
                agg = by_tf.setdefault(tf, {"instruments": 0, "files": 0, "rows": 0, "bytes": 0})
                agg["instruments"] += len(s.instruments)
                agg["files"] += s.files
                agg["rows"] += s.rows
                agg["bytes"] += s.bytes
                totals["instruments"].update(s.instruments)
                totals["stale"] += s.deleted_stale
            totals["skipped"].update(output.skipped)
            totals["objects_read"] += output.objects_read
            if output.flags.get("complete_through_midnight", "true") != "true":
                incomplete.append(key)
                context.log.warning(
                    f"{key}: raw ticks of the next day are not there yet; built without them "
                    "(complete_through_midnight=false), to be rebuilt when they arrive"
                )
            if "lookback_complete" in output.flags:
                lookback_incomplete = lookback_incomplete or []
                if output.flags["lookback_complete"] != "true":
                    lookback_incomplete.append(key)
                    context.log.warning(
                        f"{key}: earlier days {output.flags.get('missing_lookback_days', '')} are not "
                        "materialized; the windows that need them are null (lookback_complete=false)"
                    )
        files = sum(v["files"] for v in by_tf.values())
        metadata: dict[str, Any] = {
            "dagster/row_count": dg.MetadataValue.int(sum(v["rows"] for v in by_tf.values())),
            "instruments": dg.MetadataValue.int(len(totals["instruments"])),
            "files": dg.MetadataValue.int(files),
            "bytes": dg.MetadataValue.int(sum(v["bytes"] for v in by_tf.values())),
            "by_timeframe": dg.MetadataValue.json(by_tf),
            "complete_through_midnight": dg.MetadataValue.bool(not incomplete),
            "incomplete_partitions": dg.MetadataValue.json(sorted(incomplete)),
            "stale_files_deleted": dg.MetadataValue.int(totals["stale"]),
            "skipped_instruments": dg.MetadataValue.json(sorted(totals["skipped"])[:200]),
            "objects_read": dg.MetadataValue.int(totals["objects_read"]),
            "objects_written": dg.MetadataValue.int(files + len(by_tf) * len(outputs)),
        }
        if lookback_incomplete is not None:
            metadata["lookback_complete"] = dg.MetadataValue.bool(not lookback_incomplete)
            metadata["lookback_incomplete_partitions"] = dg.MetadataValue.json(sorted(lookback_incomplete))
        if sample is not None:
            metadata["preview"] = markdown_preview(sample, rows=5)
        if clock is not None:
            metadata.update(clock.metadata(store, totals["objects_read"]))  # pyright: ignore[reportAttributeAccessIssue]
        context.add_output_metadata(metadata)

    def load_input(self, context: dg.InputContext) -> StoredSlices | dict[str, StoredSlices]:
        store = self.market_data.store()
        area, timeframes = _slice_layout(context.asset_key)
        keys = list(context.asset_partition_keys)
        allow_missing = bool((context.definition_metadata or {}).get(ALLOW_MISSING_PARTITIONS))
        out: dict[str, StoredSlices] = {}
        for key in keys:
            part = parse_partition_key(key)
            slices: StoredSlices = {}
            for tf in timeframes:
                ref = SliceRef(area, part.day, tf, part.exchange)
                try:
                    slices[tf] = StoredSlice.open(store, ref)
                except FileNotFoundError:
                    if allow_missing:
                        context.log.warning(f"{context.asset_key.to_user_string()} {key} is not materialized")
                        continue
                    raise dg.Failure(
                        f"{context.asset_key.to_user_string()} for partition {key} is not materialized: "
                        f"{store.uri(ref.marker)} does not exist (materialize it first)"
                    ) from None
            out[key] = slices
        return out[keys[0]] if len(keys) == 1 else out
