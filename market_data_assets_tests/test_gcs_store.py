"""GcsStore against a real fake-gcs-server through the real google-cloud-storage client.

Expected values are checked through an independent path where it matters: the emulator is read
back with a raw storage client (object names, sizes, contents), not only through GcsStore.
"""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.dataset as pads
import pytest

from market_data_assets.storage import open_store
from market_data_assets.storage.base import StoreError
from market_data_assets.storage.gcs import GcsStore, parse_gs_uri
from market_data_assets.storage.readers import pyarrow_filesystem_for, storage_options_for
from market_data_assets_tests.fixtures.gcs import GcsEmulator

pytestmark = pytest.mark.emulator


@pytest.fixture
def store(gcs_env: str) -> GcsStore:
    opened = open_store(os.environ["MARKET_DATA_ROOT"])
    assert isinstance(opened, GcsStore)
    assert opened.root == gcs_env
    return opened


def _bucket(root: str) -> str:
    return root.removeprefix("gs://").split("/")[0]


def test_put_get_round_trip_names_objects_under_the_prefix(
    store: GcsStore, gcs_env: str, gcs_emulator: GcsEmulator
) -> None:
    path = "raw_tick_data/by_date/day-2024-01-15/data_type-trades/BINANCE:SPOT_PAIR:BTC-USDT.parquet"
    store.put_bytes(b"first", path)

    bucket = _bucket(gcs_env)
    assert store.uri(path) == f"gs://{bucket}/lake/{path}"
    raw = gcs_emulator.client().bucket(bucket).blob(f"lake/{path}")
    assert raw.download_as_bytes() == b"first"
    assert store.get_bytes(path) == b"first"
    assert store.exists(path)


def test_put_file_move_consumes_the_local_file(store: GcsStore, tmp_path: Path) -> None:
    src = tmp_path / "staged.bin"
    src.write_bytes(b"payload")
    store.put_file(src, "a/kept.bin")
    assert src.exists()
    store.put_file(src, "a/moved.bin", move=True)
    assert not src.exists()
    assert store.get_bytes("a/kept.bin") == store.get_bytes("a/moved.bin") == b"payload"


def test_overwrite_exists_delete(store: GcsStore) -> None:
    store.put_bytes(b"v1", "x/file.bin")
    store.put_bytes(b"version two", "x/file.bin")
    assert store.get_bytes("x/file.bin") == b"version two"
    assert store.list("x/")[0].size == len(b"version two")

    store.delete("x/file.bin")
    assert not store.exists("x/file.bin")
    store.delete("x/file.bin")  # deleting what is gone is fine
    assert store.list("x/") == []


def test_list_follows_pages_and_respects_the_prefix(gcs_env: str, gcs_emulator: GcsEmulator) -> None:
    store = GcsStore.from_uri(gcs_env, list_page_size=3)
    wanted = {f"area/day-2024-01-{d:02d}/f.bin": d for d in range(1, 9)}  # 8 objects: 3 pages
    for path, size in wanted.items():
        store.put_bytes(b"x" * size, path)
    store.put_bytes(b"other", "area2/f.bin")  # shares the string prefix "area"
    raw = gcs_emulator.client()
    bucket = _bucket(gcs_env)
    raw.bucket(bucket).blob("outside/area/f.bin").upload_from_string(b"not in the store")

    # The emulator really splits this listing into pages of 3, so the store must follow tokens.
    pages = list(raw.list_blobs(bucket, prefix="lake/area/", page_size=3).pages)
    assert [len(list(p)) for p in pages] == [3, 3, 2]

    listed = store.list("area/")
    assert [(o.path, o.size) for o in listed] == sorted(wanted.items())
    assert [o.path for o in store.list("area/day-2024-01-0")] == sorted(wanted)
    assert {o.path for o in store.list("area")} == set(wanted) | {"area2/f.bin"}
    assert len(store.list("")) == 9
    assert store.list("nothing/") == []


