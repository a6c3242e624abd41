"""Benchmark: Tardis CSV.gz -> Parquet, our converter against polars, pandas and duckdb.

Inputs (generated once, cached in benchmarks/.work/): a realistic 5 M-row ``trades`` day and a
1 M-row ``book_snapshot_25`` day, gzip -6 like Tardis' files. Realistic, not uniform noise: real
trade files are bursty (one aggressor order fills several makers in the same exchange
millisecond, same side, neighbouring prices, consecutive ids) and book snapshots change only a
few levels between rows; compression ratios measured on white noise would mislead.

Every tool runs in its own fresh subprocess on the same file, so its peak RSS (getrusage of that
process) and CPU time are its own. Printed: wall seconds, CPU seconds, output MB, peak RSS MB and
ratios against bare polars ``scan_csv(...).sink_parquet(...)`` (default options, inferred types).
CPU seconds (of the conversion alone, like wall: imports excluded) are printed because wall time on a
shared 2-core machine moves with other load.

Targets (DESIGN.md §10 and the raw-ticks brief): time <= 1.05x polars, trades output <= 70% of
polars' default file, >= 5x faster than pandas, peak RSS <= 600 MB.

    .venv/bin/python benchmarks/bench_convert.py [--trades-rows N] [--book-rows N] [--repeat K]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from market_data_assets.tardis.formats import get_spec  # noqa: E402

TOOLS = ("ours", "polars", "polars_typed", "duckdb", "pandas")
DAY = date(2024, 1, 1)
KEYS = {"BTCUSDT": "BINANCE-FUTURES:PERP:BTC-USDT"}

# --- realistic synthetic inputs -------------------------------------------------------------------

WORK = HERE / ".work"
DAY_START_US = 1_704_067_200_000_000  # 2024-01-01T00:00:00Z
DAY_US = 86_400_000_000


def _arrival_times(rng: np.random.Generator, n: int) -> np.ndarray:
    """Bursty, sorted arrival times (µs) filling one day: gamma inter-arrivals with shape < 1."""
    gaps = rng.gamma(0.35, 1.0, n)
    t = np.cumsum(gaps)
    return DAY_START_US + 1_000 + (t / t[-1] * (DAY_US - 2_000)).astype(np.int64)


def trades_frame(n: int, seed: int = 7) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    fills = 1 + rng.geometric(0.45, n) - 1  # trades per aggressor order
    order_of_trade = np.repeat(np.arange(n), fills)[:n]
    n_orders = int(order_of_trade[-1]) + 1
    order_local = _arrival_times(rng, n_orders)
    first_of_order = np.r_[True, order_of_trade[1:] != order_of_trade[:-1]]
    fill_idx = np.arange(n) - np.maximum.accumulate(np.where(first_of_order, np.arange(n), 0))
    local = order_local[order_of_trade] + fill_idx * rng.integers(3, 40, n)
    latency = rng.lognormal(np.log(4_000), 0.6, n_orders).astype(np.int64)
    ts = (order_local - latency) // 1000 * 1000
    side_of_order = rng.random(n_orders) < 0.5
    mid_ticks = 420_000 + np.cumsum(rng.choice([-1, 0, 0, 0, 1], n_orders))
    sign = np.where(side_of_order, 1, -1)
    price_ticks = mid_ticks[order_of_trade] + sign[order_of_trade] * (fill_idx // 2)
    amount = np.maximum(np.round(rng.lognormal(-4.5, 1.6, n), 3), 0.001)
    return pl.DataFrame(
        {
            "exchange": pl.Series(["binance-futures"]).extend_constant("binance-futures", n - 1),
            "symbol": pl.Series(["BTCUSDT"]).extend_constant("BTCUSDT", n - 1),
            "timestamp": ts[order_of_trade],
            "local_timestamp": local,
            "id": (np.arange(n, dtype=np.int64) + 3_512_000_000).astype(str),
            "side": np.where(side_of_order[order_of_trade], "buy", "sell"),
            "price": np.round(price_ticks * 0.1, 1),
            "amount": amount,
        }
    )


def _persistent(rng: np.random.Generator, fresh: np.ndarray, change_prob: float) -> np.ndarray:
    """Each cell keeps its previous row's value unless it changes (probability ``change_prob``)."""
    frame = pl.DataFrame(fresh)
    mask = rng.random(fresh.shape) < change_prob
    mask[0, :] = True
    kept = frame.with_columns(
        pl.when(pl.lit(pl.Series(mask[:, i]))).then(pl.col(c)).otherwise(None).forward_fill().alias(c)
        for i, c in enumerate(frame.columns)
    )
    return kept.to_numpy()


