"""Benchmark: our TardisClient.download_many against the official ``tardis-dev`` client.

Both fetch the same daily trades files (``--symbols`` symbols x ``--days`` days) from the bundled
Tardis sandbox, which runs in a child process so its CPU does not share a GIL with the client
being timed. Each client writes into its own temporary folder; the script then checks that both
produced byte-identical files and prints both wall times and the ratio.

Where the difference comes from: ``tardis_dev.download_datasets`` takes one exchange per call,
walks its symbols one after another and, per symbol, fetches the last day, then the first day,
then the days between concurrently, so 20 symbols x 5 days is at least 60 sequential requests;
``download_many`` runs every (exchange, symbol, day) file at once within its connection limit.
On loopback a request costs next to nothing, so ``--transfer-ms`` (default 100) makes every
dataset body take that long to arrive (the sandbox's "slow" fault: the body in ten pieces), as
time to first byte and per-connection throughput do against the real service; ``--transfer-ms 0``
measures the pure loopback case, where our extra CPU (every gzip stream is inflated to the end
to verify it; tardis-dev checks nothing) is what remains.

Before timing, one untimed pass warms the sandbox (it caches the files it generates), so neither
client pays for data generation. Rounds alternate between the clients, each into a fresh folder;
the best round of each is reported, because this machine is shared and wall times are noisy.

    .venv/bin/python benchmarks/bench_download.py [--symbols 20] [--days 5] [--trades-per-day 20000]
        [--transfer-ms 100] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import filecmp
import json
import os
import sys
import tempfile
import time
import urllib.request
from datetime import date, timedelta
from pathlib import Path

import tardis_dev
from sandbox_process import sandbox_process

from market_data_assets.tardis.client import DownloadRequest, TardisClient, dataset_symbol

API_KEY = "bench-key"
EXCHANGE_PREFERENCE = ("binance", "binance-futures", "bitmex", "coinbase", "deribit")


async def pick_symbols(urls: dict, n_symbols: int, first_day: date, last_day: date) -> list[tuple[str, str]]:
    """``n_symbols`` (exchange, dataset id) pairs with trades files over the whole day range.

    Taken exchange by exchange (grouped ids such as ``SPOT`` included): the sandbox's exchanges
    hold a handful of liquid symbols each, the project downloads several exchanges per run, and
    deribit's many options are tiny files that would not make a realistic size mix.
    """
    picked: list[tuple[str, str]] = []
    async with TardisClient(urls["api_url"], urls["datasets_url"], API_KEY) as client:
        for exchange in EXCHANGE_PREFERENCE:
            details = await client.exchange_details(exchange)
            for s in details["datasets"]["symbols"]:
                if (
                    "trades" in s.get("dataTypes", [])
                    and s["availableSince"][:10] <= first_day.isoformat()
                    and (s.get("availableTo") is None or s["availableTo"][:10] > last_day.isoformat())
                    and len(picked) < n_symbols
                ):
                    picked.append((exchange, s["id"]))
    if len(picked) < n_symbols:
        raise SystemExit(f"the sandbox offers only {len(picked)} trades symbols over {first_day}..{last_day}")
    return picked


def official_file_name(exchange: str, day: date, symbol: str) -> str:
    """The file name ``tardis_dev.default_file_name`` gives; ours uses it too so files pair up."""
    return tardis_dev.default_file_name(exchange, "trades", _midnight(day), dataset_symbol(symbol), "csv")


def _midnight(day: date):
    from datetime import datetime

    return datetime(day.year, day.month, day.day)


async def run_ours(urls: dict, reqs: list[DownloadRequest], folder: Path, concurrency: int) -> int:
    failures = 0
    async with TardisClient(
        urls["api_url"], urls["datasets_url"], API_KEY, concurrency=concurrency
    ) as client:
        async for result in client.download_many(
            reqs, lambda r: folder / official_file_name(r.exchange, r.day, r.symbol)
        ):
            if result.error is not None:
                print(f"  ours failed: {result.error}", file=sys.stderr)
                failures += 1
    return failures


def run_official(urls: dict, picked: list[tuple[str, str]], days: list[date], folder: Path) -> None:
    """One ``download_datasets`` call per exchange (it takes one exchange), as a user would write it."""
    for exchange in dict.fromkeys(ex for ex, _ in picked):
        symbols = [sym for ex, sym in picked if ex == exchange]
        _official_one_exchange(urls, exchange, symbols, days, folder)


def _official_one_exchange(
    urls: dict, exchange: str, symbols: list[str], days: list[date], folder: Path
) -> None:
    tardis_dev.download_datasets(
        exchange=exchange,
        data_types=["trades"],
        symbols=symbols,
        from_date=days[0].isoformat(),
        to_date=(days[-1] + timedelta(days=1)).isoformat(),
        api_key=API_KEY,
        download_dir=str(folder),
        endpoint=urls["datasets_url"],
        concurrency=20,
        skip_if_exists=False,
    )


def compare(ours: Path, official: Path, names: list[str]) -> list[str]:
    """Names that are missing on either side or differ in bytes."""
    bad = []
    for name in names:
        a, b = ours / name, official / name
        if not (a.is_file() and b.is_file() and filecmp.cmp(a, b, shallow=False)):
            bad.append(name)
    return bad


def add_transfer_delay(urls: dict, transfer_ms: float) -> None:
    """Make every dataset body take ``transfer_ms`` to arrive (the sandbox's "slow" fault, via its control route)."""
    base = urls["api_url"].removesuffix("/v1")
    rule = json.dumps({"kind": "slow", "path_glob": "*.csv.gz", "delay": transfer_ms / 1000}).encode()
    request = urllib.request.Request(
        f"{base}/_sandbox/faults", data=rule, headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        if response.status != 201:
            raise SystemExit(f"sandbox refused the transfer-delay rule: HTTP {response.status}")


def timed(fn) -> tuple[float, float]:
    """(wall seconds, this process's CPU seconds) of ``fn()``."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=20)
    parser.add_argument("--days", type=int, default=5)
    parser.add_argument("--trades-per-day", type=int, default=20_000, help="sandbox size knob (file size)")
    parser.add_argument("--first-day", type=date.fromisoformat, default=date(2024, 6, 3))
    parser.add_argument("--concurrency", type=int, default=16, help="our client's connection limit")
    parser.add_argument(
        "--transfer-ms",
        type=float,
        default=100.0,
        help="time each file's body takes to arrive (0 = loopback speed; the real service is far slower)",
    )
    parser.add_argument("--repeat", type=int, default=3, help="timed rounds per client; the best is reported")
    args = parser.parse_args(argv)

    days = [args.first_day + timedelta(days=i) for i in range(args.days)]
    failures = 0
    with sandbox_process(seed=42, trades_per_day=args.trades_per_day, api_key=API_KEY) as urls:
        picked = asyncio.run(pick_symbols(urls, args.symbols, days[0], days[-1]))
        reqs = [DownloadRequest(ex, "trades", d, sym) for ex, sym in picked for d in days]
        names = [official_file_name(r.exchange, r.day, r.symbol) for r in reqs]
        with tempfile.TemporaryDirectory(prefix="bench-download-") as tmp:
            root = Path(tmp)
            (root / "warm").mkdir()
            if asyncio.run(run_ours(urls, reqs, root / "warm", args.concurrency)):
                raise SystemExit("warm-up pass failed")
            if args.transfer_ms > 0:
                add_transfer_delay(urls, args.transfer_ms)

            official_runs, ours_runs = [], []
            for i in range(args.repeat):
                official, ours = root / f"official-{i}", root / f"ours-{i}"
                official.mkdir()
                ours.mkdir()
                official_runs.append(timed(lambda d=official: run_official(urls, picked, days, d)))

                def run(d: Path = ours) -> None:
                    nonlocal failures
                    failures += asyncio.run(run_ours(urls, reqs, d, args.concurrency))

                ours_runs.append(timed(run))
                bad = compare(ours, official, names)
                if bad:
                    break
            total_bytes = sum((root / "ours-0" / n).stat().st_size for n in names)

    (t_official, cpu_official), (t_ours, cpu_ours) = min(official_runs), min(ours_runs)
    print(
        f"{len(reqs)} files: {len(picked)} symbols on {len({ex for ex, _ in picked})} exchanges x "
        f"{len(days)} days of trades, {total_bytes / len(reqs) / 1024:.0f} KiB average, "
        f"{total_bytes / 2**20:.1f} MiB in all; transfer {args.transfer_ms:g} ms per file; "
        f"best of {len(ours_runs)}; {os.cpu_count()} cpus, load average {os.getloadavg()[0]:.1f}"
    )
    print(
        f"tardis-dev {tardis_dev.__version__} download_datasets: {t_official:7.2f} s  (cpu {cpu_official:.2f} s)"
    )
    print(f"market_data_assets download_many:   {t_ours:7.2f} s  (cpu {cpu_ours:.2f} s, gzip verified)")
    print(f"ratio (tardis-dev / ours): {t_official / t_ours:.2f}x")
    if failures or bad:
        print(f"MISMATCH: {failures} failed downloads, {len(bad)} files differ or are missing: {bad[:5]}")
        return 1
    print(f"all {len(names)} files byte-identical between the two clients in every round")
    return 0


if __name__ == "__main__":
    sys.exit(main())
