"""Closed live candles and gaps into BigQuery through the Storage Write API (Arrow rows).

Why the Storage Write API: a live micro-batch every few seconds would be one load job each (a
daily quota of 100,000 per table and seconds of latency) or the legacy ``insertAll`` streaming
(JSON rows, and its streaming buffer blocks the batch slice replace's ``DELETE`` for up to 90
minutes). Appends to a write stream carry Arrow record batches, cost half of ``insertAll``, and
the rows they commit can be deleted by DML at once, so the batch slice replace of (day, exchange)
still replaces the live rows.

Exactly once, per candle table (one live writer per exchange, as with DuckDB):

* within a process, each table has one COMMITTED write stream and every append names its
  offset (the rows the stream already holds). Re-sending an append whose answer was lost lands
  at the same offset, and the server answers ``ALREADY_EXISTS`` (in ``AppendRowsResponse.error``)
  instead of committing the rows twice. Buckets close once per instrument and in time order, so
  rows at or before the last bucket written for an instrument are never sent again;
* across processes (a crash, kill -9, a restart), the new process's first append to a table, and
  any append after a stream had to be replaced, first asks the table which of the batch's buckets
  (``timestamp >=`` the batch's first bucket, any later one included) it already holds, and drops
  those: the crashed process may have appended rows its checkpoint does not show. The DuckDB
  writer's rule, "a live write never inserts a bucket the table already holds", then holds too.

What this does not cover: a batch slice replace of the very day the live writer is still writing
(batch publishes a day around 06:00 UTC the next day, so only a service more than a day behind the
stream would see it). ``live_gaps`` rows go to the ``_default`` stream (at-least-once: a gap is
appended once, when it closes, and re-sent only when the append failed).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import polars as pl
import pyarrow as pa
from google.api_core import exceptions as gexc
from google.cloud import bigquery
from google.cloud.bigquery_storage_v1 import BigQueryWriteClient, types

from market_data_assets.candles.compute import KEY
from market_data_assets.live.candles import rows_after
from market_data_assets.live.gaps import LIVE_GAPS_SCHEMA, LIVE_GAPS_TABLE
from market_data_assets.warehouse.base import WarehouseError
from market_data_assets.warehouse.bigquery_warehouse import BigQueryWarehouse, bigquery_write_client
from market_data_assets.warehouse.schema import get_table

log = logging.getLogger(__name__)

_ALREADY_EXISTS = 6
"""google.rpc.Code ALREADY_EXISTS: an append at an offset the stream already holds."""
_MAX_REQUEST_BYTES = 2 * 1024 * 1024
"""Rows per AppendRows request are cut below this: BigQuery takes 10 MB per request, but a gRPC
server's default receive limit (local-bigquery's) is 4 MiB, and Arrow's in-memory size only
approximates the serialized one."""
_TRANSIENT = (gexc.ServiceUnavailable, gexc.DeadlineExceeded, gexc.InternalServerError, gexc.Aborted)
_RESENDS = 5
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _chunks(table: pa.Table) -> list[pa.RecordBatch]:
    """The table as record batches small enough for one AppendRows request each."""
    if table.num_rows == 0:
        return []
    per_row = max(1, table.nbytes // table.num_rows)
    rows = max(1, _MAX_REQUEST_BYTES // per_row)
    return [b for start in range(0, table.num_rows, rows) for b in table.slice(start, rows).to_batches()]


def _request(
    stream: str, schema: pa.Schema, batch: pa.RecordBatch, offset: int | None
) -> types.AppendRowsRequest:
    """One AppendRows request; it is always the first of its RPC, so it carries the writer schema."""
    request = types.AppendRowsRequest(write_stream=stream)
    if offset is not None:
        request.offset = offset  # pyright: ignore[reportAttributeAccessIssue]  proto-plus wraps an int into Int64Value
    request.arrow_rows = types.AppendRowsRequest.ArrowData(
        writer_schema=types.ArrowSchema(serialized_schema=schema.serialize().to_pybytes()),
        rows=types.ArrowRecordBatch(
            serialized_record_batch=batch.serialize().to_pybytes(), row_count=batch.num_rows
        ),
    )
    return request


class StreamAppender:
    """Appends Arrow rows to one table: a COMMITTED stream with offsets, or ``_default``."""

    def __init__(
        self, client: BigQueryWriteClient, parent: str, schema: pa.Schema, *, committed: bool
    ) -> None:
        self.client = client
        self.parent = parent
        self.schema = schema
        self.committed = committed
        self.stream: str | None = None
        self.offset = 0
        self.replaced = False
        """True when a new stream replaced a failed one: whether the last rows landed is unknown."""

    def _open(self) -> str:
        if not self.committed:
            # the only spelling of the default stream local-bigquery accepts (and BigQuery's own)
            return f"{self.parent}/streams/_default"
        if self.stream is None:
            stream = self.client.create_write_stream(
                parent=self.parent,
                write_stream=types.WriteStream(type_=types.WriteStream.Type.COMMITTED),
            )
            self.stream, self.offset = stream.name, 0
        return self.stream

    def append(self, table: pa.Table) -> None:
        """Append ``table`` (already in ``schema``); raises WarehouseError naming the table on failure."""
        for batch in _chunks(table.cast(self.schema)):
            self._append_batch(batch)

    def _append_batch(self, batch: pa.RecordBatch) -> None:
        last: Exception | None = None
        for _ in range(_RESENDS):
            stream = self._open()
            offset = self.offset if self.committed else None
            try:
                responses = list(
                    self.client.append_rows(iter([_request(stream, self.schema, batch, offset)]))
                )
            except _TRANSIENT as exc:
                last = exc  # the same offset again: ALREADY_EXISTS tells whether it had landed
                continue
            except gexc.GoogleAPICallError as exc:
                if not self.committed:
                    raise WarehouseError(
                        f"appending {batch.num_rows} rows to {self.parent} failed: {exc}"
                    ) from exc
                # the stream itself is unusable (finalized, expired, gone): a new one; the caller
                # re-checks which rows the table holds before the next append
                log.warning("write stream %s failed (%s); opening a new one", stream, exc)
                self.stream, self.replaced, last = None, True, exc
                raise WarehouseError(
                    f"appending {batch.num_rows} rows to {stream} failed: {exc} (a new stream is opened "
                    "on the next write, which first re-reads the buckets the table holds)"
                ) from exc
            errors = [r.error for r in responses if r.error.code]
            if errors and errors[0].code != _ALREADY_EXISTS:
                row_errors = [f"row {e.index}: {e.message}" for r in responses for e in r.row_errors][:3]
                raise WarehouseError(
                    f"appending {batch.num_rows} rows to {stream} at offset {offset} failed: "
                    f"{errors[0].message} {row_errors}"
                )
            if errors:
                log.info("%s offset %s already held the rows (a re-sent append)", stream, offset)
            self.offset += batch.num_rows
            return
        raise WarehouseError(
            f"appending {batch.num_rows} rows to {self.parent} failed {_RESENDS} times: {last}"
        )


class BigQueryLiveWriter:
    """The BigQuery side of ``LiveSink``: candles into ``candles_15s``/``candles_1m``, gaps into ``live_gaps``."""

    def __init__(
        self, warehouse: BigQueryWarehouse, exchange: str, client: BigQueryWriteClient | None = None
    ) -> None:
        self.warehouse = warehouse
        self.exchange = exchange
        self.client = client if client is not None else bigquery_write_client()
        warehouse.ensure_tables()
        warehouse.ensure_plain_table(LIVE_GAPS_TABLE, LIVE_GAPS_SCHEMA)
        self._appenders: dict[str, StreamAppender] = {}
        self._written_until: dict[str, dict[str, int]] = {}
        """table -> instrument -> last bucket (epoch us) this process appended."""
        self._checked: set[str] = set()
        """Tables whose held buckets this process has read (on its first append)."""

    def _appender(self, table: str, schema: pa.Schema, *, committed: bool) -> StreamAppender:
        appender = self._appenders.get(table)
        if appender is None:
            parent = self.warehouse.write_stream_parent(table)
            appender = self._appenders[table] = StreamAppender(
                self.client, parent, schema, committed=committed
            )
        return appender

    def _held(self, table: str, since: datetime) -> set[tuple[str, int]]:
        """(instrument, bucket epoch us) of this exchange the table holds at or after ``since``."""
        rows = self.warehouse.query_rows(
            f"SELECT {KEY} AS k, timestamp AS t FROM {self.warehouse.table_ref(table)} "
            "WHERE exchange = @exchange AND timestamp >= @since",
            [
                bigquery.ScalarQueryParameter("exchange", "STRING", self.exchange),
                bigquery.ScalarQueryParameter("since", "TIMESTAMP", since),
            ],
        )
        return {(r["k"], (r["t"] - _EPOCH) // timedelta(microseconds=1)) for r in rows}

    def insert_candles(self, table: str, frame: pl.DataFrame) -> int:
        """Append the buckets of ``frame`` the table does not hold; returns how many were appended."""
        spec = get_table(table)
        appender = self._appender(table, spec.schema, committed=True)
        ts = pl.col("timestamp").dt.epoch("us")
        until = self._written_until.setdefault(table, {})
        frame = rows_after(frame, until)
        if frame.height and (table not in self._checked or appender.replaced):
            since = frame["timestamp"].min()
            held = self._held(table, since)  # pyright: ignore[reportArgumentType]
            self._checked.add(table)
            appender.replaced = False
            if held:
                keys = pl.DataFrame(
                    {KEY: [k for k, _ in held], "_t": [t for _, t in held]},
                    schema={KEY: pl.String, "_t": pl.Int64},
                )
                frame = frame.with_columns(ts.alias("_t")).join(keys, on=[KEY, "_t"], how="anti").drop("_t")
        if frame.height == 0:
            return 0
        appender.append(frame.select(spec.schema.names).to_arrow())
        last = frame.group_by(KEY).agg(ts.max().alias("t"))
        until.update(zip(last[KEY].to_list(), last["t"].to_list(), strict=True))
        return frame.height

    def insert_gap(self, rows: pa.Table) -> None:
        self._appender(LIVE_GAPS_TABLE, LIVE_GAPS_SCHEMA, committed=False).append(rows)

    def close(self) -> None:
        """Finalize this process's COMMITTED streams (their rows are committed already)."""
        for appender in self._appenders.values():
            if appender.committed and appender.stream is not None:
                try:
                    self.client.finalize_write_stream(name=appender.stream)
                except gexc.GoogleAPICallError as exc:
                    log.warning("finalizing %s failed (its rows are committed): %s", appender.stream, exc)