def book_snapshot_frame(n: int, depth: int = 25, seed: int = 11) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    local = _arrival_times(rng, n)
    ts = (local - rng.lognormal(np.log(3_000), 0.5, n).astype(np.int64)) // 1000 * 1000
    best_bid_ticks = 420_000 + np.cumsum(rng.choice([-1, 0, 0, 0, 0, 0, 1], n))
    spread = np.where(rng.random(n) < 0.9, 1, 2)
    gaps = _persistent(rng, rng.choice([1, 1, 1, 2, 3], (n, 2 * depth)), 0.05).astype(np.int64)
    ask_ticks = best_bid_ticks[:, None] + spread[:, None] + np.cumsum(gaps[:, :depth], axis=1) - gaps[:, :1]
    bid_ticks = best_bid_ticks[:, None] - np.cumsum(gaps[:, depth:], axis=1) + gaps[:, depth : depth + 1]
    amounts = _persistent(rng, np.maximum(np.round(rng.lognormal(-1.0, 1.5, (n, 2 * depth)), 3), 0.001), 0.15)
    cols: dict[str, object] = {
        "exchange": pl.Series(["binance-futures"]).extend_constant("binance-futures", n - 1),
        "symbol": pl.Series(["BTCUSDT"]).extend_constant("BTCUSDT", n - 1),
        "timestamp": ts,
        "local_timestamp": local,
    }
    for i in range(depth):
        cols[f"asks[{i}].price"] = np.round(ask_ticks[:, i] * 0.1, 1)
        cols[f"asks[{i}].amount"] = amounts[:, i]
        cols[f"bids[{i}].price"] = np.round(bid_ticks[:, i] * 0.1, 1)
        cols[f"bids[{i}].amount"] = amounts[:, depth + i]
    frame = pl.DataFrame(cols)
    assert tuple(frame.columns) == get_spec(f"book_snapshot_{depth}").csv_header
    return frame


def cached_csv_gz(name: str, build: object) -> Path:
    """``benchmarks/.work/NAME.csv.gz``, generated once (gzip -6, like Tardis' files)."""
    WORK.mkdir(parents=True, exist_ok=True)
    out = WORK / f"{name}.csv.gz"
    if out.exists():
        return out
    csv = WORK / f"{name}.csv"
    build().write_csv(csv)  # type: ignore[operator]
    subprocess.run(["gzip", "-6", "-f", str(csv)], check=True)
    return out


def trades_day(rows: int = 5_000_000) -> Path:
    return cached_csv_gz(f"trades_{rows}", lambda: trades_frame(rows))


def book_snapshot_25_day(rows: int = 1_000_000) -> Path:
    return cached_csv_gz(f"book_snapshot_25_{rows}", lambda: book_snapshot_frame(rows))


# --- the tools --------------------------------------------------------------------------------------


def run_one(tool: str, data_type: str, src: Path, out_dir: Path) -> dict[str, float]:
    """Convert ``src`` with ``tool`` in this process; returns the output size in bytes."""
    out = out_dir / f"{tool}.parquet"
    if tool == "ours":
        from market_data_assets.ticks.convert import convert_csv_gz

        files = convert_csv_gz(src, data_type, out_dir, KEYS, DAY, src.name)
        return {"bytes": sum(f.bytes for f in files), "rows": sum(f.rows for f in files)}
    if tool == "polars":
        import polars as pl

        pl.scan_csv(src).sink_parquet(out)
    elif tool == "polars_typed":
        import polars as pl

        spec = get_spec(data_type)
        lf = pl.scan_csv(src, schema=spec.polars_read_schema).with_columns(
            pl.col(list(spec.timestamp_columns)).cast(pl.Datetime("us", "UTC"))
        )
        lf.sink_parquet(out)
    elif tool == "pandas":
        import pandas as pd

        pd.read_csv(src).to_parquet(out, engine="pyarrow", compression="zstd")
    elif tool == "duckdb":
        import duckdb

        con = duckdb.connect()
        con.execute("SET threads = 2")
        con.execute(f"COPY (SELECT * FROM read_csv('{src}')) TO '{out}' (FORMAT parquet, COMPRESSION zstd)")
    else:
        raise ValueError(tool)
    return {"bytes": out.stat().st_size}


