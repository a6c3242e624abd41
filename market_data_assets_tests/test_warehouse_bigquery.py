"""BigQuery warehouse against the real emulators: files in fake-gcs-server, tables in local-bigquery.

The google-cloud-bigquery client runs its real code paths (load jobs from gs:// URIs, scripts
with a multi-statement transaction, table metadata); nothing is mocked. Each test gets its own
bucket and dataset, so tests never see each other's rows.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from google.api_core import exceptions as gexc
from google.cloud import bigquery

from market_data_assets import reader
from market_data_assets.candles.schema import CANDLE_SCHEMA, book_snapshot_schema
from market_data_assets.settings import Settings
from market_data_assets.storage import layout, open_store
from market_data_assets.storage.gcs import GcsStore
from market_data_assets.storage.local import LocalStore
from market_data_assets.warehouse import StagedSlice, WarehouseError, load_slice, open_warehouse
from market_data_assets.warehouse.bigquery_warehouse import BigQueryWarehouse
from market_data_assets.warehouse.schema import WAREHOUSE_TABLES, get_table
from market_data_assets_tests.fixtures.bigquery import BigQueryEmulator
from market_data_assets_tests.support.warehouse_data import book_table, candle_table, canonical_rows

pytestmark = pytest.mark.emulator

DAY1, DAY2 = date(2024, 1, 2), date(2024, 1, 3)
BTC = "BINANCE:SPOT_PAIR:BTC-USDT"
ETH = "BINANCE:SPOT_PAIR:ETH-USDT"
DERIBIT_PERP = "DERIBIT:PERP:BTC-USD"


@dataclass
class Lake:
    store: GcsStore
    wh: BigQueryWarehouse
    client: bigquery.Client
    emulator: BigQueryEmulator

    def put(self, table: pa.Table, path: str) -> str:
        """Upload through the GCS client; return the gs:// URI the load job reads."""
        self.store.write_parquet(table, path)
        return self.store.uri(path)

    def read_slice(self, table: str, day: date, exchange: str) -> list[dict]:
        """The slice's rows, read back with a plain query through the client."""
        start = datetime.fromisoformat(f"{day.isoformat()}T00:00:00+00:00")
        job = self.client.query(
            f"SELECT * FROM `{self.wh.table_id(table)}` WHERE exchange = @ex "
            f"AND timestamp >= @start AND timestamp < @end",
            job_config=bigquery.QueryJobConfig(
                query_parameters=[
                    bigquery.ScalarQueryParameter("ex", "STRING", exchange),
                    bigquery.ScalarQueryParameter("start", "TIMESTAMP", start),
                    bigquery.ScalarQueryParameter("end", "TIMESTAMP", start + timedelta(days=1)),
                ]
            ),
            retry=self.emulator.retry,
        )
        return [dict(row.items()) for row in job.result(timeout=60)]

    def rows(self, table: str, day: date, exchange: str, columns: list[str]) -> list[tuple]:
        return canonical_rows(pa.Table.from_pylist(self.read_slice(table, day, exchange)), columns)

    def table_names(self) -> list[str]:
        return sorted(t.table_id for t in self.client.list_tables(f"{self.wh.project}.{self.wh.dataset}"))


@pytest.fixture
def lake(gcs_env: str, bigquery_emulator: BigQueryEmulator) -> Iterator[Lake]:
    store = open_store(gcs_env)
    assert isinstance(store, GcsStore)
    client = bigquery_emulator.client()
    wh = BigQueryWarehouse(
        client,
        bigquery_emulator.project,
        f"mda_{uuid.uuid4().hex[:10]}",
        "US",
        retry=bigquery_emulator.retry,
        job_timeout=60,
    )
    yield Lake(store, wh, client, bigquery_emulator)
    client.delete_dataset(f"{wh.project}.{wh.dataset}", delete_contents=True, not_found_ok=True)
    client.close()


def expected(*tables: pa.Table, schema: pa.Schema = CANDLE_SCHEMA) -> list[tuple]:
    return canonical_rows(pa.concat_tables(tables, promote_options="default"), schema.names)


