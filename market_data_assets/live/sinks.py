"""Where the live service writes: the lake (bronze log, closed candles, gaps) and the warehouse.

Lake files are append-only micro-batches named by exchange, first timestamp and the writer's id
(``storage.layout.live_*_path``). The warehouse gets the closed candles in the SAME tables as
batch (``candles_15s``, ``candles_1m``) with ``source = 'live'``, and the gaps in ``live_gaps``.
BigQuery gets them through the Storage Write API (``live.bigquery_writer``: COMMITTED streams with
offsets, Arrow rows). DuckDB is opened, written and closed per micro-batch (the file lock is never held between
batches, so a batch load can run meanwhile). A row whose (exchange, instrument, timestamp) is
already in the table is not inserted: a batch row always wins, and writing a micro-batch twice
(a retry, a restart) cannot duplicate a bucket.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING

import duckdb
import polars as pl
import pyarrow as pa

from market_data_assets.candles.compute import KEY
from market_data_assets.live.candles import day_of_us, rows_after
from market_data_assets.live.gaps import LIVE_GAPS_SCHEMA, LIVE_GAPS_TABLE, Gap
from market_data_assets.storage import layout
from market_data_assets.storage.base import ObjectStore
from market_data_assets.warehouse.base import Warehouse, WarehouseError
from market_data_assets.warehouse.duckdb_warehouse import DuckDBWarehouse
from market_data_assets.warehouse.schema import (
    LIVE_SOURCE,
    SOURCE_COLUMN,
    duckdb_columns_ddl,
    get_table,
    quote_duckdb,
)

if TYPE_CHECKING:
    from market_data_assets.live.bigquery_writer import BigQueryLiveWriter

log = logging.getLogger(__name__)

BRONZE_SCHEMA = pa.schema(
    [
        pa.field("exchange", pa.string()),
        pa.field("type", pa.string()),
        pa.field("symbol", pa.string()),
        pa.field("timestamp", pa.timestamp("us", "UTC")),
        pa.field("local_timestamp", pa.timestamp("us", "UTC")),
        pa.field("message", pa.string()),
    ]
)
"""The bronze log: every message as received (raw JSON) with its routing fields."""


@dataclass
class BronzeBuffer:
    """Raw messages waiting for the next flush, by day of their local timestamp (Arrow tables)."""

    tables: dict[date, list[pa.Table]] = field(default_factory=dict)
    count: int = 0

    def add_batch(self, exchange: str, frame: pl.DataFrame, texts: list[str]) -> None:
        """A decoded micro-batch (``messages.decode_batch``) and its raw texts, in arrival order."""
        if not texts:
            return
        table = pa.table(
            {
                "exchange": pa.array([exchange] * len(texts), pa.string()),
                "type": frame["type"].to_arrow(),
                "symbol": frame["symbol"].to_arrow(),
                "timestamp": frame["_ts"].to_arrow().cast(pa.timestamp("us", "UTC")),
                "local_timestamp": frame["_local"].to_arrow().cast(pa.timestamp("us", "UTC")),
                "message": pa.array(texts, pa.string()),
            }
        ).cast(BRONZE_SCHEMA)
        local = frame["_local"]
        first, last = day_of_us(int(local.min())), day_of_us(int(local.max()))  # pyright: ignore[reportArgumentType]
        if first == last:
            self.tables.setdefault(first, []).append(table)
        else:
            days = local.map_elements(day_of_us, return_dtype=pl.Date)
            for day in days.unique(maintain_order=True).to_list():
                mask = (days == day).to_arrow()
                self.tables.setdefault(day, []).append(table.filter(mask))
        self.count += len(texts)

    def take(self) -> dict[date, pa.Table]:
        out = {day: pa.concat_tables(tables) for day, tables in self.tables.items()}
        self.tables = {}
        self.count = 0
        return out


@dataclass
class WrittenCounts:
    rows: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    skipped: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    lake_skipped: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    """Closed buckets not written to the lake because its live files already hold them (a restart)."""
    bronze_rows: int = 0
    bronze_files: int = 0
    gaps: int = 0


class LiveSink:
    """Writes one exchange's closed candles, bronze micro-batches and gaps."""

    def __init__(self, store: ObjectStore, warehouse: Warehouse | None, exchange: str, writer: str) -> None:
        self.store = store
        self.warehouse = warehouse
        self.exchange = exchange
        self.writer = writer
        self.written = WrittenCounts()
        self._seq = 0
        self._written_until: int | None = None
        self._lake_until: dict[str, dict[str, int]] = {}
        """timeframe -> instrument -> last bucket (epoch µs) in the lake's live files."""
        self._lake_held: dict[str, pl.DataFrame] = {}
        """timeframe -> (instrument, bucket) in files a killed process had pending."""
        self._bigquery: BigQueryLiveWriter | None = None
        if isinstance(warehouse, DuckDBWarehouse):
            warehouse.ensure_tables()
            with warehouse.connect() as con:
                con.execute(
                    f"CREATE TABLE IF NOT EXISTS {quote_duckdb(warehouse.schema)}.{quote_duckdb(LIVE_GAPS_TABLE)} "
                    f"({duckdb_columns_ddl(LIVE_GAPS_SCHEMA)})"
                )
        elif warehouse is not None:
            from market_data_assets.warehouse.bigquery_warehouse import BigQueryWarehouse

            if not isinstance(warehouse, BigQueryWarehouse):
                raise WarehouseError(
                    f"market-data live writes DuckDB and BigQuery warehouses; {warehouse!r} is neither "
                    "(run without a warehouse: --no-warehouse)"
                )
            from market_data_assets.live.bigquery_writer import BigQueryLiveWriter

            self._bigquery = BigQueryLiveWriter(warehouse, exchange)

    def close(self) -> None:
        """Release the warehouse writer (BigQuery: finalize this process's write streams)."""
        if self._bigquery is not None:
            self._bigquery.close()

    def _unique(self, first_us: int) -> tuple[int, str]:
        self._seq += 1
        return first_us, f"{self.writer}{self._seq:06d}"

    # --- candles -------------------------------------------------------------------------------

    def write_candles(self, timeframe: str, frame: pl.DataFrame) -> int:
        """Closed candles of one timeframe (``write_closed`` without moving the checkpoint)."""
        return self.write_closed({timeframe: frame}, None).get(timeframe, 0)

    def write_closed(self, frames: dict[str, pl.DataFrame], written_until_us: int | None) -> dict[str, int]:
        """Closed candles per timeframe (any days): lake files per day, the warehouse, the checkpoint.

        Why the write-ahead entry: a process killed between its lake files and its checkpoint left
        files the checkpoint does not know, and the restarted process closed some of the same
        buckets again (duplicates in ``live_candles/``). The checkpoint first names the files about
        to be written (``pending``); once written it records, per timeframe and instrument, the last
        bucket in the lake (``lake_until``). A restart reads both (at most the few pending files) and
        never writes a bucket the lake already holds. Returns the rows inserted per timeframe.
        """
        frames = {tf: f for tf, f in frames.items() if f.height}
        if not frames and written_until_us is None:
            return {}
        files: list[tuple[str, str, pl.DataFrame]] = []
        for tf, frame in frames.items():
            lake_rows = self._not_in_lake(
                tf, frame.with_columns(pl.lit(LIVE_SOURCE, pl.String).alias(SOURCE_COLUMN))
            )
            self.written.lake_skipped[tf] += frame.height - lake_rows.height
            by_day = lake_rows.with_columns(pl.col("timestamp").dt.date().alias("_day")).partition_by(
                "_day", as_dict=True, include_key=False
            )
            for (day,), rows in sorted(by_day.items()):
                first = int(rows["timestamp"].dt.epoch("us").min())  # pyright: ignore[reportArgumentType]
                files.append(
                    (tf, layout.live_candles_path(day, tf, self.exchange, *self._unique(first)), rows)
                )
        if files:
            self._put_checkpoint(pending=[[tf, path] for tf, path, _ in files])
        for tf, path, rows in files:
            self.store.write_parquet(rows.to_arrow(), path)
            last = rows.group_by(KEY).agg(pl.col("timestamp").dt.epoch("us").max())
            self._lake_until.setdefault(tf, {}).update(last.iter_rows())
        inserted: dict[str, int] = {}
        for tf, frame in frames.items():
            frame = frame.with_columns(pl.lit(LIVE_SOURCE, pl.String).alias(SOURCE_COLUMN))
            table = f"candles_{tf}"
            if self._bigquery is not None:
                n = self._bigquery.insert_candles(table, frame)
            elif self.warehouse is not None:
                n = self._insert_candles(table, frame)
            else:
                n = 0
            inserted[tf] = n
            self.written.rows[tf] += n
            self.written.skipped[tf] += frame.height - n
        if written_until_us is not None:
            self._written_until = written_until_us
        if files or written_until_us is not None:
            self._put_checkpoint(pending=[])
        return inserted

    def _not_in_lake(self, tf: str, frame: pl.DataFrame) -> pl.DataFrame:
        """The rows of ``frame`` whose bucket the lake does not hold yet (per instrument)."""
        frame = rows_after(frame, self._lake_until.get(tf, {}))
        held = self._lake_held.get(tf)
        if held is not None and held.height:
            frame = (
                frame.with_columns(pl.col("timestamp").dt.epoch("us").alias("_t"))
                .join(held, on=[KEY, "_t"], how="anti")
                .drop("_t")
            )
        return frame

    def _insert_candles(self, table: str, frame: pl.DataFrame) -> int:
        assert isinstance(self.warehouse, DuckDBWarehouse)
        spec = get_table(table)
        columns = ", ".join(quote_duckdb(n) for n in spec.schema.names)
        target = self.warehouse.table_ref(table)
        rows = frame.select(spec.schema.names).to_arrow()
        with self.warehouse.connect() as con:
            con.register("live_rows", rows)
            con.execute("BEGIN TRANSACTION")
            try:
                (n,) = con.execute(  # pyright: ignore[reportGeneralTypeIssues]  DuckDB answers an INSERT with one row, its count
                    f"INSERT INTO {target} ({columns}) SELECT {columns} FROM live_rows AS l "
                    f"WHERE NOT EXISTS (SELECT 1 FROM {target} AS t WHERE t.exchange = l.exchange "
                    f"AND t.{quote_duckdb(KEY)} = l.{quote_duckdb(KEY)} AND t.timestamp = l.timestamp)"
                ).fetchone()
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        return int(n)

    # --- checkpoint ----------------------------------------------------------------------------

    def write_checkpoint(self, written_until_us: int) -> None:
        """Every closed bucket ending at or before ``written_until_us`` is in the warehouse and lake."""
        self._written_until = written_until_us
        self._put_checkpoint(pending=[])

    def _put_checkpoint(self, pending: list[list[str]]) -> None:
        body = json.dumps(
            {
                "exchange": self.exchange,
                "written_until_us": self._written_until,
                "writer": self.writer,
                "lake_until": self._lake_until,
                "pending": pending,
            }
        )
        self.store.put_bytes(body.encode(), layout.live_checkpoint_path(self.exchange))

    def read_checkpoint(self) -> int | None:
        """How far the written candles reach (None: no checkpoint); loads the lake state too."""
        path = layout.live_checkpoint_path(self.exchange)
        if not self.store.exists(path):
            return None
        body = json.loads(self.store.get_bytes(path))
        self._lake_until = {
            tf: {k: int(v) for k, v in keys.items()} for tf, keys in body.get("lake_until", {}).items()
        }
        held: dict[str, list[pl.DataFrame]] = {}
        for tf, pending in body.get("pending", []):
            # files a killed process may or may not have written before its checkpoint caught up
            if self.store.exists(pending):
                rows = pl.from_arrow(self.store.read_parquet(pending, columns=[KEY, "timestamp"]))
                assert isinstance(rows, pl.DataFrame)
                held.setdefault(tf, []).append(
                    rows.select(pl.col(KEY), pl.col("timestamp").dt.epoch("us").alias("_t"))
                )
        self._lake_held = {tf: pl.concat(parts) for tf, parts in held.items()}
        until = body.get("written_until_us")
        self._written_until = None if until is None else int(until)
        return self._written_until

    # --- bronze --------------------------------------------------------------------------------

    def write_bronze(self, tables: dict[date, pa.Table]) -> None:
        for day, table in sorted(tables.items()):
            if table.num_rows == 0:
                continue
            first = table["local_timestamp"][0].value
            path = layout.live_ticks_path(day, self.exchange, *self._unique(first))
            self.store.write_parquet(table, path)
            self.written.bronze_rows += table.num_rows
            self.written.bronze_files += 1

    # --- gaps ----------------------------------------------------------------------------------

    def write_gap(self, gap: Gap) -> None:
        table = gap.table(self.writer)
        self.store.write_parquet(
            table, layout.live_gaps_path(day_of_us(gap.from_us), self.exchange, *self._unique(gap.from_us))
        )
        if self._bigquery is not None:
            self._bigquery.insert_gap(table)
        elif isinstance(self.warehouse, DuckDBWarehouse):
            target = f"{quote_duckdb(self.warehouse.schema)}.{quote_duckdb(LIVE_GAPS_TABLE)}"
            with self.warehouse.connect() as con:
                con.register("gap_rows", table)
                con.execute(f"INSERT INTO {target} SELECT * FROM gap_rows")
        self.written.gaps += 1
        log.warning(
            "%s gap %s from %s to %s recorded",
            self.exchange,
            gap.kind,
            pl.Series([gap.from_us]).cast(pl.Datetime("us", "UTC"))[0],
            pl.Series([gap.to_us]).cast(pl.Datetime("us", "UTC"))[0],
        )


def read_live_gaps(warehouse: DuckDBWarehouse, exchange: str) -> pl.DataFrame:
    """The recorded gaps of ``exchange`` (empty when the table does not exist yet)."""
    target = f"{quote_duckdb(warehouse.schema)}.{quote_duckdb(LIVE_GAPS_TABLE)}"
    with warehouse.connect() as con:
        try:
            result = con.execute(f"SELECT * FROM {target} WHERE exchange = ? ORDER BY gap_from", [exchange])
            return pl.from_arrow(result.to_arrow_table())  # pyright: ignore[reportReturnType]
        except duckdb.CatalogException:
            return pl.DataFrame(schema=dict(pl.from_arrow(LIVE_GAPS_SCHEMA.empty_table()).schema))  # pyright: ignore[reportAttributeAccessIssue]
