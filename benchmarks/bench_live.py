"""Benchmark: ``market-data live`` end to end on a busy sandbox day streamed at full speed.

The sandbox runs in a child process (its CPU does not share our GIL) with its live clock at speed
0 (as fast as the client reads) and the day's messages generated before timing. Two clients read
the same day over a real WebSocket:

- the floor (named peer): a bare aiohttp client that only ``json.loads`` every message, what any
  Python consumer of tardis-machine must at least do;
- ours: ``LiveService`` with 15s + 1m candles (the batch code), the bronze log, gaps, DuckDB
  writes per micro-batch and the lake files.

Printed: messages per second sustained end to end for each, the ratio, our peak RSS, the CPU
seconds of this process while ours ran (messages per CPU-second: the one-core figure, steadier than
wall time on a shared machine; polars is held to one thread), and the lag of the last closed bucket (stream time minus the end of the last closed 15s bucket when the
stream ended: the allowed lateness plus at most one bucket is the best possible).

    .venv/bin/python benchmarks/bench_live.py [--trades-per-day 200000] [--symbols BTCUSDT,ETHUSDT]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

os.environ.setdefault("POLARS_MAX_THREADS", "1")  # the bar is one core: polars may not spread the work
sys.path.insert(0, str(Path(__file__).resolve().parent))
from sandbox_process import child_server  # noqa: E402

from market_data_assets.live.messages import DEFAULT_DATA_TYPES  # noqa: E402
from market_data_assets.live.service import LiveConfig, LiveService, resolve_keys  # noqa: E402
from market_data_assets.live.sinks import LiveSink  # noqa: E402
from market_data_assets.sandbox.stream import parse_live_start  # noqa: E402
from market_data_assets.storage.local import LocalStore  # noqa: E402
from market_data_assets.warehouse.duckdb_warehouse import DuckDBWarehouse  # noqa: E402

EXCHANGE = "binance-futures"
START = "2024-03-01T00:00:00Z"
UNTIL = "2024-03-02T00:00:05Z"

_RUNNER = """
import json, sys
from datetime import date
from market_data_assets.sandbox import SandboxConfig, start_sandbox
from market_data_assets.sandbox.stream import StreamOptions, parse_live_start
cfg, options = json.loads(sys.argv[1]), json.loads(sys.argv[2])
sb = start_sandbox(SandboxConfig(trades_per_day=cfg["trades_per_day"]),
                   live_start_us=parse_live_start(cfg["start"]), live_speed=0)
parsed = StreamOptions.parse(json.dumps(options))
n = len(sb.state.stream.messages(sb.config, parsed, date.fromisoformat(cfg["start"][:10]))[0])
sb.state.stream.messages(sb.config, parsed, date.fromisoformat(cfg["until"][:10]))
print(json.dumps({"api_url": sb.api_url, "ws_url": sb.ws_url, "messages": n}), flush=True)
sys.stdin.read()
sb.stop()
"""


def _options(symbols: list[str]) -> dict:
    return {
        "exchange": EXCHANGE,
        "symbols": symbols,
        "dataTypes": list(DEFAULT_DATA_TYPES),
        "withErrorMessages": True,
    }


async def _floor(ws_url: str, symbols: list[str], until_us: int) -> int:
    from market_data_assets.live.messages import parse_iso_us

    n = 0
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(
            ws_url + "/ws-stream-normalized",
            params={"options": json.dumps(_options(symbols))},
            max_msg_size=0,
        ) as ws,
    ):
        async for msg in ws:
            m = json.loads(msg.data)
            n += 1
            if "timestamp" in m and parse_iso_us(m["timestamp"]) >= until_us:
                break
    return n


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trades-per-day", type=int, default=200_000)
    parser.add_argument("--symbols", default="BTCUSDT,ETHUSDT")
    args = parser.parse_args()
    symbols = [s.strip() for s in args.symbols.split(",")]
    cfg = json.dumps({"trades_per_day": args.trades_per_day, "start": START, "until": UNTIL})
    until_us = parse_live_start(UNTIL)

    with child_server(_RUNNER, cfg, json.dumps(_options(symbols))) as urls:
        t0 = time.perf_counter()
        floor_n = asyncio.run(_floor(urls["ws_url"], symbols, until_us))
        floor_s = time.perf_counter() - t0
    print(
        f"day: {urls['messages']:,} messages ({len(symbols)} symbols, trades_per_day={args.trades_per_day:,})"
    )
    print(
        f"floor (aiohttp + json.loads):  {floor_n:,} messages in {floor_s:.2f} s = {floor_n / floor_s:,.0f} msg/s"
    )

    with (
        child_server(_RUNNER, cfg, json.dumps(_options(symbols))) as urls,
        tempfile.TemporaryDirectory() as tmp,
    ):
        keys = asyncio.run(resolve_keys(urls["api_url"], EXCHANGE, tuple(symbols)))
        root = Path(tmp)
        sink = LiveSink(LocalStore(root), DuckDBWarehouse(root / "warehouse.duckdb"), EXCHANGE, "bench")
        config = LiveConfig(
            ws_url=urls["ws_url"], exchange=EXCHANGE, symbols=tuple(symbols), keys=keys, until_us=until_us,
            stall_timeout_s=30.0,
        )  # fmt: skip
        service = LiveService(config, sink)
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        rss_before_mb = cpu0.ru_maxrss / 1024
        t0 = time.perf_counter()
        stats = asyncio.run(service.run())
        ours_s = time.perf_counter() - t0
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        cpu_s = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
        lag_s = (service.candles.stream_time_us - (stats.closed_until_us or 0)) / 1e6
        rows = dict(sink.written.rows)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rate = stats.messages / ours_s
    print(
        f"ours (candles 15s+1m, bronze, DuckDB): {stats.messages:,} messages in {ours_s:.2f} s = {rate:,.0f} msg/s "
        f"({rate / (floor_n / floor_s):.2f}x the floor); rows {rows}; peak RSS {rss_mb:.0f} MB "
        f"({rss_before_mb:.0f} MB before it started)"
    )
    print(
        f"CPU of the live process: {cpu_s:.2f} s = {stats.messages / cpu_s:,.0f} messages per CPU-second "
        "(the sandbox sends from its own process)"
    )
    print(f"lag of the last closed bucket: {lag_s:.1f} s of stream time (lateness 2 s + < one 15 s bucket)")
    print(f"target >= 50,000 msg/s on one core: {'met' if rate >= 50_000 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
