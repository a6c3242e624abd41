"""market-data live against the real sandbox stream over a real WebSocket, into a real DuckDB.

A streamed sandbox day equals the batch candles of that day (built by the batch code from the
same sandbox's CSV files) for every bucket and column; with faults every difference lies inside a
recorded gap; the batch load of the day replaces the live rows.
"""

from __future__ import annotations

import asyncio
import gzip
import math
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import polars as pl
import pytest

from market_data_assets.candles.build import build_base_candles, build_rolled_up_candles
from market_data_assets.candles.schema import CANDLE_SCHEMA
from market_data_assets.live.gaps import LIVE_GAPS_TABLE
from market_data_assets.live.messages import DEFAULT_DATA_TYPES
from market_data_assets.live.reconcile import reconcile_lake
from market_data_assets.live.service import LiveConfig, LiveService, resolve_keys
from market_data_assets.live.sinks import LiveSink
from market_data_assets.sandbox import RunningSandbox, SandboxConfig, generate_csv, start_sandbox
from market_data_assets.sandbox.stream import StreamFault, parse_live_start
from market_data_assets.storage import layout
from market_data_assets.storage.local import LocalStore
from market_data_assets.ticks.convert import convert_csv_gz
from market_data_assets.warehouse.duckdb_warehouse import DuckDBWarehouse
from market_data_assets.warehouse.loader import load_slice
from market_data_assets.warehouse.schema import get_table
from market_data_assets_tests.support.graph import asset, market_data, sensor

pytestmark = pytest.mark.servers


DAY = date(2024, 3, 1)
EXCHANGE = "binance-futures"
SYMBOLS = ("BTCUSDT", "ETHUSDT")
CONFIG = SandboxConfig(trades_per_day=400)
START = "2024-03-01T00:00:00Z"
UNTIL = "2024-03-02T00:00:05Z"
RAW_TYPES = ("trades", "book_snapshot_5", "derivative_ticker", "liquidations")
TIMEFRAMES = ("15s", "1m")


def _stream_day(
    root: Path,
    faults: tuple[StreamFault, ...] = (),
    speed: float = 0,
    data_types: tuple[str, ...] = DEFAULT_DATA_TYPES,
) -> tuple[LiveService, dict]:
    store = LocalStore(root)
    warehouse = DuckDBWarehouse(root / "warehouse.duckdb")
    with start_sandbox(
        CONFIG, live_start_us=parse_live_start(START), live_speed=speed, stream_faults=faults
    ) as sb:
        config = live_config(
            sb, UNTIL, data_types=data_types, stall_timeout_s=0.4, backoff_initial_s=0.05, backoff_max_s=0.2
        )
        service = LiveService(config, LiveSink(store, warehouse, EXCHANGE, "test"))
        asyncio.run(service.run())
    return service, config.keys


def live_config(sb: RunningSandbox, until: str, **options: Any) -> LiveConfig:
    """The live service's config for the sandbox's stream of SYMBOLS until ``until`` (keys resolved
    through its API, no health port)."""
    keys = asyncio.run(resolve_keys(sb.api_url, EXCHANGE, SYMBOLS))
    return LiveConfig(
        ws_url=sb.ws_url,
        exchange=EXCHANGE,
        symbols=SYMBOLS,
        keys=keys,
        until_us=parse_live_start(until),
        health_port=0,
        **options,
    )


