"""Smoke test of the BigQuery emulator wiring the warehouse relies on.

Parquet uploaded to the GCS emulator with the storage client must be loadable with
``load_table_from_uri("gs://...")`` into a DAY-partitioned, clustered table, and come back
unchanged from a query. If this fails, every warehouse test would fail for the wrong reason.
"""

from __future__ import annotations

import io
import uuid
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from google.cloud import bigquery

from market_data_assets_tests.fixtures.bigquery import BigQueryEmulator
from market_data_assets_tests.fixtures.gcs import GcsEmulator

pytestmark = pytest.mark.emulator

SCHEMA = [
    bigquery.SchemaField("timestamp", "TIMESTAMP", mode="REQUIRED"),
    bigquery.SchemaField("exchange", "STRING", mode="REQUIRED"),
    bigquery.SchemaField("instrument_key", "STRING", mode="REQUIRED"),
    bigquery.SchemaField("close", "FLOAT64"),
    bigquery.SchemaField("trade_count", "INT64"),
]


def _rows() -> list[tuple[datetime, str, str, float, int]]:
    """Two days, two instruments: exercises the partition and clustering columns."""
    start = datetime(2024, 1, 15, 23, 59, tzinfo=UTC)
    out = []
    for i in range(6):
        key = "BINANCE:SPOT_PAIR:BTC-USDT" if i % 2 == 0 else "BINANCE:SPOT_PAIR:ETH-USDT"
        out.append((start + timedelta(seconds=30 * i), "binance", key, 42000.25 + i, 10 * i))
    return out


def test_load_parquet_from_gcs_into_partitioned_clustered_table(
    gcs_emulator: GcsEmulator, bigquery_emulator: BigQueryEmulator
) -> None:
    rows = _rows()
    table = pa.table(
        {
            "timestamp": pa.array([r[0] for r in rows], pa.timestamp("us", "UTC")),
            "exchange": [r[1] for r in rows],
            "instrument_key": [r[2] for r in rows],
            "close": [r[3] for r in rows],
            "trade_count": pa.array([r[4] for r in rows], pa.int64()),
        }
    )
    buf = io.BytesIO()
    pq.write_table(table, buf)
    bucket = gcs_emulator.create_bucket()
    name = "lake/processed_candles/by_date/day-2024-01-15/timeframe-1m/BINANCE:SPOT_PAIR:BTC-USDT.parquet"
    gcs_emulator.client().bucket(bucket).blob(name).upload_from_string(buf.getvalue())

    client = bigquery_emulator.client()
    retry = bigquery_emulator.retry
    dataset = f"{bigquery_emulator.project}.smoke_{uuid.uuid4().hex[:8]}"
    client.create_dataset(dataset, retry=retry, timeout=30)
    spec = bigquery.Table(f"{dataset}.candles_1m", schema=SCHEMA)
    spec.time_partitioning = bigquery.TimePartitioning(
        type_=bigquery.TimePartitioningType.DAY, field="timestamp"
    )
    spec.clustering_fields = ["exchange", "instrument_key"]
    client.create_table(spec, retry=retry, timeout=30)

    job = client.load_table_from_uri(
        f"gs://{bucket}/lake/processed_candles/by_date/day-2024-01-15/timeframe-1m/*.parquet",
        f"{dataset}.candles_1m",
        job_config=bigquery.LoadJobConfig(
            source_format=bigquery.SourceFormat.PARQUET,
            write_disposition=bigquery.WriteDisposition.WRITE_APPEND,
        ),
        retry=retry,
        timeout=30,
    )
    job.result(retry=retry, timeout=60)
    assert job.output_rows == len(rows)

    created = client.get_table(f"{dataset}.candles_1m", retry=retry, timeout=30)
    assert created.time_partitioning.type_ == "DAY" and created.time_partitioning.field == "timestamp"
    assert created.clustering_fields == ["exchange", "instrument_key"]

    query = f"SELECT timestamp, exchange, instrument_key, close, trade_count FROM `{dataset}.candles_1m` ORDER BY timestamp"
    got = [tuple(r.values()) for r in client.query(query, retry=retry, timeout=30).result(timeout=60)]
    assert got == rows

    per_day = client.query(
        f"SELECT DATE(timestamp) AS day, COUNT(*) AS n FROM `{dataset}.candles_1m` GROUP BY day ORDER BY day",
        retry=retry,
        timeout=30,
    ).result(timeout=60)
    expected_days: dict[object, int] = {}
    for r in rows:
        expected_days[r[0].date()] = expected_days.get(r[0].date(), 0) + 1
    assert [(r["day"], r["n"]) for r in per_day] == sorted(expected_days.items())
