"""Where the live service writes: the lake (bronze log, closed candles, gaps) and the warehouse.

Lake files are append-only micro-batches named by exchange, first timestamp and the writer's id
(``storage.layout.live_*_path``). The warehouse gets the closed candles in the SAME tables as
batch (``candles_15s``, ``candles_1m``) with ``source = 'live'``, and the gaps in ``live_gaps``.
DuckDB is opened, written and closed per micro-batch (the file lock is never held between
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

import duckdb
import polars as pl
import pyarrow as pa

from market_data_assets.candles.compute import KEY
from market_data_assets.live.candles import day_of_us
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
    """Raw messages waiting for the next flush, by day of their local timestamp."""

    rows: dict[date, dict[str, list]] = field(default_factory=dict)
    count: int = 0

    def add(
        self, exchange: str, kind: str, symbol: str | None, ts: int | None, local: int, text: str
    ) -> None:
        day = day_of_us(local)
        columns = self.rows.get(day)
        if columns is None:
            columns = self.rows[day] = {n: [] for n in BRONZE_SCHEMA.names}
        columns["exchange"].append(exchange)
        columns["type"].append(kind)
        columns["symbol"].append(symbol)
        columns["timestamp"].append(ts)
        columns["local_timestamp"].append(local)
        columns["message"].append(text)
        self.count += 1

    def take(self) -> dict[date, pa.Table]:
        out = {day: pa.table(columns, schema=BRONZE_SCHEMA) for day, columns in self.rows.items()}
        self.rows = {}
        self.count = 0
        return out


@dataclass
class WrittenCounts:
    rows: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    skipped: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    bronze_rows: int = 0
    bronze_files: int = 0
    gaps: int = 0


class LiveSink:
    """Writes one exchange's closed candles, bronze micro-batches and gaps."""

    def __init__(self, store: ObjectStore, warehouse: Warehouse | None, exchange: str, writer: str) -> None:
        if warehouse is not None and not isinstance(warehouse, DuckDBWarehouse):
            raise WarehouseError(
                f"market-data live writes DuckDB warehouses only for now; {warehouse!r} is not one "
                "(set MARKET_DATA_WAREHOUSE=duckdb, or run without a warehouse: --no-warehouse)"
            )
        self.store = store
        self.warehouse = warehouse
        self.exchange = exchange
        self.writer = writer
        self.written = WrittenCounts()
        self._seq = 0
        if warehouse is not None:
            warehouse.ensure_tables()
            with warehouse.connect() as con:
                con.execute(
                    f"CREATE TABLE IF NOT EXISTS {quote_duckdb(warehouse.schema)}.{quote_duckdb(LIVE_GAPS_TABLE)} "
                    f"({duckdb_columns_ddl(LIVE_GAPS_SCHEMA)})"
                )

    def _unique(self, first_us: int) -> tuple[int, str]:
        self._seq += 1
        return first_us, f"{self.writer}{self._seq:06d}"

    # --- candles -------------------------------------------------------------------------------

    def write_candles(self, timeframe: str, frame: pl.DataFrame) -> int:
        """Closed candles of one timeframe (any days): lake files per day, then the warehouse."""
        if frame.height == 0:
            return 0
        frame = frame.with_columns(pl.lit(LIVE_SOURCE, pl.String).alias(SOURCE_COLUMN))
        by_day = frame.with_columns(pl.col("timestamp").dt.date().alias("_day")).partition_by(
            "_day", as_dict=True, include_key=False
        )
        for (day,), rows in sorted(by_day.items()):
            first = int(rows["timestamp"].cast(pl.Int64).min())  # pyright: ignore[reportArgumentType]
            path = layout.live_candles_path(day, timeframe, self.exchange, *self._unique(first))
            self.store.write_parquet(rows.to_arrow(), path)
        inserted = self._insert_candles(f"candles_{timeframe}", frame) if self.warehouse is not None else 0
        self.written.rows[timeframe] += inserted
        self.written.skipped[timeframe] += frame.height - inserted
        return inserted

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
        body = json.dumps(
            {"exchange": self.exchange, "written_until_us": written_until_us, "writer": self.writer}
        )
        self.store.put_bytes(body.encode(), layout.live_checkpoint_path(self.exchange))

    def read_checkpoint(self) -> int | None:
        path = layout.live_checkpoint_path(self.exchange)
        if not self.store.exists(path):
            return None
        return int(json.loads(self.store.get_bytes(path))["written_until_us"])

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
        if isinstance(self.warehouse, DuckDBWarehouse):
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
