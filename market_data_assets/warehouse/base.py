"""The warehouse interface: replace one (day x exchange) slice of a table, atomically.

A slice is every row of one table whose ``exchange`` is the partition's exchange and whose
``timestamp`` falls on the partition's UTC day. Both implementations stage the slice's Parquet
files first (a load job into a staging table, or a temporary table in DuckDB), check that every
staged row belongs to the slice, and then swap it in with ONE transaction
(``DELETE slice; INSERT staged``). So re-running a partition never duplicates or loses a row,
other slices are never touched, and a failure at any point leaves the previous slice in place.

``before_replace`` is the test seam between staging and the swap: a test sets it to raise, or to
break the staging table so the swap fails half-way through its transaction, and then checks
the previous slice survived. It runs against the real database, never a mock.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime

from market_data_assets.errors import MarketDataError
from market_data_assets.storage.base import ObjectStore
from market_data_assets.storage.layout import check_exchange


class WarehouseError(MarketDataError, RuntimeError):
    """A load that cannot be done as asked; the message names the table, slice or file."""


@dataclass(frozen=True)
class LoadResult:
    """What one ``replace_slice`` did."""

    table: str
    day: date
    exchange: str
    rows: int
    """Rows the slice holds now (all of them came from ``files``)."""
    files: int
    replaced_rows: int
    """Rows the slice held before and were deleted in the same transaction."""


@dataclass(frozen=True)
class StagedSlice:
    """Handed to ``before_replace``: the slice is staged, the swap has not started."""

    table: str
    day: date
    exchange: str
    staging_table: str
    """The staging table's name as this warehouse's SQL spells it."""
    rows: int
    execute: Callable[[str], object]
    """Runs SQL in the session that will run the swap (DuckDB temp tables are per connection)."""


class Warehouse(ABC):
    """Tables ``candles_<tf>`` and ``book_snapshots_<tf>`` with slice-replace semantics."""

    kind: str
    """``duckdb`` or ``bigquery``: also the Dagster kind of the asset that loads it."""
    uri: str
    """Where the tables live, e.g. ``duckdb:///abs/warehouse.duckdb`` or ``bigquery://PROJECT/DATASET``."""

    before_replace: Callable[[StagedSlice], None] | None = None
    """Test seam between staging and the swap (see the module docstring)."""

    @abstractmethod
    def ensure_tables(self) -> list[str]:
        """Create every table that is missing (and the dataset/schema); returns the table names.

        An existing table whose columns differ from the lake schema is an error that names the
        differences: silently loading into a drifted table would drop or misplace columns.
        """

    @abstractmethod
    def replace_slice(self, table: str, day: date, exchange: str, source_uris: Sequence[str]) -> LoadResult:
        """Make the slice hold exactly the rows of ``source_uris`` (none: the slice becomes empty)."""

    @abstractmethod
    def count(self, table: str, day: date, exchange: str) -> int:
        """Rows the slice holds now."""

    @abstractmethod
    def source_uri(self, store: ObjectStore, path: str) -> str:
        """How this warehouse addresses a lake file, or a clear error if it cannot read that store."""

    def table_ref(self, table: str) -> str:
        """The table's name as a user writes it in this warehouse's SQL."""
        return table

    def close(self) -> None:  # noqa: B027 - optional hook, most warehouses hold nothing open
        """Release clients or connections."""


def check_slice(table: str, day: date, exchange: str) -> None:
    """Validate the slice's identifiers before any SQL sees them (exchange ids go into filters)."""
    from market_data_assets.warehouse.schema import get_table

    get_table(table)
    check_exchange(exchange)
    if not isinstance(day, date) or isinstance(day, datetime):
        raise WarehouseError(f"slice day must be a date, got {day!r}")