def test_parquet_round_trip(store: GcsStore) -> None:
    table = pa.table(
        {
            "timestamp": pa.array([1_700_000_000_000_000, 1_700_000_000_500_000], pa.timestamp("us", "UTC")),
            "price": [42000.5, 42001.0],
            "side": pa.array(["buy", "sell"]).dictionary_encode(),
        }
    )
    written = store.write_parquet(table, "t/trades.parquet")
    assert written == store.list("t/")[0].size > 0
    assert store.read_parquet("t/trades.parquet").equals(table)
    assert store.read_parquet("t/trades.parquet", columns=["price"]).column("price").to_pylist() == [
        42000.5,
        42001.0,
    ]


class _BreaksAfter(io.BytesIO):
    """A source that fails part-way through, like a disk error or a killed writer."""

    def __init__(self, data: bytes, fail_at: int) -> None:
        super().__init__(data)
        self._fail_at = fail_at

    def read(self, size: int | None = -1) -> bytes:
        if self.tell() >= self._fail_at:
            raise OSError("source vanished mid-upload")
        return super().read(size)


def test_a_failed_upload_leaves_the_previous_object(
    store: GcsStore, gcs_env: str, gcs_emulator: GcsEmulator, tmp_path: Path
) -> None:
    store.put_bytes(b"previous", "atomic/obj.bin")

    # A resumable upload that sends its first chunk and then dies is never made visible.
    # (size unknown -> resumable in chunks; a known size under 8 MiB would be one request.)
    chunk = 256 * 1024
    blob = gcs_emulator.client().bucket(_bucket(gcs_env)).blob("lake/atomic/obj.bin", chunk_size=chunk)
    data = os.urandom(4 * chunk)
    with pytest.raises(OSError, match="mid-upload"):
        blob.upload_from_file(_BreaksAfter(data, fail_at=chunk))
    assert store.get_bytes("atomic/obj.bin") == b"previous"

    # A put whose source is missing fails naming both ends and changes nothing.
    missing = tmp_path / "never-written.parquet"
    with pytest.raises(FileNotFoundError, match=r"never-written\.parquet.*gs://.*/lake/atomic/obj\.bin"):
        store.put_file(missing, "atomic/obj.bin")
    assert store.get_bytes("atomic/obj.bin") == b"previous"
    assert [(o.path, o.size) for o in store.list("atomic/")] == [("atomic/obj.bin", len(b"previous"))]


@pytest.mark.parametrize(
    "bad", ["", "/abs.bin", "../up.bin", "a/../b.bin", "a//b.bin", "a/./b.bin", "a\\b.bin"]
)
def test_invalid_paths_are_refused(store: GcsStore, bad: str) -> None:
    with pytest.raises(StoreError, match="invalid storage path"):
        store.put_bytes(b"x", bad)
    with pytest.raises(StoreError, match="invalid storage path"):
        store.uri(bad)


def test_invalid_listing_prefixes_and_roots_are_refused(store: GcsStore) -> None:
    for prefix in ("../", "/a", "a/../"):
        with pytest.raises(StoreError, match="invalid listing prefix"):
            store.list(prefix)
    for root in ("gs://", "gs://Bad_Bucket/x", "s3://bucket/x", "gs://bucket/../x", "gs://b/x"):
        with pytest.raises(StoreError, match="invalid GCS root"):
            parse_gs_uri(root)
    assert parse_gs_uri("gs://bucket") == ("bucket", "")
    assert parse_gs_uri("gs://bucket/a/b/") == ("bucket", "a/b")


def test_a_root_without_prefix_uses_the_bucket_root(gcs_env: str, gcs_emulator: GcsEmulator) -> None:
    bucket = _bucket(gcs_env)
    store = GcsStore.from_uri(f"gs://{bucket}")
    store.put_bytes(b"top", "top.bin")
    assert store.uri("top.bin") == f"gs://{bucket}/top.bin"
    assert gcs_emulator.client().bucket(bucket).blob("top.bin").download_as_bytes() == b"top"
    assert "top.bin" in {o.path for o in store.list("")}


