"""DuckDB warehouse: slice replace is idempotent, isolated and atomic, against a real DuckDB file."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from market_data_assets.candles.schema import CANDLE_SCHEMA, book_snapshot_schema
from market_data_assets.settings import Settings
from market_data_assets.storage import layout
from market_data_assets.storage.gcs import GcsStore
from market_data_assets.storage.local import LocalStore
from market_data_assets.warehouse import StagedSlice, WarehouseError, load_slice, open_warehouse
from market_data_assets.warehouse.duckdb_warehouse import DuckDBWarehouse
from market_data_assets_tests.support.warehouse_data import book_table, candle_table, canonical_rows

pytestmark = pytest.mark.slow


DAY1, DAY2 = date(2024, 1, 2), date(2024, 1, 3)
BTC = "BINANCE:SPOT_PAIR:BTC-USDT"
ETH = "BINANCE:SPOT_PAIR:ETH-USDT"
DERIBIT_PERP = "DERIBIT:PERP:BTC-USD"


def write(path: Path, table: pa.Table) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return str(path)


def read_slice(db: Path, table: str, day: date, exchange: str) -> pa.Table:
    """Read the slice back with a separate DuckDB connection and plain SQL (not the warehouse code)."""
    start = datetime(day.year, day.month, day.day).isoformat()
    end = (datetime(day.year, day.month, day.day) + timedelta(days=1)).isoformat()
    with duckdb.connect(str(db), read_only=True) as con:
        con.execute("SET TimeZone = 'UTC'")
        return con.sql(
            f"SELECT * FROM {table} WHERE exchange = ? "
            f"AND timestamp >= CAST(? AS TIMESTAMPTZ) AND timestamp < CAST(? AS TIMESTAMPTZ)",
            params=[exchange, start + "+00:00", end + "+00:00"],
        ).to_arrow_table()


def total_rows(db: Path, table: str) -> int:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


@pytest.fixture
def wh(tmp_path: Path) -> DuckDBWarehouse:
    return DuckDBWarehouse(tmp_path / "wh" / "warehouse.duckdb")


def test_reload_keeps_rows_and_values(wh: DuckDBWarehouse, tmp_path: Path) -> None:
    btc = candle_table("binance", DAY1, BTC, 30)
    eth = candle_table("binance", DAY1, ETH, 12)
    files = [write(tmp_path / "a" / f"{BTC}.parquet", btc), write(tmp_path / "a" / f"{ETH}.parquet", eth)]

    first = wh.replace_slice("candles_1m", DAY1, "binance", files)
    second = wh.replace_slice("candles_1m", DAY1, "binance", files)

    assert (first.rows, first.replaced_rows) == (42, 0)
    assert (second.rows, second.replaced_rows) == (42, 42)
    assert wh.count("candles_1m", DAY1, "binance") == 42
    assert total_rows(wh.path, "candles_1m") == 42
    expected = canonical_rows(pa.concat_tables([btc, eth]), CANDLE_SCHEMA.names)
    assert canonical_rows(read_slice(wh.path, "candles_1m", DAY1, "binance"), CANDLE_SCHEMA.names) == expected
    # BigQuery's spelling works once the file is attached under the dataset's name.
    with duckdb.connect() as con:
        con.execute(f"ATTACH '{wh.path}' AS market_data_analytics (READ_ONLY)")
        assert con.execute("SELECT count(*) FROM market_data_analytics.candles_1m").fetchone() == (42,)


def test_replacing_one_slice_leaves_other_days_exchanges_and_tables_untouched(
    wh: DuckDBWarehouse, tmp_path: Path
) -> None:
    slices = {
        ("candles_1m", DAY1, "binance"): candle_table("binance", DAY1, BTC, 20),
        ("candles_1m", DAY2, "binance"): candle_table("binance", DAY2, BTC, 15),
        ("candles_1m", DAY1, "deribit"): candle_table("deribit", DAY1, DERIBIT_PERP, 9),
        ("candles_5m", DAY1, "binance"): candle_table("binance", DAY1, BTC, 7, timeframe="5m"),
    }
    for i, ((table, day, ex), data) in enumerate(slices.items()):
        wh.replace_slice(table, day, ex, [write(tmp_path / f"s{i}.parquet", data)])

    smaller = candle_table("binance", DAY1, BTC, 5, seed=1)
    result = wh.replace_slice("candles_1m", DAY1, "binance", [write(tmp_path / "new.parquet", smaller)])

    assert (result.rows, result.replaced_rows) == (5, 20)
    assert canonical_rows(read_slice(wh.path, "candles_1m", DAY1, "binance"), CANDLE_SCHEMA.names) == (
        canonical_rows(smaller, CANDLE_SCHEMA.names)
    )
    for (table, day, ex), data in list(slices.items())[1:]:
        got = canonical_rows(read_slice(wh.path, table, day, ex), CANDLE_SCHEMA.names)
        assert got == canonical_rows(data, CANDLE_SCHEMA.names), (table, day, ex)
    assert total_rows(wh.path, "candles_1m") == 5 + 15 + 9


def test_failure_between_staging_and_replace_keeps_previous_slice(
    wh: DuckDBWarehouse, tmp_path: Path
) -> None:
    old = candle_table("binance", DAY1, BTC, 25)
    wh.replace_slice("candles_1m", DAY1, "binance", [write(tmp_path / "old.parquet", old)])
    staged: list[StagedSlice] = []

    def crash(s: StagedSlice) -> None:
        staged.append(s)
        raise RuntimeError("crash after staging")

    wh.before_replace = crash
    new = candle_table("binance", DAY1, BTC, 40, seed=2)
    with pytest.raises(RuntimeError, match="crash after staging"):
        wh.replace_slice("candles_1m", DAY1, "binance", [write(tmp_path / "new.parquet", new)])

    assert staged and staged[0].rows == 40  # the crash happened with the new slice fully staged
    assert canonical_rows(read_slice(wh.path, "candles_1m", DAY1, "binance"), CANDLE_SCHEMA.names) == (
        canonical_rows(old, CANDLE_SCHEMA.names)
    )


def test_failure_inside_the_transaction_rolls_the_delete_back(wh: DuckDBWarehouse, tmp_path: Path) -> None:
    """The staging table vanishes before the swap: its DELETE runs, its INSERT fails, all is rolled back."""
    old = candle_table("binance", DAY1, BTC, 25)
    wh.replace_slice("candles_1m", DAY1, "binance", [write(tmp_path / "old.parquet", old)])
    wh.before_replace = lambda s: s.execute(f"DROP TABLE {s.staging_table}")

    with pytest.raises(duckdb.CatalogException, match="staging_candles_1m"):
        wh.replace_slice("candles_1m", DAY1, "binance", [write(tmp_path / "new.parquet", old.slice(0, 3))])

    assert canonical_rows(read_slice(wh.path, "candles_1m", DAY1, "binance"), CANDLE_SCHEMA.names) == (
        canonical_rows(old, CANDLE_SCHEMA.names)
    )


def test_rows_outside_the_slice_are_refused_naming_the_file(wh: DuckDBWarehouse, tmp_path: Path) -> None:
    old = candle_table("binance", DAY1, BTC, 10)
    wh.replace_slice("candles_1m", DAY1, "binance", [write(tmp_path / "old.parquet", old)])
    spills = candle_table("binance", DAY1, ETH, 10, start=datetime.fromisoformat("2024-01-02T23:55:00+00:00"))
    bad = write(tmp_path / "spills-into-next-day.parquet", spills)

    with pytest.raises(
        WarehouseError, match=r"5 of 15 staged rows are outside.*spills-into-next-day\.parquet"
    ):
        wh.replace_slice(
            "candles_1m", DAY1, "binance", [write(tmp_path / "ok.parquet", old.slice(0, 5)), bad]
        )
    assert wh.count("candles_1m", DAY1, "binance") == 10


def test_book_snapshots_of_depth_5_and_25_share_the_depth_25_table(
    wh: DuckDBWarehouse, tmp_path: Path
) -> None:
    shallow = book_table("binance", DAY1, BTC, 6, depth=5)
    deep = book_table("binance", DAY1, ETH, 4, depth=25)
    files = [write(tmp_path / "b5.parquet", shallow), write(tmp_path / "b25.parquet", deep)]

    assert wh.replace_slice("book_snapshots_1m", DAY1, "binance", files).rows == 10

    got = read_slice(wh.path, "book_snapshots_1m", DAY1, "binance")
    columns = book_snapshot_schema(25).names
    assert got.column_names == columns
    assert canonical_rows(got, columns) == canonical_rows(
        pa.concat_tables([shallow, deep], promote_options="default"), columns
    )
    shallow_rows = got.filter(pa.compute.equal(got["instrument_key"], BTC))
    assert shallow_rows["ask_price_24"].null_count == 6  # levels the depth-5 file does not have
    assert shallow_rows["ask_price_4"].null_count == shallow["ask_price_4"].null_count < 6


def test_no_files_empties_the_slice_and_a_missing_file_is_named(wh: DuckDBWarehouse, tmp_path: Path) -> None:
    wh.replace_slice(
        "candles_1m", DAY1, "binance", [write(tmp_path / "a.parquet", candle_table("binance", DAY1, BTC, 8))]
    )
    with pytest.raises(WarehouseError, match="gone.parquet does not exist"):
        wh.replace_slice("candles_1m", DAY1, "binance", [str(tmp_path / "gone.parquet")])
    assert wh.count("candles_1m", DAY1, "binance") == 8

    assert wh.replace_slice("candles_1m", DAY1, "binance", []).replaced_rows == 8
    assert wh.count("candles_1m", DAY1, "binance") == 0


def test_unknown_table_and_bad_exchange_are_refused_before_any_sql(wh: DuckDBWarehouse) -> None:
    with pytest.raises(ValueError, match="unknown warehouse table 'candles_2m'"):
        wh.replace_slice("candles_2m", DAY1, "binance", [])
    with pytest.raises(ValueError, match="invalid exchange id"):
        wh.count("candles_1m", DAY1, "binance'; DROP TABLE x; --")


def test_load_slice_reads_the_lake_layout_and_open_warehouse_puts_the_file_under_the_root(
    tmp_path: Path,
) -> None:
    store = LocalStore(tmp_path / "lake")
    expected = {}
    for i, tf in enumerate(layout.TIMEFRAMES):
        data = candle_table("binance", DAY1, BTC, 3 + i, timeframe=tf)
        store.write_parquet(data, layout.candles_path(DAY1, tf, BTC))
        expected[f"candles_{tf}"] = 3 + i
    # Another exchange's file in the same folder, and a key whose venue only starts the same way.
    store.write_parquet(
        candle_table("deribit", DAY1, DERIBIT_PERP, 50), layout.candles_path(DAY1, "1m", DERIBIT_PERP)
    )
    futures_key = "BINANCE-FUTURES:PERP:BTC-USDT"
    store.write_parquet(
        candle_table("binance-futures", DAY1, futures_key, 60), layout.candles_path(DAY1, "1m", futures_key)
    )
    store.write_parquet(
        book_table("binance", DAY1, BTC, 11, depth=5), layout.book_snapshots_path(DAY1, "15s", BTC)
    )
    expected["book_snapshots_15s"] = 11

    wh = open_warehouse(Settings(root=store.root), store)
    load = load_slice(wh, store, DAY1, "binance")

    assert wh.uri == f"duckdb://{tmp_path / 'lake' / 'warehouse.duckdb'}"
    assert {name: r.rows for name, r in load.results.items() if r.rows} == expected
    assert len(load.results) == 14
    assert total_rows(tmp_path / "lake" / "warehouse.duckdb", "candles_1m") == expected["candles_1m"]


def test_open_warehouse_choices_and_their_errors(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "lake")
    explicit = open_warehouse(
        Settings(root=store.root, warehouse=f"duckdb://{tmp_path}/elsewhere.duckdb"), store
    )
    assert isinstance(explicit, DuckDBWarehouse) and explicit.path == tmp_path / "elsewhere.duckdb"

    # A real GcsStore object (no request is made): the DuckDB file cannot live under gs://, but it
    # reads a gs:// lake (through the store: see test_warehouse_duckdb_sources.py).
    gcs = GcsStore(storage.Client(project="p", credentials=AnonymousCredentials()), "bucket", "lake")
    with pytest.raises(
        WarehouseError, match="keeps the file under MARKET_DATA_ROOT, but the root is gs://bucket/lake"
    ):
        open_warehouse(Settings(root="gs://bucket/lake"), gcs)
    path = layout.candles_path(DAY1, "1m", BTC)
    assert explicit.source_uri(gcs, path) == f"gs://bucket/lake/{path}"


def _hold_write_lock(db: Path) -> subprocess.Popen:
    """Another process with the warehouse file open (DuckDB allows one writing process)."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb, sys; con = duckdb.connect({str(db)!r}); print('open', flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "open"
    return proc


def test_a_warehouse_file_locked_by_another_process_is_waited_for_then_reported(tmp_path: Path) -> None:
    db = tmp_path / "locked.duckdb"
    DuckDBWarehouse(db).ensure_tables()
    data = write(tmp_path / "a.parquet", candle_table("binance", DAY1, BTC, 6))

    holder = _hold_write_lock(db)
    try:
        with pytest.raises(WarehouseError, match=r"locked\.duckdb stayed locked by another process for 1 s"):
            DuckDBWarehouse(db, lock_timeout=1).replace_slice("candles_1m", DAY1, "binance", [data])
        # Released while a load is (or is about to start) waiting: the load goes through.
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(
                DuckDBWarehouse(db, lock_timeout=60).replace_slice, "candles_1m", DAY1, "binance", [data]
            )
            holder.communicate("", timeout=30)
            assert pending.result(timeout=60).rows == 6
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    assert total_rows(db, "candles_1m") == 6
