"""The DuckDB warehouse load of one synthetic exchange-day: wall time and peak RSS, vs DuckDB alone.

Run: ``.venv/bin/python benchmarks/bench_warehouse_load.py [--instruments 3000] [--dense 40]
[--all-dense] [--lake DIR] [--code DIR ...] [--gcs]``

The lake is a Deribit-like exchange-day written with the project's schemas (``CANDLE_SCHEMA``,
``book_snapshot_schema``): ``--instruments`` instruments x 14 tables (candles and book snapshots
at the 7 timeframes), one Parquet file per instrument per table, 42,000 files by default.
``--dense`` of them (perpetuals and futures) carry the full grid (5,760 rows at 15s) and depth-25
books; the rest (options) are sparse - ``--sparse-rows`` buckets at 15s, the buckets they fall in
at coarser timeframes - with depth-5 books. ``--all-dense`` gives every option the full grid too,
which is what the lake held before the candle density policy (the 6.7 GB run of issue 13).

Each contender runs in a fresh child process; peak RSS is the child's ``ru_maxrss``:

- ``project``: ``load_slice`` into a new DuckDB warehouse file (settings from the environment,
  e.g. ``MARKET_DATA_DUCKDB_MEMORY_LIMIT``), then once more into the same file (the idempotent
  re-run, which also deletes the previous slice);
- ``project@DIR``: the same with the ``market_data_assets`` package of another checkout (``--code
  DIR``, e.g. a ``git archive`` of main: the code before this change);
- ``peer``: DuckDB's own ``CREATE TABLE AS SELECT * FROM read_parquet([every file of the table],
  union_by_name = true)`` per table, default settings: no staging, no slice check, no swap;
- ``project gs://`` (``--gcs``): the same lake uploaded to a fake-gcs-server and loaded from there.

Every contender reports per table its row count and a sum of column hashes; they must agree
before any figure is printed.
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
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from market_data_assets.candles.schema import CANDLE_SCHEMA, book_snapshot_schema  # noqa: E402
from market_data_assets.storage import layout  # noqa: E402
from market_data_assets.warehouse.schema import WAREHOUSE_TABLES  # noqa: E402

DAY = date(2024, 3, 1)
EXCHANGE = "deribit"
DAY_S = 86_400
TF_SECONDS = {"15s": 15, "1m": 60, "5m": 300, "15m": 900, "1h": 3600, "4h": 14_400, "24h": 86_400}
SPEC_FILE = ".bench-warehouse-lake.json"


# --- the synthetic lake ------------------------------------------------------------------------


def _keys(n: int, dense: int) -> list[tuple[str, bool]]:
    """``dense`` perpetuals/futures first, then options (``(key, dense)``)."""
    out: list[tuple[str, bool]] = []
    for i in range(dense):
        kind = "PERP" if i % 2 == 0 else "FUTURE"
        out.append((f"DERIBIT:{kind}:{'BTC' if i % 4 < 2 else 'ETH'}-{i:04d}", True))
    for i in range(n - dense):
        cp = "C" if i % 2 == 0 else "P"
        out.append(
            (
                f"DERIBIT:OPTION:{'BTC' if i % 3 else 'ETH'}-{i // 40:03d}MAR24-{1000 + (i % 40) * 500}-{cp}",
                False,
            )
        )
    return out


def _value_pool(schema: pa.Schema, rows: int, rng: np.random.Generator) -> dict[str, pa.Array]:
    """Low-entropy values (as candles of a day are: repeated prices, small counts), nulls where allowed."""
    pool: dict[str, pa.Array] = {}
    for field in schema:
        if field.name in (
            "instrument_key",
            "exchange",
            "instrument_type",
            "timeframe",
            "timestamp",
            "book_depth",
        ):
            continue
        if pa.types.is_timestamp(field.type):
            start_us = int(np.datetime64(DAY.isoformat(), "us").astype(np.int64))
            values = start_us + np.sort(rng.integers(0, DAY_S * 1_000_000, rows))
            pool[field.name] = pa.array(values, pa.int64()).cast(field.type)
        elif pa.types.is_integer(field.type):
            values = rng.integers(0, 40, rows)
            pool[field.name] = pa.array(values, field.type)
        elif pa.types.is_string(field.type) or pa.types.is_large_string(field.type):
            pool[field.name] = pa.array(["dense"] * rows, field.type)  # e.g. the candles' ``density``
        else:
            values = np.round(50_000 * (1 + rng.integers(-30, 30, rows) * 1e-4), 1)
            mask = (rng.random(rows) < 0.1) if field.nullable else None
            pool[field.name] = pa.array(values, field.type, mask=mask)
    return pool


def _table(
    schema: pa.Schema, pool: dict[str, pa.Array], key: str, tf: str, buckets: np.ndarray, depth: int
) -> pa.Table:
    n = len(buckets)
    start_us = int(np.datetime64(DAY.isoformat(), "us").astype(np.int64))
    columns: dict[str, pa.Array] = {}
    for field in schema:
        name = field.name
        if name == "instrument_key":
            columns[name] = pa.array([key] * n, field.type)
        elif name == "exchange":
            columns[name] = pa.array([EXCHANGE] * n, field.type)
        elif name == "instrument_type":
            columns[name] = pa.array([key.split(":")[1]] * n, field.type)
        elif name == "timeframe":
            columns[name] = pa.array([tf] * n, field.type)
        elif name == "timestamp":
            columns[name] = pa.array(start_us + buckets * TF_SECONDS[tf] * 1_000_000, pa.int64()).cast(
                field.type
            )
        elif name == "book_depth":
            columns[name] = pa.array([depth] * n, field.type)
        else:
            columns[name] = pool[name].take(pa.array(buckets % len(pool[name])))
    return pa.table(columns, schema=schema)


def write_lake(root: Path, instruments: int, dense: int, sparse_rows: int, all_dense: bool) -> dict:
    spec = {
        "instruments": instruments,
        "dense": instruments if all_dense else dense,
        "sparse_rows": sparse_rows,
        "day": DAY.isoformat(),
        "exchange": EXCHANGE,
    }
    marker = root / SPEC_FILE
    if marker.is_file() and json.loads(marker.read_text()) == spec:
        print(f"reusing the lake in {root}")
        return spec
    if root.exists():
        shutil.rmtree(root)
    rng = np.random.default_rng(13)
    grid = DAY_S // 15
    pools = {
        "candles": _value_pool(CANDLE_SCHEMA, grid, rng),
        25: _value_pool(book_snapshot_schema(25), grid, rng),
        5: _value_pool(book_snapshot_schema(5), grid, rng),
    }
    schemas = {25: book_snapshot_schema(25), 5: book_snapshot_schema(5)}
    keys = _keys(instruments, dense)
    started = time.perf_counter()

    def write_instrument(item: tuple[int, tuple[str, bool]]) -> int:
        i, (key, is_dense) = item
        local = np.random.default_rng(i)
        if is_dense or all_dense:
            fine = np.arange(grid, dtype=np.int64)
        else:
            fine = np.sort(local.choice(grid, size=sparse_rows, replace=False)).astype(np.int64)
        depth = 25 if is_dense else 5
        n = 0
        for tf in layout.TIMEFRAMES:
            buckets = np.unique(fine * 15 // TF_SECONDS[tf])
            for kind, schema, path in (
                ("candles", CANDLE_SCHEMA, layout.candles_path(DAY, tf, key)),
                (depth, schemas[depth], layout.book_snapshots_path(DAY, tf, key)),
            ):
                target = root / path
                target.parent.mkdir(parents=True, exist_ok=True)
                pq.write_table(
                    _table(schema, pools[kind], key, tf, buckets, depth), target, compression="zstd"
                )
                n += 1
        return n

    with ThreadPoolExecutor(2) as pool:
        files = sum(pool.map(write_instrument, enumerate(keys)))
    marker.write_text(json.dumps(spec))
    size = sum(p.stat().st_size for p in root.rglob("*.parquet"))
    print(f"wrote {files} files ({size / 1e6:.0f} MB) in {time.perf_counter() - started:.0f} s to {root}")
    return spec


# --- the contenders, each in its own process ---------------------------------------------------

_CHECKSUM = """
def checksum(con, table, names):
    sums = ", ".join(f"sum(hash(\\"{n}\\") % 1000003)" for n in names)
    row = con.execute(f"SELECT count(*), {sums} FROM {table}").fetchone()
    return [int(v or 0) for v in row]
