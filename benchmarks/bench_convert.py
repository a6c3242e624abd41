"""Benchmark: Tardis CSV.gz -> Parquet, our converter against polars, pandas and duckdb.

Inputs (generated once, cached in benchmarks/.work/, see bench_data.py): a realistic 5 M-row
``trades`` day and a 1 M-row ``book_snapshot_25`` day, gzip -6 like Tardis' files.

Every tool runs in its own fresh subprocess on the same file, so its peak RSS (getrusage of that
process) and CPU time are its own. Printed: wall seconds, CPU seconds, output MB, peak RSS MB and
ratios against bare polars ``scan_csv(...).sink_parquet(...)`` (default options, inferred types).
CPU seconds are printed because wall time on a shared 2-core machine moves with other load.

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

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

TOOLS = ("ours", "polars", "polars_typed", "duckdb", "pandas")
DAY = date(2024, 1, 1)
KEYS = {"BTCUSDT": "BINANCE-FUTURES:PERP:BTC-USDT"}


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

        from market_data_assets.tardis.formats import get_spec

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


def child_main(tool: str, data_type: str, src: str) -> None:
    with tempfile.TemporaryDirectory(dir=HERE / ".work") as tmp:
        t0 = time.perf_counter()
        result = run_one(tool, data_type, Path(src), Path(tmp))
        wall = time.perf_counter() - t0
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result.update(wall=wall, cpu=usage.ru_utime + usage.ru_stime, rss_mb=usage.ru_maxrss / 1024)
    print(json.dumps(result))


def measure(tool: str, data_type: str, src: Path, repeat: int) -> dict[str, float]:
    """Best of ``repeat`` fresh-process runs (by wall time)."""
    best: dict[str, float] | None = None
    for _ in range(repeat):
        proc = subprocess.run(
            [sys.executable, __file__, "--child", tool, data_type, str(src)],
            check=True,
            capture_output=True,
            text=True,
        )
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        if best is None or res["wall"] < best["wall"]:
            best = res
    assert best is not None
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trades-rows", type=int, default=5_000_000)
    parser.add_argument("--book-rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=1, help="best-of runs per tool (fresh process each)")
    parser.add_argument("--tools", default=",".join(TOOLS))
    parser.add_argument("--child", nargs=3, metavar=("TOOL", "DATA_TYPE", "SRC"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_main(*args.child)
        return

    import bench_data

    inputs = {
        "trades": bench_data.trades_day(args.trades_rows),
        "book_snapshot_25": bench_data.book_snapshot_25_day(args.book_rows),
    }
    tools = [t for t in args.tools.split(",") if t]
    for data_type, src in inputs.items():
        print(f"\n== {data_type}: {src.name} ({src.stat().st_size / 1e6:.1f} MB gz)")
        results = {tool: measure(tool, data_type, src, args.repeat) for tool in tools}
        base = results.get("polars")
        print(f"{'tool':<14}{'wall s':>9}{'cpu s':>9}{'out MB':>9}{'RSS MB':>9}{'wall/pl':>9}{'cpu/pl':>9}{'size/pl':>9}")
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
