"""The sandbox's aiohttp application: Tardis's URL scheme, JSON shapes, auth rule and error bodies.

Routes (all under ``/v1``, the same base serving as TARDIS_API_URL and TARDIS_DATASETS_URL):
- ``GET /v1/exchanges``, ``GET /v1/exchanges/{exchange}`` (free)
- ``GET /v1/instruments/{exchange}[?filter=<json>]``, ``GET /v1/instruments/{exchange}/{symbol}``
  (key required except for bitmex)
- ``GET /v1/{exchange}/{data_type}/{YYYY}/{MM}/{DD}/{symbol}.csv.gz`` (first day of a month free)
Control routes under ``/_sandbox`` (never logged, never faulted): ``POST/DELETE /_sandbox/faults``,
``GET/DELETE /_sandbox/requests``, ``POST /_sandbox/exported-until``, ``GET /_sandbox/config``.

Day rules of the datasets route: a day on or after ``exportedUntil`` is 404 (not exported yet);
any other day without data for the symbol (before listing, after delisting, inside an incident,
before the exchange's history) is HTTP 200 with an empty gzip body.
"""

from __future__ import annotations

import asyncio
import gzip
import hmac
import json
import socket
import struct
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from aiohttp import web

from market_data_assets.tardis.formats import DATA_TYPES
from market_data_assets.tardis.sandbox.config import SandboxConfig
from market_data_assets.tardis.sandbox.exchanges import (
    FREE_INSTRUMENTS_EXCHANGES,
    exchange_info,
    incidents,
    iso,
)
from market_data_assets.tardis.sandbox.faults import FaultInjector, FaultRule, RequestRecord
from market_data_assets.tardis.sandbox.instruments import SymbolGroup
from market_data_assets.tardis.sandbox.market import SandboxNotFound, generate_csv
from market_data_assets.tardis.sandbox.universe import (
    ExchangeUniverse,
    exchange_universe,
    gc_paused,
    known_exchange,
)

EMPTY_GZIP = gzip.compress(b"", mtime=0)
_GZIP_LEVEL = 1
"""Level 1 compresses 6x faster than the default 6 for files ~17% larger: the sandbox's time goes
into serving, and clients only need a valid gzip stream (mtime=0 keeps the bytes reproducible)."""


class ByteLru:
    """A thread-safe LRU of response bodies bounded by their total size (the large Deribit
    details are ~100 MB each; a sensor test moving exportedUntil day by day must not pile them up)."""

    def __init__(self, max_bytes: int) -> None:
        self._max_bytes = max_bytes
        self._items: OrderedDict[tuple[object, ...], bytes] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, key: tuple[object, ...]) -> bytes | None:
        with self._lock:
            body = self._items.get(key)
            if body is not None:
                self._items.move_to_end(key)
            return body

    def put(self, key: tuple[object, ...], body: bytes) -> None:
        with self._lock:
            old = self._items.pop(key, None)
            self._size -= len(old) if old is not None else 0
            self._items[key] = body
            self._size += len(body)
            while self._size > self._max_bytes and len(self._items) > 1:
                _, evicted = self._items.popitem(last=False)
                self._size -= len(evicted)


@dataclass
class SandboxState:
    """Everything a running sandbox shares between its HTTP handlers and the controlling thread."""

    config: SandboxConfig
    exported_until: date
    faults: FaultInjector
    _bodies: ByteLru = field(default_factory=lambda: ByteLru(256 * 1024 * 1024))
    _json: ByteLru = field(default_factory=lambda: ByteLru(512 * 1024 * 1024))

    def universe(self, exchange: str) -> ExchangeUniverse:
        c = self.config
        return exchange_universe(c.seed, c.large_deribit, exchange, self.exported_until)

    def gzip_body(self, exchange: str, data_type: str, day: date, symbol: str) -> bytes:
        """The gzip bytes of one daily file (mtime=0: byte-identical on every call), cached."""
        key = (exchange, data_type, day.isoformat(), symbol)
        body = self._bodies.get(key)
        if body is None:
            csv = generate_csv(self.config, exchange, data_type, day, symbol)
            body = gzip.compress(csv, compresslevel=_GZIP_LEVEL, mtime=0) if csv else EMPTY_GZIP
            self._bodies.put(key, body)
        return body

    def cached_json(self, key: tuple[object, ...], build: Callable[[], object]) -> bytes:
        """``build()`` serialized once per key (keys include exportedUntil where it matters)."""
        body = self._json.get(key)
        if body is None:
            with gc_paused():
                body = json.dumps(build(), separators=(",", ":")).encode()
            self._json.put(key, body)
        return body


