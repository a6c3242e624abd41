"""``market-data demo`` (``make demo``): the whole graph, end to end, on the embedded default.

No network, no credentials: it starts the bundled Tardis sandbox, points the settings at it,
and materializes definitions -> targets -> raw ticks -> candles -> book snapshots -> MFT
features -> warehouse (DuckDB) -> missing-data report for a few days × exchanges through real Dagster
runs on a persistent local instance (``<root>/dagster_home``). ``make dev`` opens the UI on
that same instance, so every run shows up there.

Ingestion runs first for every day plus the one after it, then processing: a day's candles
need the next day's file, which holds the day's last trades (see docs/CANDLES.md).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from datetime import date, timedelta
from pathlib import Path

DEFAULT_EXCHANGES = ("binance-futures", "deribit", "bitmex")
REPO_ROOT = Path(__file__).resolve().parents[1]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", default=None, help="storage root (default: MARKET_DATA_ROOT or ./data)")
    parser.add_argument(
        "--start", type=date.fromisoformat, default=date(2024, 3, 1), help="first day (2024-03-01)"
    )
    parser.add_argument("--days", type=int, default=3, help="days to process (default 3)")
    parser.add_argument(
        "--exchanges",
        default=",".join(DEFAULT_EXCHANGES),
        help=f"comma-separated (default {','.join(DEFAULT_EXCHANGES)})",
    )
    parser.add_argument(
        "--trades-per-day", type=int, default=5000, help="sandbox size knob per instrument-day"
    )
    parser.add_argument("--port", type=int, default=0, help="sandbox port (default: a free one)")


def prepare_instance(root: Path) -> Path:
    """A persistent local Dagster instance under the data root (shared with ``make dev``)."""
    home = root / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    template = REPO_ROOT / "deploy" / "local" / "dagster.yaml"
    if not config.exists():
        if template.exists():
            shutil.copyfile(template, config)
        else:
            config.write_text("telemetry:\n  enabled: false\n")
    return home


def sandbox_environment(sandbox, root: Path) -> dict[str, str]:
    return {
        "MARKET_DATA_ROOT": str(root),
        "TARDIS_API_URL": sandbox.api_url,
        "TARDIS_DATASETS_URL": sandbox.datasets_url,
        "TARDIS_API_KEY": sandbox.api_key or "",
    }


def run(args: argparse.Namespace) -> int:
    from market_data_assets.sandbox import SandboxConfig, start_sandbox
    from market_data_assets.settings import Settings

    root = Path(args.root or Settings.from_env().root).expanduser().resolve()
    exchanges = [e.strip() for e in args.exchanges.split(",") if e.strip()]
    home = prepare_instance(root)
    started = time.perf_counter()
    print(f"market-data demo: {args.days} days from {args.start} × {', '.join(exchanges)} -> {root}")
    sandbox = start_sandbox(SandboxConfig(trades_per_day=args.trades_per_day), port=args.port)
    print(f"  Tardis sandbox on {sandbox.url} (synthetic market, seed 42)")
    try:
        os.environ.update(sandbox_environment(sandbox, root))
        os.environ["DAGSTER_HOME"] = str(home)
        configured = Settings.from_env()
        unknown = [e for e in exchanges if e not in configured.exchanges]
        if unknown:
            print(
                f"error: {unknown} not in MARKET_DATA_EXCHANGES={','.join(configured.exchanges)}",
                file=sys.stderr,
            )
            return 2
        ok = _materialize(args.start, args.days, exchanges)
        _summary(root, args.start, args.days, exchanges)
    finally:
        sandbox.stop()
    print(
        f"\ndone in {time.perf_counter() - started:.1f} s. See every run in the UI: make dev  (then open http://127.0.0.1:3000)"
    )
    return 0 if ok else 1


def _materialize(start: date, days: int, exchanges: list[str]) -> bool:
    import dagster as dg

    from market_data_assets.defs import build_definitions
    from market_data_assets.partitions import partition_key

    defs = build_definitions()  # settings read now, from the variables main() set

    instance = dg.DagsterInstance.get()
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    plan = [("ingest_job", start + timedelta(days=i), ex) for i in range(days + 1) for ex in exchanges]
    plan += [("process_job", start + timedelta(days=i), ex) for i in range(days) for ex in exchanges]
    all_ok = True
    for n, (job_name, day, exchange) in enumerate(plan, 1):
        job = defs.resolve_job_def(job_name)
        t0 = time.perf_counter()
        result = job.execute_in_process(
            partition_key=partition_key(day, exchange),
            instance=instance,
            run_config=quiet,
            raise_on_error=False,
        )
        status = "ok" if result.success else "FAILED"
        all_ok &= result.success
        print(
            f"  [{n:>2}/{len(plan)}] {job_name:<12} {day}|{exchange:<16} {status:<6} {time.perf_counter() - t0:5.1f} s  run {result.run_id[:8]}"
        )
        if not result.success:
            for event in result.all_events:
                if event.is_failure and event.step_key:
                    print(f"      {event.step_key}: {event.message}")
    return all_ok


def _summary(root: Path, start: date, days: int, exchanges: list[str]) -> None:
    import polars as pl

    from market_data_assets.quality.missing import GAP_STATUSES, report_for_range
    from market_data_assets.storage import layout
    from market_data_assets.storage.local import LocalStore

    store = LocalStore(root)
    print("\nwhat the lake holds:")
    for area in layout.AREAS:
        objects = store.list(area + "/")
        print(f"  {area:<26} {len(objects):>6} files {sum(o.size for o in objects) / 1e6:>9.2f} MB")

    from market_data_assets.settings import Settings
    from market_data_assets.warehouse import WAREHOUSE_TABLES, open_warehouse
    from market_data_assets.warehouse.schema import FEATURE_TABLES

    warehouse = open_warehouse(Settings.from_env(), store)
    print(f"\nwarehouse {warehouse.uri}:")
    days_range = [start + timedelta(days=i) for i in range(days)]
    for table in [*WAREHOUSE_TABLES, *FEATURE_TABLES]:
        rows = sum(warehouse.count(table, d, ex) for d in days_range for ex in exchanges)
        print(f"  {table:<26} {rows:>9,} rows")
    warehouse.close()

    report = report_for_range(store, start, start + timedelta(days=days - 1), exchanges)
    gaps = report.filter(pl.col("status").is_in(GAP_STATUSES))
    print(f"\nmissing-data report: {report.height} expected raw files, {gaps.height} gaps")
    if gaps.height:
        with pl.Config(tbl_rows=20, fmt_str_lengths=60):
            print(gaps.group_by("exchange", "status").len().sort("exchange", "status"))

    candle_files = store.list(f"{layout.candles_dir(start, '1h')}/")
    if candle_files:
        preview = pl.read_parquet(store.uri(candle_files[0].path)).select(
            "instrument_key", "timestamp", "open", "high", "low", "close", "volume", "trade_count", "vwap"
        )
        with pl.Config(tbl_rows=6, tbl_cols=-1, tbl_width_chars=160):
            print(f"\na candle preview ({candle_files[0].path}):")
            print(preview.head(6))

    _features_preview(store, start + timedelta(days=days - 1), exchanges)


def _features_preview(store, day: date, exchanges: list[str]) -> None:
    """A few MFT feature rows of the last day (its windows reach into the day before)."""
    import polars as pl

    from market_data_assets.features.registry import FEATURE_NAMES
    from market_data_assets.storage import layout

    files = [
        f
        for f in store.list(f"{layout.features_dir(day, '1h')}/")
        if f.path.endswith(".parquet") and layout.venue_of_key(layout.key_from_file_name(f.path)) in exchanges
    ]
    perp = next((f for f in files if ":PERP:" in f.path), files[0] if files else None)
    if perp is None:
        return
    frame = pl.read_parquet(store.uri(perp.path)).select("timestamp", "available_at", *FEATURE_NAMES)
    with pl.Config(tbl_rows=8, tbl_cols=-1, tbl_width_chars=220, float_precision=6):
        print(f"\nMFT features at 1h ({perp.path}; docs/FEATURES.md):")
        print(frame.head(6))
