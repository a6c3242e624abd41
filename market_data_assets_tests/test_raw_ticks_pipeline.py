"""The partition pipeline against the live sandbox: faults, resume after a kill, force, manifest.

Real HTTP (the sandbox on 127.0.0.1), the real Tardis client with its retries, a real local store.
Expected row counts come from the sandbox's pure CSV generator parsed here with the csv module.
"""

from __future__ import annotations

import asyncio
import csv
import io
from collections import Counter
from collections.abc import Callable
from datetime import date
from fnmatch import fnmatch
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

from market_data_assets.sandbox import RunningSandbox, SandboxConfig, generate_csv
from market_data_assets.storage import open_store
from market_data_assets.storage.base import ObjectStore
from market_data_assets.storage.layout import raw_manifest_path
from market_data_assets.storage.local import LocalStore
from market_data_assets.tardis.client import TardisClient
from market_data_assets.ticks.manifest import MANIFEST_SCHEMA, read_manifest
from market_data_assets.ticks.pipeline import RawTicksResult, materialize_raw_ticks

pytestmark = pytest.mark.slow

CONFIG = SandboxConfig(trades_per_day=300)
DAY = date(2024, 3, 5)
EXCHANGE = "deribit"

SINGLE = [
    ("trades", "BTC-PERPETUAL", "DERIBIT:PERP:BTC-USD"),
    ("trades", "ETH-PERPETUAL", "DERIBIT:PERP:ETH-USD"),
    ("book_snapshot_5", "BTC-PERPETUAL", "DERIBIT:PERP:BTC-USD"),
    ("incremental_book_L2", "BTC-PERPETUAL", "DERIBIT:PERP:BTC-USD"),
    ("derivative_ticker", "BTC-PERPETUAL", "DERIBIT:PERP:BTC-USD"),
    ("quotes", "BTC-29MAR24", "DERIBIT:FUTURE:BTC-USD-240329"),
    ("trades", "BTC-28JUN19", "DERIBIT:FUTURE:BTC-USD-190628"),  # expired: an empty gzip that day
]


def csv_rows(data_type: str, dataset_symbol: str) -> list[dict[str, str]]:
    text = generate_csv(CONFIG, EXCHANGE, data_type, DAY, dataset_symbol).decode()
    return list(csv.DictReader(io.StringIO(text)))


def option_symbols() -> list[str]:
    return sorted({r["symbol"] for r in csv_rows("options_chain", "OPTIONS")})


def make_targets() -> pl.DataFrame:
    rows = [
        {
            "exchange": EXCHANGE,
            "data_type": dt,
            "instrument_key": key,
            "symbol_in_csv": sym,
            "dataset_symbol": sym,
            "grouped": False,
        }
        for dt, sym, key in SINGLE
    ]
    for sym in option_symbols()[:12]:
        rows.append(
            {
                "exchange": EXCHANGE,
                "data_type": "options_chain",
                "instrument_key": f"DERIBIT:OPTION:{sym}",
                "symbol_in_csv": sym,
                "dataset_symbol": "OPTIONS",
                "grouped": True,
            }
        )
    # an option that is not in the day's file at all: an "empty" row for its key
    rows.append(
        {
            "exchange": EXCHANGE,
            "data_type": "options_chain",
            "instrument_key": "DERIBIT:OPTION:BTC-USD-1-240101-CALL",
            "symbol_in_csv": "BTC-1JAN24-1-C",
            "dataset_symbol": "OPTIONS",
            "grouped": True,
        }
    )
    return pl.DataFrame(rows)


GROUPS = 8  # 7 single-symbol downloads + 1 grouped OPTIONS download


def run(
    sandbox: RunningSandbox,
    store: ObjectStore,
    *,
    force: bool = False,
    max_retries: int = 6,
    progress: Callable[[str], None] | None = None,
) -> RawTicksResult:
    async def go() -> RawTicksResult:
        async with TardisClient(
            sandbox.api_url,
            sandbox.datasets_url,
            sandbox.api_key,
            concurrency=4,
            max_retries=max_retries,
            backoff_base=0.01,
            backoff_max=0.05,
        ) as client:
            return await materialize_raw_ticks(
                client, store, make_targets(), DAY, EXCHANGE, force=force, progress=progress
            )

    return asyncio.run(go())


