"""Candle assets ``candles_15s`` … ``candles_24h`` (one per row of the timeframe table) and ``book_snapshots``.

Wiring only: the work is in ``market_data_assets.candles.build``. Each asset returns a
``SlicesOutput`` (its instruments' frames, computed chunk by chunk as they are consumed) and the
``slices_io_manager`` writes it as one file per instrument; a roll-up receives the finer
timeframe's stored slice from that IO manager (a data edge in the UI), never by listing folders.

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
from typing import Any

import dagster as dg

from market_data_assets.candles.build import base_candles_output, book_snapshots_output, rolled_up_output
from market_data_assets.candles.density import DensityPolicy
from market_data_assets.candles.timeframes import TIMEFRAME_TABLE, Timeframe
from market_data_assets.defs.common import partitioned_asset
from market_data_assets.defs.metadata import StageClock
from market_data_assets.defs.resources import MarketDataResource
from market_data_assets.partitions import (
    DATE_DIM,
    EXCHANGE_DIM,
    DayExchange,
    Partitioning,
    partitions_of_context,
)
from market_data_assets.storage.slices import SlicesOutput

RAW_TICKS_KEY = dg.AssetKey("raw_ticks")
SLICES_IO_MANAGER = "slices_io_manager"

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


def slices_outputs(
    context: dg.AssetExecutionContext,
    market_data: MarketDataResource,
    make: Callable[[DayExchange], SlicesOutput],
) -> dict[str, SlicesOutput]:
    """One output per partition of the run, by partition key, timed from here."""
    clock = StageClock.start(market_data.store())
    outputs = {}
    for part in partitions_of_context(context):
        output = make(part)
        output.clock = clock
        outputs[part.key] = output
    return (
        next(iter(outputs.values())) if len(outputs) == 1 and not context.has_partition_key_range else outputs
    )


def candles_asset_key(timeframe: str) -> dg.AssetKey:
    return dg.AssetKey(f"candles_{timeframe}")


def _candle_asset(tf: Timeframe, partitioning: Partitioning) -> dg.AssetsDefinition:
    common: dict[str, Any] = dict(name=f"candles_{tf.name}", io_manager_key=SLICES_IO_MANAGER)
    layout_note = (
        f"`processed_candles/by_date/day-D/timeframe-{tf.name}/KEY.parquet`, one file per instrument; "
        "dense (every bucket, empty ones carrying the close) for spot, perpetuals and futures, sparse "
        "(buckets with ticks) for options and combos (MARKET_DATA_SPARSE_CANDLE_TYPES); columns in docs/CANDLES.md."
    )
    if tf.finer is None:

        @partitioned_asset(
            partitioning,
            group="candles",
            kinds={"polars", "parquet"},
            deps=[dg.AssetDep(RAW_TICKS_KEY, partition_mapping=DAY_AND_NEXT_DAY)],
            description=(
                f"{tf.name} candles with microstructure features for every instrument that traded on the day, "
                "computed for all instruments in vectorized chunks from the raw ticks (trades, book_snapshot_5/25 "
                f"or quotes, derivative_ticker, liquidations) of D and D+1. {layout_note}"
            ),
            **common,
        )
        def _base(context: dg.AssetExecutionContext, market_data: MarketDataResource):
            store = market_data.store()
            settings = market_data.settings
            policy = DensityPolicy(frozenset(settings.sparse_candle_types))
            return slices_outputs(
                context,
                market_data,
                lambda p: base_candles_output(
                    store,
                    p.day,
                    p.exchange,
                    policy=policy,
                    chunk_rows=settings.candle_chunk_rows,
                    log=context.log.debug,
                ),
            )

        return _base

    @partitioned_asset(
        partitioning,
        group="candles",
        kinds={"polars", "parquet"},
        ins={"finer": dg.AssetIn(key=candles_asset_key(tf.finer), input_manager_key=SLICES_IO_MANAGER)},
        description=(
            f"{tf.name} candles rolled up from candles_{tf.finer} (received from the IO manager), exactly as if "
            f"computed from the ticks. {layout_note}"
        ),
        **common,
    )
    def _rolled(context: dg.AssetExecutionContext, market_data: MarketDataResource, finer):
        store = market_data.store()

        def make(p: DayExchange) -> SlicesOutput:
            stored = finer.get(p.key, finer)  # one partition: {tf: slice}; several: {key: {tf: slice}}
            return rolled_up_output(store, stored[tf.finer], tf.name)

        return slices_outputs(context, market_data, make)

    return _rolled


def _book_snapshots_asset(partitioning: Partitioning) -> dg.AssetsDefinition:
    @partitioned_asset(
        partitioning,
        group="candles",
        kinds={"polars", "parquet"},
        name="book_snapshots",
        deps=[dg.AssetDep(RAW_TICKS_KEY, partition_mapping=DAY_AND_NEXT_DAY)],
        io_manager_key=SLICES_IO_MANAGER,
        description=(
            "The order book (5 levels, or 25 where book_snapshot_25 is downloaded) as of each bucket's END, for "
            "every timeframe (15s … 24h), from the raw book snapshots of D and D+1, all instruments in one "
            "vectorized as-of join per chunk. Row `timestamp` is the bucket start; the book is the last snapshot "
            "stamped strictly before the bucket end. `processed_book_snapshots/by_date/day-D/timeframe-TF/KEY.parquet`."
        ),
    )
    def book_snapshots(context: dg.AssetExecutionContext, market_data: MarketDataResource):
        store = market_data.store()
        chunk_rows = market_data.settings.candle_chunk_rows
        return slices_outputs(
            context,
            market_data,
            lambda p: book_snapshots_output(
                store, p.day, p.exchange, chunk_rows=chunk_rows, log=context.log.debug
            ),
        )

    return book_snapshots


def candle_assets(partitioning: Partitioning) -> list[dg.AssetsDefinition]:
    """``candles_<tf>`` for every row of the timeframe table, then ``book_snapshots``."""
    return [*(_candle_asset(tf, partitioning) for tf in TIMEFRAME_TABLE), _book_snapshots_asset(partitioning)]
