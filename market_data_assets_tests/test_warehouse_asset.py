"""bq_candles materialized for real by Dagster, into DuckDB, from candle files laid out by the test."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from market_data_assets.defs.warehouse import BOOK_SNAPSHOTS_ASSET_KEY, CANDLE_ASSET_KEYS
from market_data_assets.storage import layout
from market_data_assets.storage.base import ObjectStore
from market_data_assets.storage.local import LocalStore
from market_data_assets.storage.slices import SliceRef, SliceSummary
from market_data_assets_tests.support.graph import asset, group
from market_data_assets_tests.support.graph import resources as graph_resources
from market_data_assets_tests.support.warehouse_data import book_table, candle_table

pytestmark = pytest.mark.servers


bq_candles = asset("bq_candles")


DAY1, DAY2 = date(2024, 1, 2), date(2024, 1, 3)
KEYS = ("BINANCE:SPOT_PAIR:BTC-USDT", "BINANCE:PERP:ETH-USDT")


def write_partition(
    store: ObjectStore, day: date, exchange: str, keys: tuple[str, ...], base_rows: int
) -> dict[str, int]:
    """Every timeframe's candles and the 15s book snapshots of ``keys``; returns the rows per table."""
    expected: dict[str, int] = {}
    for i, tf in enumerate(layout.TIMEFRAMES):
        expected[f"candles_{tf}"] = 0
        for j, key in enumerate(keys):
            rows = base_rows + i + j
            store.write_parquet(
                candle_table(exchange, day, key, rows, timeframe=tf), layout.candles_path(day, tf, key)
            )
            expected[f"candles_{tf}"] += rows
    book = book_table(exchange, day, keys[0], 9, depth=5, timeframe="15s", step=timedelta(seconds=15))
    store.write_parquet(book, layout.book_snapshots_path(day, "15s", keys[0]))
    expected["book_snapshots_15s"] = 9
    mark_slices_written(store, day, exchange)
    return expected


def mark_slices_written(store: ObjectStore, day: date, exchange: str) -> None:
    """The markers the slices IO manager writes last: the files above form materialized slices."""
    for area in layout.KEYED_AREAS:
        for tf in layout.TIMEFRAMES:
            ref = SliceRef(area, day, tf, exchange)
            store.put_bytes(SliceSummary(ref).marker_json(), ref.marker)


def rows_in_duckdb(db: Path) -> dict[tuple[str, str, str], int]:
    """(table, day, exchange) -> rows, counted by plain SQL over every table in the file."""
    out: dict[tuple[str, str, str], int] = {}
    with duckdb.connect(str(db), read_only=True) as con:
        con.execute("SET TimeZone = 'UTC'")
        tables = [r[0] for r in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'"
        ).fetchall()]  # fmt: skip
        for table in tables:
            for day, exchange, n in con.execute(
                f"SELECT CAST(timestamp AS DATE), exchange, count(*) FROM {table} GROUP BY 1, 2"
            ).fetchall():
                out[(table, day.isoformat(), exchange)] = n
    return out


@pytest.fixture
def lake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LocalStore:
    root = tmp_path / "lake"
    monkeypatch.setenv("MARKET_DATA_ROOT", str(root))
    monkeypatch.setenv("MARKET_DATA_WAREHOUSE", "duckdb")
    return LocalStore(root)


def materialization_metadata(result: dg.ExecuteInProcessResult) -> list[dict]:
    return [
        e.materialization.metadata
        for e in result.get_asset_materialization_events()
        if e.materialization.metadata
    ]


def test_bq_candles_loads_one_partition_into_duckdb_and_rerun_is_idempotent(lake: LocalStore) -> None:
    expected = write_partition(lake, DAY1, "binance", KEYS, 4)
    write_partition(lake, DAY1, "deribit", ("DERIBIT:PERP:BTC-USD",), 30)  # same day, other partition
    instance = dg.DagsterInstance.ephemeral()
    resources = graph_resources()

    for _ in range(2):
        result = dg.materialize(
            [*group("candles"), bq_candles],
            selection=[bq_candles],
            partition_key="2024-01-02|binance",
            resources=resources,
            instance=instance,
        )
        assert result.success
        db = Path(lake.root) / "warehouse.duckdb"
        assert rows_in_duckdb(db) == {(t, "2024-01-02", "binance"): n for t, n in expected.items()}

    (metadata,) = materialization_metadata(result)
    assert metadata["warehouse"].value == f"duckdb://{db}"
    assert metadata["dagster/row_count"].value == sum(expected.values())
    rows_by_table = metadata["rows_by_table"].value
    assert {t: n for t, n in rows_by_table.items() if n} == expected and len(rows_by_table) == 14
    assert '"main"."candles_1m"' in metadata["tables"].value


def test_bq_candles_definition_wiring() -> None:
    spec = bq_candles.specs_by_key[dg.AssetKey("bq_candles")]
    assert {d.asset_key for d in spec.deps} == {*CANDLE_ASSET_KEYS, BOOK_SNAPSHOTS_ASSET_KEY}
    assert spec.group_name == "warehouse"
    assert spec.kinds == {"duckdb"}  # the test environment's MARKET_DATA_WAREHOUSE default
    assert bq_candles.partitions_def is not None


def test_bq_candles_run_covering_several_partitions(lake: LocalStore) -> None:
    expected = {}
    for day, base in ((DAY1, 3), (DAY2, 6)):
        for t, n in write_partition(lake, day, "binance", KEYS[:1], base).items():
            expected[(t, day.isoformat(), "binance")] = n

    result = dg.materialize(
        [*group("candles"), bq_candles],
        selection=[bq_candles],
        resources=graph_resources(),
        instance=dg.DagsterInstance.ephemeral(),
        tags={
            "dagster/asset_partition_range_start": "2024-01-02|binance",
            "dagster/asset_partition_range_end": "2024-01-03|binance",
        },
    )

    assert result.success
    assert rows_in_duckdb(Path(lake.root) / "warehouse.duckdb") == expected
