"""How far the live candles in the warehouse lag behind the wall clock, per exchange.

The lag of an exchange is ``now`` minus the end of its newest live 15s bucket. The
``live_freshness`` sensor warns when it exceeds ``MARKET_DATA_LIVE_MAX_LAG_S``: the streamer is
down, disconnected, or cannot write.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import duckdb
from google.api_core import exceptions as gexc
from google.cloud import bigquery

from market_data_assets.candles.timeframes import BASE_TIMEFRAME
from market_data_assets.warehouse.base import Warehouse
from market_data_assets.warehouse.bigquery_warehouse import BigQueryWarehouse
from market_data_assets.warehouse.duckdb_warehouse import DuckDBWarehouse
from market_data_assets.warehouse.schema import (
    EXCHANGE_COLUMN,
    LIVE_SOURCE,
    PARTITION_COLUMN,
    SOURCE_COLUMN,
    quote_duckdb,
)

_TABLE = f"candles_{BASE_TIMEFRAME.name}"


def _newest_duckdb(warehouse: DuckDBWarehouse) -> list[tuple[str, datetime]]:
    with warehouse.connect() as con:
        try:
            return con.execute(
                f"SELECT {quote_duckdb(EXCHANGE_COLUMN)}, max({quote_duckdb(PARTITION_COLUMN)}) "
                f"FROM {warehouse.table_ref(_TABLE)} WHERE {quote_duckdb(SOURCE_COLUMN)} = ? GROUP BY 1",
                [LIVE_SOURCE],
            ).fetchall()
        except duckdb.CatalogException:  # no table yet: nothing was ever written
            return []


def _newest_bigquery(warehouse: BigQueryWarehouse) -> list[tuple[str, datetime]]:
    try:
        rows = warehouse.query_rows(
            f"SELECT `{EXCHANGE_COLUMN}` AS exchange, MAX(`{PARTITION_COLUMN}`) AS newest "
            f"FROM `{warehouse.table_id(_TABLE)}` WHERE `{SOURCE_COLUMN}` = @source GROUP BY 1",
            [bigquery.ScalarQueryParameter("source", "STRING", LIVE_SOURCE)],
        )
    except gexc.NotFound:  # no table (or dataset) yet: nothing was ever written
        return []
    return [(r["exchange"], r["newest"]) for r in rows]


def live_lag_seconds(warehouse: Warehouse, now: datetime) -> dict[str, float]:
    """Exchange -> seconds between ``now`` and the end of its newest live 15s candle (DuckDB or BigQuery)."""
    if isinstance(warehouse, DuckDBWarehouse):
        rows = _newest_duckdb(warehouse)
    elif isinstance(warehouse, BigQueryWarehouse):
        rows = _newest_bigquery(warehouse)
    else:
        raise TypeError(f"no live freshness query for {type(warehouse).__name__}")
    width = timedelta(microseconds=BASE_TIMEFRAME.us)
    return {exchange: (now - (newest + width)).total_seconds() for exchange, newest in rows}


def stale(lags: dict[str, float], max_lag_s: float) -> dict[str, float]:
    """The exchanges whose live candles lag by more than ``max_lag_s``."""
    return {exchange: lag for exchange, lag in sorted(lags.items()) if lag > max_lag_s}