STATE: web.AppKey[SandboxState] = web.AppKey("sandbox_state", SandboxState)


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"code": status, "message": message}, status=status, headers=headers)


def _authorized(state: SandboxState, request: web.Request) -> bool:
    expected = state.config.api_key
    if expected is None:
        return True
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), expected.encode())


def _json(body: bytes) -> web.Response:
    return web.Response(body=body, content_type="application/json")


async def _in_thread(func: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.get_running_loop().run_in_executor(None, func, *args)


# ----------------------------------------------------------------------------------------------
# metadata API


def _exchange_summary(exchange: str) -> dict[str, object]:
    info = exchange_info(exchange)
    return {
        "id": info.id,
        "name": info.name,
        "enabled": True,
        "supportsDatasets": True,
        "availableSince": iso(info.available_since),
        "availableChannels": list(info.channels),
    }


async def exchanges(request: web.Request) -> web.Response:
    state = request.app[STATE]
    return web.json_response([_exchange_summary(e) for e in state.config.exchanges])


def _details(state: SandboxState, exchange: str) -> dict[str, object]:
    uni = state.universe(exchange)
    info = exchange_info(exchange)
    available_symbols: list[dict[str, object]] = []
    for inst in uni.instruments:
        entry: dict[str, object] = {
            "id": inst.id,
            "type": inst.type,
            "availableSince": iso(inst.available_since),
        }
        if inst.available_to is not None:
            entry["availableTo"] = iso(inst.available_to)
        available_symbols.append(entry)
    days = max(1, (state.exported_until - info.available_since).days)
    per_day = state.config.trades_per_day * max(1, len(uni.instruments))
    return {
        **{k: v for k, v in _exchange_summary(exchange).items() if k != "supportsDatasets"},
        "availableSymbols": available_symbols,
        "incidentReports": [i.as_json() for i in incidents(exchange)],
        "datasets": {
            "formats": ["csv"],
            "exportedFrom": iso(info.available_since),
            "exportedUntil": iso(state.exported_until),
            "stats": {"trades": per_day * days, "bookChanges": per_day * days * 10},
            "symbols": [g.symbol_entry() for g in uni.groups] + [i.symbol_entry() for i in uni.instruments],
        },
    }


async def exchange_details(request: web.Request) -> web.Response:
    state = request.app[STATE]
    exchange = request.match_info["exchange"]
    if not known_exchange(state.config, exchange):
        return _error(404, f"Invalid 'exchange' param provided: '{exchange}'")
    key = ("details", exchange, state.exported_until)
    body = await _in_thread(state.cached_json, key, lambda: _details(state, exchange))
    return _json(body)


def _matches(item: dict[str, object], wanted: dict[str, object]) -> bool:
    for name, value in wanted.items():
        have = item.get(name)
        if isinstance(value, list):
            if have not in value:
                return False
        elif have != value:
            return False
    return True


async def instruments(request: web.Request) -> web.Response:
    state = request.app[STATE]
    exchange = request.match_info["exchange"]
    if not known_exchange(state.config, exchange):
        return _error(404, f"Invalid 'exchange' param provided: '{exchange}'")
    if exchange not in FREE_INSTRUMENTS_EXCHANGES and not _authorized(state, request):
        return _error(401, "Instruments metadata API requires a valid API key (Authorization: Bearer KEY)")
    raw_filter = request.query.get("filter")
    wanted: dict[str, object] = {}
    if raw_filter:
        try:
            wanted = json.loads(raw_filter)
        except json.JSONDecodeError as exc:
            return _error(400, f"Invalid 'filter' param: not JSON ({exc.msg})")
        if not isinstance(wanted, dict):
            return _error(400, "Invalid 'filter' param: expected a JSON object")
    until = state.exported_until

    def build() -> list[dict[str, object]]:
        items = [i.metadata(until) for i in state.universe(exchange).instruments]
        return [i for i in items if _matches(i, wanted)] if wanted else items

    if wanted:
        body = await _in_thread(lambda: json.dumps(build(), separators=(",", ":")).encode())
    else:
        body = await _in_thread(state.cached_json, ("instruments", exchange, until), build)
    return _json(body)


async def instrument(request: web.Request) -> web.Response:
    state = request.app[STATE]
    exchange = request.match_info["exchange"]
    symbol = request.match_info["symbol"]
    if not known_exchange(state.config, exchange):
        return _error(404, f"Invalid 'exchange' param provided: '{exchange}'")
    if exchange not in FREE_INSTRUMENTS_EXCHANGES and not _authorized(state, request):
        return _error(401, "Instruments metadata API requires a valid API key (Authorization: Bearer KEY)")
    uni = await _in_thread(state.universe, exchange)  # first build of a large universe takes a while
    inst = uni.by_id.get(symbol)
    if inst is None:
        found = uni.by_dataset_id.get(symbol)
        inst = None if isinstance(found, SymbolGroup) else found
    if inst is None:
        return _error(404, f"Unknown instrument '{symbol}' for exchange '{exchange}'")
    return web.json_response(inst.metadata(state.exported_until))


# ----------------------------------------------------------------------------------------------
# datasets


async def dataset(request: web.Request) -> web.Response:
    state = request.app[STATE]
    m = request.match_info
    exchange, data_type, symbol = m["exchange"], m["data_type"], m["symbol"]
    if not known_exchange(state.config, exchange):
        return _error(404, f"Invalid 'exchange' param provided: '{exchange}'")
    if data_type not in DATA_TYPES:
        return _error(404, f"Invalid 'dataType' param provided: '{data_type}'")
    try:
        day = date(int(m["year"]), int(m["month"]), int(m["day"]))
    except ValueError:
        return _error(400, f"Invalid date in path: {m['year']}-{m['month']}-{m['day']}")
    if day.day != 1 and not _authorized(state, request):
        return _error(
            401,
            "Valid API key is required to access this dataset (only the first day of each month is free)",
        )
    if day >= state.exported_until:
        return _error(
            404,
            f"{exchange} data for {day.isoformat()} is not exported yet "
            f"(exportedUntil {iso(state.exported_until)})",
        )
    target = (await _in_thread(state.universe, exchange)).by_dataset_id.get(symbol)
    if target is None:
        return _error(404, f"Invalid 'symbol' param provided: '{symbol}' is not a {exchange} dataset symbol")
    if data_type not in target.data_types:
        return _error(
            404,
            f"Data type '{data_type}' is not available for {exchange} {symbol}; "
            f"available: {', '.join(target.data_types)}",
        )
    try:
        body = await _in_thread(state.gzip_body, exchange, data_type, day, symbol)
    except SandboxNotFound as exc:
        return _error(404, str(exc))
    return web.Response(body=body, content_type="application/gzip")


# ----------------------------------------------------------------------------------------------
# fault injection + request log


def _record(state: SandboxState, request: web.Request, status: int, fault: str | None) -> None:
    state.faults.record(
        RequestRecord(
            method=request.method,
            path=request.path,
            status=status,
            had_auth="Authorization" in request.headers,
            query=request.query_string,
            fault=fault,
        )
    )


def _reset(request: web.Request) -> None:
    """Drop the connection with a TCP RST (SO_LINGER 0), as a crashed proxy or peer would."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


async def _stream(request: web.Request, response: web.Response, rule: FaultRule) -> web.StreamResponse:
    """Deliver ``response`` with a fault: ``reset`` sends the headers then resets the connection,
    ``truncate`` sends half the body then closes, ``slow`` trickles the body over ``delay``."""
    body = bytes(response.body or b"")  # type: ignore[arg-type]
    stream = web.StreamResponse(status=response.status, headers=response.headers)
    stream.content_length = len(body)
    await stream.prepare(request)
    if rule.kind == "reset":  # aiohttp may still hold the headers: the client sees a reset either way
        _reset(request)
        return stream
    if rule.kind == "truncate":
        await stream.write(body[: max(1, len(body) // 2)] if body else b"")  # write() drains
        if request.transport is not None:
            request.transport.abort()
        return stream
    pieces = 10
    step = max(1, -(-len(body) // pieces))
    for start in range(0, max(len(body), 1), step):
        await asyncio.sleep(rule.delay / pieces)
        await stream.write(body[start : start + step])
    await stream.write_eof()
    return stream


def _seconds_text(seconds: float) -> str:
    """``3`` for whole seconds (Tardis's form), ``0.25`` otherwise; never an exponent."""
    return str(int(seconds)) if float(seconds).is_integer() else f"{seconds:.6f}".rstrip("0")


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def fault_and_log_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    state = request.app[STATE]
    if request.path.startswith("/_sandbox/"):
        return await handler(request)
    rule = state.faults.pick(request.path)
    if rule is not None and rule.kind in ("429", "500", "503"):
        # Tardis sends whole seconds (what tardis-dev parses); a fractional value is a sandbox
        # extension that keeps retry tests fast and is written as a plain decimal ("0.1").
        headers = {"Retry-After": _seconds_text(rule.retry_after)} if rule.http_status == 429 else None
        _record(state, request, rule.http_status, rule.kind)
        return _error(rule.http_status, f"sandbox fault injected: {rule.kind}", headers)
    response = await handler(request)
    _record(
        state,
        request,
        0 if rule is not None and rule.kind == "reset" else response.status,
        rule and rule.kind,
    )
    if rule is not None and isinstance(response, web.Response):
        return await _stream(request, response, rule)
    return response


# ----------------------------------------------------------------------------------------------
# control routes


async def add_faults(request: web.Request) -> web.Response:
    state = request.app[STATE]
    try:
        payload = await request.json()
        items = payload if isinstance(payload, list) else [payload]
        rules = [FaultRule(**item) for item in items]
    except (ValueError, TypeError) as exc:
        return _error(400, f"bad fault spec: {exc}")
    for rule in rules:
        state.faults.add(rule)
    return web.json_response({"added": len(rules)}, status=201)


async def clear_faults(request: web.Request) -> web.Response:
    request.app[STATE].faults.clear()
    return web.Response(status=204)


async def list_requests(request: web.Request) -> web.Response:
    return web.json_response([r.as_json() for r in request.app[STATE].faults.snapshot()])


async def clear_requests(request: web.Request) -> web.Response:
    request.app[STATE].faults.clear_requests()
    return web.Response(status=204)


async def set_exported_until(request: web.Request) -> web.Response:
    state = request.app[STATE]
    try:
        payload = await request.json()
        value = str(payload["exportedUntil"])[:10]
        state.exported_until = date.fromisoformat(value)
    except (ValueError, KeyError, TypeError) as exc:
        return _error(400, f'expected {{"exportedUntil": "YYYY-MM-DD"}}: {exc}')
    return web.json_response({"exportedUntil": iso(state.exported_until)})


async def show_config(request: web.Request) -> web.Response:
    state = request.app[STATE]
    c = state.config
    return web.json_response(
        {
            "seed": c.seed,
            "tradesPerDay": c.trades_per_day,
            "auth": c.api_key is not None,
            "largeDeribit": c.large_deribit,
            "exportedUntil": iso(state.exported_until),
            "exchanges": list(c.exchanges),
        }
    )


def build_app(state: SandboxState) -> web.Application:
    app = web.Application(middlewares=[fault_and_log_middleware])
    app[STATE] = state
    app.router.add_get("/v1/exchanges", exchanges)
    app.router.add_get("/v1/exchanges/{exchange}", exchange_details)
    app.router.add_get("/v1/instruments/{exchange}", instruments)
    app.router.add_get("/v1/instruments/{exchange}/{symbol}", instrument)
    app.router.add_get(
        "/v1/{exchange}/{data_type}/{year:[0-9]+}/{month:[0-9]+}/{day:[0-9]+}/{symbol}.csv.gz", dataset
    )
    app.router.add_post("/_sandbox/faults", add_faults)
    app.router.add_delete("/_sandbox/faults", clear_faults)
    app.router.add_get("/_sandbox/requests", list_requests)
    app.router.add_delete("/_sandbox/requests", clear_requests)
    app.router.add_post("/_sandbox/exported-until", set_exported_until)
    app.router.add_get("/_sandbox/config", show_config)
    return app