def test_tables_are_day_partitioned_on_timestamp_and_clustered(lake: Lake) -> None:
    names = lake.wh.ensure_tables()

    assert names == list(WAREHOUSE_TABLES) and len(names) == 14
    assert lake.table_names() == sorted(names)
    for name in ("candles_15s", "candles_24h", "book_snapshots_1m"):
        table = lake.client.get_table(lake.wh.table_id(name))
        assert table.time_partitioning.type_ == "DAY"
        assert table.time_partitioning.field == "timestamp"
        assert table.clustering_fields == ["exchange", "instrument_type", "instrument_key"]
    candles = lake.client.get_table(lake.wh.table_id("candles_1m"))
    assert [f.name for f in candles.schema] == [*CANDLE_SCHEMA.names, "source"]
    by_name = {f.name: f for f in candles.schema}
    assert (by_name["timestamp"].field_type, by_name["timestamp"].mode) == ("TIMESTAMP", "REQUIRED")
    assert (by_name["open"].field_type, by_name["open"].mode) == ("FLOAT", "NULLABLE")
    assert by_name["trade_count"].field_type == "INTEGER"
    book = lake.client.get_table(lake.wh.table_id("book_snapshots_1m"))
    assert [f.name for f in book.schema] == book_snapshot_schema(25).names
    # Idempotent: a second call finds the tables and checks them.
    assert lake.wh.ensure_tables() == names


def test_reload_keeps_rows_and_values_and_fills_one_day_partition(lake: Lake) -> None:
    btc = candle_table("binance", DAY1, BTC, 30)
    eth = candle_table("binance", DAY1, ETH, 12)
    uris = [
        lake.put(btc, layout.candles_path(DAY1, "1m", BTC)),
        lake.put(eth, layout.candles_path(DAY1, "1m", ETH)),
    ]

    first = lake.wh.replace_slice("candles_1m", DAY1, "binance", uris)
    second = lake.wh.replace_slice("candles_1m", DAY1, "binance", uris)

    assert (first.rows, first.files) == (42, 2)
    assert (second.rows, second.replaced_rows) == (42, 42)
    assert lake.wh.count("candles_1m", DAY1, "binance") == 42
    assert lake.rows("candles_1m", DAY1, "binance", CANDLE_SCHEMA.names) == expected(btc, eth)
    partitions = lake.client.query(
        f"SELECT partition_id, total_rows FROM `{lake.wh.project}.{lake.wh.dataset}.INFORMATION_SCHEMA.PARTITIONS` "
        "WHERE table_name = 'candles_1m'",
        retry=lake.emulator.retry,
    ).result(timeout=60)
    assert [(r["partition_id"], r["total_rows"]) for r in partitions] == [("20240102", 42)]
    assert [t for t in lake.table_names() if t.startswith("_staging")] == []
    # The lake lost the slice's files: the slice becomes empty.
    assert lake.wh.replace_slice("candles_1m", DAY1, "binance", []).replaced_rows == 42
    assert lake.wh.count("candles_1m", DAY1, "binance") == 0


def test_replacing_one_slice_leaves_other_slices_untouched(lake: Lake) -> None:
    slices = {
        ("candles_1m", DAY1, "binance"): candle_table("binance", DAY1, BTC, 20),
        ("candles_1m", DAY2, "binance"): candle_table("binance", DAY2, BTC, 15),
        ("candles_1m", DAY1, "deribit"): candle_table("deribit", DAY1, DERIBIT_PERP, 9),
        ("candles_5m", DAY1, "binance"): candle_table("binance", DAY1, BTC, 7, timeframe="5m"),
    }
    keys = {"binance": BTC, "deribit": DERIBIT_PERP}
    for (table, day, ex), data in slices.items():
        uri = lake.put(data, layout.candles_path(day, table.removeprefix("candles_"), keys[ex]))
        lake.wh.replace_slice(table, day, ex, [uri])

    smaller = candle_table("binance", DAY1, BTC, 5, seed=1)
    result = lake.wh.replace_slice("candles_1m", DAY1, "binance", [lake.put(smaller, "other/new.parquet")])

    assert (result.rows, result.replaced_rows) == (5, 20)
    assert lake.rows("candles_1m", DAY1, "binance", CANDLE_SCHEMA.names) == expected(smaller)
    for (table, day, ex), data in list(slices.items())[1:]:
        assert lake.rows(table, day, ex, CANDLE_SCHEMA.names) == expected(data), (table, day, ex)


