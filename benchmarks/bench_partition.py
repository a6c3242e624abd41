"""Benchmark: one whole ``raw_ticks`` partition, download and conversion, in bounded memory.

The raw-ticks bar "peak RSS <= 600 MB for the whole partition" is about a partition, not a file:
the project downloads while it converts and converts two files at once, so two conversions and the
downloads share one process. This bench runs ``materialize_raw_ticks`` (the code behind the Dagster
asset) on a partition of four big files and reports that process's peak RSS.

Input: the realistic days of ``bench_convert`` (5 M trades, 1 M book_snapshot_25 rows), each served
for two symbols (``BTCUSDT`` and ``ETHUSDT``: the same generated day under both names), 310 MB of
gzip in all, by a plain file server in a child process (its CPU and memory are not counted).

Peer, in one run on the same files: what a user would write without the project, the tardis-dev
client's ``download_datasets`` and then bare polars ``scan_csv -> sink_parquet`` file by file.

On loopback the downloads cost next to nothing and both sides are bound by the conversions, which
the project runs at bare polars' speed while checking and hashing every file. With ``--mb-per-s``
(a per-connection cap, like a real link) the project's overlap of downloads and conversions shows.

    .venv/bin/python benchmarks/bench_partition.py [--repeat K] [--mb-per-s R]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from bench_convert import DAY, book_snapshot_25_day, trades_day  # noqa: E402
from sandbox_process import child_server  # noqa: E402

EXCHANGE = "binance-futures"
SYMBOLS = ("BTCUSDT", "ETHUSDT")
DATA_TYPES = ("trades", "book_snapshot_25")
MEMORY_BAR_MB = 600
CONVERT_WORKERS = int(__import__("os").environ.get("BENCH_CONVERT_WORKERS", "2"))

_SERVER = """
import asyncio, json, os, sys
from aiohttp import web
files = json.loads(sys.argv[1])
rate = float(sys.argv[2]) * 1e6  # bytes per second per connection; 0: as fast as loopback goes
async def serve(request):
    path = files[request.match_info["data_type"]]
    if not rate:
        return web.FileResponse(path)
    response = web.StreamResponse(headers={"Content-Length": str(os.path.getsize(path))})
    await response.prepare(request)
    loop = asyncio.get_running_loop()
    start, sent = loop.time(), 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 18):
            await response.write(chunk)
            sent += len(chunk)
            await asyncio.sleep(max(0.0, start + sent / rate - loop.time()))
    await response.write_eof()
    return response
