"""The production warehouse: BigQuery tables loaded from the Parquet already in ``gs://``.

One slice replace is:

1. a staging table (unique name, expires after ``staging_ttl`` even if this process dies),
   filled by load jobs straight from the lake's ``gs://`` URIs: no byte passes through this
   process, and a load job is free where streaming inserts are not;
2. a check that every staged row belongs to the slice (the swap only deletes the slice, so a
   stray row would be duplicated by the next run);
3. one multi-statement transaction ``BEGIN; DELETE slice; INSERT staged; COMMIT`` - BigQuery
   rolls it back automatically if any statement fails, so readers see the old slice or the new
   one, never neither;
4. the staging table is dropped.

Partition decorators (``table$20240101``) with ``WRITE_TRUNCATE`` would replace a whole day of
every exchange, and the BigQuery emulator does not support them: the transaction replaces
exactly the day x exchange slice instead. Concurrent slice replaces of one table (several
exchanges of one day in parallel runs) can abort each other ("concurrent update"); the
transaction is idempotent, so it is simply retried.
"""

from __future__ import annotations

import os
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

from google.api_core import exceptions as gexc
from google.api_core.retry import Retry
from google.cloud import bigquery
from google.cloud.bigquery.retry import DEFAULT_RETRY

from market_data_assets.days import day_bounds
from market_data_assets.storage.base import ObjectStore
from market_data_assets.tardis.formats import INSTRUMENT_KEY_COLUMN
from market_data_assets.warehouse.base import (
    LoadResult,
    StagedSlice,
    Warehouse,
    WarehouseError,
    check_slice,
)
from market_data_assets.warehouse.parquet_columns import parquet_column_names
from market_data_assets.warehouse.schema import (
    CLUSTERING_COLUMNS,
    DEFAULT_DATASET,
    EXCHANGE_COLUMN,
    PARTITION_COLUMN,
    WAREHOUSE_TABLES,
    WarehouseTable,
    bigquery_schema,
    get_table,
)

if TYPE_CHECKING:
    import pyarrow as pa
    from google.cloud.bigquery_storage_v1 import BigQueryWriteClient

MAX_URIS_PER_LOAD_JOB = 10_000
"""BigQuery's limit on source URIs in one load job."""
DEFAULT_STAGING_TTL = timedelta(hours=6)
_JOB_RETRY_REASONS = frozenset(
    {"backendError", "internalError", "jobInternalError", "rateLimitExceeded", "jobRateLimitExceeded"}
)


_CONFLICT_MESSAGES = (
    "concurrent update",  # BigQuery: "Transaction is aborted due to concurrent update against table ..."
    "failed to commit ducklake transaction",  # local-bigquery's spelling of the same conflict
)


def _replace_should_retry(exc: BaseException) -> bool:
    """Retry the (idempotent) swap on a concurrent-update abort, and on BigQuery's transient job errors."""
    if isinstance(exc, gexc.RetryError) and exc.cause is not None:
        exc = exc.cause
    message = str(exc).lower()
    if any(m in message for m in _CONFLICT_MESSAGES):
        return True
    errors = getattr(exc, "errors", None) or []
    return bool(errors) and errors[0].get("reason") in _JOB_RETRY_REASONS


REPLACE_JOB_RETRY: Retry = Retry(
    predicate=_replace_should_retry,
    initial=0.25,
    maximum=16.0,
    multiplier=2.0,
    timeout=600.0,
)
"""Conflicts clear as soon as the other transaction commits: start retrying quickly, back off to 16 s."""


def _q(identifier: str) -> str:
    return f"`{identifier}`"


def emulator_host() -> str:
    """``BIGQUERY_EMULATOR_HOST`` ("" for real BigQuery): google-cloud-bigquery's own switch (read here,
    not in settings.py, like ``STORAGE_EMULATOR_HOST`` in storage/gcs.py)."""
    return os.environ.get("BIGQUERY_EMULATOR_HOST", "").strip()


def bigquery_client(project: str, location: str | None = None) -> bigquery.Client:
    """A client for ``project``: the emulator at ``BIGQUERY_EMULATOR_HOST`` (anonymous, an emulator
    takes no credentials) or real BigQuery."""
    emulator = emulator_host()
    if emulator:
        from google.auth.credentials import AnonymousCredentials

        endpoint = emulator if "://" in emulator else f"http://{emulator}"
        return bigquery.Client(
            project=project,
            location=location,
            credentials=AnonymousCredentials(),
            client_options={"api_endpoint": endpoint},
        )
    return bigquery.Client(project=project, location=location)