def test_failure_between_staging_and_replace_keeps_previous_slice_and_drops_staging(lake: Lake) -> None:
    old = candle_table("binance", DAY1, BTC, 25)
    lake.wh.replace_slice("candles_1m", DAY1, "binance", [lake.put(old, "v1/old.parquet")])
    seen: list[StagedSlice] = []

    def crash(staged: StagedSlice) -> None:
        seen.append(staged)
        # The staging table really holds the new slice when the crash happens.
        (n,) = next(
            iter(lake.client.query(f"SELECT COUNT(*) FROM {staged.staging_table}").result(timeout=60))
        )
        assert n == 40
        raise RuntimeError("crash after staging")

    lake.wh.before_replace = crash
    new = candle_table("binance", DAY1, BTC, 40, seed=2)
    with pytest.raises(RuntimeError, match="crash after staging"):
        lake.wh.replace_slice("candles_1m", DAY1, "binance", [lake.put(new, "v2/new.parquet")])

    assert len(seen) == 1
    assert lake.rows("candles_1m", DAY1, "binance", CANDLE_SCHEMA.names) == expected(old)
    assert [t for t in lake.table_names() if t.startswith("_staging")] == []


def test_failure_inside_the_transaction_rolls_the_delete_back(lake: Lake) -> None:
    """The staging table is dropped before the swap: the script's DELETE runs, its INSERT fails."""
    old = candle_table("binance", DAY1, BTC, 25)
    lake.wh.replace_slice("candles_1m", DAY1, "binance", [lake.put(old, "v1/old.parquet")])
    lake.wh.before_replace = lambda staged: staged.execute(f"DROP TABLE {staged.staging_table}")

    with pytest.raises(gexc.GoogleAPICallError, match="_staging_candles_1m"):
        lake.wh.replace_slice("candles_1m", DAY1, "binance", [lake.put(old.slice(0, 3), "v2/new.parquet")])

    assert lake.rows("candles_1m", DAY1, "binance", CANDLE_SCHEMA.names) == expected(old)


def test_rows_outside_the_slice_are_refused(lake: Lake) -> None:
    wrong_day = candle_table("binance", DAY2, BTC, 4)
    with pytest.raises(
        WarehouseError,
        match=r"4 of 4 staged rows are outside the slice.*e\.g\. binance 2024-01-03 00:00:00\+00 BINANCE:SPOT_PAIR:BTC-USDT",
    ):
        lake.wh.replace_slice("candles_1m", DAY1, "binance", [lake.put(wrong_day, "x/wrong.parquet")])
    assert lake.wh.count("candles_1m", DAY1, "binance") == 0


def test_load_slice_from_the_gcs_layout_with_depth_5_and_25_book_files(lake: Lake) -> None:
    """The whole path: listing the partition's files in gs://, grouping book files by their footers."""
    candles = {
        tf: candle_table("binance", DAY1, BTC, 2 + i, timeframe=tf) for i, tf in enumerate(("1m", "4h"))
    }
    for tf, data in candles.items():
        lake.put(data, layout.candles_path(DAY1, tf, BTC))
    lake.put(candle_table("deribit", DAY1, DERIBIT_PERP, 50), layout.candles_path(DAY1, "1m", DERIBIT_PERP))
    shallow = book_table("binance", DAY1, BTC, 6, depth=5, timeframe="15s", step=timedelta(seconds=15))
    deep = book_table("binance", DAY1, ETH, 4, depth=25, timeframe="15s", step=timedelta(seconds=15))
    lake.put(shallow, layout.book_snapshots_path(DAY1, "15s", BTC))
    lake.put(deep, layout.book_snapshots_path(DAY1, "15s", ETH))

    # A subset of the 14 tables keeps the test quick; the DuckDB and Dagster tests load all of them.
    tables = [get_table(n) for n in ("candles_1m", "candles_4h", "candles_24h", "book_snapshots_15s")]
    load = load_slice(lake.wh, lake.store, DAY1, "binance", tables)

    rows = {name: r.rows for name, r in load.results.items()}
    assert rows == {"candles_1m": 2, "candles_4h": 3, "candles_24h": 0, "book_snapshots_15s": 10}
    assert lake.rows("candles_4h", DAY1, "binance", CANDLE_SCHEMA.names) == expected(candles["4h"])
    book_columns = book_snapshot_schema(25).names
    assert lake.rows("book_snapshots_15s", DAY1, "binance", book_columns) == expected(
        shallow, deep, schema=book_snapshot_schema(25)
    )
    assert lake.wh.count("candles_1m", DAY1, "deribit") == 0  # another exchange's file was not loaded