def test_errors_name_the_uri(store: GcsStore, gcs_env: str) -> None:
    with pytest.raises(FileNotFoundError, match=rf"{gcs_env}/nope/missing\.parquet does not exist"):
        store.get_bytes("nope/missing.parquet")
    with pytest.raises(FileNotFoundError, match=rf"{gcs_env}/nope/missing\.parquet"):
        store.read_parquet("nope/missing.parquet")

    store.put_bytes(b"definitely not parquet", "bad/file.parquet")
    with pytest.raises(StoreError, match=rf"{gcs_env}/bad/file\.parquet is not a readable Parquet file"):
        store.read_parquet("bad/file.parquet")

    ghost = GcsStore.from_uri("gs://no-such-bucket-here/lake")
    with pytest.raises(StoreError, match="gs://no-such-bucket-here/lake"):
        ghost.list("")
    with pytest.raises(StoreError, match="gs://no-such-bucket-here/lake/x.bin"):
        ghost.put_bytes(b"x", "x.bin")


def test_store_survives_pickling_by_uri(store: GcsStore) -> None:
    store.put_bytes(b"shared", "p/obj.bin")
    clone = pickle.loads(pickle.dumps(store))
    assert clone.root == store.root
    assert clone.get_bytes("p/obj.bin") == b"shared"


def test_polars_scans_gs_lazily_with_pushdown(store: GcsStore, gcs_env: str) -> None:
    rows = {
        "BINANCE:SPOT_PAIR:BTC-USDT": [(i, 100.0 + i) for i in range(0, 300)],
        "BINANCE:SPOT_PAIR:ETH-USDT": [(i, 10.0 + i) for i in range(0, 300, 2)],
    }
    for key, values in rows.items():
        table = pa.table(
            {
                "instrument_key": [key] * len(values),
                "seq": pa.array([v[0] for v in values], pa.int64()),
                "close": [v[1] for v in values],
            }
        )
        store.write_parquet(table, f"processed_candles/by_date/day-2024-01-15/timeframe-1m/{key}.parquet",
                            row_group_size=50)  # fmt: skip
    store.put_bytes(b"ignored", "processed_candles/by_date/day-2024-01-15/timeframe-5m/readme.txt")

    options = storage_options_for(gcs_env)
    assert options and "google_service_account_key" in options
    pattern = store.uri("processed_candles/by_date/day-2024-01-15/timeframe-1m/*.parquet")
    lazy = (
        pl.scan_parquet(pattern, storage_options=options)
        .filter(pl.col("seq") >= 280)
        .select("instrument_key", "seq", "close")
    )

    plan = lazy.explain()
    assert 'SELECTION: col("seq") >= 280' in plan and "FILTER" not in plan, f"not pushed down:\n{plan}"

    got = sorted(lazy.collect().iter_rows())
    expected = sorted(
        (key, seq, close) for key, values in rows.items() for seq, close in values if seq >= 280
    )
    assert got == expected and len(expected) == 20 + 10


def test_storage_options_for_local_and_real_gcs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert storage_options_for(str(tmp_path)) is None
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    assert storage_options_for("gs://bucket/lake") == {}
    options = storage_options_for("gs://bucket/lake", emulator_host="127.0.0.1:9")
    assert '"gcs_base_url": "http://127.0.0.1:9"' in options["google_service_account_key"]
    with pytest.raises(StoreError, match="invalid GCS root"):
        storage_options_for("gs://Not_A_Bucket/x")


def test_duckdb_reads_gs_through_a_pyarrow_dataset(store: GcsStore) -> None:
    for part in range(3):
        table = pa.table(
            {"part": pa.array([part] * 100, pa.int64()), "value": [float(i) for i in range(100)]}
        )
        store.write_parquet(table, f"ds/day-2024-01-0{part + 1}/values.parquet", row_group_size=25)

    filesystem, path = pyarrow_filesystem_for(store.uri("ds"))
    dataset = pads.dataset(path, filesystem=filesystem, format="parquet")
    con = duckdb.connect()
    con.register("vals", dataset)
    got = con.sql("SELECT part, count(*), sum(value) FROM vals WHERE value >= 90 GROUP BY part ORDER BY part")
    expected_sum = sum(float(i) for i in range(90, 100))
    assert got.fetchall() == [(p, 10, expected_sum) for p in range(3)]

    local_fs, local_path = pyarrow_filesystem_for("/tmp/lake")
    assert local_path == "/tmp/lake" and local_fs.type_name == "local"
