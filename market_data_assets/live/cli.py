"""``market-data live``: stream one exchange's candles into the warehouse and the lake until stopped."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from market_data_assets.live.messages import DEFAULT_DATA_TYPES

    parser.add_argument("--exchange", required=True, help="Tardis exchange id, e.g. binance-futures")
    parser.add_argument("--symbols", required=True, help="comma-separated symbols, e.g. BTCUSDT,ETHUSDT")
    parser.add_argument(
        "--data-types",
        default=",".join(DEFAULT_DATA_TYPES),
        help="tardis-machine dataTypes (default %(default)s; candles read trade, book_snapshot_*, "
        "derivative_ticker, liquidation; with book_change and no book_snapshot_*, the books are "
        "replayed from the changes, docs/LIVE.md)",
    )
    parser.add_argument(
        "--until", default=None, help="stop once the stream's exchange time reaches this ISO time"
    )
    parser.add_argument("--health-port", type=int, default=8002, help="/healthz port on 127.0.0.1 (0 = any)")
    parser.add_argument(
        "--stall-timeout", type=float, default=10.0, help="seconds without a message = a stall gap"
    )
    parser.add_argument(
        "--backoff", type=float, default=0.5, help="first reconnect delay in seconds (doubles)"
    )
    parser.add_argument("--no-warehouse", action="store_true", help="write the lake only")


def run(args: argparse.Namespace) -> int:
    import asyncio
    import logging

    from market_data_assets.candles.density import DensityPolicy
    from market_data_assets.live.service import LiveConfig, LiveService, new_writer_id, resolve_keys
    from market_data_assets.live.sinks import LiveSink
    from market_data_assets.sandbox.stream import parse_live_start
    from market_data_assets.settings import Settings, SettingsError
    from market_data_assets.storage import open_store
    from market_data_assets.warehouse import open_warehouse

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"market-data live: {exc}")
        return 2
    symbols = tuple(s.strip().upper() for s in args.symbols.split(",") if s.strip())
    if not symbols:
        print("market-data live: --symbols lists no symbol")
        return 2
    try:
        until = parse_live_start(args.until) if args.until else None
    except ValueError as exc:
        print(f"market-data live: --until {args.until!r}: {exc}")
        return 2
    import aiohttp

    try:
        keys = asyncio.run(resolve_keys(settings.tardis_api_url, args.exchange, symbols))
    except (aiohttp.ClientError, OSError, RuntimeError, ValueError) as exc:
        print(
            f"market-data live: cannot resolve the symbols' keys from TARDIS_API_URL={settings.tardis_api_url}: {exc}"
        )
        return 2
    store = open_store(settings.root)
    warehouse = None if args.no_warehouse else open_warehouse(settings, store)
    sink = LiveSink(store, warehouse, args.exchange, new_writer_id())
    config = LiveConfig(
        ws_url=settings.tardis_machine_ws_url,
        exchange=args.exchange,
        symbols=symbols,
        keys=keys,
        data_types=tuple(d.strip() for d in args.data_types.split(",") if d.strip()),
        until_us=until,
        lateness_us=int(settings.live_lateness_s * 1_000_000),
        policy=DensityPolicy(frozenset(settings.sparse_candle_types)),
        stall_timeout_s=args.stall_timeout,
        backoff_initial_s=args.backoff,
        health_port=args.health_port,
    )
    stats = asyncio.run(LiveService(config, sink).run())
    print(f"market-data live: {stats.messages} messages, {stats.connections} connection(s); stopped")
    return 0
