"""Fault injection on the wire, the request log, and the ``/_sandbox`` control routes.

Faults act where a real network or service would fail: an error status before any work (429 with
``Retry-After``, 500, 503), or a response that goes wrong on the way (reset mid-response,
truncated body, a complete body that is a cut gzip, slow body). Every Tardis request is logged
before its response is sent, so a client that got an answer always finds its request in the log.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Awaitable, Callable
from datetime import date

from aiohttp import web

from market_data_assets.sandbox.exchanges import iso
from market_data_assets.sandbox.fault_rules import FaultRule, RequestRecord
from market_data_assets.sandbox.state import STATE, SandboxState, error_response


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
    ``truncate`` sends half the body then closes, ``short_gzip`` sends a well-formed response whose
    body is half the gzip (its Content-Length agrees: only inflating the body shows the damage, as
    with a file cut at the origin), ``slow`` trickles the body over ``delay``."""
    body = bytes(response.body or b"")  # pyright: ignore[reportArgumentType]
    if rule.kind == "short_gzip":
        body = body[: max(1, len(body) // 2)] if body else b""
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
    if rule.kind == "short_gzip":
        await stream.write(body)
        await stream.write_eof()
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
    if request.path.startswith("/_sandbox/") or request.path == "/ws-stream-normalized":
        return await handler(request)
    rule = state.faults.pick(request.path)
    if rule is not None and rule.kind in ("429", "500", "503"):
        # Tardis sends whole seconds (what tardis-dev parses); a fractional value is a sandbox
        # extension that keeps retry tests fast and is written as a plain decimal ("0.1").
        headers = {"Retry-After": _seconds_text(rule.retry_after)} if rule.http_status == 429 else None
        _record(state, request, rule.http_status, rule.kind)
        return error_response(rule.http_status, f"sandbox fault injected: {rule.kind}", headers)
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
        return error_response(400, f"bad fault spec: {exc}")
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
        return error_response(400, f'expected {{"exportedUntil": "YYYY-MM-DD"}}: {exc}')
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
