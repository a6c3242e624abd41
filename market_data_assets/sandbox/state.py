"""What a running sandbox shares between its HTTP handlers and the thread that controls it.

The state holds the config, the movable ``exportedUntil``, the fault rules and request log, and
two byte-bounded caches (gzip bodies, JSON bodies) so repeated requests cost nothing.
"""

from __future__ import annotations

import asyncio
import gzip
import hmac
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from aiohttp import web

from market_data_assets.sandbox.config import SandboxConfig
from market_data_assets.sandbox.fault_rules import FaultInjector
from market_data_assets.sandbox.market import generate_csv
from market_data_assets.sandbox.stream import LiveClock, StreamControl
from market_data_assets.sandbox.universe import ExchangeUniverse, exchange_universe, gc_paused
from market_data_assets.tardis.client import EMPTY_GZIP

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
    stream: StreamControl = field(default_factory=lambda: StreamControl(LiveClock(int(time.time() * 1e6))))
    """The live stream's clock, faults and counters (``/ws-stream-normalized``)."""
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


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"code": status, "message": message}, status=status, headers=headers)


def authorized(state: SandboxState, request: web.Request) -> bool:
    expected = state.config.api_key
    if expected is None:
        return True
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), expected.encode())


def json_body(body: bytes) -> web.Response:
    return web.Response(body=body, content_type="application/json")


async def in_thread(func: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.get_running_loop().run_in_executor(None, func, *args)
