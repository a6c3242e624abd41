"""The slices IO manager through real Dagster runs, on a local folder and on the GCS emulator.

Layout paths and the slice marker, stale-file removal and identical files on a re-run, the data edge
from a finer timeframe (a never-materialized upstream partition is named), and an I/O failure in one
write of many: the step fails naming the object and the previous slice stays as it was.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pytest

from market_data_assets.defs import resources as resources_module
from market_data_assets.storage import open_store
from market_data_assets.storage.base import ObjectStore
from market_data_assets.storage.layout import CANDLES_AREA, book_snapshots_path, candles_path, raw_ticks_path
from market_data_assets.storage.local import LocalStore
from market_data_assets.storage.slices import SliceRef, StoredSlice
from market_data_assets_tests.support.candles import DAY, EXCHANGE, NEXT, at, write_ticks
from market_data_assets_tests.support.graph import assets, resources

pytestmark = pytest.mark.servers


KEYS = [
    "BINANCE:OPTION:BTC-USDT-50000-240105-CALL",
    "BINANCE:SPOT_PAIR:BTC-USDT",
    "BINANCE:SPOT_PAIR:ETH-USDT",
]
PARTITION = f"{DAY.isoformat()}|{EXCHANGE}"
BASE, ROLLED, BOOKS = assets("candles_15s", "candles_1m", "book_snapshots")


def _write_raw(store: ObjectStore) -> None:
    for i, key in enumerate(KEYS):
        trades = [
            {"timestamp": at(h, i), "price": 100.0 + h, "amount": 1.0, "side": "buy"} for h in range(0, 24, 3)
        ]
        write_ticks(store, "trades", DAY, key, trades)
        write_ticks(
            store,
            "trades",
            NEXT,
            key,
            [{"timestamp": at(1, day=NEXT), "price": 1.0, "amount": 1.0, "side": "sell"}],
        )
        book = [
            {
                "timestamp": at(h),
                "ask_price_0": 101.0,
                "ask_amount_0": 1.0,
                "bid_price_0": 99.0,
                "bid_amount_0": 1.0,
            }
            for h in (0, 12)
        ]
        write_ticks(store, "book_snapshot_5", DAY, key, book)


def _materialize(
    root: str, assets: list, selection: list | None = None, **kw: object
) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        assets,
        selection=selection,
        partition_key=PARTITION,
        resources=resources(root),
        **kw,
    )


def _digests(store: ObjectStore, tf: str) -> dict[str, str]:
    return {key: hashlib.sha256(store.get_bytes(candles_path(DAY, tf, key))).hexdigest() for key in KEYS}


def _check_writes_and_replaces(root: str) -> None:
    store = open_store(root)
    _write_raw(store)
    result = _materialize(root, [BASE, ROLLED, BOOKS])
    assert result.success
    for tf in ("15s", "1m"):
        stored = StoredSlice.open(store, SliceRef(CANDLES_AREA, DAY, tf, EXCHANGE))
        assert stored.keys == KEYS and stored.marker["files"] == 3
        assert [f.path for f in stored.files] == [candles_path(DAY, tf, k) for k in KEYS]
        assert stored.flag("complete_through_midnight") == "true"
    assert all(store.exists(book_snapshots_path(DAY, "4h", k)) for k in KEYS)
    meta = result.asset_materializations_for_node("candles_1m")[0].metadata
    assert meta["instruments"].value == 3 and meta["files"].value == 3
    assert meta["by_timeframe"].value["1m"]["files"] == 3
    assert meta["objects_read"].value == 3 and meta["objects_written"].value == 4  # + the marker
    assert (
        meta["store_requests"].value >= 7 and meta["stage_cpu_s"].value >= 0 and meta["peak_rss_mb"].value > 0
    )
    before = _digests(store, "1m")

    # An instrument loses its raw ticks: a re-run removes its files, the others come out identical.
    store.delete(raw_ticks_path(DAY, "trades", KEYS[2]))
    store.delete(raw_ticks_path(NEXT, "trades", KEYS[2]))
    again = _materialize(root, [BASE, ROLLED])
    assert again.success
    for tf in ("15s", "1m"):
        assert not store.exists(candles_path(DAY, tf, KEYS[2]))
        assert StoredSlice.open(store, SliceRef(CANDLES_AREA, DAY, tf, EXCHANGE)).keys == KEYS[:2]
    assert again.asset_materializations_for_node("candles_1m")[0].metadata["stale_files_deleted"].value == 1
    after = {k: hashlib.sha256(store.get_bytes(candles_path(DAY, "1m", k))).hexdigest() for k in KEYS[:2]}
    assert after == {k: before[k] for k in KEYS[:2]}


def test_io_manager_writes_and_replaces_slices_on_a_local_folder(tmp_path: Path) -> None:
    _check_writes_and_replaces(str(tmp_path / "lake"))


@pytest.mark.emulator
def test_io_manager_writes_and_replaces_slices_on_gcs(gcs_env: str) -> None:
    _check_writes_and_replaces(gcs_env)


def test_a_never_materialized_upstream_partition_is_named(tmp_path: Path) -> None:
    root = str(tmp_path / "lake")
    _write_raw(open_store(root))
    result = _materialize(root, [BASE, ROLLED], selection=[ROLLED], raise_on_error=False)
    assert not result.success
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    message = str(failure.event_specific_data.error)  # type: ignore[union-attr]
    assert "candles_15s for partition 2024-01-02|binance is not materialized" in message
    assert (
        str(tmp_path / "lake" / "processed_candles/by_date/day-2024-01-02/timeframe-15s/_slice-binance.json")
        in message
    )


class _FailingStore(LocalStore):
    """A real local store whose upload of one object fails, as a dropped GCS request would."""

    def __init__(self, root: str, fail_path: str) -> None:
        super().__init__(root)
        self.fail_path = fail_path

    def put_file(self, local_path: Path, path: str, *, move: bool = False) -> None:
        if path == self.fail_path:
            raise OSError("connection reset by peer (injected)")
        super().put_file(local_path, path, move=move)

    def put_bytes(self, data: bytes | pa.Buffer, path: str) -> None:
        if path == self.fail_path:
            raise OSError("connection reset by peer (injected)")
        super().put_bytes(data, path)


def test_a_failed_write_fails_the_step_naming_it_and_keeps_the_previous_slice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = str(tmp_path / "lake")
    store = LocalStore(root)
    _write_raw(store)
    assert _materialize(root, [BASE]).success
    folder = Path(store.uri(candles_path(DAY, "15s", KEYS[0]))).parent
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    # New ticks change every file; the write of one of them fails.
    for key in KEYS:
        write_ticks(
            store, "trades", DAY, key, [{"timestamp": at(5), "price": 7.0, "amount": 2.0, "side": "sell"}]
        )
    failing = _FailingStore(root, candles_path(DAY, "15s", KEYS[1]))
    monkeypatch.setitem(resources_module._STORES, (root, None, None), failing)
    result = _materialize(root, [BASE], raise_on_error=False)
    assert not result.success
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    message = str(failure.event_specific_data.error)  # type: ignore[union-attr]
    assert store.uri(candles_path(DAY, "15s", KEYS[1])) in message and "injected" in message
    after = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert after[f"{KEYS[1]}.parquet"] == before[f"{KEYS[1]}.parquet"]  # the failed object: untouched
    assert after["_slice-binance.json"] == before["_slice-binance.json"]  # the marker: the previous slice
    assert set(after) == set(before)  # no temporary or partial file left behind
