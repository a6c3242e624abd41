"""market-data live into BigQuery through the Storage Write API, on the local-bigquery emulator.

Real clients end to end: the sandbox stream over a real WebSocket, google-cloud-bigquery-storage's
write client over gRPC (COMMITTED streams with offsets, Arrow rows) and google-cloud-bigquery for
the reads and the batch load. A streamed day equals the batch candles in ``candles_15s`` and
``candles_1m``; kill -9 and a restart neither duplicate nor lose a closed bucket; the batch load
of the day replaces the live rows.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from google.cloud import bigquery

from market_data_assets.live.freshness import live_lag_seconds
from market_data_assets.live.gaps import LIVE_GAPS_TABLE
from market_data_assets.live.reconcile import reconcile_lake
from market_data_assets.live.service import LiveService, resolve_keys
from market_data_assets.live.sinks import LiveSink
from market_data_assets.sandbox import start_sandbox
from market_data_assets.sandbox.stream import parse_live_start
from market_data_assets.storage import layout, open_store
from market_data_assets.storage.gcs import GcsStore
from market_data_assets.storage.local import LocalStore
from market_data_assets.warehouse.bigquery_warehouse import BigQueryWarehouse
from market_data_assets.warehouse.loader import load_slice
from market_data_assets.warehouse.schema import get_table
from market_data_assets_tests.fixtures.bigquery import BigQueryEmulator
from market_data_assets_tests.test_live import (
    CONFIG,
    DAY,
    EXCHANGE,
    START,
    SYMBOLS,
    TIMEFRAMES,
    UNTIL,
    _batch,
    _differences,
    _lake_duplicates,
    kill_9_then_restart,
    live_config,
)

pytestmark = pytest.mark.emulator

ROWS_PER_DAY = {"15s": 5760, "1m": 1440}


@dataclass
class Streamed:
    root: Path
    warehouse: BigQueryWarehouse
    client: bigquery.Client
    emulator: BigQueryEmulator
    service: LiveService
    keys: dict[str, str]


def _warehouse(emulator: BigQueryEmulator, client: bigquery.Client) -> BigQueryWarehouse:
    return BigQueryWarehouse(
        client, emulator.project, f"live_{uuid.uuid4().hex[:10]}", "US", retry=emulator.retry, job_timeout=60
    )


def _emulator_env(emulator: BigQueryEmulator) -> dict[str, str]:
    return {
        "BIGQUERY_EMULATOR_HOST": emulator.endpoint,
        "BIGQUERY_STORAGE_EMULATOR_HOST": f"127.0.0.1:{emulator.grpc_port}",
    }


def _rows(wh: BigQueryWarehouse, client: bigquery.Client, sql: str) -> pl.DataFrame:
    job = client.query(sql.replace("{ds}", f"{wh.project}.{wh.dataset}"))
    return pl.from_arrow(job.result(timeout=120).to_arrow(create_bqstorage_client=False))  # type: ignore[return-value]


def _live_rows(wh: BigQueryWarehouse, client: bigquery.Client, tf: str) -> pl.DataFrame:
    return _rows(
        wh,
        client,
        f"SELECT * FROM `{{ds}}.candles_{tf}` WHERE source = 'live' AND timestamp >= '{DAY}' "
        f"AND timestamp < '{DAY + timedelta(days=1)}' ORDER BY instrument_key, timestamp",
    )


@pytest.fixture(scope="module")
def streamed(
    bigquery_emulator: BigQueryEmulator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Streamed]:
    """One sandbox day streamed at full speed into a fresh BigQuery dataset (and a local lake)."""
    root = tmp_path_factory.mktemp("live_bq")
    client = bigquery_emulator.client()
    wh = _warehouse(bigquery_emulator, client)
    with pytest.MonkeyPatch.context() as mp:
        for name, value in _emulator_env(bigquery_emulator).items():
            mp.setenv(name, value)
        with start_sandbox(CONFIG, live_start_us=parse_live_start(START), live_speed=0) as sb:
            config = live_config(sb, UNTIL)
            service = LiveService(config, LiveSink(LocalStore(root), wh, EXCHANGE, "bqtest"))
            asyncio.run(service.run())
    yield Streamed(root, wh, client, bigquery_emulator, service, config.keys)
    client.delete_dataset(f"{wh.project}.{wh.dataset}", delete_contents=True, not_found_ok=True)
    client.close()


def test_a_streamed_day_in_bigquery_equals_the_batch_candles(streamed: Streamed) -> None:
    batch = _batch(streamed.root, streamed.keys)
    for tf in TIMEFRAMES:
        live = _live_rows(streamed.warehouse, streamed.client, tf)
        assert live.height == batch[tf].height == 2 * ROWS_PER_DAY[tf], tf
        assert _differences(batch[tf], live) == {}, tf
    written = streamed.service.sink.written
    for tf in (
        TIMEFRAMES
    ):  # the day, plus the last bucket of the day before (the stream starts 2 s before midnight)
        assert written.rows[tf] == 2 * ROWS_PER_DAY[tf] + 2 and written.skipped[tf] == 0, tf
    gaps = _rows(
        streamed.warehouse,
        streamed.client,
        f"SELECT kind FROM `{{ds}}.{LIVE_GAPS_TABLE}` WHERE gap_from < '{DAY + timedelta(days=1)}'",
    )
    assert gaps["kind"].to_list() == ["startup"]  # appended through the _default stream


def test_the_batch_load_replaces_the_live_rows_in_bigquery(streamed: Streamed, gcs_env: str) -> None:
    store = open_store(gcs_env)
    assert isinstance(store, GcsStore)
    if not (streamed.root / layout.candles_path(DAY, "1m", streamed.keys["BTCUSDT"])).exists():
        _batch(streamed.root, streamed.keys)
    for tf in TIMEFRAMES:  # publish the batch candle files in a gs:// lake, as production does
        for symbol in SYMBOLS:
            path = layout.candles_path(DAY, tf, streamed.keys[symbol])
            store.put_file(streamed.root / path, path)
    wh, client = streamed.warehouse, streamed.client

    def by_day_and_source(tf: str) -> dict[tuple[object, str], int]:
        frame = _rows(
            wh,
            client,
            f"SELECT DATE(timestamp) AS d, source, count(*) AS n FROM `{{ds}}.candles_{tf}` GROUP BY 1, 2",
        )
        return {(d, source): n for d, source, n in frame.iter_rows()}

    before = DAY - timedelta(days=1)
    for tf in TIMEFRAMES:  # the stream starts 2 s before midnight: the previous day's last bucket is live too
        assert by_day_and_source(tf) == {(DAY, "live"): 2 * ROWS_PER_DAY[tf], (before, "live"): 2}, tf
    load_slice(wh, store, DAY, EXCHANGE, [get_table("candles_15s"), get_table("candles_1m")])
    for tf in TIMEFRAMES:  # the slice (DAY, exchange) is batch only; the day before keeps its live rows
        assert by_day_and_source(tf) == {(DAY, "batch"): 2 * ROWS_PER_DAY[tf], (before, "live"): 2}, tf


def test_kill_9_and_restart_into_bigquery_neither_duplicates_nor_loses_a_closed_bucket(
    bigquery_emulator: BigQueryEmulator, tmp_path: Path
) -> None:
    """``market-data live`` as a process writing BigQuery, SIGKILLed once it has appended candles,
    then restarted: every bucket is in the tables at most once, and every batch bucket missing (or
    different) lies inside a gap recorded in BigQuery's ``live_gaps``."""

    client = bigquery_emulator.client()
    wh = _warehouse(bigquery_emulator, client)
    repo = Path(__file__).resolve().parents[1]
    try:
        with start_sandbox(CONFIG, live_start_us=parse_live_start(START), live_speed=3600) as sb:
            env = {
                **os.environ,
                **_emulator_env(bigquery_emulator),
                "MARKET_DATA_ROOT": str(tmp_path),
                "MARKET_DATA_WAREHOUSE": f"bigquery://{wh.project}/{wh.dataset}",
                "TARDIS_API_URL": sb.api_url,
                "TARDIS_MACHINE_WS_URL": sb.ws_url,
                "PYTHONPATH": str(repo),
            }
            kill_9_then_restart(repo, env, first_run_deadline_s=180, second_run_timeout_s=400)
            keys = asyncio.run(resolve_keys(sb.api_url, EXCHANGE, SYMBOLS))
        for tf in TIMEFRAMES:
            dupes = _rows(
                wh,
                client,
                f"SELECT instrument_key, timestamp, count(*) AS n FROM `{{ds}}.candles_{tf}` "
                "GROUP BY 1, 2 HAVING count(*) > 1",
            )
            assert dupes.height == 0, (tf, dupes)
        gaps = _rows(
            wh, client, f"SELECT kind, gap_from, gap_to FROM `{{ds}}.{LIVE_GAPS_TABLE}` ORDER BY gap_from"
        )
        assert gaps["kind"].to_list().count("startup") == 2, gaps
        spans = [(a, b) for _, a, b in gaps.iter_rows()]
        batch = _batch(tmp_path, keys)
        unexplained = {}
        for tf in TIMEFRAMES:
            width = timedelta(seconds={"15s": 15, "1m": 60}[tf])
            live = _live_rows(wh, client, tf)
            assert live.height > 0, tf
            for (key, bucket), cols in _differences(batch[tf], live).items():
                bucket = bucket.astimezone(UTC) if isinstance(bucket, datetime) else bucket
                if not any(lo < bucket + width and bucket <= hi for lo, hi in spans):
                    unexplained[(tf, key, bucket)] = cols
        assert unexplained == {}
        assert _lake_duplicates(tmp_path) == dict.fromkeys(TIMEFRAMES, 0)
        for tf in TIMEFRAMES:  # the lake agrees
            result = reconcile_lake(LocalStore(tmp_path), DAY, EXCHANGE, tf)
            assert result.unexplained == 0, result.report.filter(~pl.col("in_gap"))
    finally:
        client.delete_dataset(f"{wh.project}.{wh.dataset}", delete_contents=True, not_found_ok=True)
        client.close()


