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
from market_data_assets.storage.base import ObjectStore
from market_data_assets.warehouse.base import LoadResult, Warehouse, WarehouseError
from market_data_assets.warehouse.schema import WAREHOUSE_TABLES, WarehouseTable, get_table


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
    return [
        obj.path
        for obj in layout.exchange_files(store, table.lake_dir(day), exchange)
        if obj.path.endswith(".parquet")
    ]


def _given_paths(table: WarehouseTable, day: date, exchange: str, paths: Sequence[str]) -> list[str]:
    """The caller's paths for ``table``, each checked to be one of the slice's lake files."""
    prefix = f"{table.lake_dir(day)}/{layout.key_prefix_for_exchange(exchange)}"  # what exchange_files lists
    if isinstance(paths, str):
        raise WarehouseError(
            f"{table.name} {day} {exchange}: expected a sequence of store paths, got one string"
        )
    for path in paths:
        name = path[len(prefix) :] if path.startswith(prefix) else ""
        if not name.endswith(".parquet") or "/" in name:
            raise WarehouseError(
                f"{table.name} {day} {exchange}: {path!r} is not a file of this slice (expected {prefix}*.parquet)"
            )
    return list(paths)


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
    lake, including files that were removed. ``paths_by_table`` gives a table's files (store
    paths, e.g. handed over by an IO manager) instead of listing its folder; a table it does not
    name is listed. A path outside the table's slice folder, or a name that is not a table being
    loaded, is an error.
    """
    selected = list(tables if tables is not None else WAREHOUSE_TABLES.values())
    given = dict(paths_by_table or {})
    for name in given:
        get_table(name)
        if name not in {t.name for t in selected}:
            raise WarehouseError(f"paths_by_table names {name}, which is not among the tables being loaded")
    load = SliceLoad(day, exchange)
    for table in selected:
        if table.name in given:
            paths = _given_paths(table, day, exchange, given[table.name])
        else:
            paths = slice_paths(store, table, day, exchange)
        uris = [warehouse.source_uri(store, path) for path in paths]
        load.results[table.name] = warehouse.replace_slice(table.name, day, exchange, uris)
    return load
