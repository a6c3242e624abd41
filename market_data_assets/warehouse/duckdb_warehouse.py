"""The local warehouse: the same tables as BigQuery, in one DuckDB file.

Tables keep their names in the file's default schema (``main``), so ``SELECT ... FROM candles_1m``
works in any DuckDB session on the file. To spell them as in BigQuery, attach the file under the
dataset's name: ``ATTACH 'warehouse.duckdb' AS market_data_analytics`` makes
``market_data_analytics.candles_1m`` resolve to the same table.
DuckDB has no partitions or clustering; its per-row-group min/max on ``timestamp`` prunes a
day's slice, which is all the slice filter needs.

DuckDB lets one process write a file at a time, and Dagster's multiprocess executor runs
partitions in parallel: each operation opens the file, works and closes it, and opening waits
(with backoff, up to ``lock_timeout`` seconds) while another process holds the lock.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import duckdb
import tenacity

from market_data_assets.storage.store import LocalStore, ObjectStore
from market_data_assets.warehouse.base import (
    LoadResult,
    StagedSlice,
    Warehouse,
    WarehouseError,
    check_slice,
    slice_bounds,
)
from market_data_assets.warehouse.schema import (
    EXCHANGE_COLUMN,
    PARTITION_COLUMN,
    WAREHOUSE_TABLES,
    WarehouseTable,
    duckdb_columns_ddl,
    duckdb_type,
    get_table,
    quote_duckdb,
)

DUCKDB_SCHEMA = "main"
"""Where the tables live in the DuckDB file: its default schema, so unqualified names work."""

_SLICE_FILTER = f"{quote_duckdb(EXCHANGE_COLUMN)} = $exchange AND {quote_duckdb(PARTITION_COLUMN)} >= $start AND {quote_duckdb(PARTITION_COLUMN)} < $end"


def _literal(value: str | None) -> str:
    """A load constant as SQL (NULL for a column the files lack and no constant fills)."""
    return "NULL" if value is None else "'" + value.replace("'", "''") + "'"


def _is_lock_conflict(exc: BaseException) -> bool:
    return isinstance(exc, duckdb.IOException) and "lock" in str(exc).lower()


class DuckDBWarehouse(Warehouse):
    kind = "duckdb"

    def __init__(self, path: str | Path, *, schema: str = DUCKDB_SCHEMA, lock_timeout: float = 120.0) -> None:
        self.path = Path(path).expanduser().resolve()
        self.schema = schema
        self.uri = f"duckdb://{self.path}"
        self._lock_timeout = lock_timeout
        self._ensured: set[str] = set()

    def __repr__(self) -> str:
        return f"DuckDBWarehouse({self.uri!r})"

    # --- connections -------------------------------------------------------------------------

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection to the warehouse file in UTC; waits while another process holds the lock."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        opener = tenacity.Retrying(
            retry=tenacity.retry_if_exception(_is_lock_conflict),
            wait=tenacity.wait_random_exponential(multiplier=0.05, max=2.0),
            stop=tenacity.stop_after_delay(self._lock_timeout),
            reraise=True,
        )
        try:
            con = opener(duckdb.connect, str(self.path))
        except duckdb.IOException as exc:
            if not _is_lock_conflict(exc):
                raise
            raise WarehouseError(
                f"{self.path} stayed locked by another process for {self._lock_timeout:.0f} s: {exc}"
            ) from exc
        try:
            con.execute("SET TimeZone = 'UTC'")
            yield con
        finally:
            con.close()

    def table_ref(self, table: str) -> str:
        return f"{quote_duckdb(self.schema)}.{quote_duckdb(get_table(table).name)}"

    # --- tables --------------------------------------------------------------------------------

    def _ensure(self, con: duckdb.DuckDBPyConnection, table: WarehouseTable) -> None:
        if table.name in self._ensured:
            return
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_duckdb(self.schema)}")
        con.execute(
            f"CREATE TABLE IF NOT EXISTS {self.table_ref(table.name)} ({duckdb_columns_ddl(table.schema)})"
        )
        existing = [
            row[0]
            for row in con.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
                [self.schema, table.name],
            ).fetchall()
        ]
        if existing != table.schema.names:
            missing = [c for c in table.schema.names if c not in existing]
            extra = [c for c in existing if c not in table.schema.names]
            raise WarehouseError(
                f"{self.uri} table {self.schema}.{table.name} does not match the lake schema: "
                f"missing {missing}, unexpected {extra}" + ("" if missing or extra else ", order differs")
            )
        self._ensured.add(table.name)

    def ensure_tables(self) -> list[str]:
        with self.connect() as con:
            for table in WAREHOUSE_TABLES.values():
                self._ensure(con, table)
        return list(WAREHOUSE_TABLES)

    # --- slices --------------------------------------------------------------------------------

    def source_uri(self, store: ObjectStore, path: str) -> str:
        if not isinstance(store, LocalStore):
            raise WarehouseError(
                f"the DuckDB warehouse reads the lake's Parquet files from a local folder, but the store is "
                f"{store.root}; use MARKET_DATA_WAREHOUSE=bigquery://PROJECT/DATASET with a gs:// root"
            )
        return store.uri(path)

    def count(self, table: str, day: date, exchange: str) -> int:
        check_slice(table, day, exchange)
        start, end = slice_bounds(day)
        with self.connect() as con:
            self._ensure(con, get_table(table))
            (n,) = con.execute(
                f"SELECT count(*) FROM {self.table_ref(table)} WHERE {_SLICE_FILTER}",
                {"exchange": exchange, "start": start, "end": end},
            ).fetchone()
        return int(n)

    def replace_slice(self, table: str, day: date, exchange: str, source_uris: Sequence[str]) -> LoadResult:
        check_slice(table, day, exchange)
        spec = get_table(table)
        files = list(source_uris)
        for f in files:
            if not Path(f).is_file():
                raise WarehouseError(f"{table} {day} {exchange}: source file {f} does not exist")
        start, end = slice_bounds(day)
        bounds = {"exchange": exchange, "start": start, "end": end}
        staging = quote_duckdb(f"staging_{spec.name}_{uuid.uuid4().hex[:12]}")
        columns = ", ".join(quote_duckdb(n) for n in spec.schema.names)
        with self.connect() as con:
            self._ensure(con, spec)
            try:
                staged = self._stage(con, spec, files, staging, bounds)
                if self.before_replace is not None:
                    self.before_replace(
                        StagedSlice(spec.name, day, exchange, staging, staged, lambda sql: con.execute(sql))
                    )
                con.execute("BEGIN TRANSACTION")
                try:
                    (deleted,) = con.execute(
                        f"DELETE FROM {self.table_ref(spec.name)} WHERE {_SLICE_FILTER}", bounds
                    ).fetchone()
                    con.execute(
                        f"INSERT INTO {self.table_ref(spec.name)} ({columns}) SELECT {columns} FROM {staging}"
                    )
                    con.execute("COMMIT")
                except BaseException:
                    con.execute("ROLLBACK")
                    raise
            finally:
                con.execute(f"DROP TABLE IF EXISTS {staging}")
        return LoadResult(spec.name, day, exchange, staged, len(files), int(deleted))

    def _stage(
        self,
        con: duckdb.DuckDBPyConnection,
        spec: WarehouseTable,
        files: list[str],
        staging: str,
        bounds: dict[str, object],
    ) -> int:
        """Copy the files into a temp table typed like the target; return its rows.

        Files of one table may carry fewer columns (a depth-5 book file in the depth-25 table):
        ``union_by_name`` lines them up and a column no file has is NULL. A row outside the
        slice is an error naming the files, because the swap only deletes the slice: such a row
        would be duplicated by the next run.
        """
        con.execute(
            f"CREATE TEMP TABLE {staging} ({', '.join(f'{quote_duckdb(f.name)} {duckdb_type(f.type, column=f.name)}' for f in spec.schema)})"
        )
        if not files:
            return 0
        available = {
            row[0]
            for row in con.execute(
                "DESCRIBE SELECT * FROM read_parquet($files, union_by_name = true)", {"files": files}
            ).fetchall()
        }
        constants = dict(spec.constants)
        select = ", ".join(
            quote_duckdb(f.name)
            if f.name in available
            else f"{_literal(constants.get(f.name))} AS {quote_duckdb(f.name)}"
            for f in spec.schema
        )
        try:
            con.execute(
                f"INSERT INTO {staging} SELECT {select} FROM read_parquet($files, union_by_name = true)",
                {"files": files},
            )
        except duckdb.Error as exc:
            raise WarehouseError(
                f"{spec.name}: cannot stage {len(files)} file(s) ({files[0]} ...): {exc}"
            ) from exc
        rows, outside = con.execute(
            f"SELECT count(*), count(*) FILTER (WHERE NOT coalesce({_SLICE_FILTER}, false)) FROM {staging}",
            bounds,
        ).fetchone()
        if outside:
            offenders = con.execute(
                f"SELECT filename, count(*) FROM read_parquet($files, union_by_name = true, filename = true) "
                f"WHERE NOT coalesce({_SLICE_FILTER}, false) GROUP BY 1 ORDER BY 1 LIMIT 5",
                {"files": files, **bounds},
            ).fetchall()
            raise WarehouseError(
                f"{spec.name} slice {bounds['start']:%Y-%m-%d}|{bounds['exchange']}: {outside} of {rows} staged rows "
                f"are outside the slice (another exchange or day); files: "
                + ", ".join(f"{name} ({n} rows)" for name, n in offenders)
            )
        return int(rows)
