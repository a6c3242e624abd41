"""``market-data live``: the long-running asyncio service (plain Python, not a Dagster run).

One exchange per process. It reads tardis-machine's ``/ws-stream-normalized``, feeds the candle
engine (``live.candles``), closes buckets by stream time, and writes closed candles (lake +
warehouse, every ``write_interval_s``), the bronze log (at least every ``bronze_interval_s``) and
gaps (when they close). On a closed connection it records a gap and reconnects with exponential
backoff (the options are sent again: that is the resubscription); on SIGTERM/SIGINT, ``--until``
or the end of the stream it closes what the watermark allows and flushes everything. ``/healthz``
on ``health_port`` shows the lag (stream time vs wall time), rows written and gaps; a progress
line is logged every ``progress_interval_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import polars as pl
from aiohttp import web

from market_data_assets.candles.density import DEFAULT_POLICY, DensityPolicy
from market_data_assets.live.books import OrderBooks
from market_data_assets.live.candles import DEFAULT_LATENESS_US, LIVE_TIMEFRAMES, LiveCandles
from market_data_assets.live.gaps import GapTracker
from market_data_assets.live.messages import CANDLE_SOURCES, DEFAULT_DATA_TYPES, VALUE_COLUMNS, decode_batch
from market_data_assets.live.sinks import BronzeBuffer, LiveSink

log = logging.getLogger("market_data_assets.live")

WS_STREAM_PATH = "/ws-stream-normalized"
_DEDUP_WINDOW = 20_000
"""Recent raw messages remembered to drop exact repeats (a feed's duplicated sends)."""


@dataclass(frozen=True)
class LiveConfig:
    ws_url: str
    exchange: str
    symbols: tuple[str, ...]
    keys: dict[str, str]
    """Symbol (upper case, as messages carry it) -> canonical instrument key."""
    data_types: tuple[str, ...] = DEFAULT_DATA_TYPES
    until_us: int | None = None
    lateness_us: int = DEFAULT_LATENESS_US
    policy: DensityPolicy = DEFAULT_POLICY
    stall_timeout_s: float = 10.0
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    write_interval_s: float = 5.0
    """Closed candles are written every this many wall seconds (a micro-batch per write)."""
    bronze_interval_s: float = 60.0
    bronze_max_rows: int = 200_000
    """The bronze log is also flushed once it holds this many messages (bounded memory at full speed)."""
    close_interval_s: float = 5.0
    """Buckets past the watermark are closed at most this often (one vectorized pass each, ~0.1-0.2 s
    of polars work however few rows): closing more often than ``write_interval_s`` would not write
    sooner, and at full speed (catching up) it cost a fifth of the core."""
    progress_interval_s: float = 60.0
    health_port: int | None = None
    with_error_messages: bool = True
    batch_messages: int = 2048
    """Messages decoded together (a micro-batch); a partial batch waits at most ``batch_wait_s``."""
    batch_wait_s: float = 0.05

    @property
    def books_from_changes(self) -> bool:
        """No book snapshot subscribed but ``book_change``: the books are replayed from changes."""
        snapshots = any(d.startswith("book_snapshot") or d == "quote" for d in self.data_types)
        return "book_change" in self.data_types and not snapshots

    def stream_url(self) -> str:
        options = {
            "exchange": self.exchange,
            "symbols": list(self.symbols),
            "dataTypes": list(self.data_types),
            "withErrorMessages": self.with_error_messages,
        }
        return f"{self.ws_url}{WS_STREAM_PATH}?options={json.dumps(options, separators=(',', ':'))}"


@dataclass
class LiveStats:
    started_at: float = field(default_factory=time.time)
    connected: bool = False
    connections: int = 0
    messages: int = 0
    duplicates: int = 0
    errors: int = 0
    disconnects: int = 0
    last_message_wall: float | None = None
    closed_until_us: int | None = None


class LiveService:
    def __init__(self, config: LiveConfig, sink: LiveSink) -> None:
        self.config = config
        self.sink = sink
        self.candles = LiveCandles(config.exchange, config.lateness_us, config.policy)
        self.gaps = GapTracker(config.exchange, tuple(config.symbols), config.lateness_us)
        self.bronze = BronzeBuffer()
        self.stats = LiveStats()
        self._closed: dict[str, list[Any]] = {tf: [] for tf in LIVE_TIMEFRAMES}
        self._recent: deque[str] = deque()
        self._recent_set: set[str] = set()
        self._pending: list[str] = []
        self._pending_since = 0.0
        self._started = False
        self._books = OrderBooks() if config.books_from_changes else None
        self._reached = False
        self._stop = asyncio.Event()
        self._last_close = 0.0
        self._last_close_end = 0
        self._last_write = time.monotonic()
        self._last_bronze = time.monotonic()
        self._last_progress = time.monotonic()
        self._stall_open = False
        self._blocked_until = 0.0
        """When our own last synchronous write (warehouse, lake, bronze) ended: the loop read no
        message while it ran, so the feed's silence is measured from then, not from the last message."""
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self.health_url: str | None = None
        self._checkpoint_us = sink.read_checkpoint()

    # --- lifecycle -----------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the service to flush and end (signal handlers call this)."""
        self._stop.set()
        ws = self._ws
        if ws is not None and not ws.closed:
            asyncio.ensure_future(ws.close())

    async def run(self) -> LiveStats:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, self.stop)
        health = await self._start_health() if self.config.health_port is not None else None
        watchdog = asyncio.create_task(self._watch())
        batcher = asyncio.create_task(self._flush_partial_batches())
        try:
            await self._connect_loop()
        finally:
            for task in (watchdog, batcher):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            try:
                self._finish()
            finally:
                self.sink.close()
            if health is not None:
                await health.cleanup()
            for sig in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                    loop.remove_signal_handler(sig)
        return self.stats

    async def _connect_loop(self) -> None:
        attempt = 0
        async with aiohttp.ClientSession() as session:
            while not self._stop.is_set():
                code: int | None = None
                try:
                    async with session.ws_connect(
                        self.config.stream_url(), autoping=True, heartbeat=None, max_msg_size=0
                    ) as ws:
                        self.stats.connected = True
                        self.stats.connections += 1
                        self.stats.last_message_wall = time.monotonic()  # silence counts from here
                        log.info("%s connected to %s", self.config.exchange, self.config.ws_url)
                        self._ws = ws
                        async for msg in ws:
                            if msg.type != aiohttp.WSMsgType.TEXT:
                                break
                            attempt = 0
                            if self._on_text(msg.data):
                                self.stop()
                                return
                            if self._stop.is_set():
                                return
                        code = ws.close_code
                except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                    log.warning("%s stream connection failed: %s", self.config.exchange, exc)
                finally:
                    self.stats.connected = False
                    self._ws = None
                # what arrived before the connection ended is applied before its gap opens
                if self._process_pending():
                    self.stop()
                    return
                if self._stop.is_set():
                    return
                self.gaps.open("backpressure" if code == 1008 else "reconnect")
                if self._books is not None:
                    self._books.reset()  # tardis-machine starts each connection with snapshots
                delay = min(self.config.backoff_max_s, self.config.backoff_initial_s * 2**attempt)
                attempt += 1
                log.warning(
                    "%s stream closed (code %s); reconnecting in %.1f s", self.config.exchange, code, delay
                )
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), delay)

    # --- messages ------------------------------------------------------------------------------

    def _on_text(self, text: str) -> bool:
        """Take one message (decoded later, in a micro-batch); True when ``--until`` is reached."""
        self.stats.last_message_wall = time.monotonic()
        if self._stall_open:
            self._stall_open = False
        if text in self._recent_set:
            self.stats.duplicates += 1
            return False
        self._recent.append(text)
        self._recent_set.add(text)
        if len(self._recent) > _DEDUP_WINDOW:
            self._recent_set.discard(self._recent.popleft())
        if not self._pending:
            self._pending_since = self.stats.last_message_wall
        self._pending.append(text)
        if len(self._pending) >= self.config.batch_messages:
            return self._process_pending()
        return False

    def _process_pending(self) -> bool:
        """Decode and apply the pending micro-batch; True when ``--until`` is reached.

        Why batches: per message, ``json.loads``, two ISO parses, a bronze row and a tick tuple cost
        ~40 µs in Python; decoded together in polars and handed to the candle engine per
        (instrument, kind) they cost a fraction. Ticks keep their arrival order within each
        instrument and kind (all the batch order depends on); gaps see each (symbol, source)'s first
        message of a run between ``disconnect`` messages, which is all they react to.
        """
        texts = self._pending
        self._pending = []
        if self._reached:
            return True  # nothing past --until is applied
        if not texts:
            return False
        frame = decode_batch(texts)
        reached = False
        until = self.config.until_us
        if until is not None:
            hits = frame.select(pl.arg_where(pl.col("_ts") >= until).first()).item()
            if hits is not None:
                # stop at the message that reaches --until, as a message-at-a-time reader would
                frame, texts, reached = frame.head(hits + 1), texts[: hits + 1], True
        self._reached = reached
        self.stats.messages += len(texts)
        if not self._started:
            self._started = True
            local = frame["_local"][0]
            # nothing before the first message is known; after a crash, nothing after the last
            # checkpoint (the buckets the previous process had not written) either
            resume = self._checkpoint_us
            start = local if resume is None or resume >= local else resume + self.config.lateness_us
            self.gaps.open("startup", at_us=start)
        self.bronze.add_batch(self.config.exchange, frame, texts)
        kinds = frame["type"]
        specials = frame.with_row_index("_i").filter(kinds.is_in(["disconnect", "error"]))
        start = 0
        for i, kind, local in specials.select("_i", "type", "_local").iter_rows():
            self._apply_ticks(frame.slice(start, i - start))
            if kind == "disconnect":
                self.stats.disconnects += 1
                self.gaps.open("disconnect", at_us=local)
                if self._books is not None:
                    self._books.reset()  # the exchange feed resumes with a new snapshot
            else:
                self.stats.errors += 1
                log.warning("%s stream error: %s", self.config.exchange, json.loads(texts[i]).get("details"))
            start = i + 1
        self._apply_ticks(frame.slice(start))
        self._maybe_flush(time.monotonic(), force_close=reached)
        return reached

    def _book_changes(self, key: str, group: pl.DataFrame) -> tuple[int, int, int] | None:
        """One instrument's ``book_change`` messages -> top-of-book ticks (``live.books``).

        Returns (batch index, ts, local) of the first tick, what the gap tracker sees as the book.
        """
        assert self._books is not None
        ts_out: list[int] = []
        local_out: list[int] = []
        values: list[list] = [[], [], [], []]
        first: tuple[int, int, int] | None = None
        rows = group.select("_i", "_ts", "_local", "isSnapshot", "bids", "asks").iter_rows()
        for i, ts, local, snapshot, bids, asks in rows:
            top = self._books.apply(key, ts, bool(snapshot), bids, asks)
            if top is None:
                continue
            if first is None:
                first = (i, ts, local)
            ts_out.append(ts)
            local_out.append(local)
            for column, value in zip(values, top, strict=True):
                column.append(value)
        self.candles.add_rows("book", key, ts_out, local_out, values)
        return first

    def _apply_ticks(self, frame: pl.DataFrame) -> None:
        """The candle-source messages of a run without ``disconnect``: to the engine and the gaps."""
        if frame.height == 0:
            return
        types = [*CANDLE_SOURCES, "book_change"] if self._books is not None else list(CANDLE_SOURCES)
        ticks = frame.with_row_index("_i").filter(
            pl.col("type").is_in(types) & pl.col("_ts").is_not_null() & pl.col("symbol").is_not_null()
        )
        if ticks.height:
            self.candles.note_first(ticks["_ts"][0], ticks["_local"][0])
        firsts: list[tuple[int, str, str, int, int]] = []
        for (kind, symbol), group in ticks.partition_by(
            ["type", "symbol"], as_dict=True, maintain_order=True
        ).items():
            key = self.config.keys.get(str(symbol).upper())
            if key is None:
                log.warning("%d messages for unknown symbol %r ignored", group.height, symbol)
                continue
            if kind == "book_change":
                first = self._book_changes(key, group)
                if first is not None:
                    firsts.append((first[0], str(symbol).upper(), "book", first[1], first[2]))
                continue
            source = CANDLE_SOURCES[str(kind)]
            ts, local = group["_ts"].to_list(), group["_local"].to_list()
            self.candles.add_rows(source, key, ts, local, [group[c].to_list() for c in VALUE_COLUMNS[source]])
            firsts.append((group["_i"][0], str(symbol).upper(), source, ts[0], local[0]))
        for _, symbol, source, ts0, local0 in sorted(firsts):
            gap = self.gaps.on_message(symbol, source, ts0, local0)
            if gap is not None:
                self.sink.write_gap(gap)
        self.gaps.last_local_us = frame["_local"][-1]

    def _maybe_flush(self, now: float, *, force_close: bool = False) -> None:
        watermark = self.candles.watermark_us()
        crossed = watermark - self._last_close_end >= 15_000_000
        write_due = now - self._last_write >= self.config.write_interval_s
        if force_close or (crossed and (write_due or now - self._last_close >= self.config.close_interval_s)):
            closed = self.candles.close()
            self._last_close = now
            self._last_close_end = watermark - watermark % 15_000_000
            for tf, frame in closed.items():
                if frame.height:
                    self._closed[tf].append(frame)
        if force_close or write_due:
            self._write_closed()
            self._last_write = now
        if (
            force_close
            or now - self._last_bronze >= self.config.bronze_interval_s
            or self.bronze.count >= self.config.bronze_max_rows
        ):
            self.sink.write_bronze(self.bronze.take())
            self._last_bronze = now
        if now - self._last_progress >= self.config.progress_interval_s:
            self._last_progress = now
            log.info(self.progress_line())
        self._blocked_until = time.monotonic()

    def _write_closed(self) -> None:
        import polars as pl

        closed = {tf: pl.concat(frames) for tf, frames in self._closed.items() if frames}
        if closed:
            self.sink.write_closed(closed, self._last_close_end or None)
            for frames in self._closed.values():
                frames.clear()
        self.stats.closed_until_us = self._last_close_end

    def _finish(self) -> None:
        """Close what the watermark allows, write everything, end the open gap."""
        self._process_pending()
        closed = self.candles.close()
        watermark = self.candles.watermark_us()
        self._last_close_end = max(self._last_close_end, watermark - watermark % 15_000_000)
        for tf, frame in closed.items():
            if frame.height:
                self._closed[tf].append(frame)
        self._write_closed()
        self.sink.write_bronze(self.bronze.take())
        if self.candles.stream_time_us:
            gap = self.gaps.close_open(self.candles.stream_time_us)
            if gap is not None:
                self.sink.write_gap(gap)
        log.info("%s stopped: %s", self.config.exchange, self.progress_line())

    async def _flush_partial_batches(self) -> None:
        """A partial micro-batch is applied once it is ``batch_wait_s`` old (a quiet stream)."""
        while True:
            await asyncio.sleep(self.config.batch_wait_s / 2)
            stale = self._pending and time.monotonic() - self._pending_since >= self.config.batch_wait_s
            if stale and self._process_pending():
                self.stop()

    async def _watch(self) -> None:
        """Stalls: no message for ``stall_timeout_s`` while connected opens a ``stall`` gap."""
        while True:
            await asyncio.sleep(min(1.0, self.config.stall_timeout_s / 4))
            last = self.stats.last_message_wall
            if last is not None:
                last = max(last, self._blocked_until)
            if (
                self.stats.connected
                and last is not None
                and not self._stall_open
                and time.monotonic() - last > self.config.stall_timeout_s
            ):
                self._stall_open = True
                log.warning("%s stream stalled for %.1f s", self.config.exchange, time.monotonic() - last)
                self.gaps.open("stall")
            now = time.monotonic()
            if now - self._last_bronze >= self.config.bronze_interval_s:
                self.sink.write_bronze(self.bronze.take())
                self._last_bronze = now
                self._blocked_until = time.monotonic()

    # --- health --------------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        stream = self.candles.stream_time_us
        lag = time.time() - stream / 1e6 if stream else None
        written = self.sink.written
        return {
            "status": "ok" if self.stats.connected else "reconnecting",
            "exchange": self.config.exchange,
            "connected": self.stats.connected,
            "connections": self.stats.connections,
            "messages": self.stats.messages,
            "duplicates_dropped": self.stats.duplicates,
            "late_messages": self.candles.counters.late,
            "errors": self.stats.errors,
            "stream_time": stream or None,
            "lag_s": lag,
            "closed_until": self.stats.closed_until_us,
            "rows_written": dict(written.rows),
            "rows_skipped_existing": dict(written.skipped),
            "bronze_rows": written.bronze_rows,
            "gaps": written.gaps,
            "gap_open": self.gaps.open_gap is not None,
        }

    def progress_line(self) -> str:
        h = self.health()
        lag = f"{h['lag_s']:.1f}s" if h["lag_s"] is not None else "-"
        return (
            f"{h['exchange']}: {h['messages']} messages, lag {lag}, rows {h['rows_written']}, "
            f"late {h['late_messages']}, duplicates {h['duplicates_dropped']}, gaps {h['gaps']}"
        )

    async def _start_health(self) -> web.AppRunner:
        async def healthz(_: web.Request) -> web.Response:
            return web.json_response(self.health())

        app = web.Application()
        app.router.add_get("/healthz", healthz)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", self.config.health_port)
        await site.start()
        port = site._server.sockets[0].getsockname()[1] if site._server is not None else None  # pyright: ignore[reportAttributeAccessIssue]
        log.info("health on http://127.0.0.1:%s/healthz", port)
        self.health_url = f"http://127.0.0.1:{port}/healthz"
        return runner


def new_writer_id() -> str:
    return uuid.uuid4().hex[:8]


async def resolve_keys(api_url: str, exchange: str, symbols: tuple[str, ...]) -> dict[str, str]:
    """Symbol -> canonical key, from the exchange's dataset symbols (free metadata route)."""
    from market_data_assets.instruments.definitions import key_for_dataset_symbol

    async with aiohttp.ClientSession() as session, session.get(f"{api_url}/exchanges/{exchange}") as r:
        if r.status != 200:
            raise RuntimeError(
                f"{api_url}/exchanges/{exchange} answered HTTP {r.status}: {(await r.text())[:200]}"
            )
        details = await r.json()
    types = {str(s["id"]).upper(): s["type"] for s in details.get("datasets", {}).get("symbols", [])}
    unknown = [s for s in symbols if s.upper() not in types]
    if unknown:
        raise ValueError(f"--symbols: {unknown} are not {exchange} dataset symbols at {api_url}")
    return {s.upper(): key_for_dataset_symbol(exchange, s.upper(), types[s.upper()]) for s in symbols}