def test_a_local_lake_cannot_feed_bigquery(lake: Lake, tmp_path) -> None:
    local = LocalStore(tmp_path / "lake")
    local.write_parquet(candle_table("binance", DAY1, BTC, 3), layout.candles_path(DAY1, "1m", BTC))
    with pytest.raises(WarehouseError, match="uploading local files is not supported"):
        load_slice(lake.wh, local, DAY1, "binance")
    with pytest.raises(WarehouseError, match="BigQuery loads only gs:// URIs"):
        lake.wh.replace_slice(
            "candles_1m", DAY1, "binance", [local.uri(layout.candles_path(DAY1, "1m", BTC))]
        )


def test_concurrent_replaces_of_one_days_exchanges_all_land(lake: Lake) -> None:
    """Parallel runs swap slices of the same table and day: conflicting transactions are retried."""
    exchanges = {"binance": BTC, "deribit": DERIBIT_PERP, "bitmex": "BITMEX:PERP:BTC-USD"}
    assert lake.wh.count("candles_1m", DAY1, "binance") == 0  # creates the table before the race

    def replace(ex: str, uri: str) -> int:
        """A warehouse of its own per thread, as separate runs would have."""
        wh = BigQueryWarehouse(
            lake.emulator.client(),
            lake.wh.project,
            lake.wh.dataset,
            retry=lake.emulator.retry,
            job_timeout=60,
        )
        try:
            return wh.replace_slice("candles_1m", DAY1, ex, [uri]).rows
        finally:
            wh.close()

    for round_ in range(2):
        data = {
            ex: candle_table(ex, DAY1, key, 5 + round_ * 3 + i, seed=round_)
            for i, (ex, key) in enumerate(exchanges.items())
        }
        uris = [lake.put(t, f"r{round_}/{ex}.parquet") for ex, t in data.items()]
        with ThreadPoolExecutor(len(exchanges)) as pool:
            assert list(pool.map(replace, exchanges, uris)) == [t.num_rows for t in data.values()]
        for ex, t in data.items():
            assert lake.rows("candles_1m", DAY1, ex, CANDLE_SCHEMA.names) == expected(t), (round_, ex)


