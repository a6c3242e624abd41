"""Feature assets ``features_1m`` … ``features_24h`` (one per feature timeframe of the registry).

Wiring only: the work is in ``market_data_assets.features``. Each asset receives the stored
``candles_<tf>`` slices of D and of the earlier days the registry's longest lookback needs
(``features.registry.lookback_days``) from the slices IO manager, through a
``TimeWindowPartitionMapping`` with a negative start offset (identity on the exchange), and
returns a ``SlicesOutput`` that the same IO manager writes under ``processed_features/``. An
earlier day that was never materialized is left out by the IO manager (the input allows it):
the windows that need it are null and the partition says ``lookback_complete = false``.

No ``from __future__ import annotations``: Dagster checks the ``context`` annotation at definition time.
"""

import dagster as dg

from market_data_assets.defs.candles import SLICES_IO_MANAGER, candles_asset_key, slices_outputs
from market_data_assets.defs.common import partitioned_asset
from market_data_assets.defs.io_managers import ALLOW_MISSING_PARTITIONS
from market_data_assets.defs.resources import MarketDataResource
from market_data_assets.features.build import features_output, lookback_span
from market_data_assets.features.registry import FEATURE_TIMEFRAMES, asset_description, lookback_days
from market_data_assets.partitions import DATE_DIM, EXCHANGE_DIM, DayExchange, Partitioning
from market_data_assets.storage.slices import SlicesOutput, StoredSlice


def day_and_earlier_days(days: int) -> dg.MultiPartitionMapping:
    """features_<tf>(D, ex) reads candles_<tf>(D - days … D, ex)."""
    return dg.MultiPartitionMapping(
        {
            DATE_DIM: dg.DimensionPartitionMapping(
                DATE_DIM,
                dg.TimeWindowPartitionMapping(
                    start_offset=-days, end_offset=0, allow_nonexistent_upstream_partitions=True
                ),
            ),
            EXCHANGE_DIM: dg.DimensionPartitionMapping(EXCHANGE_DIM, dg.IdentityPartitionMapping()),
        }
    )


def _stored_slices(value: object) -> list[StoredSlice]:
    """Every stored slice the IO manager handed over ({tf: slice} or {partition: {tf: slice}})."""
    if isinstance(value, StoredSlice):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _stored_slices(v)]
    return []


def _features_asset(timeframe: str, partitioning: Partitioning) -> dg.AssetsDefinition:
    @partitioned_asset(
        partitioning,
        group="features",
        kinds={"polars", "parquet"},
        name=f"features_{timeframe}",
        ins={
            "candles": dg.AssetIn(
                key=candles_asset_key(timeframe),
                partition_mapping=day_and_earlier_days(lookback_days(timeframe)),
                input_manager_key=SLICES_IO_MANAGER,
                metadata={ALLOW_MISSING_PARTITIONS: True},
            )
        },
        io_manager_key=SLICES_IO_MANAGER,
        description=asset_description(timeframe),
    )
    def _features(context: dg.AssetExecutionContext, market_data: MarketDataResource, candles):
        store = market_data.store()
        concurrency = market_data.settings.io_concurrency
        by_day = {(s.ref.day, s.ref.exchange): s for s in _stored_slices(candles)}

        def make(p: DayExchange) -> SlicesOutput:
            span = {d: by_day.get((d, p.exchange)) for d in lookback_span(p.day, timeframe)}
            return features_output(store, p.day, p.exchange, timeframe, span, concurrency=concurrency)

        return slices_outputs(context, market_data, make)

    return _features


def feature_assets(partitioning: Partitioning) -> list[dg.AssetsDefinition]:
    """``features_<tf>`` for every feature timeframe of the registry."""
    return [_features_asset(tf, partitioning) for tf in FEATURE_TIMEFRAMES]
