"""BigQuery and DuckDB warehouses: the same tables, the same atomic slice-replace semantics.

Import the implementations from their modules (``duckdb_warehouse``, ``bigquery_warehouse``);
this package root stays free of the google-cloud-bigquery import.
"""

from market_data_assets.warehouse.base import LoadResult, StagedSlice, Warehouse, WarehouseError
from market_data_assets.warehouse.factory import open_warehouse
from market_data_assets.warehouse.loader import SliceLoad, load_slice, slice_paths
from market_data_assets.warehouse.schema import WAREHOUSE_TABLES, get_table

__all__ = [
    "WAREHOUSE_TABLES",
    "LoadResult",
    "SliceLoad",
    "StagedSlice",
    "Warehouse",
    "WarehouseError",
    "get_table",
    "load_slice",
    "open_warehouse",
    "slice_paths",
]
