"""Benchmark: instrument definitions for a Deribit-sized universe (>= 300K option symbols).

Project: ``build_instrument_definitions`` (vectorized polars over the parsed JSON), with and without
instruments metadata, plus ``select_targets`` with the bundled targets file.
Peer: pandas 2.x written the usual way on the same parsed JSON: ``pd.json_normalize`` for the
records, then a row-wise ``DataFrame.apply`` building each key and a Python loop applying
``changes`` -- the same rules (availability, changes, keys, collisions over the universe). The
script checks that both produce the same keys for the day before printing times and the ratio.

Input: the bundled sandbox with ``SandboxConfig(large_deribit=True)`` (~300K Deribit options),
served from a child process (so its CPU does not share our GIL) and fetched over real HTTP with
``TardisClient``; the end-to-end figure is fetch + build + Parquet write. ``--synthetic`` (or a
sandbox that cannot be imported) switches to a generated 300K-option list, without HTTP.

Figures: best of ``--repeat`` runs, wall time and CPU time of this process (the CPU figure is the
one to read on a busy machine).

    .venv/bin/python benchmarks/bench_instruments.py [--day 2024-06-03] [--repeat 3] [--synthetic]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Callable
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
from sandbox_process import sandbox_process

from market_data_assets.instruments import build_instrument_definitions, load_targets_config, select_targets
from market_data_assets.settings import Settings

API_KEY = "bench-key"
EXCHANGE = "deribit"

# --- input -----------------------------------------------------------------------------------------


async def _fetch(urls: dict[str, str]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    from market_data_assets.tardis.client import TardisClient

    async with TardisClient(urls["api_url"], urls["datasets_url"], API_KEY) as client:
        return await client.exchange_details(EXCHANGE), await client.instruments(EXCHANGE)


def synthetic_universe(day: date, n_options: int = 300_000) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Deribit-shaped metadata and exchange details: one expiry per day (BTC and ETH, 75 strikes,
    calls and puts, each listed 30 days ahead) ending two weeks after ``day``."""
    instruments: list[dict[str, Any]] = []
    symbols: list[dict[str, Any]] = []
    expiry = day + timedelta(days=14) - timedelta(days=n_options // 300)
    while len(instruments) < n_options:
        for base, first in (("BTC", 5000), ("ETH", 100)):
            for k in range(75):
                strike = first + k * (500 if base == "BTC" else 10)
                for cp in ("C", "P"):
                    ident = f"{base}-{expiry.day}{expiry.strftime('%b%y').upper()}-{strike}-{cp}"
                    since = (expiry - timedelta(days=30)).isoformat() + "T00:00:00.000Z"
                    until = expiry.isoformat() + "T08:00:00.000Z"
                    instruments.append(
                        {
                            "id": ident, "datasetId": ident, "exchange": EXCHANGE, "baseCurrency": base,
                            "quoteCurrency": base, "type": "option", "active": False, "availableSince": since,
                            "availableTo": until, "listing": since, "expiry": until, "priceIncrement": 0.0001,
                            "amountIncrement": 0.1, "minTradeAmount": 0.1, "makerFee": 0.0003, "takerFee": 0.0003,
                            "inverse": True, "contractType": "call_option" if cp == "C" else "put_option",
                            "contractMultiplier": 1, "strikePrice": strike, "optionType": "call" if cp == "C" else "put",
                        }
                    )  # fmt: skip
                    symbols.append(
                        {"id": ident, "type": "option", "availableSince": since, "availableTo": until,
                         "dataTypes": ["trades", "quotes", "book_snapshot_5"]}
                    )  # fmt: skip
        expiry += timedelta(days=1)
    symbols.append(
        {"id": "OPTIONS", "type": "option", "availableSince": "2019-03-30T00:00:00.000Z",
         "dataTypes": ["trades", "quotes", "options_chain"]}
    )  # fmt: skip
    return {"id": EXCHANGE, "datasets": {"symbols": symbols}}, instruments


# --- the peer ----------------------------------------------------------------------------------------


def peer_pandas(
    exchange: str, day: date, details: dict[str, Any], instruments: list[dict[str, Any]]
) -> pd.DataFrame:
    """The straightforward pandas version of build_instrument_definitions (same rules, row-wise)."""
    df = pd.json_normalize(instruments, max_level=0)
    for col in ("availableSince", "availableTo", "listing", "expiry"):
        df[col] = pd.to_datetime(df.get(col), utc=True, errors="coerce")
    types = {
        "spot": "SPOT_PAIR",
        "perpetual": "PERP",
        "future": "FUTURE",
        "option": "OPTION",
        "combo": "COMBO",
    }

    def strike_text(x: float) -> str:
        return str(int(x)) if x == int(x) else repr(x)

    def key(row: pd.Series) -> str:
        base, quote = str(row["baseCurrency"]).upper(), str(row["quoteCurrency"]).upper()
        if row["type"] != "spot" and quote == base:
            quote = "USD"
        symbol = f"{base}-{quote}"
        if row["type"] in ("future", "option"):
            yymmdd = row["expiry"].strftime("%y%m%d")
            if row["type"] == "option":
                symbol += (
                    f"-{strike_text(float(row['strikePrice']))}-{yymmdd}-{str(row['optionType']).upper()}"
                )
            else:
                symbol += f"-{yymmdd}"
        return f"{exchange.upper()}:{types[row['type']]}:{symbol}"

    df["instrument_key"] = df.apply(key, axis=1)
    df = df.sort_values(["instrument_key", "availableSince", "id"])
    rank = df.groupby("instrument_key").cumcount()
    df.loc[rank > 0, "instrument_key"] = df["instrument_key"] + "." + (rank + 1).astype(str)
    start = pd.Timestamp(day, tz="UTC")
    end = start + pd.Timedelta(days=1)
    listed = df[
        (df["availableSince"] < end)
        & (df["availableTo"].isna() | (df["availableTo"] > start))
        & (df["expiry"].isna() | (df["expiry"] > start))
        & (df["listing"].isna() | (df["listing"] < end))
    ].copy()
    if "changes" in listed:
        for idx, changes in listed["changes"].dropna().items():
            for field in ("priceIncrement", "amountIncrement", "minTradeAmount", "makerFee", "takerFee"):
                for change in sorted(changes, key=lambda c: c["until"]):
                    if pd.Timestamp(change["until"]) > start and field in change:
                        listed.at[idx, field] = float(change[field])
                        break
    data_types = {s["id"]: s.get("dataTypes", []) for s in details["datasets"]["symbols"]}
    listed["data_types"] = listed["id"].map(lambda s: data_types.get(s, []))
    return listed


# --- timing ---------------------------------------------------------------------------------------------


def best_of(repeat: int, fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """(best wall seconds, best CPU seconds, last result)."""
    walls, cpus, result = [], [], None
    for _ in range(repeat):
        w, c = time.perf_counter(), time.process_time()
        result = fn()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return min(walls), min(cpus), result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--day", type=date.fromisoformat, default=date(2024, 6, 3))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--synthetic", action="store_true", help="generated 300K options, no sandbox/HTTP")
    args = parser.parse_args()

    fetch_s: float | None = None
    if args.synthetic:
        details, instruments = synthetic_universe(args.day)
        source = "synthetic generator (--synthetic)"
    else:
        with sandbox_process(large_deribit=True, api_key=API_KEY) as urls:
            asyncio.run(_fetch(urls))  # warm-up: the sandbox builds its universe once
            t = time.perf_counter()
            details, instruments = asyncio.run(_fetch(urls))
            fetch_s = time.perf_counter() - t
        source = "sandbox over HTTP (SandboxConfig(large_deribit=True))"

    n_options = sum(1 for i in instruments if i.get("type") == "option")
    print(f"input: {source}: {len(instruments):,} instruments ({n_options:,} options), day {args.day}")
    if fetch_s is not None:
        print(f"  fetch exchange details + instruments over HTTP: {fetch_s:.2f} s")

    wall, cpu, ours = best_of(
        args.repeat, lambda: build_instrument_definitions(EXCHANGE, args.day, details, instruments)
    )
    wall_np, cpu_np, parsed = best_of(
        args.repeat, lambda: build_instrument_definitions(EXCHANGE, args.day, details, None)
    )
    config = load_targets_config(Settings.from_env({}).targets_file)
    wall_t, cpu_t, targets = best_of(
        args.repeat, lambda: select_targets(ours, details, config, EXCHANGE, args.day)
    )
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        ours.write_parquet(Path(tmp) / "instruments.parquet")
        targets.write_parquet(Path(tmp) / "targets.parquet")
        write_s = time.perf_counter() - t
    wall_peer, cpu_peer, theirs = best_of(1, lambda: peer_pandas(EXCHANGE, args.day, details, instruments))

    same = sorted(ours["instrument_key"].to_list()) == sorted(theirs["instrument_key"].to_list())
    same_parse = sorted(parsed["instrument_key"].to_list()) == sorted(ours["instrument_key"].to_list())
    print(f"listed on the day: {ours.height:,} instruments; targets: {targets.height:,} rows")
    print(f"keys equal to the peer's: {same}; keys from symbol parsing equal to metadata keys: {same_parse}")
    print(
        f"project build_instrument_definitions (metadata)   : wall {wall:6.2f} s  cpu {cpu:6.2f} s  (bar: <= 2 s)"
    )
    print(f"project build_instrument_definitions (no metadata): wall {wall_np:6.2f} s  cpu {cpu_np:6.2f} s")
    print(f"project select_targets                 : wall {wall_t:6.2f} s  cpu {cpu_t:6.2f} s")
    print(f"project Parquet write (defs + targets) : wall {write_s:6.2f} s")
    if fetch_s is not None:
        print(f"project end-to-end fetch+build+targets+write: {fetch_s + wall + wall_t + write_s:6.2f} s")
    print(f"peer pandas json_normalize + row apply : wall {wall_peer:6.2f} s  cpu {cpu_peer:6.2f} s")
    print(f"ratio peer/project: wall {wall_peer / wall:5.1f}x  cpu {cpu_peer / cpu:5.1f}x")
    if not same:
        raise SystemExit("project and peer disagree on the day's keys")


if __name__ == "__main__":
    started = datetime.now()
    main()