def _snapshots_from_l2(body: bytes) -> bytes:
    """A ``book_snapshot_5`` CSV replayed from an ``incremental_book_L2`` CSV: a row after each
    update (rows sharing timestamps and snapshot flag, as the sandbox stream groups them into one
    ``book_change``) that changes the top 5 levels. The test's own plain replay, for the expected side."""
    import csv
    import io

    rows = list(csv.reader(io.StringIO(body.decode())))[1:]
    header = ["exchange", "symbol", "timestamp", "local_timestamp"]
    for i in range(5):
        header += [f"asks[{i}].price", f"asks[{i}].amount", f"bids[{i}].price", f"bids[{i}].amount"]
    out = [",".join(header)]
    bids: dict[float, str] = {}
    asks: dict[float, str] = {}
    last_top: object = None
    i = 0
    while i < len(rows):
        j = i
        while j < len(rows) and rows[j][2:5] == rows[i][2:5]:
            j += 1
        if rows[i][4] == "true" and (i == 0 or rows[i - 1][4] != "true" or rows[i - 1][2] != rows[i][2]):
            bids.clear()
            asks.clear()
        for r in rows[i:j]:
            side = bids if r[5] == "bid" else asks
            if float(r[7]) == 0:
                side.pop(float(r[6]), None)
            else:
                side[float(r[6])] = r[7]
        top_asks = sorted(asks)[:5]
        top_bids = sorted(bids, reverse=True)[:5]
        top = ([(p, asks[p]) for p in top_asks], [(p, bids[p]) for p in top_bids])
        if top != last_top:
            last_top = top
            cells = rows[i][:4]
            for k in range(5):
                ap = (repr(top_asks[k]), asks[top_asks[k]]) if k < len(top_asks) else ("", "")
                bp = (repr(top_bids[k]), bids[top_bids[k]]) if k < len(top_bids) else ("", "")
                cells += [*ap, *bp]
            out.append(",".join(cells))
        i = j
    return ("\n".join(out) + "\n").encode()


def _batch(
    root: Path, keys: dict[str, str], raw_types: tuple[str, ...] = RAW_TYPES, books_from_l2: bool = False
) -> dict[str, pl.DataFrame]:
    """The batch candles of DAY: the sandbox's CSV files of DAY and DAY+1 -> raw ticks -> candles.

    ``books_from_l2``: the book snapshots are replayed from the sandbox's incremental_book_L2 files
    (the sandbox generates its book_snapshot_5 files independently of them)."""
    store = LocalStore(root)
    work = root / "_csv"
    work.mkdir(exist_ok=True)
    for day in (DAY, DAY + timedelta(days=1)):
        for data_type in raw_types:
            for symbol in SYMBOLS:
                src = work / f"{data_type}-{symbol}-{day}.csv.gz"
                if data_type == "book_snapshot_5" and books_from_l2:
                    body = _snapshots_from_l2(
                        generate_csv(CONFIG, EXCHANGE, "incremental_book_L2", day, symbol)
                    )
                else:
                    body = generate_csv(CONFIG, EXCHANGE, data_type, day, symbol)
                src.write_bytes(gzip.compress(body))
                for f in convert_csv_gz(src, data_type, work / "out", {symbol: keys[symbol]}, day, src.name):
                    store.put_file(f.path, layout.raw_ticks_path(day, data_type, f.instrument_key), move=True)
    build_base_candles(store, DAY, EXCHANGE)
    build_rolled_up_candles(store, DAY, EXCHANGE, "1m")
    return {
        tf: pl.concat([pl.read_parquet(root / layout.candles_path(DAY, tf, keys[s])) for s in SYMBOLS]).sort(
            "instrument_key", "timestamp"
        )
        for tf in TIMEFRAMES
    }


def _live_rows(root: Path, tf: str) -> pl.DataFrame:
    with duckdb.connect(str(root / "warehouse.duckdb"), read_only=True) as con:
        return pl.from_arrow(  # type: ignore[return-value]
            con.execute(
                f"SELECT * FROM candles_{tf} WHERE source = 'live' AND timestamp >= ? AND timestamp < ? "
                "ORDER BY instrument_key, timestamp",
                [f"{DAY} 00:00:00+00", f"{DAY + timedelta(days=1)} 00:00:00+00"],
            ).to_arrow_table()
        )


