"""The sandbox's aiohttp application: Tardis's URL scheme, JSON shapes, auth rule and error bodies.

Routes (all under ``/v1``, the same base serving as TARDIS_API_URL and TARDIS_DATASETS_URL):
- ``GET /v1/exchanges``, ``GET /v1/exchanges/{exchange}`` (free)
- ``GET /v1/instruments/{exchange}[?filter=<json>]``, ``GET /v1/instruments/{exchange}/{symbol}``
  (key required except for bitmex)
- ``GET /v1/{exchange}/{data_type}/{YYYY}/{MM}/{DD}/{symbol}.csv.gz`` (first day of a month free)
Control routes under ``/_sandbox`` (never logged, never faulted): ``POST/DELETE /_sandbox/faults``,
``GET/DELETE /_sandbox/requests``, ``POST /_sandbox/exported-until``, ``GET /_sandbox/config``.
Live: ``GET /ws-stream-normalized?options=...`` (tardis-machine's real-time stream, ``stream.py``;
never logged or faulted by the HTTP rules, it has its own ``StreamFault``s).

Day rules of the datasets route: a day on or after ``exportedUntil`` is 404 (not exported yet);
any other day without data for the symbol (before listing, after delisting, inside an incident,
before the exchange's history) is HTTP 200 with an empty gzip body.
"""

from __future__ import annotations

import json
from datetime import date

from aiohttp import web

from market_data_assets.sandbox.control_routes import (
    add_faults,
    clear_faults,
    clear_requests,
    fault_and_log_middleware,
    list_requests,
    set_exported_until,
    show_config,
)
from market_data_assets.sandbox.exchanges import (
    FREE_INSTRUMENTS_EXCHANGES,
    exchange_info,
    incidents,
    iso,
)
from market_data_assets.sandbox.instruments import SymbolGroup
from market_data_assets.sandbox.market import SandboxNotFound
from market_data_assets.sandbox.state import (
    STATE,
    SandboxState,
    authorized,
    error_response,
    in_thread,
    json_body,
)
from market_data_assets.sandbox.stream import WS_PATH, stream_normalized
from market_data_assets.sandbox.universe import known_exchange
from market_data_assets.tardis.formats import DATA_TYPES

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
        return error_response(404, f"Invalid 'exchange' param provided: '{exchange}'")
    key = ("details", exchange, state.exported_until)
    body = await in_thread(state.cached_json, key, lambda: _details(state, exchange))
    return json_body(body)


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
        return error_response(404, f"Invalid 'exchange' param provided: '{exchange}'")
    if exchange not in FREE_INSTRUMENTS_EXCHANGES and not authorized(state, request):
        return error_response(
            401, "Instruments metadata API requires a valid API key (Authorization: Bearer KEY)"
        )
    raw_filter = request.query.get("filter")
    wanted: dict[str, object] = {}
    if raw_filter:
        try:
            wanted = json.loads(raw_filter)
        except json.JSONDecodeError as exc:
            return error_response(400, f"Invalid 'filter' param: not JSON ({exc.msg})")
        if not isinstance(wanted, dict):
            return error_response(400, "Invalid 'filter' param: expected a JSON object")
    until = state.exported_until

    def build() -> list[dict[str, object]]:
        items = [i.metadata(until) for i in state.universe(exchange).instruments]
        return [i for i in items if _matches(i, wanted)] if wanted else items

    if wanted:
        body = await in_thread(lambda: json.dumps(build(), separators=(",", ":")).encode())
    else:
        body = await in_thread(state.cached_json, ("instruments", exchange, until), build)
    return json_body(body)


async def instrument(request: web.Request) -> web.Response:
    state = request.app[STATE]
    exchange = request.match_info["exchange"]
    symbol = request.match_info["symbol"]
    if not known_exchange(state.config, exchange):
        return error_response(404, f"Invalid 'exchange' param provided: '{exchange}'")
    if exchange not in FREE_INSTRUMENTS_EXCHANGES and not authorized(state, request):
        return error_response(
            401, "Instruments metadata API requires a valid API key (Authorization: Bearer KEY)"
        )
    uni = await in_thread(state.universe, exchange)  # first build of a large universe takes a while
    inst = uni.by_id.get(symbol)
    if inst is None:
        found = uni.by_dataset_id.get(symbol)
        inst = None if isinstance(found, SymbolGroup) else found
    if inst is None:
        return error_response(404, f"Unknown instrument '{symbol}' for exchange '{exchange}'")
    return web.json_response(inst.metadata(state.exported_until))


# ----------------------------------------------------------------------------------------------
# datasets


async def dataset(request: web.Request) -> web.Response:
    state = request.app[STATE]
    m = request.match_info
    exchange, data_type, symbol = m["exchange"], m["data_type"], m["symbol"]
    if not known_exchange(state.config, exchange):
        return error_response(404, f"Invalid 'exchange' param provided: '{exchange}'")
    if data_type not in DATA_TYPES:
        return error_response(404, f"Invalid 'dataType' param provided: '{data_type}'")
    try:
        day = date(int(m["year"]), int(m["month"]), int(m["day"]))
    except ValueError:
        return error_response(400, f"Invalid date in path: {m['year']}-{m['month']}-{m['day']}")
    if day.day != 1 and not authorized(state, request):
        return error_response(
            401,
            "Valid API key is required to access this dataset (only the first day of each month is free)",
        )
    if day >= state.exported_until:
        return error_response(
            404,
            f"{exchange} data for {day.isoformat()} is not exported yet "
            f"(exportedUntil {iso(state.exported_until)})",
        )
    target = (await in_thread(state.universe, exchange)).by_dataset_id.get(symbol)
    if target is None:
        return error_response(
            404, f"Invalid 'symbol' param provided: '{symbol}' is not a {exchange} dataset symbol"
        )
    if data_type not in target.data_types:
        return error_response(
            404,
            f"Data type '{data_type}' is not available for {exchange} {symbol}; "
            f"available: {', '.join(target.data_types)}",
        )
    try:
        body = await in_thread(state.gzip_body, exchange, data_type, day, symbol)
    except SandboxNotFound as exc:
        return error_response(404, str(exc))
    return web.Response(body=body, content_type="application/gzip")


async def ws_stream_normalized(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    return await stream_normalized(request, state.config, state.stream)


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
    app.router.add_get(WS_PATH, ws_stream_normalized)
    app.router.add_post("/_sandbox/faults", add_faults)
    app.router.add_delete("/_sandbox/faults", clear_faults)
    app.router.add_get("/_sandbox/requests", list_requests)
    app.router.add_delete("/_sandbox/requests", clear_requests)
    app.router.add_post("/_sandbox/exported-until", set_exported_until)
    app.router.add_get("/_sandbox/config", show_config)
    return app