"""

PROJECT_CHILD = (
    _CHECKSUM
    + """
import json, resource, sys, time
from datetime import date
import duckdb
from market_data_assets.settings import Settings
from market_data_assets.storage import open_store
from market_data_assets.warehouse import WAREHOUSE_TABLES, load_slice, open_warehouse

root, db, day, exchange = sys.argv[1:5]
os_env = __import__("os").environ
os_env["MARKET_DATA_WAREHOUSE"] = "duckdb://" + db
store = open_store(root)
wh = open_warehouse(Settings.from_env(), store)
wh.ensure_tables()
cpu = lambda: sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
t0, c0 = time.perf_counter(), cpu()
first = load_slice(wh, store, date.fromisoformat(day), exchange)
t1, c1 = time.perf_counter(), cpu()
again = load_slice(wh, store, date.fromisoformat(day), exchange)
t2 = time.perf_counter()
wh.close()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
assert again.rows == first.rows, (first.rows, again.rows)
with duckdb.connect(db, read_only=True) as con:
    sums = {t: checksum(con, t, [f.name for f in spec.schema if f.name not in dict(spec.constants)]) for t, spec in WAREHOUSE_TABLES.items()}
print(json.dumps({"load_s": t1 - t0, "rerun_s": t2 - t1, "cpu_s": c1 - c0, "peak": peak, "rows": first.rows, "sums": sums}))
"""
)

PEER_CHILD = (
    _CHECKSUM
    + """