def _same(a: object, b: object) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, float) and isinstance(b, float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def _differences(batch: pl.DataFrame, live: pl.DataFrame) -> dict[tuple[str, object], list[str]]:
    """(key, bucket) -> the columns that differ (``missing`` when live lacks the bucket)."""
    names = [n for n in CANDLE_SCHEMA.names if n not in ("instrument_key", "timestamp")]
    live_rows = {(r["instrument_key"], r["timestamp"]): r for r in live.iter_rows(named=True)}
    out: dict[tuple[str, object], list[str]] = {}
    for row in batch.iter_rows(named=True):
        key = (row["instrument_key"], row["timestamp"])
        other = live_rows.pop(key, None)
        if other is None:
            out[key] = ["missing"]
            continue
        cols = [n for n in names if not _same(row[n], other[n])]
        if cols:
            out[key] = cols
    for key in live_rows:
        out[key] = ["extra"]
    return out


@pytest.fixture(scope="module")
def clean_day(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, LiveService, dict[str, str]]:
    root = tmp_path_factory.mktemp("live_clean")
    service, keys = _stream_day(root)
    return root, service, keys


def test_a_streamed_day_equals_the_batch_candles(clean_day: tuple[Path, LiveService, dict[str, str]]) -> None:
    root, service, keys = clean_day
    batch = _batch(root, keys)
    for tf in TIMEFRAMES:
        live = _live_rows(root, tf)
        assert live.height == batch[tf].height == 2 * {"15s": 5760, "1m": 1440}[tf], tf
        assert _differences(batch[tf], live) == {}, tf
    assert service.candles.counters.late == 0
    assert service.stats.duplicates == 0
    # the reconciliation over the lake says the same: 0 differences
    for tf in TIMEFRAMES:
        result = reconcile_lake(LocalStore(root), DAY, EXCHANGE, tf)
        assert (result.differing, result.equal) == (0, batch[tf].height), result.report
    # the lake keeps the closed live candles and the bronze log
    lake_15s = pl.read_parquet(root / layout.live_candles_dir(DAY, "15s"))
    assert lake_15s.filter(pl.col("timestamp").dt.date() == DAY).height == 2 * 5760
    bronze = pl.read_parquet(root / layout.live_ticks_dir(DAY, EXCHANGE))
    assert bronze.filter(pl.col("type") == "trade").height == sum(
        len(generate_csv(CONFIG, EXCHANGE, "trades", DAY, s).splitlines()) - 1 for s in SYMBOLS
    )


def test_the_batch_load_replaces_the_live_rows(clean_day: tuple[Path, LiveService, dict[str, str]]) -> None:
    root, _, keys = clean_day
    store = LocalStore(root)
    if not (root / layout.candles_path(DAY, "1m", keys["BTCUSDT"])).exists():
        _batch(root, keys)
    warehouse = DuckDBWarehouse(root / "warehouse.duckdb")
    load_slice(warehouse, store, DAY, EXCHANGE, [get_table("candles_15s"), get_table("candles_1m")])
    with duckdb.connect(str(root / "warehouse.duckdb"), read_only=True) as con:
        con.execute("SET TimeZone = 'UTC'")
        by_source = dict(
            con.execute(
                "SELECT source, count(*) FROM candles_15s WHERE CAST(timestamp AS DATE) = ? GROUP BY 1", [DAY]
            ).fetchall()
        )
    assert by_source == {"batch": 2 * 5760}


def test_faults_only_change_buckets_inside_recorded_gaps(tmp_path: Path) -> None:
    faults = (
        StreamFault("duplicate", after=100, count=5),
        StreamFault("reorder", after=150, count=5),
        StreamFault("error", after=200, count=2),
        StreamFault("disconnect", after=250, seconds=600),
        StreamFault("close", after=350),
        StreamFault("backpressure", after=450),
        StreamFault("stall", after=550, seconds=600, pause=1.0),
    )
    # a real-time-like clock (a day in 24 s), so a stall is silence the service can see (at speed 0
    # the socket buffers hold the whole day and an abrupt close loses what they held)
    service, keys = _stream_day(tmp_path, faults, speed=3600)
    batch = _batch(tmp_path, keys)
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as con:
        gaps = pl.from_arrow(
            con.execute(
                f"SELECT kind, gap_from, gap_to FROM {LIVE_GAPS_TABLE} ORDER BY gap_from"
            ).to_arrow_table()
        )
    kinds = "+".join(gaps["kind"].to_list())
    for kind in ("startup", "disconnect", "reconnect", "backpressure", "stall"):
        assert kind in kinds, gaps
    assert service.stats.duplicates == 5 and service.stats.errors == 2
    spans = [(int(a.timestamp() * 1e6), int(b.timestamp() * 1e6)) for _, a, b in gaps.iter_rows()]
    unexplained = {}
    for tf in TIMEFRAMES:
        width = {"15s": 15_000_000, "1m": 60_000_000}[tf]
        diffs = _differences(batch[tf], _live_rows(tmp_path, tf))
        assert diffs, f"{tf}: the faults should have changed some buckets"
        for (key, bucket), cols in diffs.items():
            start = int(bucket.timestamp() * 1e6)
            if not any(lo < start + width and start <= hi for lo, hi in spans):
                unexplained[(tf, key, bucket)] = cols
    assert unexplained == {}
    for tf in TIMEFRAMES:
        result = reconcile_lake(LocalStore(tmp_path), DAY, EXCHANGE, tf)
        assert result.differing > 0 and result.unexplained == 0, result.report.filter(~pl.col("in_gap"))
    materialized = dg.materialize(
        [asset("live_reconciliation")],
        partition_key=f"{DAY}|{EXCHANGE}",
        resources={"market_data": market_data(tmp_path)},
    )
    (check,) = materialized.get_asset_check_evaluations()
    assert check.passed  # every difference is named in the report, each inside a recorded gap
    report = pl.read_parquet(tmp_path / layout.live_reconciliation_path(DAY, EXCHANGE))
    assert report.height > 0 and report["in_gap"].all()


def test_live_reconciliation_asset_names_nothing_on_a_clean_day(
    clean_day: tuple[Path, LiveService, dict[str, str]],
) -> None:
    root, _, keys = clean_day
    if not (root / layout.candles_path(DAY, "15s", keys["BTCUSDT"])).exists():
        _batch(root, keys)
    result = dg.materialize(
        [asset("live_reconciliation")],
        partition_key=f"{DAY}|{EXCHANGE}",
        resources={"market_data": market_data(root)},
    )
    assert result.success
    (check,) = result.get_asset_check_evaluations()
    assert check.passed and check.metadata["unexplained"].value == 0
    summary = result.asset_materializations_for_node("live_reconciliation")[0].metadata["summary"].value
    assert summary[f"{DAY}|{EXCHANGE}"]["equal"] == 2 * 5760
    assert (root / layout.live_reconciliation_path(DAY, EXCHANGE)).is_file()


def test_reader_returns_batch_where_it_exists_and_live_elsewhere(
    clean_day: tuple[Path, LiveService, dict[str, str]], tmp_path: Path
) -> None:
    import shutil

    from market_data_assets import reader

    root, _, keys = clean_day
    if not (root / layout.candles_path(DAY, "15s", keys["BTCUSDT"])).exists():
        _batch(root, keys)
    lake = tmp_path / "lake"
    shutil.copytree(root, lake, ignore=shutil.ignore_patterns("*.duckdb*", "_csv"))
    (lake / layout.candles_path(DAY, "15s", keys["ETHUSDT"])).unlink()  # ETH's batch day not published yet
    both = [keys[s] for s in SYMBOLS]
    got = reader.scan_candles(
        "15s", both, DAY, DAY + timedelta(days=1), include_live=True, root=str(lake)
    ).collect()
    assert got.group_by("instrument_key", "source").len().sort("instrument_key").rows() == [
        (keys["BTCUSDT"], "batch", 5760),
        (keys["ETHUSDT"], "live", 5760),
    ]
    plain = reader.scan_candles("15s", both, DAY, DAY + timedelta(days=1), root=str(root)).collect()
    assert _differences(plain, got.drop("source")) == {}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kill_9_then_restart(
    repo: Path, env: dict[str, str], *, first_run_deadline_s: float, second_run_timeout_s: float
) -> None:
    """``market-data live`` as a process: SIGKILL once its health endpoint reports 200 closed 15s
    rows written (a condition, not a time), then a second run until ``UNTIL`` that must end cleanly."""
    import json as _json
    import os
    import signal
    import subprocess
    import sys
    import time
    import urllib.request

    args = [sys.executable, "-m", "market_data_assets.cli", "live", "--exchange", EXCHANGE]
    args += ["--symbols", ",".join(SYMBOLS), "--backoff", "0.05"]
    port = _free_port()
    first = subprocess.Popen([*args, "--health-port", str(port)], cwd=repo, env=env)
    try:
        deadline = time.monotonic() + first_run_deadline_s
        written = 0
        while written < 200:
            assert first.poll() is None, "the first run ended before writing candles"
            assert time.monotonic() < deadline, (
                f"the first run wrote no candles in {first_run_deadline_s:.0f} s"
            )
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
                    written = _json.loads(r.read()).get("rows_written", {}).get("15s", 0)
            except OSError:
                pass
            time.sleep(0.1)  # polling interval of the condition above
    finally:
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
    second = subprocess.run(
        [*args, "--health-port", str(_free_port()), "--until", UNTIL],
        cwd=repo,
        env=env,
        timeout=second_run_timeout_s,
    )
    assert second.returncode == 0


def test_kill_9_and_restart_neither_duplicates_nor_loses_a_closed_bucket(tmp_path: Path) -> None:
    """The service as a process (market-data live), killed with SIGKILL once it has written candles,
    then restarted: every bucket is in the warehouse at most once, and every batch bucket it lacks
    lies inside the restart's recorded gap (which starts at the crashed process's checkpoint)."""
    import os

    repo = Path(__file__).resolve().parents[1]
    with start_sandbox(CONFIG, live_start_us=parse_live_start(START), live_speed=3600) as sb:
        env = {
            **os.environ,
            "MARKET_DATA_ROOT": str(tmp_path),
            "MARKET_DATA_WAREHOUSE": "duckdb",
            "TARDIS_API_URL": sb.api_url,
            "TARDIS_MACHINE_WS_URL": sb.ws_url,
        }
        kill_9_then_restart(repo, env, first_run_deadline_s=120, second_run_timeout_s=300)
        keys = asyncio.run(resolve_keys(sb.api_url, EXCHANGE, SYMBOLS))
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as con:
        for tf in TIMEFRAMES:
            (dupes,) = con.execute(
                f"SELECT count(*) FROM (SELECT instrument_key, timestamp FROM candles_{tf} "
                "GROUP BY 1, 2 HAVING count(*) > 1)"
            ).fetchone()
            assert dupes == 0, tf
        kinds = [k for (k,) in con.execute(f"SELECT kind FROM {LIVE_GAPS_TABLE}").fetchall()]
    assert kinds.count("startup") == 2
    assert _lake_duplicates(tmp_path) == dict.fromkeys(TIMEFRAMES, 0)
    _batch(tmp_path, keys)
    for tf in TIMEFRAMES:
        result = reconcile_lake(LocalStore(tmp_path), DAY, EXCHANGE, tf)
        assert result.unexplained == 0, result.report.filter(~pl.col("in_gap"))
        assert result.equal > 0


def test_live_freshness_sensor_warns_when_the_live_candles_lag(
    clean_day: tuple[Path, LiveService, dict[str, str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    live_freshness = sensor("live_freshness")

    root, _, _ = clean_day
    lake = tmp_path / "lake"
    lake.mkdir()
    shutil.copy(root / "warehouse.duckdb", lake / "warehouse.duckdb")
    with duckdb.connect(str(lake / "warehouse.duckdb")) as con:  # the module's batch load may have run
        con.execute("UPDATE candles_15s SET source = 'live'")
    monkeypatch.setenv("MARKET_DATA_WAREHOUSE", "duckdb")
    monkeypatch.setenv("MARKET_DATA_LIVE_MAX_LAG_S", "300")
    with dg.build_sensor_context(resources={"market_data": market_data(lake)}) as context:
        result = live_freshness(context)
    assert isinstance(result, dg.SkipReason)
    assert "STALE" in (result.skip_message or "") and EXCHANGE in (result.skip_message or "")


def _lake_duplicates(root: Path) -> dict[str, int]:
    """Per timeframe: (instrument, bucket) pairs that more than one live lake row holds."""
    out = {}
    for tf in TIMEFRAMES:
        rows = pl.read_parquet(root / layout.live_candles_dir(DAY, tf))
        out[tf] = rows.group_by("instrument_key", "timestamp").len().filter(pl.col("len") > 1).height
    return out


def test_a_restart_never_writes_a_bucket_the_lake_already_holds(
    clean_day: tuple[Path, LiveService, dict[str, str]], tmp_path: Path
) -> None:
    """The store as a kill -9 between a write's lake files and its checkpoint leaves it (the files
    written, the checkpoint still naming them as pending), then a restarted sink closing some of the
    same buckets again: each bucket is in the live lake files once."""
    import json as _json

    root, _, _ = clean_day
    closed = (
        pl.read_parquet(root / layout.live_candles_dir(DAY, "15s"))
        .filter(pl.col("timestamp").dt.date() == DAY)
        .drop("source")
        .sort("timestamp", "instrument_key")
    )
    store = LocalStore(tmp_path)
    checkpoint = layout.live_checkpoint_path(EXCHANGE)
    first = LiveSink(store, None, EXCHANGE, "first")
    assert first.read_checkpoint() is None

    def until(rows: pl.DataFrame) -> int:
        return int(rows["timestamp"].dt.epoch("us").max()) + 15_000_000

    first.write_closed({"15s": closed[:100]}, until(closed[:100]))
    state = _json.loads(store.get_bytes(checkpoint))
    first.write_closed({"15s": closed[100:200]}, until(closed[100:200]))
    written = sorted(
        p.relative_to(tmp_path).as_posix() for p in (tmp_path / "live_candles").rglob("*.parquet")
    )
    pending = [["15s", p] for p in written if "first000002" in p]
    assert pending, written
    store.put_bytes(_json.dumps({**state, "pending": pending}).encode(), checkpoint)  # killed here

    second = LiveSink(store, None, EXCHANGE, "second")
    assert second.read_checkpoint() == state["written_until_us"]
    second.write_closed({"15s": closed[150:300]}, until(closed[150:300]))
    lake = pl.read_parquet(tmp_path / layout.live_candles_dir(DAY, "15s"))
    assert lake.height == 300
    assert lake.group_by("instrument_key", "timestamp").len()["len"].max() == 1
    assert second.written.lake_skipped["15s"] == 50
    assert _json.loads(store.get_bytes(checkpoint))["pending"] == []


def test_book_change_mode_replays_the_books_from_changes(tmp_path: Path) -> None:
    """``--data-types trade,book_change,derivative_ticker``: the books are replayed from the
    changes (no snapshot subscribed), and every bucket and column equals the batch candles built
    from book snapshots replayed from the same incremental_book_L2 files (no liquidations: not
    subscribed)."""
    service, keys = _stream_day(tmp_path, data_types=("trade", "book_change", "derivative_ticker"))
    assert service._books is not None and service._books.ignored_unsynced == 0
    batch = _batch(tmp_path, keys, ("trades", "book_snapshot_5", "derivative_ticker"), books_from_l2=True)
    for tf in TIMEFRAMES:
        live = _live_rows(tmp_path, tf)
        assert live.height == batch[tf].height == 2 * {"15s": 5760, "1m": 1440}[tf], tf
        assert _differences(batch[tf], live) == {}, tf
    # the book features are really there (not all null on both sides)
    assert batch["15s"]["close_spread"].null_count() < batch["15s"].height // 2


class _SlowWarehouseSink(LiveSink):
    """A warehouse write that blocks the event loop longer than the stall timeout, as writing a
    whole day at once does at the end of a full-speed run."""

    def write_closed(self, frames: dict[str, pl.DataFrame], written_until_us: int | None) -> dict[str, int]:
        import time

        time.sleep(1.0)  # the slow write itself, not a synchronization
        return super().write_closed(frames, written_until_us)


def test_a_slow_warehouse_write_is_not_recorded_as_a_stall(tmp_path: Path) -> None:
    """The feed never went quiet: our own write blocked the loop. No ``stall`` gap may be recorded."""
    with start_sandbox(CONFIG, live_start_us=parse_live_start(START), live_speed=0) as sb:
        config = live_config(sb, "2024-03-01T03:00:00Z", stall_timeout_s=0.4, write_interval_s=0.05)
        sink = _SlowWarehouseSink(
            LocalStore(tmp_path), DuckDBWarehouse(tmp_path / "warehouse.duckdb"), EXCHANGE, "slow"
        )
        service = LiveService(config, sink)
        asyncio.run(service.run())
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as con:
        kinds = [
            k for (k,) in con.execute(f"SELECT kind FROM {LIVE_GAPS_TABLE} ORDER BY gap_from").fetchall()
        ]
    assert kinds == ["startup"]
    assert sink.written.rows["15s"] > 0  # the slow writes did happen