#: What each tool imports, loaded before the clock starts: the bench times conversions, not imports.
TOOL_MODULES = {
    "ours": ("market_data_assets.ticks.convert",),
    "polars": ("polars",),
    "polars_typed": ("polars",),
    "pandas": ("pandas", "pyarrow.parquet"),
    "duckdb": ("duckdb",),
}


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def child_main(tool: str, data_type: str, src: str) -> None:
    import importlib

    for module in TOOL_MODULES.get(tool, ()):
        importlib.import_module(module)
    with tempfile.TemporaryDirectory(dir=HERE / ".work") as tmp:
        cpu0 = _cpu_seconds()
        t0 = time.perf_counter()
        result = run_one(tool, data_type, Path(src), Path(tmp))
        wall = time.perf_counter() - t0
        cpu = _cpu_seconds() - cpu0
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result.update(wall=wall, cpu=cpu, rss_mb=rss_mb)
    print(json.dumps(result))


def run_child(tool: str, data_type: str, src: Path) -> dict[str, float]:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", tool, data_type, str(src)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure(tools: list[str], data_type: str, src: Path, repeat: int) -> dict[str, dict[str, float]]:
    """Best of ``repeat`` fresh-process runs per tool (by wall time). The tools take turns within
    each round, so a burst of load on a shared machine hits all of them rather than one."""
    best: dict[str, dict[str, float]] = {}
    for _ in range(repeat):
        for tool in tools:
            res = run_child(tool, data_type, src)
            if tool not in best or res["wall"] < best[tool]["wall"]:
                best[tool] = res
    return best


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trades-rows", type=int, default=5_000_000)
    parser.add_argument("--book-rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5, help="best-of runs per tool (fresh process each)")
    parser.add_argument("--tools", default=",".join(TOOLS))
    parser.add_argument("--data-types", default="trades,book_snapshot_25")
    parser.add_argument("--child", nargs=3, metavar=("TOOL", "DATA_TYPE", "SRC"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_main(*args.child)
        return

    inputs = {
        data_type: build()
        for data_type, build in (
            ("trades", lambda: trades_day(args.trades_rows)),
            ("book_snapshot_25", lambda: book_snapshot_25_day(args.book_rows)),
        )
        if data_type in args.data_types.split(",")
    }
    tools = [t for t in args.tools.split(",") if t]
    for data_type, src in inputs.items():
        print(f"\n== {data_type}: {src.name} ({src.stat().st_size / 1e6:.1f} MB gz)")
        results = measure(tools, data_type, src, args.repeat)
        base = results.get("polars")
        print(
            f"{'tool':<14}{'wall s':>9}{'cpu s':>9}{'out MB':>9}{'RSS MB':>9}{'wall/pl':>9}{'cpu/pl':>9}{'size/pl':>9}"
        )
        for tool, r in results.items():
            ratios = (
                (r["wall"] / base["wall"], r["cpu"] / base["cpu"], r["bytes"] / base["bytes"])
                if base
                else (float("nan"),) * 3
            )
            print(
                f"{tool:<14}{r['wall']:>9.2f}{r['cpu']:>9.2f}{r['bytes'] / 1e6:>9.1f}{r['rss_mb']:>9.0f}"
                f"{ratios[0]:>9.2f}{ratios[1]:>9.2f}{ratios[2]:>9.2f}"
            )
        if "ours" in results and "pandas" in results:
            print(f"pandas / ours wall: {results['pandas']['wall'] / results['ours']['wall']:.1f}x")
        if "ours" in results and "duckdb" in results:
            print(f"duckdb / ours wall: {results['duckdb']['wall'] / results['ours']['wall']:.1f}x")


if __name__ == "__main__":
    main()