def test_a_new_writer_skips_the_buckets_the_table_holds_and_a_resent_append_lands_once(
    streamed: Streamed, bigquery_emulator: BigQueryEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The two halves of exactly-once, deterministically: a second process's writer (what a
    restart after kill -9 builds) appends only the buckets the table lacks; an append re-sent at
    its offset (a lost answer) is answered ALREADY_EXISTS and its rows are committed once."""
    from market_data_assets.live.bigquery_writer import BigQueryLiveWriter, StreamAppender
    from market_data_assets.warehouse.bigquery_warehouse import bigquery_write_client

    for name, value in _emulator_env(bigquery_emulator).items():
        monkeypatch.setenv(name, value)
    closed = (
        pl.read_parquet(streamed.root / layout.live_candles_dir(DAY, "15s"))
        .filter(pl.col("timestamp").dt.date() == DAY)
        .sort("timestamp", "instrument_key")
    )
    wh = _warehouse(bigquery_emulator, streamed.client)
    try:
        first = BigQueryLiveWriter(wh, EXCHANGE)
        assert first.insert_candles("candles_15s", closed[:100]) == 100
        assert first.insert_candles("candles_15s", closed[:120]) == 20  # its own rows: never re-sent
        first.close()
        second = BigQueryLiveWriter(wh, EXCHANGE)  # a restarted process
        assert second.insert_candles("candles_15s", closed[80:200]) == 80
        second.close()
        rows = _rows(wh, streamed.client, "SELECT instrument_key, timestamp FROM `{ds}.candles_15s`")
        assert rows.height == 200 and rows.unique().height == 200

        spec = get_table("candles_15s")
        appender = StreamAppender(
            bigquery_write_client(), wh.write_stream_parent("candles_15s"), spec.schema, committed=True
        )
        batch = closed[200:210].select(spec.schema.names).to_arrow()
        appender.append(batch)
        appender.offset -= batch.num_rows  # the answer was lost: the same rows at the same offset
        appender.append(batch)
        assert appender.offset == batch.num_rows
        rows = _rows(wh, streamed.client, "SELECT count(*) AS n FROM `{ds}.candles_15s`")
        assert rows["n"][0] == 210
    finally:
        streamed.client.delete_dataset(f"{wh.project}.{wh.dataset}", delete_contents=True, not_found_ok=True)


def test_live_freshness_reads_the_newest_live_bucket_in_bigquery(streamed: Streamed, tmp_path: Path) -> None:
    """A fresh dataset gets one live 15s candle (a streamed lake row, restamped by the test) through
    the live writer; the lag is ``now`` minus that bucket's end. The streamed dataset is not used:
    another test swaps its live rows for batch ones."""
    (lake_file,) = list((streamed.root / layout.live_candles_dir(DAY, "15s")).glob("*.parquet"))[:1]
    bucket = datetime(2024, 3, 5, 12, 0, 15, tzinfo=UTC)
    row = pl.read_parquet(lake_file).head(1).drop("source").with_columns(pl.lit(bucket).alias("timestamp"))
    fresh = _warehouse(streamed.emulator, streamed.client)
    with pytest.MonkeyPatch.context() as mp:
        for name, value in _emulator_env(streamed.emulator).items():
            mp.setenv(name, value)
        assert LiveSink(LocalStore(tmp_path), fresh, EXCHANGE, "freshness").write_candles("15s", row) == 1
    now = bucket + timedelta(seconds=15 + 600)
    assert live_lag_seconds(fresh, now) == {EXCHANGE: 600.0}
    empty = _warehouse(streamed.emulator, streamed.client)  # a dataset nothing was written to
    assert live_lag_seconds(empty, now) == {}
    streamed.client.delete_dataset(
        f"{fresh.project}.{fresh.dataset}", delete_contents=True, not_found_ok=True
    )
