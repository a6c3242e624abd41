"""Load one (day, exchange) partition of the lake into every warehouse table.

Each table's slice is replaced atomically on its own (see ``base.py``); a failure part-way
through the tables leaves the remaining tables' previous slices in place, and re-running the
partition converges, because every replace is idempotent.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date

from market_data_assets.storage import layout
from market_data_assets.storage.store import ObjectStore
from market_data_assets.warehouse.base import LoadResult, Warehouse
from market_data_assets.warehouse.schema import WAREHOUSE_TABLES, WarehouseTable


@dataclass(frozen=True)
class SliceLoad:
    """Every table's result for one partition."""

    day: date
    exchange: str
    results: dict[str, LoadResult] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return sum(r.rows for r in self.results.values())


def slice_paths(store: ObjectStore, table: WarehouseTable, day: date, exchange: str) -> list[str]:
    """The lake files (store paths) of ``exchange`` on ``day`` that feed ``table``: one listing call."""
    prefix = f"{table.lake_dir(day)}/{layout.key_prefix_for_exchange(exchange)}"
    return [obj.path for obj in store.list(prefix) if obj.path.endswith(".parquet")]


def load_slice(
    warehouse: Warehouse,
    store: ObjectStore,
    day: date,
    exchange: str,
    tables: Iterable[WarehouseTable] | None = None,
    *,
    paths_by_table: Mapping[str, Sequence[str]] | None = None,
) -> SliceLoad:
    """Replace the (day, exchange) slice of every table with what the lake holds now.

    A table with no files for the partition gets an empty slice: the warehouse mirrors the
    lake, including files that were removed. ``paths_by_table`` gives each table's store paths
    (what the IO manager handed the asset); a table it does not name is listed.
    """
    load = SliceLoad(day, exchange)
    for table in tables if tables is not None else WAREHOUSE_TABLES.values():
        paths = (
            paths_by_table[table.name]
            if paths_by_table is not None and table.name in paths_by_table
            else slice_paths(store, table, day, exchange)
        )
        uris = [warehouse.source_uri(store, path) for path in paths]
        load.results[table.name] = warehouse.replace_slice(table.name, day, exchange, uris)
    return load