import json, resource, sys, time
from pathlib import Path
import duckdb
from market_data_assets.warehouse import WAREHOUSE_TABLES
from market_data_assets.storage.local import LocalStore
from market_data_assets.warehouse.loader import slice_paths
from datetime import date

root, db, day, exchange = sys.argv[1:5]
store = LocalStore(root)
cpu = lambda: sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
t0, c0 = time.perf_counter(), cpu()
with duckdb.connect(db) as con:
    for name, spec in WAREHOUSE_TABLES.items():
        files = [store.uri(p) for p in slice_paths(store, spec, date.fromisoformat(day), exchange)]
        con.execute(f"CREATE TABLE {name} AS SELECT * FROM read_parquet($f, union_by_name = true)", {"f": files})
    t1, c1 = time.perf_counter(), cpu()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    sums = {t: checksum(con, t, [f.name for f in spec.schema if f.name not in dict(spec.constants)]) for t, spec in WAREHOUSE_TABLES.items()}
print(json.dumps({"load_s": t1 - t0, "rerun_s": None, "cpu_s": c1 - c0, "peak": peak, "rows": sum(s[0] for s in sums.values()), "sums": sums}))
"""
)


def run_child(code: str, cwd: Path, args: list[str], env: dict[str, str] | None = None) -> dict:
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise SystemExit(f"child in {cwd} failed:\n{proc.stderr[-4000:]}")
    # The JSON report is the last thing printed (DuckDB may draw a progress bar before it).
    out = json.loads(proc.stdout[proc.stdout.rindex('{"load_s"') :])
    out["process_s"] = time.perf_counter() - started
    return out


def upload_to_emulator(lake: Path, workdir: Path) -> tuple[str, dict[str, str], object]:
    """Start fake-gcs-server, upload the lake's Parquet files, return (root, env, process)."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    from market_data_assets.storage.gcs import GcsStore
    from market_data_assets_tests.fixtures.gcs import start_fake_gcs_server

    data = workdir / "gcs"
    data.mkdir()
    proc, endpoint = start_fake_gcs_server(data, workdir / "fake-gcs-server.log")
    client = storage.Client(
        project="bench", credentials=AnonymousCredentials(), client_options={"api_endpoint": endpoint}
    )
    client.create_bucket("bench-lake")
    store = GcsStore(client, "bench-lake", "lake")
    files = [p for p in lake.rglob("*.parquet")]
    started = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda p: store.put_file(p, p.relative_to(lake).as_posix()), files))
    print(f"uploaded {len(files)} files to {store.root} in {time.perf_counter() - started:.0f} s")
    env = {"STORAGE_EMULATOR_HOST": endpoint, "GOOGLE_CLOUD_PROJECT": "bench"}
    return store.root, env, proc


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--instruments", type=int, default=3000)
    parser.add_argument(
        "--dense", type=int, default=40, help="instruments with the full grid (perps, futures)"
    )
    parser.add_argument("--sparse-rows", type=int, default=50, help="15s buckets of each sparse instrument")
    parser.add_argument("--all-dense", action="store_true", help="every instrument on the full grid")
    parser.add_argument("--lake", type=Path, help="write (or reuse) the lake here instead of a temp dir")
    parser.add_argument("--code", type=Path, action="append", default=[], help="another checkout to time too")
    parser.add_argument("--no-peer", action="store_true")
    parser.add_argument("--gcs", action="store_true", help="also load the lake from a GCS emulator")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-warehouse-"))
    lake = args.lake or work / "lake"
    try:
        write_lake(lake, args.instruments, args.dense, args.sparse_rows, args.all_dense)
        common = [str(lake), "", DAY.isoformat(), EXCHANGE]
        runs: list[tuple[str, dict]] = []

        def contender(label: str, code: str, cwd: Path, root: str, env: dict[str, str] | None = None) -> None:
            db = work / f"{len(runs)}.duckdb"
            res = run_child(code, cwd, [root, str(db), *common[2:]], env)
            runs.append((label, res))
            db.unlink(missing_ok=True)
            shutil.rmtree(f"{db}.tmp", ignore_errors=True)
            print(f"  {label}: {res['load_s']:.1f} s, peak {res['peak'] / 2**20:.0f} MB", flush=True)

        contender("project", PROJECT_CHILD, REPO, str(lake))
        for other in args.code:
            contender(f"project@{other}", PROJECT_CHILD, other.resolve(), str(lake))
        if not args.no_peer:
            contender("peer: duckdb read_parquet", PEER_CHILD, REPO, str(lake))
        emulator = None
        if args.gcs:
            root, env, emulator = upload_to_emulator(lake, work)
            try:
                contender("project gs://", PROJECT_CHILD, REPO, root, env)
            finally:
                emulator.terminate()  # type: ignore[attr-defined]
                emulator.wait()  # type: ignore[attr-defined]

        reference = runs[0][1]["sums"]
        for label, res in runs[1:]:
            if res["sums"] != reference:
                bad = [t for t in WAREHOUSE_TABLES if res["sums"][t] != reference[t]]
                raise SystemExit(f"{label} holds different rows than project in {bad}")
        files = 14 * args.instruments
        print(
            f"\n{files} files, {reference['candles_15s'][0]:,} rows in candles_15s, "
            f"{sum(v[0] for v in reference.values()):,} rows in all 14 tables (all contenders agree)"
        )
        print(
            f"{'contender':<44} {'load s':>8} {'CPU s':>7} {'re-run s':>9} {'process s':>10} {'peak RSS MB':>12}"
        )
        for label, res in runs:
            rerun = f"{res['rerun_s']:.1f}" if res["rerun_s"] is not None else "-"
            print(
                f"{label:<44} {res['load_s']:>8.1f} {res['cpu_s']:>7.1f} {rerun:>9} {res['process_s']:>10.1f} {res['peak'] / 2**20:>12.0f}"
            )
    finally:
        if args.lake is None:
            shutil.rmtree(work, ignore_errors=True)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
