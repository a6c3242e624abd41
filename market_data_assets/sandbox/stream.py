"""tardis-machine's real-time endpoint ``/ws-stream-normalized`` for the synthetic market.

The stream carries exactly the events the sandbox's CSV files hold: each message is one row (or,
for ``book_change``, one run of rows sharing their timestamps) of ``generate_csv`` for the day of
its ``local_timestamp``, in file order, files merged by ``local_timestamp``. Numbers are copied as
the CSV writes them, so a live consumer parses the same doubles the batch pipeline reads from the
files: live and batch candles can be compared exactly.

Data types (tardis-machine's names) and the files they come from:

| dataType | message | file |
|---|---|---|
| ``trade`` | ``trade`` | trades |
| ``book_change`` | ``book_change`` | incremental_book_L2 (rows of one update grouped) |
| ``book_snapshot_{N}_{interval}`` | ``book_snapshot`` | book_snapshot_5 (N <= 5) else book_snapshot_25, cut to N levels |
| ``quote`` | ``book_snapshot`` (name ``quote``, depth 1) | quotes |
| ``derivative_ticker`` | ``derivative_ticker`` | derivative_ticker |
| ``liquidation`` | ``liquidation`` | liquidations |

(tardis-machine computes book snapshots from the book changes; the sandbox's snapshot files are
generated on their own, so the stream serves the files' rows: what the batch candles read.)

The clock: a stream starts at ``live_start`` and runs ``live_speed`` times faster than the wall
clock, from the first WebSocket connection on and through reconnections (a client that reconnects
after 0.1 s at speed 3600 has missed six minutes). ``live_speed`` 0 means as fast as the client
reads (the position then only moves with what was sent). Faults (``StreamFault``) fire after a
given number of messages sent in all, like a real feed's accidents.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import csv
import io
import json
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from aiohttp import WSMsgType, web

from market_data_assets.days import US_PER_DAY, day_start_us, parse_tardis_time
from market_data_assets.sandbox.config import SandboxConfig
from market_data_assets.sandbox.instruments import SymbolGroup
from market_data_assets.sandbox.market import SandboxNotFound, generate_csv, resolve_symbol

WS_PATH = "/ws-stream-normalized"

STREAM_FAULT_KINDS: tuple[str, ...] = (
    "close",  # abrupt end of the TCP connection, no close frame
    "disconnect",  # a ``disconnect`` message, then ``seconds`` of the stream are lost
    "error",  # ``count`` ``error`` messages (sent when the options ask ``withErrorMessages``)
    "stall",  # nothing sent for ``pause`` wall seconds, and ``seconds`` of the stream are lost
    "duplicate",  # the next ``count`` messages are each sent twice
    "reorder",  # the next ``count`` pairs of messages less than 1 s apart (local time) are swapped
    "backpressure",  # close 1008 'Too much backpressure'
)


_REORDER_WITHIN_US = 1_000_000
"""``reorder`` swaps only messages this close in local time: *slightly* out of order, as real feeds are."""


@dataclass
class StreamFault:
    """One accident of the live stream, firing once after ``after`` messages sent in all."""

    kind: str
    after: int
    seconds: float = 60.0
    count: int = 3
    pause: float = 1.0
    fired: bool = False

    def __post_init__(self) -> None:
        if self.kind not in STREAM_FAULT_KINDS:
            raise ValueError(
                f"StreamFault.kind={self.kind!r}: expected one of {', '.join(STREAM_FAULT_KINDS)}"
            )
        if self.after < 0:
            raise ValueError(f"StreamFault.after={self.after} must be >= 0")

    @staticmethod
    def parse(text: str) -> StreamFault:
        """``KIND@AFTER[:SECONDS]`` (CLI form), e.g. ``disconnect@5000:120``."""
        kind, _, rest = text.partition("@")
        after, _, seconds = rest.partition(":")
        try:
            return StreamFault(
                kind=kind,
                after=int(after),
                **({"seconds": float(seconds)} if seconds else {}),  # pyright: ignore[reportArgumentType]  only `seconds` is passed as **kwargs
            )
        except ValueError as exc:
            raise ValueError(f"--stream-fault {text!r}: expected KIND@AFTER[:SECONDS] ({exc})") from None


@dataclass
class LiveClock:
    """Sandbox time for the live stream: ``start`` at the first connection, ``speed`` x wall time."""

    start_us: int
    speed: float = 1.0
    _wall0: float | None = None
    position_us: int | None = None
    """Speed 0: where the stream has got to (it only advances with what was sent)."""

    def now_us(self) -> int:
        if self._wall0 is None:
            self._wall0 = time.monotonic()
        if self.speed <= 0:
            return self.start_us if self.position_us is None else self.position_us
        return self.start_us + int((time.monotonic() - self._wall0) * self.speed * 1_000_000)

    def wall_at(self, stream_us: int) -> float:
        """Monotonic wall time at which the clock reaches ``stream_us``."""
        assert self._wall0 is not None
        return self._wall0 + (stream_us - self.start_us) / 1_000_000 / self.speed


@dataclass
class StreamControl:
    """What the live stream shares with the controlling thread: the clock, faults, counters."""

    clock: LiveClock
    faults: list[StreamFault] = field(default_factory=list)
    sent: int = 0
    connections: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    days: dict[tuple[object, ...], tuple[list[int], list[str]]] = field(default_factory=dict)
    """The last few days of messages per options (a reconnection does not regenerate its day)."""

    def messages(
        self, config: SandboxConfig, options: list[StreamOptions], day: date
    ) -> tuple[list[int], list[str]]:
        key = (tuple(options), day)
        with self.lock:
            found = self.days.get(key)
        if found is None:
            found = day_messages(config, options, day)
            with self.lock:
                while len(self.days) >= 4:
                    self.days.pop(next(iter(self.days)))
                self.days[key] = found
        return found

    def next_fault_at(self) -> int | None:
        """The ``sent`` count at which the next unfired fault is due (None: no fault left)."""
        with self.lock:
            afters = [f.after for f in self.faults if not f.fired]
        return min(afters) if afters else None

    def due(self) -> StreamFault | None:
        with self.lock:
            for f in self.faults:
                if not f.fired and self.sent >= f.after:
                    f.fired = True
                    return f
        return None


# --- messages from CSV rows -----------------------------------------------------------------------


def iso_us(us: int) -> str:
    """Epoch µs -> ``2024-03-01T00:00:00.123456Z`` (tardis-machine's ISO form with µs digits)."""
    seconds, micros = divmod(us, 1_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{micros:06d}Z"


def _num(cell: str) -> str:
    return cell if cell != "" else "null"


def _file_for(data_type: str) -> tuple[str, int | None, str | None]:
    """dataType -> (CSV data type, book depth, snapshot name)."""
    if data_type == "trade":
        return "trades", None, None
    if data_type == "liquidation":
        return "liquidations", None, None
    if data_type == "derivative_ticker":
        return "derivative_ticker", None, None
    if data_type == "book_change":
        return "incremental_book_L2", None, None
    if data_type == "quote":
        return "quotes", 1, "quote"
    if data_type.startswith("book_snapshot_"):
        parts = data_type.split("_")
        try:
            depth = int(parts[2])
        except (IndexError, ValueError):
            raise SandboxNotFound(
                f"invalid dataType {data_type!r}: expected book_snapshot_DEPTH_INTERVAL"
            ) from None
        return ("book_snapshot_5" if depth <= 5 else "book_snapshot_25"), depth, data_type
    raise SandboxNotFound(f"dataType {data_type!r} is not offered by the sandbox stream")


def _levels(cells: list[str], depth: int) -> tuple[str, str]:
    """``asks[i].price,asks[i].amount,bids[i].price,bids[i].amount`` cells -> JSON arrays."""
    asks, bids = [], []
    for i in range(depth):
        base = 4 * i
        if base + 3 >= len(cells):
            break
        ap, aa, bp, ba = cells[base : base + 4]
        if ap != "" and aa != "":
            asks.append(f'{{"price":{ap},"amount":{aa}}}')
        if bp != "" and ba != "":
            bids.append(f'{{"price":{bp},"amount":{ba}}}')
    return "[" + ",".join(bids) + "]", "[" + ",".join(asks) + "]"


def messages_of_file(
    config: SandboxConfig, exchange: str, symbol: str, data_type: str, day: date
) -> list[tuple[int, str]]:
    """(local µs, JSON text) of one file's rows as normalized messages, in file order."""
    file_type, depth, name = _file_for(data_type)
    target = resolve_symbol(config, exchange, symbol, day)
    if isinstance(target, SymbolGroup) or file_type not in target.data_types:
        return []
    body = generate_csv(config, exchange, file_type, day, symbol)
    if not body:
        return []
    rows = csv.reader(io.StringIO(body.decode()))
    next(rows)  # header
    out: list[tuple[int, str]] = []
    head = f'"symbol":"{symbol}","exchange":"{exchange}"'
    pending: list[list[str]] = []

    def flush_book_change() -> None:
        first = pending[0]
        bids = [f'{{"price":{r[6]},"amount":{r[7]}}}' for r in pending if r[5] == "bid"]
        asks = [f'{{"price":{r[6]},"amount":{r[7]}}}' for r in pending if r[5] == "ask"]
        ts, local = int(first[2]), int(first[3])
        out.append(
            (
                local,
                f'{{"type":"book_change",{head},"isSnapshot":{first[4]},"bids":[{",".join(bids)}],'
                f'"asks":[{",".join(asks)}],"timestamp":"{iso_us(ts)}","localTimestamp":"{iso_us(local)}"}}',
            )
        )
        pending.clear()

    for r in rows:
        ts, local = int(r[2]), int(r[3])
        stamps = f'"timestamp":"{iso_us(ts)}","localTimestamp":"{iso_us(local)}"'
        if file_type in ("trades", "liquidations"):
            kind = "trade" if file_type == "trades" else "liquidation"
            ident = json.dumps(r[4]) if r[4] != "" else "null"
            out.append(
                (
                    local,
                    f'{{"type":"{kind}",{head},"id":{ident},"price":{r[6]},"amount":{r[7]},"side":"{r[5]}",{stamps}}}',
                )
            )
        elif file_type == "derivative_ticker":
            funding_ts = f'"{iso_us(int(r[4]))}"' if r[4] != "" else "null"
            out.append(
                (
                    local,
                    f'{{"type":"derivative_ticker",{head},"lastPrice":{_num(r[8])},"openInterest":{_num(r[7])},'
                    f'"fundingRate":{_num(r[5])},"indexPrice":{_num(r[9])},"markPrice":{_num(r[10])},'
                    f'"fundingTimestamp":{funding_ts},"predictedFundingRate":{_num(r[6])},{stamps}}}',
                )
            )
        elif file_type == "incremental_book_L2":
            if pending and (pending[0][2], pending[0][3], pending[0][4]) != (r[2], r[3], r[4]):
                flush_book_change()
            pending.append(r)
        elif file_type == "quotes":  # ask_amount,ask_price,bid_price,bid_amount
            bids, asks = _levels([r[5], r[4], r[6], r[7]], 1)
            out.append(
                (
                    local,
                    f'{{"type":"book_snapshot",{head},"name":"quote","depth":1,"interval":0,'
                    f'"bids":{bids},"asks":{asks},{stamps}}}',
                )
            )
        else:
            assert depth is not None
            bids, asks = _levels(r[4:], depth)
            interval = (name or "").rsplit("_", 1)[-1].rstrip("ms") or "0"
            out.append(
                (
                    local,
                    f'{{"type":"book_snapshot",{head},"name":"{name}","depth":{depth},'
                    f'"interval":{int(interval) if interval.isdigit() else 0},'
                    f'"bids":{bids},"asks":{asks},{stamps}}}',
                )
            )
    if pending:
        flush_book_change()
    return out


@dataclass(frozen=True)
class StreamOptions:
    """One entry of the ``options`` query parameter."""

    exchange: str
    symbols: tuple[str, ...]
    data_types: tuple[str, ...]
    with_error_messages: bool = False

    @staticmethod
    def parse(text: str | None) -> list[StreamOptions]:
        if not text:
            raise ValueError("missing 'options' query parameter")
        raw = json.loads(text)
        items = raw if isinstance(raw, list) else [raw]
        out = []
        for item in items:
            if not isinstance(item, dict) or "exchange" not in item or "dataTypes" not in item:
                raise ValueError(f"options entry {item!r:.120} needs 'exchange' and 'dataTypes'")
            out.append(
                StreamOptions(
                    exchange=str(item["exchange"]),
                    symbols=tuple(str(s).upper() for s in item.get("symbols") or ()),
                    data_types=tuple(str(d) for d in item["dataTypes"]),
                    with_error_messages=bool(item.get("withErrorMessages", False)),
                )
            )
        return out


def day_messages(
    config: SandboxConfig, options: list[StreamOptions], day: date
) -> tuple[list[int], list[str]]:
    """Every message of ``day`` (by local timestamp) for ``options``, merged by local timestamp.

    Ties keep (option, symbol, dataType) order then file order: a stable sort of the files' rows.
    """
    merged: list[tuple[int, int, str]] = []
    serial = 0
    for option in options:
        for symbol in option.symbols:
            for data_type in option.data_types:
                for local, text in messages_of_file(config, option.exchange, symbol, data_type, day):
                    merged.append((local, serial, text))
                    serial += 1
    merged.sort(key=lambda m: (m[0], m[1]))
    return [m[0] for m in merged], [m[2] for m in merged]


# --- the WebSocket handler ---------------------------------------------------------------------------

_CHUNK = 512
"""At speed 0, messages written to the socket at once (pre-built WebSocket frames)."""
_HIGH_WATER = 4 * 1024 * 1024
"""Bytes queued in the transport above which the fast path waits for the client to read."""


def _text_frame(text: str) -> bytes:
    """One unmasked, uncompressed server->client text frame (RFC 6455 5.2), FIN set."""
    payload = text.encode()
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 65536:
        return bytes((0x81, 126)) + n.to_bytes(2, "big") + payload
    return bytes((0x81, 127)) + n.to_bytes(8, "big") + payload


class _Connection:
    """One client: sends the day's messages as the clock reaches them, with faults."""

    def __init__(
        self,
        config: SandboxConfig,
        control: StreamControl,
        options: list[StreamOptions],
        ws: web.WebSocketResponse,
        transport: asyncio.BaseTransport | None,
    ) -> None:
        self.config = config
        self.control = control
        self.options = options
        self.ws = ws
        self.transport = transport
        self.errors_wanted = any(o.with_error_messages for o in options)
        self.exchanges = sorted({o.exchange for o in options})
        self._day: date | None = None
        self._locals: list[int] = []
        self._texts: list[str] = []
        self.duplicates = 0
        self.reorders = 0

    def _load(self, day: date) -> None:
        if self._day != day:
            self._locals, self._texts = self.control.messages(self.config, self.options, day)
            self._day = day

    async def _send(self, text: str) -> None:
        await self.ws.send_str(text)
        with self.control.lock:
            self.control.sent += 1

    def _raw_ok(self) -> bool:
        """Frames can be written straight to the transport (open, no permessage-deflate)."""
        return isinstance(self.transport, asyncio.Transport) and not self.ws.compress and not self.ws.closed

    async def _send_chunk(self, start: int, end: int) -> None:
        transport = self.transport
        assert isinstance(transport, asyncio.Transport)
        transport.write(b"".join([_text_frame(t) for t in self._texts[start:end]]))
        with self.control.lock:
            self.control.sent += end - start
        # flow control: wait while the client has not read what is queued (polling the buffer:
        # the transport gives no public awaitable for it)
        while transport.get_write_buffer_size() > _HIGH_WATER and not transport.is_closing():
            await asyncio.sleep(0.0005)
        await asyncio.sleep(0)  # let the reader and other clients run

    async def _special(self, fault: StreamFault, position: int) -> int | None:
        """Apply ``fault``; returns the new stream position (µs), or None when the connection ends."""
        ws = self.ws
        if fault.kind == "close":
            if isinstance(self.transport, asyncio.Transport):
                self.transport.abort()
            return None
        if fault.kind == "backpressure":
            await ws.close(code=1008, message=b"Too much backpressure")
            return None
        if fault.kind == "disconnect":
            for exchange in self.exchanges:
                symbols = sorted({s for o in self.options if o.exchange == exchange for s in o.symbols})
                await ws.send_str(
                    json.dumps(
                        {
                            "type": "disconnect",
                            "exchange": exchange,
                            "symbols": symbols,
                            "localTimestamp": iso_us(position),
                        }
                    )
                )
            return position + int(fault.seconds * 1_000_000)
        if fault.kind == "error":
            if self.errors_wanted:
                for n in range(fault.count):
                    for exchange in self.exchanges:
                        await ws.send_str(
                            json.dumps(
                                {
                                    "type": "error",
                                    "exchange": exchange,
                                    "localTimestamp": iso_us(position),
                                    "details": "sandbox fault injected: exchange WS API error",
                                    "subSequentErrorsCount": n + 1,
                                }
                            )
                        )
            return position
        if fault.kind == "stall":
            await asyncio.sleep(fault.pause)
            return max(position + int(fault.seconds * 1_000_000), self.control.clock.now_us())
        if fault.kind == "duplicate":
            self.duplicates += fault.count
        elif fault.kind == "reorder":
            self.reorders += fault.count
        return position

    async def run(self) -> None:
        clock = self.control.clock
        position = clock.now_us()
        while not self.ws.closed:
            day = datetime.fromtimestamp(position // 1_000_000, UTC).date()
            self._load(day)
            i = bisect.bisect_left(self._locals, position)
            day_end = day_start_us(day) + US_PER_DAY
            n = len(self._locals)
            while i < n:
                if clock.speed <= 0 and not self.duplicates and not self.reorders and self._raw_ok():
                    # as fast as the client reads: whole chunks of frames per socket write (a
                    # send_str per message made the sandbox, not the client, the bottleneck)
                    end = min(n, i + _CHUNK)
                    fault_at = self.control.next_fault_at()
                    if fault_at is not None:
                        end = min(end, i + fault_at - self.control.sent)
                    if end > i:
                        await self._send_chunk(i, end)
                        i = end
                        clock.position_us = self._locals[i - 1] + 1
                        continue
                fault = self.control.due()
                if fault is not None:
                    moved = await self._special(fault, self._locals[i])
                    if moved is None:
                        return
                    if moved != self._locals[i]:
                        position = moved
                        break
                local = self._locals[i]
                if clock.speed > 0:
                    wait = clock.wall_at(local) - time.monotonic()
                    if wait > 0:
                        await asyncio.sleep(wait)
                elif i % 512 == 0:
                    await asyncio.sleep(0)  # let the reader and other clients run
                if self.ws.closed:
                    return
                text = self._texts[i]
                if self.reorders and i + 1 < n and 0 < self._locals[i + 1] - local <= _REORDER_WITHIN_US:
                    self.reorders -= 1
                    await self._send(self._texts[i + 1])
                    await self._send(text)
                    i += 2
                else:
                    await self._send(text)
                    if self.duplicates:
                        self.duplicates -= 1
                        await self._send(text)
                    i += 1
                if clock.speed <= 0:
                    clock.position_us = self._locals[i - 1] + 1
            else:
                position = day_end
                if clock.speed <= 0:
                    clock.position_us = day_end
            if position >= day_end:
                continue


async def stream_normalized(
    request: web.Request, config: SandboxConfig, control: StreamControl
) -> web.StreamResponse:
    """``GET /ws-stream-normalized?options=...``: tardis-machine's real-time normalized stream."""
    try:
        options = StreamOptions.parse(request.query.get("options"))
        for option in options:
            for data_type in option.data_types:
                _file_for(data_type)
            for symbol in option.symbols:
                resolve_symbol(config, option.exchange, symbol, date(2024, 1, 1))
    except (ValueError, SandboxNotFound) as exc:
        return web.json_response({"code": 400, "message": f"Invalid options: {exc}"}, status=400)
    ws = web.WebSocketResponse(autoping=True, heartbeat=None, max_msg_size=0)
    await ws.prepare(request)
    with control.lock:
        control.connections += 1
    connection = _Connection(config, control, options, ws, request.transport)
    sender = asyncio.create_task(connection.run())

    async def read() -> None:
        # a handler that only sends must still read: that answers pings and sees the client's close
        async for msg in ws:
            if msg.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
                break

    reader = asyncio.create_task(read())
    try:
        await asyncio.wait({sender, reader}, return_when=asyncio.FIRST_COMPLETED)
        if sender.done() and sender.exception() is None and not ws.closed:
            await ws.close(code=1000, message=b"WS stream-normalized finished")
    finally:
        for task in (sender, reader):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
    return ws


def parse_live_start(text: str) -> int:
    """``2024-03-01T00:00:00Z`` -> epoch µs."""
    return (parse_tardis_time(text) - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
