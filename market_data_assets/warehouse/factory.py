"""``open_warehouse``: the warehouse ``MARKET_DATA_WAREHOUSE`` names, for the lake ``store`` holds.

* ``duckdb``: the file ``<root>/warehouse.duckdb`` beside the lake (a local root only);
* ``duckdb:///abs/path.duckdb``: that file (the lake may be a local folder or ``gs://``);
* ``bigquery://PROJECT/DATASET``: that dataset (created in ``location``, default US, if missing).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from market_data_assets.settings import Settings
from market_data_assets.storage.base import ObjectStore
from market_data_assets.storage.local import LocalStore
from market_data_assets.warehouse.base import Warehouse, WarehouseError

if TYPE_CHECKING:
    from google.cloud import bigquery

DUCKDB_FILE_NAME = "warehouse.duckdb"
DEFAULT_BIGQUERY_LOCATION = "US"


def open_warehouse(
    settings: Settings,
    store: ObjectStore,
    *,
    location: str | None = None,
    bigquery_client: bigquery.Client | None = None,
) -> Warehouse:
    """``bigquery_client``: Dagster's ``bigquery`` resource hands its client here; without one a
    client is built from the environment (the reader, the CLI, the live service). ``location``: where
    a missing BigQuery dataset is created (None: US)."""
    value = settings.warehouse
    if value == "duckdb" or value.startswith("duckdb://"):
        from market_data_assets.warehouse.duckdb_warehouse import DuckDBWarehouse

        if value == "duckdb":
            if not isinstance(store, LocalStore):
                raise WarehouseError(
                    f"MARKET_DATA_WAREHOUSE=duckdb keeps the file under MARKET_DATA_ROOT, but the root is "
                    f"{store.root}; set MARKET_DATA_WAREHOUSE=bigquery://PROJECT/DATASET or duckdb:///path "
                    f"(a local file, which can load from a gs:// lake)"
                )
            path = Path(store.root) / DUCKDB_FILE_NAME
        else:
            path = value.removeprefix("duckdb://")
            if not path.startswith("/"):
                raise WarehouseError(
                    f"MARKET_DATA_WAREHOUSE={value!r}: expected duckdb:///absolute/path.duckdb"
                )
        return DuckDBWarehouse(
            path,
            memory_limit=settings.duckdb_memory_limit,
            threads=settings.duckdb_threads,
            batch_files=settings.duckdb_batch_files,
            readers=settings.io_concurrency,
        )
    if value.startswith("bigquery://"):
        from market_data_assets.warehouse.bigquery_warehouse import BigQueryWarehouse
        from market_data_assets.warehouse.bigquery_warehouse import bigquery_client as make_client

        project, dataset = bigquery_target(value)
        client = bigquery_client or make_client(project)
        return BigQueryWarehouse(client, project, dataset, location or DEFAULT_BIGQUERY_LOCATION)
    raise WarehouseError(f"MARKET_DATA_WAREHOUSE={value!r} names no known warehouse")


def bigquery_target(value: str) -> tuple[str, str]:
    """``bigquery://PROJECT/DATASET`` -> ``(PROJECT, DATASET)``; anything else names the variable."""
    project, _, dataset = value.removeprefix("bigquery://").partition("/")
    if not value.startswith("bigquery://") or not project or not dataset:
        raise WarehouseError(f"MARKET_DATA_WAREHOUSE={value!r}: expected bigquery://PROJECT/DATASET")
    return project, dataset
