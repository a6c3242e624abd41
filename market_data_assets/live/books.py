"""Order books kept from ``book_change`` messages, for a subscription without book snapshots.

Why: the issue's example subscribes ``trade,book_change,derivative_ticker``; the candle engine's
book features read top-of-book snapshots (batch: the ``book_snapshot_5`` files). Here each
instrument's L2 book is replayed from its changes: a message with ``isSnapshot`` replaces the
book (consecutive snapshot messages with one timestamp build it together), a level with amount 0
is removed, any other amount sets the level. After each message, when the top 5 levels of either
side changed (what makes Tardis emit a ``book_snapshot_5`` row), one top-of-book tick goes to the
engine, stamped with the message's timestamps. A book is *unsynced* from its start and after a
lost connection until a snapshot arrives: changes to it are ignored (they would build a wrong
book), so the gap tracker keeps the gap open until the first tick of a synced book.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

SNAPSHOT_DEPTH = 5
"""Levels compared to decide whether a change emits a tick (``book_snapshot_5`` semantics)."""


@dataclass
class _Book:
    bids: dict[float, float] = field(default_factory=dict)
    asks: dict[float, float] = field(default_factory=dict)
    synced: bool = False
    last_snapshot_ts: int | None = None
    """Timestamp of the snapshot being received (its messages add to one book)."""
    top: tuple = ()


class OrderBooks:
    """L2 books per instrument key, replayed from ``book_change`` messages."""

    def __init__(self) -> None:
        self._books: dict[str, _Book] = {}
        self.ignored_unsynced = 0
        """Changes dropped because their book had not seen a snapshot yet."""

    def reset(self) -> None:
        """After a lost connection: every book waits for its next snapshot."""
        self._books.clear()

    def apply(
        self, key: str, ts: int, is_snapshot: bool, bids: list[dict] | None, asks: list[dict] | None
    ) -> tuple[float | None, float | None, float | None, float | None] | None:
        """Apply one message; the new top of book (ask price, ask amount, bid price, bid amount)
        when the top ``SNAPSHOT_DEPTH`` levels changed, else None."""
        book = self._books.get(key)
        if book is None:
            book = self._books[key] = _Book()
        if is_snapshot:
            if book.last_snapshot_ts != ts:
                book.bids.clear()
                book.asks.clear()
            book.last_snapshot_ts = ts
            book.synced = True
        else:
            book.last_snapshot_ts = None
            if not book.synced:
                self.ignored_unsynced += 1
                return None
        for side, levels in ((book.bids, bids), (book.asks, asks)):
            for level in levels or ():
                price, amount = level["price"], level["amount"]
                if price is None or amount is None:
                    continue
                if amount == 0:
                    side.pop(price, None)
                else:
                    side[price] = amount
        best_asks = heapq.nsmallest(SNAPSHOT_DEPTH, book.asks.items())
        best_bids = heapq.nlargest(SNAPSHOT_DEPTH, book.bids.items())
        top = (tuple(best_asks), tuple(best_bids))
        if top == book.top:
            return None
        book.top = top
        ask_p, ask_a = best_asks[0] if best_asks else (None, None)
        bid_p, bid_a = best_bids[0] if best_bids else (None, None)
        return ask_p, ask_a, bid_p, bid_a