def dataset_requests(sandbox: RunningSandbox) -> Counter[str]:
    return Counter(r.path for r in sandbox.requests if r.path.endswith(".csv.gz"))


def stored_hashes(store: ObjectStore) -> dict[str, str]:
    manifest = read_manifest(store, DAY, EXCHANGE).to_pylist()
    return {r["path"]: r["sha256"] for r in manifest if r["status"] == "ok"}


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[LocalStore, RawTicksResult]:
    """A fault-free run on a private sandbox: the reference for every other run."""
    from market_data_assets.sandbox import start_sandbox

    sandbox = start_sandbox(CONFIG)
    try:
        store = LocalStore(tmp_path_factory.mktemp("clean") / "lake")
        return store, run(sandbox, store)
    finally:
        sandbox.stop()


def test_clean_run_writes_every_file_and_an_exact_manifest(
    clean_run: tuple[LocalStore, RawTicksResult],
) -> None:
    store, result = clean_run
    assert result.failures == [] and result.skipped == 0 and result.downloaded == GROUPS
    assert result.empty_groups == [("trades", "BTC-28JUN19")]

    manifest = read_manifest(store, DAY, EXCHANGE)
    assert manifest.schema.equals(MANIFEST_SCHEMA)
    rows = manifest.to_pylist()
    by_key = {(r["data_type"], r["dataset_symbol"], r["instrument_key"]): r for r in rows}
    for dt, sym, key in SINGLE:
        row = by_key[(dt, sym, None if sym == "BTC-28JUN19" else key)]
        expected = csv_rows(dt, sym)
        if not expected:
            assert row["status"] == "empty" and row["path"] is None and row["rows"] == 0
            continue
        assert row["status"] == "ok" and row["rows"] == len(expected)
        assert store.exists(row["path"]) and (Path(store.uri(row["path"])).stat().st_size == row["bytes"])
        assert pq.read_metadata(store.uri(row["path"])).num_rows == len(expected)
        assert row["source_bytes"] > 0 and row["error"] is None

    options = csv_rows("options_chain", "OPTIONS")
    for sym in option_symbols()[:12]:
        row = by_key[("options_chain", "OPTIONS", f"DERIBIT:OPTION:{sym}")]
        assert row["status"] == "ok" and row["rows"] == sum(1 for r in options if r["symbol"] == sym)
    missing = by_key[("options_chain", "OPTIONS", "DERIBIT:OPTION:BTC-USD-1-240101-CALL")]
    assert missing["status"] == "empty" and missing["path"] is None
    wanted = set(option_symbols()[:12])
    assert result.dropped_rows == sum(1 for r in options if r["symbol"] not in wanted) > 0
    assert result.rows_by_type["trades"] == len(csv_rows("trades", "BTC-PERPETUAL")) + len(
        csv_rows("trades", "ETH-PERPETUAL")
    )
    assert result.files_by_type["options_chain"] == 12
    assert sum(result.bytes_by_type.values()) == sum(r["bytes"] for r in rows if r["status"] == "ok")


