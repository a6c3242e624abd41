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

Memory is bounded: every connection runs with ``memory_limit`` and ``threads`` (settings
``MARKET_DATA_DUCKDB_MEMORY_LIMIT``/``_THREADS``) and without insertion-order preservation (no
table here has an order), and a slice is staged ``batch_files`` files per INSERT; what exceeds the
limit spills to ``<file>.tmp``. A source is a local Parquet file, read by polars in batches (DuckDB's
``read_parquet`` where polars refuses a batch, or the files' columns vary), or an object of a remote
``ObjectStore`` (``gs://``), downloaded through the store by a small thread pool and parsed by
polars a batch at a time (pyarrow file by file where polars refuses); both are inserted as Arrow
batches (remote ones of about ``batch_bytes``): see ``_Sources``.
"""

from __future__ import annotations

import io
import re
import uuid
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import tenacity

from market_data_assets.days import day_bounds
from market_data_assets.settings import (
    DUCKDB_BATCH_FILES_DEFAULT,
    DUCKDB_MEMORY_LIMIT_DEFAULT,
    DUCKDB_THREADS_DEFAULT,
)
from market_data_assets.storage import open_store
from market_data_assets.storage.base import ObjectStore
from market_data_assets.storage.local import LocalStore
from market_data_assets.storage.parallel import DEFAULT_IO_CONCURRENCY
from market_data_assets.warehouse.base import (
    LoadResult,
    StagedSlice,
    Warehouse,
    WarehouseError,
    check_slice,
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
DEFAULT_BATCH_BYTES = 64 * 2**20
"""Remote sources: decoded Arrow bytes gathered before one INSERT (a batch also ends at ``batch_files``)."""
DEFAULT_READERS = DEFAULT_IO_CONCURRENCY
"""Remote sources: objects read at once. Each read is one GET, latency-bound on GCS: 8 readers held
the 22,000 small files of a Deribit day's candles to ~270 files/s at 30 ms per request."""

_SLICE_FILTER = f"{quote_duckdb(EXCHANGE_COLUMN)} = $exchange AND {quote_duckdb(PARTITION_COLUMN)} >= $start AND {quote_duckdb(PARTITION_COLUMN)} < $end"
_FILENAME = "filename"
"""The column naming each row's source file when the slice check looks for offenders."""


def _literal(value: str | None) -> str:
    """A load constant as SQL (NULL for a column the files lack and no constant fills)."""
    return "NULL" if value is None else "'" + value.replace("'", "''") + "'"


def _is_lock_conflict(exc: BaseException) -> bool:
    return isinstance(exc, duckdb.IOException) and "lock" in str(exc).lower()


@dataclass
class _Batch:
    """A few sources as one SQL ``FROM`` item: ``read_parquet`` of local files, or a registered Arrow table."""

    uris: list[str]
    relation: str
    params: dict[str, object] = field(default_factory=dict)


class _Sources:
    """The one home of what a source is for this warehouse, and of how a batch of them is read.

    A source is a URI as ``DuckDBWarehouse.source_uri`` returns it: a local Parquet file (DuckDB's
    ``read_parquet`` reads it) or an object of a remote store (``gs://...``), read with
    ``ObjectStore.read_parquet`` through the store that produced the URI (or one opened on its
    bucket). Every error names the file.

    Columns are matched by name. Where a table's files may carry a subset of its columns
    (``files_vary``: depth-5 book files in the depth-25 tables) ``union_by_name`` (Arrow: a
    permissive concat) lines them up; elsewhere DuckDB reads the files as one schema and names
    a file that differs (``union_by_name`` costs a footer read per file at bind time).
    """

    def __init__(
        self, warehouse: DuckDBWarehouse, spec: WarehouseTable, uris: Sequence[str], what: str
    ) -> None:
        self._wh = warehouse
        self._spec = spec
        self.what = what
        self.local: list[str] = []
        self.remote: list[tuple[str, ObjectStore, str]] = []
        for uri in uris:
            if "://" in uri:
                store, path = warehouse._remote_store(uri, what)
                self.remote.append((uri, store, path))
            elif Path(uri).is_file():
                self.local.append(uri)
            else:
                raise WarehouseError(f"{what}: source file {uri} does not exist")

    def __len__(self) -> int:
        return len(self.local) + len(self.remote)

    def batches(self, con: duckdb.DuckDBPyConnection, *, filename: bool = False) -> Iterator[_Batch]:
        """Every source once: ``batch_files`` local files, or one bounded Arrow batch, at a time.

        With ``filename`` each row also carries its source's name in a ``filename`` column.
        """
        options = "".join(
            [
                ", union_by_name = true" if self._spec.files_vary else "",
                ", filename = true" if filename else "",
            ]
        )
        size = self._wh.batch_files
        view = f"source_batch_{uuid.uuid4().hex[:12]}"
        groups = [self.local[i : i + size] for i in range(0, len(self.local), size)]
        use_polars = not (filename or self._spec.files_vary)
        # The next batch is read (polars, off the GIL) while DuckDB inserts this one: one batch ahead.
        with ThreadPoolExecutor(max_workers=1) as reader:
            ahead: Future[pa.Table | None] | None = None
            for n, uris in enumerate(groups):
                table = (ahead.result() if ahead else _read_polars(uris)) if use_polars else None
                ahead = (
                    reader.submit(_read_polars, groups[n + 1]) if use_polars and n + 1 < len(groups) else None
                )
                if table is None:
                    yield _Batch(uris, f"read_parquet($files{options})", {"files": uris})
                else:
                    yield from self._registered(con, view, uris, [table])
        if self.remote:
            yield from self._remote_batches(con, filename=filename)

    def _remote_batches(self, con: duckdb.DuckDBPyConnection, *, filename: bool) -> Iterator[_Batch]:
        """Remote sources in batches of at most ``batch_files`` files and about ``batch_bytes`` of
        Arrow data, downloaded ahead by ``readers`` threads. A batch of one schema is parsed by
        polars in one call (a third of pyarrow's CPU per small file: a slice is thousands of
        one-instrument files); any other batch (files that vary, ``filename``, or one polars
        refuses) file by file with pyarrow, whose errors name the file."""
        view = f"source_batch_{uuid.uuid4().hex[:12]}"
        use_polars = not (filename or self._spec.files_vary)
        group: list[tuple[str, bytes]] = []
        size = 0
        for uri, data in self._download_remote():
            group.append((uri, data))
            size += len(data)
            if len(group) >= self._wh.batch_files or size * _PARQUET_EXPANSION >= self._wh.batch_bytes:
                yield from self._registered(
                    con, view, [u for u, _ in group], self._parse(group, use_polars, filename)
                )
                group, size = [], 0
        if group:
            yield from self._registered(
                con, view, [u for u, _ in group], self._parse(group, use_polars, filename)
            )

    def _parse(self, group: list[tuple[str, bytes]], use_polars: bool, filename: bool) -> list[pa.Table]:
        """The group's Arrow tables, restricted to the table's columns (plus ``filename``)."""
        names = set(self._spec.schema.names)
        together = _read_polars([data for _, data in group]) if use_polars else None
        if together is not None:
            return [together.select([c for c in together.column_names if c in names])]
        tables = []
        for uri, data in group:
            try:
                with pq.ParquetFile(pa.BufferReader(data)) as f:
                    table = f.read()
            except (pa.ArrowInvalid, pa.ArrowKeyError, OSError) as exc:
                raise WarehouseError(
                    f"{self.what}: cannot read source {uri}: not a readable Parquet file: {exc}"
                ) from exc
            table = table.select([c for c in table.column_names if c in names])
            if filename:
                table = table.append_column(_FILENAME, pa.array([uri] * table.num_rows, pa.string()))
            tables.append(table)
        return tables

    def _registered(
        self, con: duckdb.DuckDBPyConnection, view: str, uris: list[str], tables: list[pa.Table]
    ) -> Iterator[_Batch]:
        try:
            # One chunk per column: DuckDB's Arrow scan pays per chunk (10x on 3,000 one-file chunks).
            table = pa.concat_tables(tables, promote_options="permissive").combine_chunks()
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise WarehouseError(
                f"{self.what}: files with incompatible column types among {len(uris)} ({uris[0]} ...): {exc}"
            ) from exc
        con.register(view, table)
        try:
            yield _Batch(list(uris), quote_duckdb(view))
        finally:
            con.unregister(view)

    def _download_remote(self) -> Iterator[tuple[str, bytes]]:
        """The remote sources' bytes in order, read ahead by ``readers`` threads (at most 2x in flight)."""

        def read(item: tuple[str, ObjectStore, str]) -> bytes:
            uri, store, path = item
            try:
                return store.get_bytes(path)
            except Exception as exc:
                raise WarehouseError(f"{self.what}: cannot read source {uri}: {exc}") from exc

        items = iter(self.remote)
        pool = ThreadPoolExecutor(max_workers=min(self._wh.readers, len(self.remote)))
        pending: deque[tuple[str, Future[bytes]]] = deque()
        try:
            for item in items:
                pending.append((item[0], pool.submit(read, item)))
                if len(pending) >= 2 * self._wh.readers:
                    break
            while pending:
                uri, future = pending.popleft()
                data = future.result()
                nxt = next(items, None)
                if nxt is not None:
                    pending.append((nxt[0], pool.submit(read, nxt)))
                yield uri, data
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


_PARQUET_EXPANSION = 4
"""Arrow bytes per Parquet byte, roughly (snappy/zstd candle files): bounds a remote batch's memory
from the downloaded sizes, before it is parsed."""


def _read_polars(sources: Sequence[str | bytes]) -> pa.Table | None:
    """Parquet files of one schema (local paths, or downloaded objects' bytes) as one Arrow table
    read by polars in one call; None if polars refuses one, and the caller reads the batch its own
    way, naming the file (DuckDB's ``read_parquet`` locally, pyarrow file by file for objects).

    polars reads thousands of small files at a third of DuckDB's per-file cost (``read_parquet``
    of 3,144 one-instrument files: 4.7 s of CPU, polars: 1.3 s) and of pyarrow's (2,000 downloaded
    candle files: 2.4 ms of CPU each with pyarrow, 1.2 ms with polars, download included).
    """
    # polars scans a list of in-memory files as well as paths; its annotation names paths only.
    inputs: Any = [io.BytesIO(s) if isinstance(s, bytes) else s for s in sources]
    try:
        frame = pl.scan_parquet(inputs).collect()
    except (pl.exceptions.PolarsError, OSError):
        return None
    return frame.rechunk().to_arrow()


class DuckDBWarehouse(Warehouse):
    kind = "duckdb"

    def __init__(
        self,
        path: str | Path,
        *,
        schema: str = DUCKDB_SCHEMA,
        lock_timeout: float = 120.0,
        memory_limit: str = DUCKDB_MEMORY_LIMIT_DEFAULT,
        threads: int = DUCKDB_THREADS_DEFAULT,
        batch_files: int = DUCKDB_BATCH_FILES_DEFAULT,
        batch_bytes: int = DEFAULT_BATCH_BYTES,
        readers: int = DEFAULT_READERS,
    ) -> None:
        """``memory_limit``/``threads`` apply to every connection; a slice is staged ``batch_files``
        files per INSERT (remote sources: also at most ``batch_bytes`` of Arrow data, read by
        ``readers`` threads)."""
        if batch_files < 1 or batch_bytes < 1 or readers < 1 or threads < 1:
            raise ValueError("batch_files, batch_bytes, readers and threads must be at least 1")
        self.path = Path(path).expanduser().resolve()
        self.schema = schema
        self.uri = f"duckdb://{self.path}"
        self.memory_limit = memory_limit
        self.threads = threads
        self.batch_files = batch_files
        self.batch_bytes = batch_bytes
        self.readers = readers
        self._lock_timeout = lock_timeout
        self._ensured: set[str] = set()
        self._stores: dict[str, ObjectStore] = {}
        """Remote stores by root: those ``source_uri`` saw, and those opened for a bare ``gs://`` URI."""

    def __repr__(self) -> str:
        return f"DuckDBWarehouse({self.uri!r})"

    # --- connections -------------------------------------------------------------------------

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection to the warehouse file in UTC, memory-bounded; waits while another process holds the lock."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        config = {
            "memory_limit": self.memory_limit,
            "threads": self.threads,
            # Nothing here depends on row order; keeping it costs memory in parallel inserts.
            "preserve_insertion_order": False,
        }
        opener = tenacity.Retrying(
            retry=tenacity.retry_if_exception(_is_lock_conflict),
            wait=tenacity.wait_random_exponential(multiplier=0.05, max=2.0),
            stop=tenacity.stop_after_delay(self._lock_timeout),
            reraise=True,
        )
        try:
            con = opener(duckdb.connect, str(self.path), config=config)
        except duckdb.IOException as exc:
            if not _is_lock_conflict(exc):
                raise
            raise WarehouseError(
                f"{self.path} stayed locked by another process for {self._lock_timeout:.0f} s: {exc}"
            ) from exc
        try:
            con.execute("SET TimeZone = 'UTC'")
            con.execute("SET enable_progress_bar = false")  # a long INSERT would draw on the step's stdout
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
        """A local store's file path, or a remote store's URI (the store is kept to read it with)."""
        uri = store.uri(path)
        if not isinstance(store, LocalStore):
            self._stores.setdefault(store.root.rstrip("/"), store)
        return uri

    def _remote_store(self, uri: str, what: str) -> tuple[ObjectStore, str]:
        """The store that reads ``uri`` and the path in it: a known store's root, else the URI's bucket."""
        for root, store in self._stores.items():
            if uri.startswith(root + "/"):
                return store, uri[len(root) + 1 :]
        if not uri.startswith("gs://"):
            raise WarehouseError(f"{what}: source {uri} is neither a local file nor a gs:// object")
        bucket, _, name = uri.removeprefix("gs://").partition("/")
        try:
            store = open_store(f"gs://{bucket}")
        except Exception as exc:
            raise WarehouseError(f"{what}: cannot open the store of source {uri}: {exc}") from exc
        self._stores[store.root.rstrip("/")] = store
        return store, name

    def count(self, table: str, day: date, exchange: str) -> int:
        check_slice(table, day, exchange)
        start, end = day_bounds(day)
        with self.connect() as con:
            self._ensure(con, get_table(table))
            (n,) = con.execute(  # pyright: ignore[reportGeneralTypeIssues]  count(*) always has a row
                f"SELECT count(*) FROM {self.table_ref(table)} WHERE {_SLICE_FILTER}",
                {"exchange": exchange, "start": start, "end": end},
            ).fetchone()
        return int(n)

    def replace_slice(self, table: str, day: date, exchange: str, source_uris: Sequence[str]) -> LoadResult:
        check_slice(table, day, exchange)
        spec = get_table(table)
        sources = _Sources(self, spec, source_uris, f"{table} {day} {exchange}")
        start, end = day_bounds(day)
        bounds = {"exchange": exchange, "start": start, "end": end}
        staging = quote_duckdb(f"staging_{spec.name}_{uuid.uuid4().hex[:12]}")
        columns = ", ".join(quote_duckdb(n) for n in spec.schema.names)
        with self.connect() as con:
            self._ensure(con, spec)
            try:
                staged = self._stage(con, spec, sources, staging, bounds)
                if self.before_replace is not None:
                    self.before_replace(
                        StagedSlice(spec.name, day, exchange, staging, staged, lambda sql: con.execute(sql))
                    )
                con.execute("BEGIN TRANSACTION")
                try:
                    (deleted,) = con.execute(  # pyright: ignore[reportGeneralTypeIssues]  DuckDB answers a DELETE with one row, its count
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
        return LoadResult(spec.name, day, exchange, staged, len(sources), int(deleted))

    def _stage(
        self,
        con: duckdb.DuckDBPyConnection,
        spec: WarehouseTable,
        sources: _Sources,
        staging: str,
        bounds: dict[str, object],
    ) -> int:
        """Copy the sources into a temp table typed like the target, batch by batch; return its rows.

        Files of one table may carry fewer columns (a depth-5 book file in the depth-25 table):
        ``union_by_name`` (Arrow: a permissive concat) lines them up and a column no file of the
        batch has is NULL. A row outside the slice is an error naming the files, because the swap
        only deletes the slice: such a row would be duplicated by the next run.
        """
        con.execute(
            f"CREATE TEMP TABLE {staging} ({', '.join(f'{quote_duckdb(f.name)} {duckdb_type(f.type, column=f.name)}' for f in spec.schema)})"
        )
        # The table's columns by name (a file's other columns are ignored); a column no file of the
        # batch has stays NULL.
        # Load constants (e.g. source = 'batch') are not in the files: the SELECT adds them.
        constants = dict(spec.constants)
        known = "^(" + "|".join(re.escape(n) for n in spec.schema.names if n not in constants) + ")$"
        extra = "".join(f", {_literal(v)} AS {quote_duckdb(n)}" for n, v in constants.items())
        for batch in sources.batches(con):
            try:
                con.execute(
                    f"INSERT INTO {staging} BY NAME SELECT COLUMNS($known){extra} FROM {batch.relation}",
                    {**batch.params, "known": known},
                )
            except duckdb.Error as exc:
                raise WarehouseError(
                    f"{spec.name}: cannot stage {len(batch.uris)} file(s) ({batch.uris[0]} ...): {exc}"
                ) from exc
        # fetchall, not fetchone: a result left unfinished blocks registering Arrow batches.
        ((rows, outside),) = con.execute(
            f"SELECT count(*), count(*) FILTER (WHERE NOT coalesce({_SLICE_FILTER}, false)) FROM {staging}",
            bounds,
        ).fetchall()
        if outside:
            offenders: list[tuple[str, int]] = []
            for batch in sources.batches(con, filename=True):
                offenders += con.execute(
                    f"SELECT {_FILENAME}, count(*) FROM {batch.relation} "
                    f"WHERE NOT coalesce({_SLICE_FILTER}, false) GROUP BY 1 ORDER BY 1 LIMIT 5",
                    {**batch.params, **bounds},
                ).fetchall()
                if len(offenders) >= 5:
                    break
            raise WarehouseError(
                f"{spec.name} slice {bounds['start']:%Y-%m-%d}|{bounds['exchange']}: {outside} of {rows} staged rows "
                f"are outside the slice (another exchange or day); files: "
                + ", ".join(f"{name} ({n} rows)" for name, n in offenders[:5])
            )
        return int(rows)
