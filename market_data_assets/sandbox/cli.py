"""``market-data sandbox``: serve the Tardis-compatible sandbox until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import contextlib
import signal
import threading
from datetime import date

from market_data_assets.sandbox.config import SandboxConfig
from market_data_assets.sandbox.server import start_sandbox
from market_data_assets.sandbox.stream import STREAM_FAULT_KINDS, StreamFault, parse_live_start


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = SandboxConfig()
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (0 = any free port)")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="market seed (default %(default)s)")
    parser.add_argument(
        "--trades-per-day",
        type=int,
        default=defaults.trades_per_day,
        help="trades per instrument-day, the size knob (default %(default)s)",
    )
    auth = parser.add_mutually_exclusive_group()
    auth.add_argument("--api-key", default=defaults.api_key, help="the key the sandbox accepts")
    auth.add_argument("--no-auth", action="store_true", help="serve every route without a key")
    parser.add_argument("--large-deribit", action="store_true", help="~300K Deribit option symbols")
    parser.add_argument(
        "--exported-until",
        type=date.fromisoformat,
        default=defaults.exported_until,
        help="datasets.exportedUntil, YYYY-MM-DD (default %(default)s)",
    )
    parser.add_argument(
        "--exchanges",
        default=",".join(defaults.exchanges),
        help="comma-separated exchanges to serve (default %(default)s)",
    )
    parser.add_argument(
        "--live-start",
        default=None,
        help="ISO time the live stream (/ws-stream-normalized) starts at, e.g. 2024-03-01T00:00:00Z "
        "(default: now); the clock starts at the first WebSocket connection",
    )
    parser.add_argument(
        "--live-speed",
        type=float,
        default=1.0,
        help="live stream speed vs the wall clock (3600 = a day in 24 s; 0 = as fast as the client reads)",
    )
    parser.add_argument(
        "--stream-fault",
        action="append",
        default=[],
        metavar="KIND@AFTER[:SECONDS]",
        help=f"a live-stream fault after AFTER messages ({', '.join(STREAM_FAULT_KINDS)}); repeatable",
    )


def config_from_args(args: argparse.Namespace) -> SandboxConfig:
    return SandboxConfig(
        seed=args.seed,
        trades_per_day=args.trades_per_day,
        api_key=None if args.no_auth else args.api_key,
        large_deribit=args.large_deribit,
        exported_until=args.exported_until,
        exchanges=tuple(e.strip() for e in args.exchanges.split(",") if e.strip()),
    )


def run(args: argparse.Namespace) -> int:
    try:
        config = config_from_args(args)
    except ValueError as exc:
        print(f"market-data sandbox: {exc}")
        return 2
    try:
        live_start = parse_live_start(args.live_start) if args.live_start else None
        faults = tuple(StreamFault.parse(f) for f in args.stream_fault)
    except ValueError as exc:
        print(f"market-data sandbox: {exc}")
        return 2
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    sandbox = start_sandbox(
        config,
        port=args.port,
        host=args.host,
        live_start_us=live_start,
        live_speed=args.live_speed,
        stream_faults=faults,
    )
    try:
        print(f"Tardis sandbox listening on {sandbox.url}  ({config!r})")
        print("Use it with:")
        print(f"  export TARDIS_API_URL={sandbox.api_url}")
        print(f"  export TARDIS_DATASETS_URL={sandbox.datasets_url}")
        if config.api_key is not None:
            print(f"  export TARDIS_API_KEY={config.api_key}   # the sandbox's own key, not a secret")
        else:
            print("  unset TARDIS_API_KEY   # --no-auth: every route is free")
        print(f"  export TARDIS_MACHINE_WS_URL={sandbox.ws_url}   # live stream for market-data live")
        print(f"TARDIS_MACHINE_WS_URL={sandbox.ws_url}")
        print("Ctrl-C or SIGTERM stops it.", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()
    finally:
        sandbox.stop()
        signal.signal(signal.SIGTERM, previous)
    print("sandbox stopped")
    return 0
