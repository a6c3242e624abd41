"""A real Dagster materialization of the candle assets from raw tick Parquet written in the layout."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from market_data_assets.defs.candles import DAY_AND_NEXT_DAY, RAW_TICKS_KEY
from market_data_assets.storage.layout import TIMEFRAMES, book_snapshots_path, candles_path
from market_data_assets.storage.local import LocalStore
from market_data_assets_tests.support.candles import DAY, EXCHANGE, NEXT, at, write_ticks
from market_data_assets_tests.support.graph import PARTITIONS_DEF, asset, group, resources

pytestmark = pytest.mark.servers


BTC = "BINANCE:SPOT_PAIR:BTC-USDT"


def _snap(ts: int, ask: float, bid: float) -> dict:
    return {"timestamp": ts, "ask_price_0": ask, "ask_amount_0": 1.0, "bid_price_0": bid, "bid_amount_0": 2.0}


def _trades(*rows: tuple[int, float]) -> list[dict]:
    return [{"timestamp": ts, "price": p, "amount": 1.0, "side": "buy"} for ts, p in rows]


def _write_raw(store: LocalStore, with_next_day: bool) -> None:
    write_ticks(store, "trades", DAY, BTC, _trades((at(0, 0, 1), 100.0), (at(9), 110.0), (at(21), 90.0)))
    write_ticks(
        store, "book_snapshot_5", DAY, BTC, [_snap(at(0, 0, 1), 101.0, 99.0), _snap(at(12), 111.0, 109.0)]
    )
    if with_next_day:
        write_ticks(
            store, "trades", NEXT, BTC, _trades((at(23, 59, 59, 999_999), 95.0), (at(0, day=NEXT), 1.0))
        )


def test_materialize_every_candle_asset_for_a_partition(tmp_path: Path) -> None:
    root = tmp_path / "lake"
    store = LocalStore(root)
    _write_raw(store, with_next_day=True)
    partition = f"{DAY.isoformat()}|{EXCHANGE}"
    result = dg.materialize(group("candles"), partition_key=partition, resources=resources(root))
    assert result.success
    for tf in TIMEFRAMES:
        candles = pl.read_parquet(store.uri(candles_path(DAY, tf, BTC)))
        assert candles["trade_count"].sum() == 4, tf  # three in file D, one late one from file D+1
        assert candles["close"].drop_nulls()[-1] == 95.0, tf
        assert Path(store.uri(book_snapshots_path(DAY, tf, BTC))).exists()
        mat = result.asset_materializations_for_node(f"candles_{tf}")[0]
        assert mat.partition == partition
        assert mat.metadata["instruments"].value == 1
        assert (
            mat.metadata["dagster/row_count"].value
            == 86_400
            // {"15s": 15, "1m": 60, "5m": 300, "15m": 900, "1h": 3600, "4h": 14400, "24h": 86400}[tf]
        )
        assert mat.metadata["complete_through_midnight"].value is True
        assert "100.0" in mat.metadata["preview"].value
    day = pl.read_parquet(store.uri(candles_path(DAY, "24h", BTC))).row(0, named=True)
    assert (day["open"], day["high"], day["low"], day["close"]) == (100.0, 110.0, 90.0, 95.0)
    assert day["twa_spread"] == 2.0 and day["snapshot_count"] == 2
    books = result.asset_materializations_for_node("book_snapshots")[0]
    assert books.metadata["files"].value == len(TIMEFRAMES)


def test_missing_next_day_materializes_with_incomplete_flag(tmp_path: Path) -> None:
    root = tmp_path / "lake"
    _write_raw(LocalStore(root), with_next_day=False)
    result = dg.materialize(
        [asset("candles_15s"), asset("candles_1m")],
        partition_key=f"{DAY.isoformat()}|{EXCHANGE}",
        resources=resources(root),
    )
    assert result.success
    for node in ("candles_15s", "candles_1m"):
        meta = result.asset_materializations_for_node(node)[0].metadata
        assert meta["complete_through_midnight"].value is False
        assert meta["incomplete_partitions"].value == [f"{DAY.isoformat()}|{EXCHANGE}"]


def test_base_candles_depend_on_raw_ticks_of_the_day_and_the_next() -> None:
    base = asset("candles_15s")
    assert RAW_TICKS_KEY in {dep.asset_key for dep in base.specs_by_key[dg.AssetKey("candles_15s")].deps}
    downstream = dg.MultiPartitionKey({"date": DAY.isoformat(), "exchange": EXCHANGE})
    subset = PARTITIONS_DEF.empty_subset().with_partition_keys([downstream])
    upstream = DAY_AND_NEXT_DAY.get_upstream_mapped_partitions_result_for_partitions(
        subset, PARTITIONS_DEF, PARTITIONS_DEF
    )
    assert sorted(upstream.partitions_subset.get_partition_keys()) == [
        f"{DAY.isoformat()}|{EXCHANGE}",
        f"{NEXT.isoformat()}|{EXCHANGE}",
    ]
    finer = {dep.asset_key for dep in asset("candles_1m").specs_by_key[dg.AssetKey("candles_1m")].deps}
    assert finer == {dg.AssetKey("candles_15s")}


def test_multi_partition_run_covers_each_day(tmp_path: Path) -> None:
    root = tmp_path / "lake"
    store = LocalStore(root)
    _write_raw(store, with_next_day=True)
    write_ticks(store, "trades", NEXT + (NEXT - DAY), BTC, _trades((at(1, day=NEXT), 7.0)))
    defs = dg.Definitions(assets=[asset("candles_15s"), asset("candles_1m")], resources=resources(root))
    job = defs.resolve_implicit_global_asset_job_def()
    tags = {
        "dagster/asset_partition_range_start": f"{DAY.isoformat()}|{EXCHANGE}",
        "dagster/asset_partition_range_end": f"{NEXT.isoformat()}|{EXCHANGE}",
    }
    result = job.execute_in_process(tags=tags)
    assert result.success
    assert Path(store.uri(candles_path(DAY, "1m", BTC))).exists()
    assert Path(store.uri(candles_path(NEXT, "1m", BTC))).exists()
