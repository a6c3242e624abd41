"""Candle assets ``candles_15s`` … ``candles_24h`` (one per row of the timeframe table) and ``book_snapshots``.

Wiring only: the work is in ``market_data_assets.candles.build``. Each asset writes its files
through the store itself (one Parquet per instrument, many per partition), so it returns a
``MaterializeResult`` rather than a value for an IO manager.

Day boundary: Tardis files are split by ``local_timestamp``, so the last trades of day D can sit in
file D+1. ``candles_15s`` of D therefore depends on ``raw_ticks`` of D *and* D+1 (identity on the
exchange). When D+1 is not downloaded yet, D is built anyway and marked
``complete_through_midnight = false`` (metadata and every file). The ``tardis_new_days`` sensor
(defs/sensors.py) runs the processing of D only once D+1 is ingested, and requests it again at that
point, so such a partition is rebuilt, complete, when D+1's raw ticks arrive.

No ``from __future__ import annotations`` here: Dagster checks the ``context`` annotation of the
assets built inside ``_candle_asset`` at definition time and cannot resolve a postponed one.
"""

from collections.abc import Callable

import dagster as dg

from market_data_assets.candles.build import (
    BuildSummary,
    build_base_candles,
    build_book_snapshots,
    build_rolled_up_candles,
)
from market_data_assets.candles.timeframes import TIMEFRAME_TABLE, Timeframe
from market_data_assets.defs.metadata import markdown_preview
from market_data_assets.defs.resources import MarketDataResource
from market_data_assets.partitions import (
    DATE_DIM,
    EXCHANGE_DIM,
    backfill_policy,
    date_exchange_partitions,
    partition_key,
    partitions_of_context,
)

RAW_TICKS_KEY = dg.AssetKey("raw_ticks")

DAY_AND_NEXT_DAY = dg.MultiPartitionMapping(
    {
        DATE_DIM: dg.DimensionPartitionMapping(
            DATE_DIM,
            dg.TimeWindowPartitionMapping(
                start_offset=0, end_offset=1, allow_nonexistent_upstream_partitions=True
            ),
        ),
        EXCHANGE_DIM: dg.DimensionPartitionMapping(EXCHANGE_DIM, dg.IdentityPartitionMapping()),
    }
)
"""candles_15s(D, ex) reads raw_ticks(D, ex) and raw_ticks(D+1, ex): D's late trades sit in file D+1."""


def _metadata(summaries: list[BuildSummary]) -> dict[str, dg.MetadataValue]:
    instruments = sorted({k for s in summaries for k in s.instruments})
    incomplete = sorted(
        partition_key(s.day, s.exchange) for s in summaries if not s.complete_through_midnight
    )
    preview = next((s.preview for s in summaries if s.preview is not None), None)
    meta: dict[str, dg.MetadataValue] = {
        "dagster/row_count": dg.MetadataValue.int(sum(s.rows for s in summaries)),
        "instruments": dg.MetadataValue.int(len(instruments)),
        "instrument_keys": dg.MetadataValue.json(instruments[:200]),
        "files": dg.MetadataValue.int(sum(s.files for s in summaries)),
        "bytes": dg.MetadataValue.int(sum(s.bytes for s in summaries)),
        "timeframes": dg.MetadataValue.json(sorted({tf for s in summaries for tf in s.timeframes})),
        "complete_through_midnight": dg.MetadataValue.bool(not incomplete),
        "incomplete_partitions": dg.MetadataValue.json(incomplete),
        "stale_files_deleted": dg.MetadataValue.int(sum(s.deleted_stale for s in summaries)),
        "skipped_instruments": dg.MetadataValue.json(sorted({k for s in summaries for k in s.skipped})[:200]),
    }
    if preview is not None:
        meta["preview"] = markdown_preview(preview)
    return meta


def _run(
    context: dg.AssetExecutionContext, build: Callable[[dg.AssetExecutionContext, object], BuildSummary]
) -> dg.MaterializeResult:
    summaries = []
    for part in partitions_of_context(context):
        summary = build(context, part)
        if not summary.complete_through_midnight:
            context.log.warning(
                f"{part.key}: raw ticks of the next day are not there yet; built without them "
                "(complete_through_midnight=false), to be rebuilt when they arrive"
            )
        summaries.append(summary)
    return dg.MaterializeResult(metadata=_metadata(summaries))


def _candle_asset(tf: Timeframe) -> dg.AssetsDefinition:
    if tf.finer is None:
        deps = [dg.AssetDep(RAW_TICKS_KEY, partition_mapping=DAY_AND_NEXT_DAY)]
        source = (
            "raw ticks (trades, book_snapshot_5/25 or quotes, derivative_ticker, liquidations) of D and D+1"
        )
    else:
        deps = [dg.AssetDep(dg.AssetKey(f"candles_{tf.finer}"))]
        source = f"candles_{tf.finer}, rolled up"

    @dg.asset(
        name=f"candles_{tf.name}",
        deps=deps,
        partitions_def=date_exchange_partitions,
        group_name="candles",
        kinds={"polars", "parquet"},
        backfill_policy=backfill_policy,
        owners=["team:market-data"],
        description=(
            f"{tf.name} candles with microstructure features for every instrument that traded on the day: "
            f"dense UTC grid of {tf.buckets_per_day} buckets, labelled by bucket start. From {source}. "
            f"`processed_candles/by_date/day-D/timeframe-{tf.name}/KEY.parquet`; columns in docs/CANDLES.md."
        ),
    )
    def _asset(context: dg.AssetExecutionContext, market_data: MarketDataResource) -> dg.MaterializeResult:
        store = market_data.store()
        if tf.finer is None:
            return _run(context, lambda ctx, p: build_base_candles(store, p.day, p.exchange, ctx.log.debug))
        return _run(context, lambda ctx, p: build_rolled_up_candles(store, p.day, p.exchange, tf.name))

    return _asset


CANDLE_ASSET_BY_TIMEFRAME: dict[str, dg.AssetsDefinition] = {
    tf.name: _candle_asset(tf) for tf in TIMEFRAME_TABLE
}
CANDLE_TIMEFRAME_ASSETS: list[dg.AssetsDefinition] = list(CANDLE_ASSET_BY_TIMEFRAME.values())


@dg.asset(
    deps=[dg.AssetDep(RAW_TICKS_KEY, partition_mapping=DAY_AND_NEXT_DAY)],
    partitions_def=date_exchange_partitions,
    group_name="candles",
    kinds={"polars", "parquet"},
    backfill_policy=backfill_policy,
    owners=["team:market-data"],
    description=(
        "The order book (5 levels, or 25 where book_snapshot_25 is downloaded) as of each bucket's END, for "
        "every timeframe (15s … 24h), from the raw book snapshots of D and D+1. Row `timestamp` is the bucket "
        "start; the book is the last snapshot stamped strictly before the bucket end. "
        "`processed_book_snapshots/by_date/day-D/timeframe-TF/KEY.parquet`."
    ),
)
def book_snapshots(
    context: dg.AssetExecutionContext, market_data: MarketDataResource
) -> dg.MaterializeResult:
    store = market_data.store()
    return _run(context, lambda ctx, p: build_book_snapshots(store, p.day, p.exchange, log=ctx.log.debug))


CANDLE_ASSETS: list[dg.AssetsDefinition] = [*CANDLE_TIMEFRAME_ASSETS, book_snapshots]
