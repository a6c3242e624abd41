"""How far the live candles in the warehouse lag behind the wall clock, per exchange.

The lag of an exchange is ``now`` minus the end of its newest live 15s bucket. The
``live_freshness`` sensor warns when it exceeds ``MARKET_DATA_LIVE_MAX_LAG_S``: the streamer is
down, disconnected, or cannot write.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import duckdb

from market_data_assets.candles.timeframes import BASE_TIMEFRAME
from market_data_assets.warehouse.duckdb_warehouse import DuckDBWarehouse
from market_data_assets.warehouse.schema import LIVE_SOURCE, SOURCE_COLUMN, quote_duckdb


def live_lag_seconds(warehouse: DuckDBWarehouse, now: datetime) -> dict[str, float]:
    """Exchange -> seconds between ``now`` and the end of its newest live 15s candle."""
    table = warehouse.table_ref(f"candles_{BASE_TIMEFRAME.name}")
    with warehouse.connect() as con:
        try:
            rows = con.execute(
                f"SELECT exchange, max(timestamp) FROM {table} WHERE {quote_duckdb(SOURCE_COLUMN)} = ? GROUP BY 1",
                [LIVE_SOURCE],
            ).fetchall()
        except duckdb.CatalogException:
            return {}
    width = timedelta(microseconds=BASE_TIMEFRAME.us)
    return {exchange: (now - (newest + width)).total_seconds() for exchange, newest in rows}


def stale(lags: dict[str, float], max_lag_s: float) -> dict[str, float]:
    """The exchanges whose live candles lag by more than ``max_lag_s``."""
    return {exchange: lag for exchange, lag in sorted(lags.items()) if lag > max_lag_s}