app = web.Application()
app.router.add_get("/{exchange}/{data_type}/{y}/{m}/{d}/{name}", serve)
async def main():
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    print(json.dumps({"datasets_url": f"http://127.0.0.1:{port}"}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
import asyncio
asyncio.run(main())
"""


@contextmanager
def file_server(files: dict[str, Path], mb_per_s: float = 0) -> Iterator[str]:
    """Serve ``files[data_type]`` for every dataset URL of that data type, at most ``mb_per_s``
    per connection when given; yield the base URL."""
    with child_server(_SERVER, json.dumps({k: str(v) for k, v in files.items()}), str(mb_per_s)) as urls:
        yield urls["datasets_url"]


def targets():
    """Download targets of the partition: every data type for both symbols (the CSVs say BTCUSDT)."""
    import polars as pl

    rows = [
        {
            "exchange": EXCHANGE,
            "data_type": data_type,
            "instrument_key": f"BINANCE-FUTURES:PERP:{symbol[:3]}-USDT",
            "symbol_in_csv": "BTCUSDT",
            "dataset_symbol": symbol,
            "grouped": False,
        }
        for data_type in DATA_TYPES
        for symbol in SYMBOLS
    ]
    return pl.DataFrame(rows)


def run_ours(datasets_url: str, out: Path) -> dict[str, float]:
    from market_data_assets.storage.local import LocalStore
    from market_data_assets.tardis.client import TardisClient
    from market_data_assets.ticks.pipeline import materialize_raw_ticks

    async def go():
        async with TardisClient("http://127.0.0.1:9", datasets_url, "key") as client:
            return await materialize_raw_ticks(
                client, LocalStore(out), targets(), DAY, EXCHANGE, convert_workers=CONVERT_WORKERS
            )

    result = asyncio.run(go())
    if result.failures or len(result.files) != len(DATA_TYPES) * len(SYMBOLS):
        raise SystemExit(f"the partition failed: {result.failures}")
    return {"files": len(result.files), "rows": result.rows, "bytes": result.bytes}


def run_peer(datasets_url: str, out: Path) -> dict[str, float]:
    import polars as pl
    import tardis_dev

    tardis_dev.download_datasets(
        exchange=EXCHANGE,
        data_types=list(DATA_TYPES),
        symbols=list(SYMBOLS),
        from_date=DAY.isoformat(),
        to_date=(DAY + timedelta(days=1)).isoformat(),
        api_key="key",
        download_dir=str(out / "csv"),
        endpoint=datasets_url,
        concurrency=4,
        skip_if_exists=False,
    )
    written = 0
    for i, src in enumerate(sorted((out / "csv").iterdir())):
        dest = out / f"{i}.parquet"
        pl.scan_csv(src).sink_parquet(dest)
        written += dest.stat().st_size
    return {"files": i + 1, "bytes": written}


TOOL_MODULES = {
    "ours": ("market_data_assets.ticks.pipeline", "market_data_assets.tardis.client"),
    "peer": ("tardis_dev", "polars"),
}


def child_main(tool: str, datasets_url: str) -> None:
    import importlib

    for module in TOOL_MODULES[tool]:
        importlib.import_module(module)
    with tempfile.TemporaryDirectory(dir=HERE / ".work") as tmp:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        cpu0 = usage.ru_utime + usage.ru_stime
        t0 = time.perf_counter()
        result = (run_ours if tool == "ours" else run_peer)(datasets_url, Path(tmp))
        wall = time.perf_counter() - t0
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result.update(wall=wall, cpu=usage.ru_utime + usage.ru_stime - cpu0, rss_mb=usage.ru_maxrss / 1024)
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=3, help="best-of runs per tool (fresh process each)")
    parser.add_argument(
        "--mb-per-s",
        type=float,
        default=0,
        help="cap each download connection at this many MB/s (default: loopback speed)",
    )
    parser.add_argument("--child", nargs=2, metavar=("TOOL", "URL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_main(*args.child)
        return

    files = {"trades": trades_day(), "book_snapshot_25": book_snapshot_25_day()}
    gz_mb = sum(p.stat().st_size for p in files.values()) * len(SYMBOLS) / 1e6
    link = f"{args.mb_per_s:g} MB/s per connection" if args.mb_per_s else "loopback"
    print(
        f"partition: {len(SYMBOLS)} symbols x {', '.join(DATA_TYPES)} = {len(files) * len(SYMBOLS)} files, "
        f"{gz_mb:.0f} MB gz, served over {link}"
    )
    best: dict[str, dict[str, float]] = {}
    with file_server(files, args.mb_per_s) as url:
        for _ in range(args.repeat):
            for tool in ("ours", "peer"):  # taking turns: a burst of load hits both
                proc = subprocess.run(
                    [sys.executable, __file__, "--child", tool, url], capture_output=True, text=True
                )
                if proc.returncode:
                    raise SystemExit(f"{tool} failed:\n{proc.stderr[-3000:]}")
                res = json.loads(proc.stdout.strip().splitlines()[-1])
                if tool not in best or res["wall"] < best[tool]["wall"]:
                    best[tool] = res
    print(f"{'tool':<8}{'wall s':>9}{'cpu s':>9}{'out MB':>9}{'RSS MB':>9}")
    for tool, r in best.items():
        print(f"{tool:<8}{r['wall']:>9.2f}{r['cpu']:>9.2f}{r['bytes'] / 1e6:>9.1f}{r['rss_mb']:>9.0f}")
    ours, peer = best["ours"], best["peer"]
    print(f"peer / ours wall: {peer['wall'] / ours['wall']:.2f}x")
    verdict = "within" if ours["rss_mb"] <= MEMORY_BAR_MB else "OVER"
    print(
        f"ours peak RSS {ours['rss_mb']:.0f} MB for the whole partition: {verdict} the {MEMORY_BAR_MB} MB bar"
    )


if __name__ == "__main__":
    main()
