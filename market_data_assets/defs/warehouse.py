"""bq_candles and bq_features: every candle, book snapshot and feature table's (day, exchange) slice,
replaced in the warehouse.

Its inputs come from the slices IO manager (the stored slices of every candle timeframe and of the
book snapshots: data edges in the UI), so it loads exactly the files those assets wrote.

No ``from __future__ import annotations``: Dagster inspects the asset's signature at definition time.
"""

from collections import defaultdict
from collections.abc import Callable, Mapping

import dagster as dg

from market_data_assets.defs.candles import SLICES_IO_MANAGER, candles_asset_key
from market_data_assets.defs.common import partitioned_asset
from market_data_assets.defs.metadata import StageClock
from market_data_assets.defs.resources import MarketDataResource
from market_data_assets.features.registry import FEATURE_NAMES, FEATURE_TIMEFRAMES
from market_data_assets.partitions import Partitioning, partitions_of_context
from market_data_assets.storage.layout import TIMEFRAMES
from market_data_assets.warehouse import WAREHOUSE_TABLES, load_slice
from market_data_assets.warehouse.schema import FEATURE_TABLES, WarehouseTable

CANDLE_ASSET_KEYS: list[dg.AssetKey] = [candles_asset_key(tf) for tf in TIMEFRAMES]
BOOK_SNAPSHOTS_ASSET_KEY = dg.AssetKey("book_snapshots")
_INPUTS: dict[str, dg.AssetIn] = {
    key.path[-1]: dg.AssetIn(key=key, input_manager_key=SLICES_IO_MANAGER)
    for key in [*CANDLE_ASSET_KEYS, BOOK_SNAPSHOTS_ASSET_KEY]
}
_TABLE_OF_INPUT: dict[tuple[str, str], str] = {
    **{(f"candles_{tf}", tf): f"candles_{tf}" for tf in TIMEFRAMES},
    **{("book_snapshots", tf): f"book_snapshots_{tf}" for tf in TIMEFRAMES},
}
"""(input name, timeframe of its slice) -> warehouse table."""


def _paths_by_table(
    inputs: dict[str, dict], partition_key: str, table_of: Callable[[str, str], str]
) -> dict[str, list[str]]:
    """Store paths per warehouse table from the stored slices the IO manager handed the asset."""
    out: dict[str, list[str]] = {}
    for name, value in inputs.items():
        slices = value.get(partition_key, value)  # one partition: {tf: slice}; several: {key: {tf: slice}}
        for tf, stored in slices.items():
            out[table_of(name, tf)] = [f.path for f in stored.files]
    return out


def _load(
    context: dg.AssetExecutionContext,
    market_data: MarketDataResource,
    tables: Mapping[str, WarehouseTable],
    paths_of: Callable[[str], dict[str, list[str]]],
) -> dg.MaterializeResult:
    """Replace each partition's slice of ``tables`` with the files ``paths_of(partition key)`` names."""
    store = market_data.store()
    clock = StageClock.start(store)
    warehouse = market_data.warehouse()
    rows_by_table: dict[str, int] = defaultdict(int)
    rows_by_partition: dict[str, int] = {}
    files = 0
    try:
        for part in partitions_of_context(context):
            load = load_slice(
                warehouse, store, part.day, part.exchange, tables.values(), paths_by_table=paths_of(part.key)
            )
            for name, result in load.results.items():
                rows_by_table[name] += result.rows
            rows_by_partition[part.key] = load.rows
            loaded_files = sum(r.files for r in load.results.values())
            files += loaded_files
            context.log.info(
                f"{part.key}: {load.rows} rows into {len(load.results)} tables of {warehouse.uri} "
                f"({loaded_files} files)"
            )
    finally:
        warehouse.close()
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": dg.MetadataValue.int(sum(rows_by_table.values())),
            "warehouse": dg.MetadataValue.text(warehouse.uri),
            "tables": dg.MetadataValue.json([warehouse.table_ref(name) for name in tables]),
            "rows_by_table": dg.MetadataValue.json(dict(rows_by_table)),
            "rows_by_partition": dg.MetadataValue.json(rows_by_partition),
            "objects_read": dg.MetadataValue.int(files),
            "objects_written": dg.MetadataValue.int(0),
            **clock.metadata(store),
        }
    )


_FEATURE_INPUTS: dict[str, dg.AssetIn] = {
    f"features_{tf}": dg.AssetIn(key=dg.AssetKey(f"features_{tf}"), input_manager_key=SLICES_IO_MANAGER)
    for tf in FEATURE_TIMEFRAMES
}


def warehouse_assets(partitioning: Partitioning, warehouse_kind: str) -> list[dg.AssetsDefinition]:
    """``bq_candles`` and ``bq_features``; ``warehouse_kind`` (duckdb or bigquery) is the UI's kind tag."""

    @partitioned_asset(
        partitioning,
        group="warehouse",
        kinds={warehouse_kind},
        ins=_INPUTS,
        description=(
            "The partition's candles and book snapshots of every timeframe in the warehouse tables "
            "`candles_<tf>` and `book_snapshots_<tf>` (BigQuery dataset `market_data_analytics`, DAY-partitioned "
            "on timestamp, clustered by exchange, instrument_type, instrument_key; the same table names in "
            "`<root>/warehouse.duckdb` locally). Each table's (day, exchange) slice is replaced atomically from the "
            "lake's Parquet files the upstream assets wrote: re-running never duplicates or loses rows."
        ),
    )
    def bq_candles(
        context: dg.AssetExecutionContext, market_data: MarketDataResource, **inputs
    ) -> dg.MaterializeResult:
        return _load(
            context,
            market_data,
            WAREHOUSE_TABLES,
            lambda key: _paths_by_table(inputs, key, lambda name, tf: _TABLE_OF_INPUT[(name, tf)]),
        )

    @partitioned_asset(
        partitioning,
        group="warehouse",
        kinds={warehouse_kind},
        ins=_FEATURE_INPUTS,
        description=(
            "The partition's MFT features of every feature timeframe in the warehouse tables `features_<tf>` "
            f"({', '.join(FEATURE_TIMEFRAMES)}; columns from the feature registry: {', '.join(FEATURE_NAMES)}, "
            "plus `available_at`; docs/FEATURES.md), partitioned by DAY on timestamp and clustered like the "
            "candle tables. Each table's (day, exchange) slice is replaced atomically from the files the "
            "feature assets wrote: re-running never duplicates or loses rows."
        ),
    )
    def bq_features(
        context: dg.AssetExecutionContext, market_data: MarketDataResource, **inputs
    ) -> dg.MaterializeResult:
        return _load(
            context,
            market_data,
            FEATURE_TABLES,
            lambda key: _paths_by_table(inputs, key, lambda _, tf: f"features_{tf}"),
        )

    return [bq_candles, bq_features]