def test_a_conversion_that_uses_every_core_runs_alone(
    make_sandbox: Callable[..., RunningSandbox], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Book snapshots (polars' own sink) never convert beside another file: memory stays bounded.

    The real converter runs; a wrapper only records when each call starts and ends."""
    import threading
    import time

    import market_data_assets.ticks.pipeline as pipeline
    from market_data_assets.ticks.convert import runs_on_every_core

    spans: list[tuple[str, bool, float, float]] = []
    lock = threading.Lock()
    real = pipeline.convert_csv_gz

    def recorded(src, data_type, out_dir, key_for_symbol, day, name):  # type: ignore[no-untyped-def]
        start = time.monotonic()
        try:
            return real(src, data_type, out_dir, key_for_symbol, day, name)
        finally:
            with lock:
                alone = runs_on_every_core(data_type, len(key_for_symbol))
                spans.append((name, alone, start, time.monotonic()))

    monkeypatch.setattr(pipeline, "convert_csv_gz", recorded)
    result = run(make_sandbox(CONFIG), LocalStore(tmp_path / "lake"))

    assert result.failures == [] and len(spans) == GROUPS
    exclusive = [s for s in spans if s[1]]
    assert [s[0].split("/")[1] for s in exclusive] == ["book_snapshot_5"]
    for name, _, start, end in exclusive:
        overlapping = [o[0] for o in spans if o[0] != name and o[2] < end and start < o[3]]
        assert overlapping == [], f"{name} converted beside {overlapping}"


def test_faults_are_retried_and_files_equal_a_fault_free_run(
    make_sandbox: Callable[..., RunningSandbox], tmp_path: Path, clean_run: tuple[LocalStore, RawTicksResult]
) -> None:
    sandbox = make_sandbox(CONFIG)
    sandbox.add_fault(path_glob="*/trades/*BTC-PERPETUAL*", kind="429", times=2)
    sandbox.add_fault(path_glob="*/book_snapshot_5/*", kind="500", times=2)
    sandbox.add_fault(path_glob="*/derivative_ticker/*", kind="503", times=1)
    sandbox.add_fault(path_glob="*/incremental_book_L2/*", kind="reset", times=2)
    sandbox.add_fault(path_glob="*/options_chain/*", kind="truncate", times=2)
    sandbox.add_fault(path_glob="*/quotes/*", kind="truncate", times=1)
    store = LocalStore(tmp_path / "lake")
    result = run(sandbox, store)

    assert result.failures == []
    faulted = [r for r in sandbox.requests if r.fault]
    assert len(faulted) == 10, faulted
    assert stored_hashes(store) == stored_hashes(clean_run[0])
    assert len(stored_hashes(store)) == 6 + 12


def test_a_gzip_cut_at_the_origin_is_downloaded_again_and_converted(
    make_sandbox: Callable[..., RunningSandbox], tmp_path: Path, clean_run: tuple[LocalStore, RawTicksResult]
) -> None:
    """Downloads are not inflated on arrival; the conversion finds a cut gzip and the file is
    fetched again, verified (a second cut one is then retried by the client itself)."""
    sandbox = make_sandbox(CONFIG)
    cut_once = ["*/trades/*ETH-PERPETUAL*", "*/book_snapshot_5/*", "*/options_chain/*"]
    for glob in cut_once:
        sandbox.add_fault(path_glob=glob, kind="short_gzip", times=1)
    sandbox.add_fault(path_glob="*/quotes/*", kind="short_gzip", times=2)
    store = LocalStore(tmp_path / "lake")
    result = run(sandbox, store)

    assert result.failures == []
    assert stored_hashes(store) == stored_hashes(clean_run[0])
    requests = dataset_requests(sandbox)
    for glob in cut_once:
        (path,) = [p for p in requests if fnmatch(p, glob)]
        assert requests[path] == 2, path
    (quotes,) = [p for p in requests if "/quotes/" in p]
    assert requests[quotes] == 3
    assert sum(requests.values()) == GROUPS + 3 + 2


def test_permanent_failure_is_recorded_and_a_rerun_redoes_only_it(
    make_sandbox: Callable[..., RunningSandbox], tmp_path: Path, clean_run: tuple[LocalStore, RawTicksResult]
) -> None:
    sandbox = make_sandbox(CONFIG)
    sandbox.add_fault(path_glob="*/options_chain/*", kind="500")  # every time
    store = LocalStore(tmp_path / "lake")
    first = run(sandbox, store, max_retries=1)

    assert [(f.data_type, f.dataset_symbol) for f in first.failures] == [("options_chain", "OPTIONS")]
    assert "500" in first.failures[0].error
    failed = [r for r in read_manifest(store, DAY, EXCHANGE).to_pylist() if r["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["instrument_key"] is None and failed[0]["error"]
    assert len(stored_hashes(store)) == 6

    sandbox.clear_faults()
    sandbox.clear_requests()
    second = run(sandbox, store)
    assert second.failures == [] and second.skipped == GROUPS - 1
    assert list(dataset_requests(sandbox)) == [f"/v1/{EXCHANGE}/options_chain/2024/03/05/OPTIONS.csv.gz"]
    assert stored_hashes(store) == stored_hashes(clean_run[0])


def test_killed_run_resumes_without_redoing_finished_files(
    make_sandbox: Callable[..., RunningSandbox], tmp_path: Path, clean_run: tuple[LocalStore, RawTicksResult]
) -> None:
    sandbox = make_sandbox(CONFIG)
    store = LocalStore(tmp_path / "lake")

    async def killed_after(n: int) -> None:
        done: list[str] = []

        async with TardisClient(
            sandbox.api_url, sandbox.datasets_url, sandbox.api_key, concurrency=1
        ) as client:
            task = asyncio.current_task()
            assert task is not None

            def progress(msg: str) -> None:
                if msg.startswith(("ok ", "empty ")):
                    done.append(msg)
                    if len(done) == n:
                        task.cancel()  # the "kill": no clean shutdown of what is in flight

            with pytest.raises(asyncio.CancelledError):
                await materialize_raw_ticks(client, store, make_targets(), DAY, EXCHANGE, progress=progress)

    asyncio.run(killed_after(3))
    finished = read_manifest(store, DAY, EXCHANGE).to_pylist()
    finished_groups = {(r["data_type"], r["dataset_symbol"]) for r in finished}
    assert 3 <= len(finished_groups) < GROUPS
    assert not list((Path(store.root) / ".staging").glob("raw-ticks-*")), "the kill left work files"

    sandbox.clear_requests()
    resumed = run(sandbox, store)
    assert resumed.skipped == len(finished_groups)
    assert resumed.downloaded == GROUPS - len(finished_groups)
    # The sandbox log may still receive the record of a request the kill cut off (an unfinished
    # group); a finished group's download completed before the kill, so it must be absent.
    redone = dataset_requests(sandbox)
    assert not any(f"/{dt}/2024/03/05/{sym}.csv.gz" in path for dt, sym in finished_groups for path in redone)
    assert stored_hashes(store) == stored_hashes(clean_run[0])

    # A file deleted behind the manifest's back is noticed and redone; force redoes everything.
    victim = next(r for r in finished if r["status"] == "ok")
    store.delete(victim["path"])
    sandbox.clear_requests()
    again = run(sandbox, store)
    assert again.skipped == GROUPS - 1 and len(dataset_requests(sandbox)) == 1
    assert store.exists(victim["path"])

    sandbox.clear_requests()
    forced = run(sandbox, store, force=True)
    assert forced.skipped == 0 and len(dataset_requests(sandbox)) == GROUPS
    assert stored_hashes(store) == stored_hashes(clean_run[0])
    assert store.exists(raw_manifest_path(DAY, EXCHANGE))


@pytest.mark.emulator
def test_gcs_root_gets_the_same_files_and_resumes(
    gcs_env: str, make_sandbox: Callable[..., RunningSandbox], clean_run: tuple[LocalStore, RawTicksResult]
) -> None:
    sandbox = make_sandbox(CONFIG)
    store = open_store(gcs_env)
    first = run(sandbox, store)
    assert first.failures == [] and first.skipped == 0
    assert stored_hashes(store) == stored_hashes(clean_run[0])
    assert all(store.exists(path) for path in stored_hashes(store))

    sandbox.clear_requests()
    second = run(sandbox, store)
    assert second.skipped == GROUPS and not dataset_requests(sandbox)


def test_a_file_whose_bytes_changed_is_downloaded_again(
    make_sandbox: Callable[..., RunningSandbox], tmp_path: Path, clean_run: tuple[LocalStore, RawTicksResult]
) -> None:
    """Same size, different bytes (400 flipped): the size check alone kept it as done."""
    sandbox = make_sandbox(CONFIG)
    store = LocalStore(tmp_path / "lake")
    run(sandbox, store)
    victim = next(
        r
        for r in read_manifest(store, DAY, EXCHANGE).to_pylist()
        if r["status"] == "ok" and r["data_type"] == "trades"
    )
    path = Path(store.uri(victim["path"]))
    data = bytearray(path.read_bytes())
    start = len(data) // 4
    data[start : start + 400] = bytes(b ^ 0xFF for b in data[start : start + 400])
    path.write_bytes(bytes(data))

    sandbox.clear_requests()
    again = run(sandbox, store)
    assert again.skipped == GROUPS - 1
    assert list(dataset_requests(sandbox)) == [
        f"/v1/{EXCHANGE}/trades/2024/03/05/{victim['dataset_symbol']}.csv.gz"
    ]
    assert stored_hashes(store) == stored_hashes(clean_run[0])
    assert pq.read_metadata(path).num_rows == victim["rows"]


def test_a_file_of_another_symbol_fails_instead_of_looking_empty(
    make_sandbox: Callable[..., RunningSandbox], tmp_path: Path
) -> None:
    sandbox = make_sandbox(CONFIG)
    store = LocalStore(tmp_path / "lake")
    wrong = make_targets().filter(
        pl.col("data_type") == "trades", pl.col("dataset_symbol") == "BTC-PERPETUAL"
    )
    wrong = wrong.with_columns(symbol_in_csv=pl.lit("XBTUSD"))

    async def go() -> RawTicksResult:
        async with TardisClient(sandbox.api_url, sandbox.datasets_url, sandbox.api_key) as client:
            return await materialize_raw_ticks(client, store, wrong, DAY, EXCHANGE)

    result = asyncio.run(go())
    assert result.empty_groups == []
    (failure,) = result.failures
    assert (
        "requested symbol" in failure.error
        and "'BTC-PERPETUAL'" in failure.error
        and "'XBTUSD'" in failure.error
    )
    (row,) = read_manifest(store, DAY, EXCHANGE).to_pylist()
    assert row["status"] == "failed"


_KILLED_RUN = """
import asyncio, sys
from pathlib import Path
from market_data_assets.storage.local import LocalStore
from market_data_assets.tardis.client import TardisClient
from market_data_assets.ticks.pipeline import materialize_raw_ticks
from market_data_assets_tests.test_raw_ticks_pipeline import DAY, EXCHANGE, make_targets

api, datasets, key, root = sys.argv[1:5]

async def announce_downloads():
    staging = Path(root) / ".staging"
    while not any(staging.rglob(".*.part-*")):
        await asyncio.sleep(0.01)
    print("downloading", flush=True)

async def main():
    async with TardisClient(api, datasets, key, concurrency=4) as client:
        watcher = asyncio.create_task(announce_downloads())
        await materialize_raw_ticks(client, LocalStore(root), make_targets(), DAY, EXCHANGE)

asyncio.run(main())
"""


def test_a_run_killed_mid_download_leaves_no_partial_files_after_the_next_run(
    make_sandbox: Callable[..., RunningSandbox], tmp_path: Path
) -> None:
    """kill -9 skips every cleanup; the next run removes the dead run's work folder (8 .part files
    per kill used to stay in <root>/.staging forever)."""
    import os
    import signal
    import subprocess
    import sys

    sandbox = make_sandbox(CONFIG)
    sandbox.add_fault(path_glob="*.csv.gz", kind="slow", delay=120)
    root = tmp_path / "lake"
    staging = root / ".staging"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _KILLED_RUN,
            sandbox.api_url,
            sandbox.datasets_url,
            sandbox.api_key,
            str(root),
        ],
        cwd=Path(__file__).resolve().parents[1],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        assert line.strip() == "downloading", proc.stderr.read()  # type: ignore[union-attr]
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert list(staging.rglob(".*.part-*")), "the kill left partial downloads behind"

    sandbox.clear_faults()
    result = run(sandbox, LocalStore(root))
    assert result.failures == []
    assert not list(root.rglob("*.part-*"))
    assert [p.name for p in staging.iterdir()] == [], "the dead run's work folder is gone"
