"""DuckDB warehouse loads: from a gs:// lake (real GCS emulator) as from a local one, in batches,
with bounded connections, and from file lists handed over by the caller. Real DuckDB files only."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from market_data_assets.settings import Settings, SettingsError
from market_data_assets.storage import layout, open_store
from market_data_assets.storage.base import ObjectStore
from market_data_assets.storage.local import LocalStore
from market_data_assets.warehouse import WAREHOUSE_TABLES, WarehouseError, load_slice, open_warehouse
from market_data_assets.warehouse.duckdb_warehouse import DuckDBWarehouse
from market_data_assets_tests.support.warehouse_data import book_table, candle_table, canonical_rows
from market_data_assets_tests.test_warehouse_duckdb import read_slice

pytestmark = pytest.mark.slow


DAY = date(2024, 1, 2)
EX = "deribit"
PERP = "DERIBIT:PERP:BTC-PERPETUAL"
FUTURE = "DERIBIT:FUTURE:ETH-29MAR24"
OPTIONS = [f"DERIBIT:OPTION:BTC-29MAR24-{40000 + 1000 * i}-{'C' if i % 2 else 'P'}" for i in range(5)]
OTHER = "BINANCE:SPOT_PAIR:BTC-USDT"
TABLES = ["candles_15s", "candles_1m", "candles_24h", "book_snapshots_15s", "book_snapshots_1m"]


def write_lake(store: ObjectStore) -> dict[str, int]:
    """The same exchange-day on any store: candles and book snapshots (depth 25 and 5 mixed), plus a
    file of another exchange in the same folders. Returns the rows expected per table."""
    expected: dict[str, int] = {}
    for tf, rows in (("15s", 40), ("1m", 12), ("24h", 1)):
        for i, key in enumerate([PERP, FUTURE, *OPTIONS]):
            n = max(1, rows - 3 * i)
            store.write_parquet(
                candle_table(EX, DAY, key, n, timeframe=tf, seed=i), layout.candles_path(DAY, tf, key)
            )
            expected[f"candles_{tf}"] = expected.get(f"candles_{tf}", 0) + n
        store.write_parquet(
            candle_table("binance", DAY, OTHER, 7, timeframe=tf), layout.candles_path(DAY, tf, OTHER)
        )
    for tf in ("15s", "1m"):
        for i, key in enumerate([PERP, FUTURE, *OPTIONS]):
            depth = 25 if i < 2 else 5
            store.write_parquet(
                book_table(EX, DAY, key, 5 + i, depth, timeframe=tf, seed=i),
                layout.book_snapshots_path(DAY, tf, key),
            )
            expected[f"book_snapshots_{tf}"] = expected.get(f"book_snapshots_{tf}", 0) + 5 + i
    return expected


def selected() -> list:
    return [WAREHOUSE_TABLES[t] for t in TABLES]


def slices(db: Path) -> dict[str, list[tuple]]:
    return {t: canonical_rows(read_slice(db, t, DAY, EX), WAREHOUSE_TABLES[t].schema.names) for t in TABLES}


@pytest.fixture
def gcs_store(gcs_env: str) -> ObjectStore:
    return open_store(gcs_env)


def test_a_gs_lake_loads_the_same_rows_as_a_local_lake_and_reruns_are_idempotent(
    gcs_store: ObjectStore, tmp_path: Path
) -> None:
    local = LocalStore(tmp_path / "lake")
    expected = write_lake(local)
    assert write_lake(gcs_store) == expected
    # The factory's duckdb:///path loads a gs:// lake into a local file.
    wh_gcs = open_warehouse(
        Settings(root=gcs_store.root, warehouse=f"duckdb://{tmp_path}/gcs.duckdb"), gcs_store
    )
    wh_local = DuckDBWarehouse(tmp_path / "local.duckdb")

    from_gcs = load_slice(wh_gcs, gcs_store, DAY, EX, selected())
    from_local = load_slice(wh_local, local, DAY, EX, selected())

    assert {t: r.rows for t, r in from_gcs.results.items()} == expected
    assert {t: (r.rows, r.files) for t, r in from_gcs.results.items()} == {
        t: (r.rows, r.files) for t, r in from_local.results.items()
    }
    got = slices(wh_gcs.path)
    assert got == slices(wh_local.path)
    book = read_slice(wh_gcs.path, "book_snapshots_15s", DAY, EX)
    shallow = book.filter(pa.compute.equal(book["instrument_key"], OPTIONS[0]))
    assert shallow.num_rows == 7 and shallow["ask_price_24"].null_count == 7  # a depth-5 file

    again = load_slice(wh_gcs, gcs_store, DAY, EX, selected())
    assert {t: (r.rows, r.replaced_rows) for t, r in again.results.items()} == {
        t: (n, n) for t, n in expected.items()
    }
    assert slices(wh_gcs.path) == got
    with duckdb.connect(
        str(wh_gcs.path), read_only=True
    ) as con:  # nothing of the other exchange, no duplicate
        assert con.execute("SELECT count(*) FROM candles_1m").fetchone() == (expected["candles_1m"],)


@pytest.mark.parametrize("where", ["local", "gcs"])
def test_staging_in_many_small_batches_gives_the_same_slices(
    where: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    store = request.getfixturevalue("gcs_store") if where == "gcs" else LocalStore(tmp_path / "lake")
    expected = write_lake(store)
    whole = DuckDBWarehouse(tmp_path / "whole.duckdb")
    # One file per INSERT, and (gs://) an Arrow budget below one file: every batch is a single file,
    # so some book batches hold only depth-5 files and get levels 5..24 as NULL.
    tiny = DuckDBWarehouse(tmp_path / "tiny.duckdb", batch_files=1, batch_bytes=1, readers=2)
    pairs = DuckDBWarehouse(tmp_path / "pairs.duckdb", batch_files=2)

    for wh in (whole, tiny, pairs):
        load = load_slice(wh, store, DAY, EX, selected())
        assert {t: r.rows for t, r in load.results.items()} == expected
    reference = slices(whole.path)
    assert slices(tiny.path) == reference
    assert slices(pairs.path) == reference
    rerun = load_slice(tiny, store, DAY, EX, selected())
    assert {t: r.replaced_rows for t, r in rerun.results.items()} == expected
    assert slices(tiny.path) == reference


def test_rows_outside_the_slice_in_a_gs_file_are_refused_naming_it(
    gcs_store: ObjectStore, tmp_path: Path
) -> None:
    wh = DuckDBWarehouse(tmp_path / "wh.duckdb", batch_files=2)
    ok = [layout.candles_path(DAY, "1m", key) for key in OPTIONS[:3]]
    for path, key in zip(ok, OPTIONS, strict=False):
        gcs_store.write_parquet(candle_table(EX, DAY, key, 4), path)
    first = wh.replace_slice("candles_1m", DAY, EX, [wh.source_uri(gcs_store, p) for p in ok])
    assert first.rows == 12
    spill = layout.candles_path(DAY, "1m", PERP)
    gcs_store.write_parquet(
        candle_table(EX, DAY, PERP, 10, start=datetime.fromisoformat("2024-01-02T23:55:00+00:00")), spill
    )

    with pytest.raises(
        WarehouseError, match=r"5 of 22 staged rows are outside.*BTC-PERPETUAL\.parquet \(5 rows\)"
    ):
        wh.replace_slice("candles_1m", DAY, EX, [wh.source_uri(gcs_store, p) for p in [*ok, spill]])
    assert wh.count("candles_1m", DAY, EX) == 12

    missing = wh.source_uri(gcs_store, layout.candles_path(DAY, "1m", FUTURE))
    with pytest.raises(WarehouseError, match=f"cannot read source {missing}"):
        wh.replace_slice("candles_1m", DAY, EX, [wh.source_uri(gcs_store, ok[0]), missing])
    assert wh.count("candles_1m", DAY, EX) == 12


def test_a_bare_gs_uri_is_read_through_a_store_opened_on_its_bucket(
    gcs_store: ObjectStore, tmp_path: Path
) -> None:
    path = layout.candles_path(DAY, "15s", PERP)
    data = candle_table(EX, DAY, PERP, 9, timeframe="15s")
    gcs_store.write_parquet(data, path)
    wh = DuckDBWarehouse(tmp_path / "wh.duckdb")  # has never seen the store

    assert wh.replace_slice("candles_15s", DAY, EX, [gcs_store.uri(path)]).rows == 9
    columns = WAREHOUSE_TABLES["candles_15s"].lake_names  # the table's columns minus the load constants
    loaded = read_slice(wh.path, "candles_15s", DAY, EX)
    assert canonical_rows(loaded, columns) == canonical_rows(data, columns)
    assert set(loaded.column("source").to_pylist()) == {"batch"}
    with pytest.raises(
        WarehouseError, match="s3://bucket/x.parquet is neither a local file nor a gs:// object"
    ):
        wh.replace_slice("candles_15s", DAY, EX, ["s3://bucket/x.parquet"])


def test_paths_by_table_replaces_listing_for_the_tables_it_names(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "lake")
    expected = write_lake(store)
    wh = DuckDBWarehouse(tmp_path / "wh.duckdb")
    given = [layout.candles_path(DAY, "1m", key) for key in (PERP, OPTIONS[0])]

    load = load_slice(wh, store, DAY, EX, selected(), paths_by_table={"candles_1m": given, "candles_24h": []})

    assert load.results["candles_1m"].files == 2
    assert load.results["candles_1m"].rows == 12 + (12 - 3 * 2)
    assert load.results["candles_24h"].rows == 0  # an empty list is an empty slice
    assert load.results["candles_15s"].rows == expected["candles_15s"]  # not named: listed
    assert set(read_slice(wh.path, "candles_1m", DAY, EX)["instrument_key"].to_pylist()) == {PERP, OPTIONS[0]}

    with pytest.raises(
        WarehouseError,
        match=r"candles_1m 2024-01-02 deribit: .*BTC-USDT\.parquet' is not a file of this slice",
    ):
        load_slice(
            wh,
            store,
            DAY,
            EX,
            selected(),
            paths_by_table={"candles_1m": [layout.candles_path(DAY, "1m", OTHER)]},
        )
    with pytest.raises(WarehouseError, match="is not a file of this slice"):
        load_slice(
            wh,
            store,
            DAY,
            EX,
            selected(),
            paths_by_table={"candles_1m": [layout.candles_path(DAY, "15s", PERP)]},
        )
    with pytest.raises(WarehouseError, match="names candles_4h, which is not among the tables being loaded"):
        load_slice(wh, store, DAY, EX, selected(), paths_by_table={"candles_4h": []})
    with pytest.raises(ValueError, match="unknown warehouse table 'candles_2m'"):
        load_slice(wh, store, DAY, EX, selected(), paths_by_table={"candles_2m": []})
    assert wh.count("candles_1m", DAY, EX) == 18  # the refused loads changed nothing


def test_connections_are_bounded_by_the_settings(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {
            "MARKET_DATA_ROOT": str(tmp_path / "lake"),
            "MARKET_DATA_DUCKDB_MEMORY_LIMIT": "300MiB",
            "MARKET_DATA_DUCKDB_THREADS": "1",
            "MARKET_DATA_DUCKDB_BATCH_FILES": "7",
        }
    )
    wh = open_warehouse(settings, LocalStore(tmp_path / "lake"))
    assert isinstance(wh, DuckDBWarehouse) and wh.batch_files == 7
    with wh.connect() as con:
        assert con.execute(
            "SELECT current_setting('memory_limit'), current_setting('threads'), "
            "current_setting('preserve_insertion_order'), current_setting('TimeZone')"
        ).fetchone() == ("300.0 MiB", 1, False, "UTC")
    defaults = Settings.from_env({})
    assert (defaults.duckdb_memory_limit, defaults.duckdb_threads, defaults.duckdb_batch_files) == (
        "384MB",
        2,
        500,
    )
    assert Settings.from_env({"MARKET_DATA_DUCKDB_MEMORY_LIMIT": "1.5gib"}).duckdb_memory_limit == "1.5GiB"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("MARKET_DATA_DUCKDB_MEMORY_LIMIT", "512", "is not a size like 512MB"),
        ("MARKET_DATA_DUCKDB_MEMORY_LIMIT", "80%", "is not a size like 512MB"),
        ("MARKET_DATA_DUCKDB_MEMORY_LIMIT", "10MB", "is below 32MB"),
        ("MARKET_DATA_DUCKDB_THREADS", "0", r"MARKET_DATA_DUCKDB_THREADS=0 is outside \[1, 256\]"),
        ("MARKET_DATA_DUCKDB_BATCH_FILES", "many", "MARKET_DATA_DUCKDB_BATCH_FILES='many' is not an integer"),
    ],
)
def test_bad_duckdb_settings_fail_naming_the_variable(name: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_env({name: value})