def bigquery_write_client() -> BigQueryWriteClient:
    """A Storage Write API client: the emulator at ``BIGQUERY_STORAGE_EMULATOR_HOST`` or real BigQuery.

    ``BIGQUERY_STORAGE_EMULATOR_HOST`` (``host:port`` of an emulator's gRPC port, e.g. local-bigquery's
    ``--grpc-port``) is read here like ``BIGQUERY_EMULATOR_HOST`` above. The emulator speaks plaintext
    gRPC: without the explicit insecure channel the client would try TLS and hang. Production passes
    nothing and gets the normal client (application default credentials, TLS).
    """
    from google.cloud.bigquery_storage_v1 import BigQueryWriteClient
    from google.cloud.bigquery_storage_v1.services.big_query_write.transports import (
        BigQueryWriteGrpcTransport,
    )

    emulator = os.environ.get("BIGQUERY_STORAGE_EMULATOR_HOST", "").strip()
    if emulator:
        import grpc

        target = emulator.split("://", 1)[-1]
        return BigQueryWriteClient(
            transport=BigQueryWriteGrpcTransport(channel=grpc.insecure_channel(target))
        )
    return BigQueryWriteClient()


class BigQueryWarehouse(Warehouse):
    kind = "bigquery"

    def __init__(
        self,
        client: bigquery.Client,
        project: str,
        dataset: str = DEFAULT_DATASET,
        location: str | None = None,
        *,
        staging_ttl: timedelta = DEFAULT_STAGING_TTL,
        retry: Retry = DEFAULT_RETRY,
        job_timeout: float | None = None,
        column_reader: Callable[[Sequence[str]], list[tuple[str, ...]]] = parquet_column_names,
    ) -> None:
        """``location`` is used when the dataset is created; an existing dataset keeps its own.

        ``retry``/``job_timeout`` bound API calls and job waits (tests pass short ones);
        ``column_reader`` reads Parquet footers to group files whose columns differ.
        """
        self._client = client
        self.project = project
        self.dataset = dataset
        self.location = location
        self.uri = f"bigquery://{project}/{dataset}"
        self._staging_ttl = staging_ttl
        self._retry = retry
        self._job_timeout = job_timeout
        self._read_columns = column_reader
        self._dataset_ready = False
        self._ensured: set[str] = set()

    def __repr__(self) -> str:
        return f"BigQueryWarehouse({self.uri!r}, location={self.location!r})"

    def close(self) -> None:
        self._client.close()

    # --- names ---------------------------------------------------------------------------------

    def table_id(self, table: str) -> str:
        """``project.dataset.table`` for the client API."""
        return f"{self.project}.{self.dataset}.{table}"

    def table_ref(self, table: str) -> str:
        return _q(self.table_id(get_table(table).name))

    # --- tables ----------------------------------------------------------------------------------

    def _ensure_dataset(self) -> None:
        if self._dataset_ready:
            return
        ds = bigquery.Dataset(f"{self.project}.{self.dataset}")
        ds.location = self.location
        ds.description = "Candles and book snapshots per timeframe, loaded from the market data lake."
        self._client.create_dataset(ds, exists_ok=True, retry=self._retry)
        # An existing dataset decides the location every job must run in.
        self.location = self._client.get_dataset(ds.reference, retry=self._retry).location
        self._dataset_ready = True

    def _ensure(self, spec: WarehouseTable) -> None:
        if spec.name in self._ensured:
            return
        self._ensure_dataset()
        table = bigquery.Table(self.table_id(spec.name), schema=bigquery_schema(spec.schema))
        table.time_partitioning = bigquery.TimePartitioning(
            type_=bigquery.TimePartitioningType.DAY, field=PARTITION_COLUMN
        )
        table.clustering_fields = list(CLUSTERING_COLUMNS)
        table.description = (
            f"{spec.kind.replace('_', ' ')} at {spec.timeframe}; one slice per (UTC day of {PARTITION_COLUMN}, "
            f"{EXCHANGE_COLUMN}), replaced atomically by the bq_candles asset"
        )
        try:
            found = self._client.get_table(table.reference, retry=self._retry)
        except gexc.NotFound:
            self._client.create_table(table, exists_ok=True, retry=self._retry)
            found = self._client.get_table(table.reference, retry=self._retry)
        problems = []
        names = [f.name for f in found.schema]
        if names != spec.schema.names:
            missing = [c for c in spec.schema.names if c not in names]
            extra = [c for c in names if c not in spec.schema.names]
            problems.append(f"columns differ (missing {missing}, unexpected {extra})")
        tp = found.time_partitioning
        if tp is None or tp.field != PARTITION_COLUMN or tp.type_ != bigquery.TimePartitioningType.DAY:
            problems.append(f"partitioning is {tp}, expected DAY on {PARTITION_COLUMN}")
        if list(found.clustering_fields or []) != list(CLUSTERING_COLUMNS):
            problems.append(f"clustering is {found.clustering_fields}, expected {list(CLUSTERING_COLUMNS)}")
        if problems:
            raise WarehouseError(
                f"{self.uri} table {spec.name} does not match the lake schema: {'; '.join(problems)}"
            )
        self._ensured.add(spec.name)

    def write_stream_parent(self, table: str) -> str:
        """``projects/P/datasets/D/tables/T``: the table as the Storage Write API names it."""
        return f"projects/{self.project}/datasets/{self.dataset}/tables/{table}"

    def ensure_plain_table(self, name: str, schema: pa.Schema) -> None:
        """Create ``name`` (no partitioning) if missing: the live service's ``live_gaps`` log."""
        if name in self._ensured:
            return
        self._ensure_dataset()
        table = bigquery.Table(self.table_id(name), schema=bigquery_schema(schema))
        self._client.create_table(table, exists_ok=True, retry=self._retry)
        self._ensured.add(name)

    def query_rows(self, sql: str, params: list[bigquery.ScalarQueryParameter]) -> list[dict]:
        """The rows of one parameterized query (the live writer asks which buckets a table holds)."""
        job = self._query(sql, params)
        return [dict(row.items()) for row in job.result(timeout=self._job_timeout)]

    def ensure_tables(self) -> list[str]:
        for spec in WAREHOUSE_TABLES.values():
            self._ensure(spec)
        return list(WAREHOUSE_TABLES)

    # --- slices --------------------------------------------------------------------------------

    def source_uri(self, store: ObjectStore, path: str) -> str:
        uri = store.uri(path)
        if not uri.startswith("gs://"):
            raise WarehouseError(
                f"the BigQuery warehouse {self.uri} loads from gs:// URIs, but the lake is the local folder "
                f"{store.root}; uploading local files is not supported: set MARKET_DATA_ROOT=gs://bucket/prefix "
                f"or MARKET_DATA_WAREHOUSE=duckdb"
            )
        return uri

    def _params(self, day: date, exchange: str) -> list[bigquery.ScalarQueryParameter]:
        start, end = day_bounds(day)
        return [
            bigquery.ScalarQueryParameter("exchange", "STRING", exchange),
            bigquery.ScalarQueryParameter("start", "TIMESTAMP", start),
            bigquery.ScalarQueryParameter("end", "TIMESTAMP", end),
        ]

    _SLICE_FILTER = f"{_q(EXCHANGE_COLUMN)} = @exchange AND {_q(PARTITION_COLUMN)} >= @start AND {_q(PARTITION_COLUMN)} < @end"

    def _query(
        self, sql: str, params: list[bigquery.ScalarQueryParameter], **kwargs: object
    ) -> bigquery.QueryJob:
        job = self._client.query(
            sql,
            job_config=bigquery.QueryJobConfig(query_parameters=params),
            location=self.location,
            retry=self._retry,
            **kwargs,  # pyright: ignore[reportArgumentType]
        )
        job.result(timeout=self._job_timeout, retry=self._retry)
        return job

    def _execute(self, sql: str) -> None:
        self._query(sql, [])

    def count(self, table: str, day: date, exchange: str) -> int:
        check_slice(table, day, exchange)
        self._ensure(get_table(table))
        job = self._query(
            f"SELECT COUNT(*) AS n FROM {self.table_ref(table)} WHERE {self._SLICE_FILTER}",
            self._params(day, exchange),
        )
        return int(next(iter(job.result(timeout=self._job_timeout)))["n"])

    def replace_slice(self, table: str, day: date, exchange: str, source_uris: Sequence[str]) -> LoadResult:
        check_slice(table, day, exchange)
        spec = get_table(table)
        uris = list(source_uris)
        not_gcs = [u for u in uris if not u.startswith("gs://")]
        if not_gcs:
            raise WarehouseError(
                f"{table} {day} {exchange}: BigQuery loads only gs:// URIs; got {not_gcs[0]} "
                f"(uploading local files is not supported)"
            )
        self._ensure(spec)
        params = self._params(day, exchange)
        if not uris:
            # Nothing to stage: one DML statement is atomic on its own.
            job = self._query(
                f"DELETE FROM {self.table_ref(spec.name)} WHERE {self._SLICE_FILTER}",
                params,
                job_retry=REPLACE_JOB_RETRY,
            )
            return LoadResult(spec.name, day, exchange, 0, 0, int(job.num_dml_affected_rows or 0))
        staging_name = (
            f"_staging_{spec.name}_{day:%Y%m%d}_{exchange.replace('-', '_')}_{uuid.uuid4().hex[:12]}"
        )
        staging_id = self.table_id(staging_name)
        staging = bigquery.Table(staging_id, schema=bigquery_schema(spec.schema, all_nullable=True))
        staging.expires = datetime.now(UTC) + self._staging_ttl
        self._client.create_table(staging, retry=self._retry)
        try:
            self._load(spec, staging_id, uris, f"{table} {day} {exchange}")
            staged = self._check_staged(spec, staging_id, params, day, exchange)
            if self.before_replace is not None:
                self.before_replace(
                    StagedSlice(spec.name, day, exchange, _q(staging_id), staged, self._execute)
                )
            replaced = self._swap(spec, staging_id, params)
        finally:
            self._client.delete_table(staging_id, not_found_ok=True, retry=self._retry)
        return LoadResult(spec.name, day, exchange, staged, len(uris), replaced)

    def _load(self, spec: WarehouseTable, staging_id: str, uris: list[str], what: str) -> None:
        """One load job per group of files with the same columns (at most 10,000 URIs each)."""
        groups: dict[tuple[str, ...], list[str]] = defaultdict(list)
        if spec.files_vary and uris:
            for uri, columns in zip(uris, self._read_columns(uris), strict=True):
                groups[columns].append(uri)
        elif uris:
            groups[tuple(spec.lake_names)] = uris
        fields = {f.name: f for f in bigquery_schema(spec.schema, all_nullable=True)}
        for columns, group in groups.items():
            unknown = [c for c in columns if c not in fields]
            if unknown:
                raise WarehouseError(f"{what}: {group[0]} has columns the table {spec.name} lacks: {unknown}")
            config = bigquery.LoadJobConfig(
                source_format=bigquery.SourceFormat.PARQUET,
                write_disposition=bigquery.WriteDisposition.WRITE_APPEND,
                create_disposition=bigquery.CreateDisposition.CREATE_NEVER,
                # Only the group's columns: the staging table's other (nullable) columns stay NULL.
                schema=[fields[c] for c in columns],
            )
            for start in range(0, len(group), MAX_URIS_PER_LOAD_JOB):
                chunk = group[start : start + MAX_URIS_PER_LOAD_JOB]
                job = self._client.load_table_from_uri(
                    chunk, staging_id, job_config=config, location=self.location, retry=self._retry
                )
                try:
                    job.result(timeout=self._job_timeout, retry=self._retry)
                except gexc.GoogleAPICallError as exc:
                    details = "; ".join(e.get("message", "") for e in (job.errors or [])[:3]) or str(exc)
                    raise WarehouseError(
                        f"{what}: loading {len(chunk)} file(s) ({chunk[0]} ...) into staging failed: {details}"
                    ) from exc

    def _check_staged(
        self,
        spec: WarehouseTable,
        staging_id: str,
        params: list[bigquery.ScalarQueryParameter],
        day: date,
        exchange: str,
    ) -> int:
        job = self._query(
            f"SELECT COUNT(*) AS n, COUNTIF(NOT COALESCE({self._SLICE_FILTER}, FALSE)) AS outside, "
            f"MIN(IF(NOT COALESCE({self._SLICE_FILTER}, FALSE), "
            f"CONCAT(IFNULL({_q(EXCHANGE_COLUMN)}, 'NULL'), ' ', IFNULL(CAST({_q(PARTITION_COLUMN)} AS STRING), 'NULL'), "
            f"' ', IFNULL({_q(INSTRUMENT_KEY_COLUMN)}, 'NULL')), NULL)) AS example FROM {_q(staging_id)}",
            params,
        )
        row = next(iter(job.result(timeout=self._job_timeout)))
        if row["outside"]:
            raise WarehouseError(
                f"{spec.name} slice {day}|{exchange}: {row['outside']} of {row['n']} staged rows are outside "
                f"the slice (another exchange or day), e.g. {row['example']}"
            )
        return int(row["n"])

    def _swap(
        self, spec: WarehouseTable, staging_id: str, params: list[bigquery.ScalarQueryParameter]
    ) -> int:
        """The one transaction; returns how many rows of the previous slice it deleted."""
        target = self.table_ref(spec.name)
        columns = ", ".join(_q(c) for c in spec.schema.names)
        constants = dict(spec.constants)
        select = ", ".join(
            f"IFNULL({_q(c)}, '{constants[c]}') AS {_q(c)}" if c in constants else _q(c)
            for c in spec.schema.names
        )
        script = (
            "BEGIN TRANSACTION;\n"
            f"DELETE FROM {target} WHERE {self._SLICE_FILTER};\n"
            f"INSERT INTO {target} ({columns}) SELECT {select} FROM {_q(staging_id)};\n"
            "COMMIT TRANSACTION;"
        )
        job = self._query(script, params, job_retry=REPLACE_JOB_RETRY)
        for child in self._client.list_jobs(parent_job=job, retry=self._retry):
            if getattr(child, "statement_type", None) == "DELETE":
                return int(child.num_dml_affected_rows or 0)
        return 0