def test_reader_queries_the_candles_of_the_warehouse_setting(
    lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    btc = candle_table("binance", DAY1, BTC, 30)
    eth = candle_table("binance", DAY1, ETH, 12)
    uris = [lake.put(t, layout.candles_path(DAY1, "1m", k)) for t, k in ((btc, BTC), (eth, ETH))]
    lake.wh.replace_slice("candles_1m", DAY1, "binance", uris)
    monkeypatch.setenv("MARKET_DATA_WAREHOUSE", lake.wh.uri)
    monkeypatch.setenv("BIGQUERY_EMULATOR_HOST", lake.emulator.endpoint)
    start = datetime.combine(DAY1, datetime.min.time(), UTC) + timedelta(minutes=5)

    got = reader.query_candles_bigquery(lake.client, "1m", [BTC], start, start + timedelta(minutes=10))

    want = btc.filter(
        pc.and_(
            pc.greater_equal(btc["timestamp"], start),
            pc.less(btc["timestamp"], start + timedelta(minutes=10)),
        )
    )
    assert want.num_rows == 10
    assert canonical_rows(got.to_arrow().select(CANDLE_SCHEMA.names), CANDLE_SCHEMA.names) == expected(want)
    monkeypatch.setenv("MARKET_DATA_WAREHOUSE", "duckdb")
    with pytest.raises(WarehouseError, match="MARKET_DATA_WAREHOUSE='duckdb'"):
        reader.query_candles_bigquery(lake.client, "1m", [BTC], start, start + timedelta(minutes=10))


def test_open_warehouse_reaches_the_emulator_through_the_environment(
    gcs_env: str, bigquery_emulator: BigQueryEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    dataset = f"mda_env_{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("MARKET_DATA_WAREHOUSE", f"bigquery://{bigquery_emulator.project}/{dataset}")
    monkeypatch.setenv("BIGQUERY_EMULATOR_HOST", bigquery_emulator.endpoint)
    settings = Settings.from_env()
    store = open_store(settings.root)
    store.write_parquet(candle_table("binance", DAY1, BTC, 7), layout.candles_path(DAY1, "1m", BTC))

    wh = open_warehouse(settings, store)
    try:
        assert isinstance(wh, BigQueryWarehouse) and wh.uri == f"bigquery://test-project/{dataset}"
        load = load_slice(wh, store, DAY1, "binance", [get_table("candles_1m")])
        assert load.rows == 7 and wh.count("candles_1m", DAY1, "binance") == 7
        assert wh.location == "US"
    finally:
        wh.close()
        bigquery_emulator.client().delete_dataset(
            f"{bigquery_emulator.project}.{dataset}", delete_contents=True, not_found_ok=True
        )


def test_bq_candles_through_dagster_uses_the_gcs_and_bigquery_resources(
    gcs_env: str, bigquery_emulator: BigQueryEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real Dagster run of bq_candles on a gs:// lake into BigQuery, wired by ``build_definitions``:
    the store's client comes from the ``gcs`` resource (dagster-gcp's GCSResource), the warehouse's
    from ``bigquery`` (BigQueryResource), and launch-time config of ``bigquery`` reaches the client."""
    import dagster as dg

    from market_data_assets.defs import build_definitions
    from market_data_assets_tests.test_warehouse_asset import write_partition

    dataset = f"mda_dg_{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("MARKET_DATA_WAREHOUSE", f"bigquery://{bigquery_emulator.project}/{dataset}")
    monkeypatch.setenv("BIGQUERY_EMULATOR_HOST", bigquery_emulator.endpoint)
    settings = Settings.from_env()
    expected = write_partition(open_store(settings.root), DAY1, "binance", (BTC,), 4)
    defs = build_definitions(settings)
    bq_candles = defs.resolve_assets_def("bq_candles")
    assert bq_candles.specs_by_key[dg.AssetKey("bq_candles")].kinds == {"bigquery"}
    job = defs.resolve_implicit_global_asset_job_def()
    assert {"gcs", "bigquery", "market_data"} <= set(job.resource_defs)
    try:
        result = job.execute_in_process(
            partition_key=f"{DAY1.isoformat()}|binance",
            asset_selection=[dg.AssetKey("bq_candles")],
            run_config={
                "resources": {
                    "bigquery": {"config": {"project": bigquery_emulator.project, "location": "US"}}
                }
            },
            raise_on_error=False,
        )
        assert result.success, [e.message for e in result.all_events if e.is_failure]
        (mat,) = result.asset_materializations_for_node("bq_candles")
        assert mat.metadata["warehouse"].value == f"bigquery://{bigquery_emulator.project}/{dataset}"
        assert {t: n for t, n in mat.metadata["rows_by_table"].value.items() if n} == expected
        client = bigquery_emulator.client()
        (count,) = client.query(
            f"SELECT count(*) FROM `{bigquery_emulator.project}.{dataset}.candles_1m`",
            retry=bigquery_emulator.retry,
        ).result(timeout=60)
        assert count[0] == expected["candles_1m"]
    finally:
        bigquery_emulator.client().delete_dataset(
            f"{bigquery_emulator.project}.{dataset}", delete_contents=True, not_found_ok=True
        )
