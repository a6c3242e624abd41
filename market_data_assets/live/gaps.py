"""Gaps of the live stream: when the service may have missed messages, recorded with from/to.

A gap opens on a ``disconnect`` message, a lost connection (``reconnect``), a 1008 close
(``backpressure``), a silent stream (``stall``) or the service's start (``startup``: nothing was
seen before). It starts ``lateness`` before the last message seen (a lost message is stamped at
most that much earlier than it arrives) and closes once every subscribed symbol has again shown
each candle source it had shown (a trade, a book snapshot, a ticker): only then are the carried
states (last price, book, ticker fields) the ones the batch sees. Candles of buckets overlapping
``[from, to]`` may differ from batch; everything outside must not (``live_reconciliation``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import pyarrow as pa

GAP_KINDS: tuple[str, ...] = ("startup", "disconnect", "reconnect", "backpressure", "stall")

LIVE_GAPS_TABLE = "live_gaps"
LIVE_GAPS_SCHEMA = pa.schema(
    [
        pa.field("exchange", pa.string(), nullable=False),
        pa.field("symbols", pa.string(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),
        pa.field("gap_from", pa.timestamp("us", "UTC"), nullable=False),
        pa.field("gap_to", pa.timestamp("us", "UTC"), nullable=False),
        pa.field("recorded_at", pa.timestamp("us", "UTC"), nullable=False),
        pa.field("writer", pa.string(), nullable=False),
    ]
)
"""The lake files under ``live_gaps/`` and the warehouse table ``live_gaps``."""


@dataclass
class Gap:
    exchange: str
    symbols: tuple[str, ...]
    kind: str
    from_us: int
    to_us: int | None = None

    def table(self, writer: str) -> pa.Table:
        assert self.to_us is not None
        return pa.Table.from_pylist(
            [
                {
                    "exchange": self.exchange,
                    "symbols": ",".join(self.symbols),
                    "kind": self.kind,
                    "gap_from": self.from_us,
                    "gap_to": self.to_us,
                    "recorded_at": int(time.time() * 1_000_000),
                    "writer": writer,
                }
            ],
            schema=LIVE_GAPS_SCHEMA,
        )


@dataclass
class GapTracker:
    """One open gap at a time (a second accident while one is open widens it)."""

    exchange: str
    symbols: tuple[str, ...]
    lateness_us: int
    stateful_kinds: tuple[str, ...] = ("trades", "book", "derivative_ticker")
    """Candle sources whose last value carries into later buckets (liquidations carry nothing)."""
    open_gap: Gap | None = None
    closed: list[Gap] = field(default_factory=list)
    seen: set[tuple[str, str]] = field(default_factory=set)
    """(symbol, kind) pairs the stream has carried: what a gap waits to see again."""
    _pending: set[tuple[str, str]] = field(default_factory=set)
    last_local_us: int | None = None
    count: int = 0

    def open(self, kind: str, at_us: int | None = None) -> None:
        """Open (or widen) a gap starting ``lateness`` before ``at_us`` (default: the last message)."""
        if kind not in GAP_KINDS:
            raise ValueError(f"gap kind {kind!r}: expected one of {GAP_KINDS}")
        base = at_us if at_us is not None else self.last_local_us
        if self.open_gap is not None:
            if kind not in self.open_gap.kind.split("+"):
                self.open_gap.kind += "+" + kind
            self._pending = set(self.seen)
            return
        self.count += 1
        start = (base if base is not None else 0) - self.lateness_us
        self.open_gap = Gap(self.exchange, self.symbols, kind, start)
        # at startup nothing was seen yet: wait for every symbol's every stateful source
        self._pending = (
            {(s, k) for s in self.symbols for k in self.stateful_kinds}
            if kind == "startup"
            else set(self.seen)
        )

    def on_message(self, symbol: str, kind: str, ts_us: int, local_us: int) -> Gap | None:
        """Note one candle-source message; returns the gap it closes, if any."""
        self.last_local_us = local_us
        if kind not in self.stateful_kinds:
            return None
        pair = (symbol, kind)
        self.seen.add(pair)
        gap = self.open_gap
        if gap is None:
            return None
        self._pending.discard(pair)
        if self._pending:
            return None
        gap.to_us = max(ts_us, local_us)
        self.open_gap = None
        self.closed.append(gap)
        return gap

    def close_open(self, at_us: int) -> Gap | None:
        """At shutdown: an open gap ends where the stream ended."""
        gap = self.open_gap
        if gap is None:
            return None
        gap.to_us = max(at_us, gap.from_us)
        self.open_gap = None
        self.closed.append(gap)
        return gap
