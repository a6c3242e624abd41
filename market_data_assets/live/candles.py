"""15s and 1m candles built incrementally from the live stream with the batch code itself.

No candle rule is spelled here. Each instrument's open buckets are buffered as tick rows; closing
them runs ``candles.compute``'s feature functions and ``assemble_candles`` (15s) and
``candles.rollup.rollup`` (1m) over the buffered rows plus the *context* the next bucket needs
from the closed ones:

- the last trade before the buckets (realized variance across bucket edges, the carried close),
- the last book snapshot (the lead-in of the first snapshot, the book held through empty buckets),
- one row with the last non-null value of each derivative field (carried forward),
- for 1m, the last closed 15s row before the minute (the book held since the minute start).

Context rows sit in earlier buckets, so the batch functions give the closed buckets exactly what
they give when they see the whole day; the rows they produce for the context's own bucket are
dropped. Rows are ordered like the batch orders them: by exchange timestamp, ties in file order
(which the stream's local-timestamp order is).

A bucket closes when the stream's exchange time (the largest timestamp seen) passes its end plus
the allowed lateness. A message for a bucket already closed is *late*: counted and logged, never
silently applied. As in batch, each UTC day stands alone (no carry-over from the previous day),
and an instrument gets candles only once it has traded on the day: at its first closable trade,
its buckets since midnight are closed together (null OHLC before the first trade).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

import polars as pl

from market_data_assets.candles.compute import (
    AMOUNT,
    BUCKET,
    DERIVATIVE_FIELDS,
    KEY,
    PRICE,
    SIDE,
    TOP_OF_BOOK,
    TS,
    DayGrid,
    assemble_candles,
    book_features,
    derivative_features,
    liquidation_features,
    trade_features,
)
from market_data_assets.candles.density import DEFAULT_POLICY, DensityPolicy
from market_data_assets.candles.rollup import rollup
from market_data_assets.candles.timeframes import BASE_TIMEFRAME, get_timeframe
from market_data_assets.days import US_PER_DAY, day_start_us
from market_data_assets.settings import Settings

DEFAULT_LATENESS_US = int(Settings.live_lateness_s * 1_000_000)
"""The default of MARKET_DATA_LIVE_LATENESS_S, in microseconds (settings.py is its one home)."""

log = logging.getLogger(__name__)

LIVE_TIMEFRAMES: tuple[str, ...] = ("15s", "1m")
_BASE = BASE_TIMEFRAME
_MINUTE = get_timeframe("1m")
_LOCAL = "_local"
_SEQ = "_seq"

# Tick row layouts: (exchange ts µs, local ts µs, arrival seq, *fields)
TRADE_FIELDS = (PRICE, AMOUNT, SIDE)
BOOK_FIELDS = TOP_OF_BOOK
TICKER_FIELDS = DERIVATIVE_FIELDS
LIQUIDATION_FIELDS = (AMOUNT, SIDE)
KINDS: dict[str, tuple[str, ...]] = {
    "trades": TRADE_FIELDS,
    "book": BOOK_FIELDS,
    "derivative_ticker": TICKER_FIELDS,
    "liquidations": LIQUIDATION_FIELDS,
}
_DTYPES: dict[str, pl.DataType] = {
    PRICE: pl.Float64(),
    AMOUNT: pl.Float64(),
    SIDE: pl.String(),
    **{c: pl.Float64() for c in (*TOP_OF_BOOK, *DERIVATIVE_FIELDS)},
}


_DAYS: dict[int, date] = {}


def rows_after(frame: pl.DataFrame, until_us: dict[str, int]) -> pl.DataFrame:
    """The rows of ``frame`` whose bucket is later than its instrument's entry in ``until_us`` (the
    last bucket a sink already wrote, epoch µs); instruments without an entry keep every row. The
    one rule by which the lake and the warehouse writers never write a bucket twice."""
    if not until_us:
        return frame
    known = pl.DataFrame(
        {KEY: list(until_us), "_until": list(until_us.values())}, schema={KEY: pl.String, "_until": pl.Int64}
    )
    return (
        frame.join(known, on=KEY, how="left")
        .filter(pl.col("_until").is_null() | (pl.col("timestamp").dt.epoch("us") > pl.col("_until")))
        .drop("_until")
    )


def day_of_us(us: int) -> date:
    """UTC day of an epoch-µs instant (cached: called for every message)."""
    index = us // US_PER_DAY
    day = _DAYS.get(index)
    if day is None:
        if len(_DAYS) > 1024:
            _DAYS.clear()
        day = _DAYS[index] = datetime.fromtimestamp(index * 86_400, UTC).date()
    return day


@dataclass
class _InstrumentDay:
    """One instrument's state within one UTC day."""

    closed_until: int
    """Start of the first bucket not yet closed (day start until the instrument first closes)."""
    buffers: dict[str, list[tuple]] = field(default_factory=lambda: defaultdict(list))
    context: dict[str, tuple] = field(default_factory=dict)
    rolled_until: int = 0
    """Start of the first minute not yet rolled up to 1m."""
    pending_15s: pl.DataFrame | None = None
    """Closed 15s rows of minutes not yet rolled up, with the context row first."""
    traded: bool = False


@dataclass
class LiveCounters:
    messages: int = 0
    late: int = 0
    closed_15s: int = 0
    closed_1m: int = 0


class LiveCandles:
    """Incremental 15s + 1m candles of one exchange (many instruments), closed by stream time."""

    def __init__(
        self,
        exchange: str,
        lateness_us: int = DEFAULT_LATENESS_US,
        policy: DensityPolicy = DEFAULT_POLICY,
    ) -> None:
        self.exchange = exchange
        self.lateness_us = lateness_us
        self.policy = policy
        self.days: dict[date, dict[str, _InstrumentDay]] = {}
        self.finished_days: set[date] = set()
        self.stream_time_us = 0
        """Largest exchange timestamp seen (the stream's exchange time)."""
        self.start_us: int | None = None
        """Earliest bucket the service can know fully: the bucket of its first message minus the
        lateness (a day it joined mid-way has no live rows before that)."""
        self.counters = LiveCounters()
        self._seq = 0

    # --- input --------------------------------------------------------------------------------

    def add(self, kind: str, key: str, ts: int, local: int, values: tuple) -> bool:
        """Buffer one tick; False (and counted) when its bucket is already closed."""
        self.counters.messages += 1
        if self.start_us is None:
            first = min(ts, local) - self.lateness_us
            self.start_us = first - first % _BASE.us
        day = day_of_us(ts)
        if day in self.finished_days:
            return self._late(kind, key, ts)
        instruments = self.days.get(day)
        if instruments is None:
            instruments = self.days[day] = {}
        state = instruments.get(key)
        if state is None:
            start = max(ts - ts % US_PER_DAY, self.start_us)
            if ts < start:
                return self._late(kind, key, ts)
            state = instruments[key] = _InstrumentDay(
                closed_until=start, rolled_until=start - start % _MINUTE.us
            )
        elif ts < state.closed_until:
            return self._late(kind, key, ts)
        self._seq += 1
        state.buffers[kind].append((ts, local, self._seq, *values))
        if kind == "trades":
            state.traded = True
        if ts > self.stream_time_us:
            self.stream_time_us = ts
        return True

    def note_first(self, ts: int, local: int) -> None:
        """The first candle message's times (``start_us``), when ticks are added in groups."""
        if self.start_us is None:
            first = min(ts, local) - self.lateness_us
            self.start_us = first - first % _BASE.us

    def add_rows(self, kind: str, key: str, ts: list[int], local: list[int], values: list[list]) -> int:
        """Buffer one instrument's ticks of one kind in arrival order (``values``: one list per field).

        The same as ``add`` per row, without its per-row Python work in the common case (every row
        in one open day, none before the instrument's first open bucket). Returns the rows kept.
        """
        n = len(ts)
        if n == 0:
            return 0
        lo, hi = min(ts), max(ts)
        day = day_of_us(lo)
        instruments = self.days.get(day)
        state = instruments.get(key) if instruments is not None else None
        if state is None or day != day_of_us(hi) or day in self.finished_days or lo < state.closed_until:
            kept = 0
            for i in range(n):
                kept += self.add(kind, key, ts[i], local[i], tuple(v[i] for v in values))
            return kept
        self.counters.messages += n
        seq = self._seq
        self._seq += n
        state.buffers[kind].extend(zip(ts, local, range(seq + 1, seq + n + 1), *values, strict=True))
        if kind == "trades":
            state.traded = True
        if hi > self.stream_time_us:
            self.stream_time_us = hi
        return n

    def _late(self, kind: str, key: str, ts: int) -> bool:
        self.counters.late += 1
        if self.counters.late <= 20 or self.counters.late % 1000 == 0:
            log.warning(
                "late %s for %s stamped %s (bucket already closed; %d late so far)",
                kind,
                key,
                datetime.fromtimestamp(ts / 1e6, UTC).isoformat(),
                self.counters.late,
            )
        return False

    # --- closing ------------------------------------------------------------------------------

    def watermark_us(self) -> int:
        """Buckets ending at or before this are closable."""
        return self.stream_time_us - self.lateness_us

    def close(self, until_us: int | None = None) -> dict[str, pl.DataFrame]:
        """Close every bucket ending at or before ``until_us`` (default: the watermark).

        Returns the newly closed candles per timeframe (``15s``, ``1m``), in ``CANDLE_SCHEMA``.
        """
        limit = self.watermark_us() if until_us is None else until_us
        end = limit - limit % _BASE.us
        out: dict[str, list[pl.DataFrame]] = {tf: [] for tf in LIVE_TIMEFRAMES}
        for day in sorted(self.days):
            day_start = day_start_us(day)
            if end <= day_start:
                break
            day_end = day_start + US_PER_DAY
            close_to = min(end, day_end)
            fifteen, minute = self._close_day(day, close_to)
            out["15s"].extend(fifteen)
            out["1m"].extend(minute)
            if close_to >= day_end:
                untraded = [k for k, s in self.days[day].items() if not s.traded]
                if untraded:
                    log.info(
                        "%s %s: no trade on the day, no candles for %s", self.exchange, day, untraded[:5]
                    )
                del self.days[day]
                self.finished_days.add(day)
        result = {tf: (pl.concat(frames) if frames else pl.DataFrame()) for tf, frames in out.items()}
        self.counters.closed_15s += result["15s"].height
        self.counters.closed_1m += result["1m"].height
        return result

    def _frames(
        self, states: dict[str, _InstrumentDay], close_to: int
    ) -> tuple[
        dict[str, pl.LazyFrame | None], dict[str, dict[str, list[tuple]]], dict[str, dict[str, list[tuple]]]
    ]:
        """Per kind: the context rows + buffered rows stamped before ``close_to``, ordered like batch.

        Also returns, per kind and instrument, the rows taken (sorted) and the rows left.
        """
        frames: dict[str, pl.LazyFrame | None] = {}
        remaining: dict[str, dict[str, list[tuple]]] = {kind: {} for kind in KINDS}
        taken: dict[str, dict[str, list[tuple]]] = {kind: {} for kind in KINDS}
        for kind, fields in KINDS.items():
            keys: list[str] = []
            rows: list[tuple] = []
            for key, state in states.items():
                buffered = state.buffers.get(kind, [])
                if buffered and buffered[-1][0] < close_to and max(buffered)[0] < close_to:
                    take, remaining[kind][key] = buffered, []
                else:
                    take = [r for r in buffered if r[0] < close_to]
                    remaining[kind][key] = [r for r in buffered if r[0] >= close_to]
                # rows are (ts, local, seq, ...) with a unique seq: the plain tuple order is the
                # batch order (timestamp, ties in arrival order) and never compares the values
                take.sort()
                taken[kind][key] = take
                ctx = state.context.get(kind)
                chunk = ([ctx] if ctx is not None else []) + take
                keys.extend([key] * len(chunk))
                rows.extend(chunk)
            if not rows:
                frames[kind] = None
                continue
            columns = list(zip(*rows, strict=True))
            data: dict[str, pl.Series] = {
                KEY: pl.Series(KEY, keys, pl.String),
                TS: pl.Series(TS, columns[0], pl.Int64).cast(pl.Datetime("us", "UTC")),
            }
            for i, name in enumerate(fields):
                data[name] = pl.Series(name, columns[3 + i], _DTYPES[name], strict=False)
            frames[kind] = pl.DataFrame(data).lazy()
        return frames, remaining, taken

    def _close_day(self, day: date, close_to: int) -> tuple[list[pl.DataFrame], list[pl.DataFrame]]:
        instruments = self.days[day]
        # instruments that traded before close_to (now or in a closed bucket) and have buckets to close
        states = {
            k: s
            for k, s in instruments.items()
            if s.closed_until < close_to
            and ("trades" in s.context or any(r[0] < close_to for r in s.buffers.get("trades", [])))
        }
        if not states:
            return [], []
        grid = DayGrid(day, _BASE)
        frames, remaining, taken_rows = self._frames(states, close_to)
        trades = frames["trades"]
        assert trades is not None
        features = []
        if frames["book"] is not None:
            features.append(book_features(frames["book"], grid))
        if frames["derivative_ticker"] is not None:
            features.append(derivative_features(frames["derivative_ticker"], grid))
        if frames["liquidations"] is not None:
            features.append(liquidation_features(frames["liquidations"], grid))
        candles = assemble_candles(grid, self.exchange, trade_features(trades, grid), features, self.policy)
        bounds = pl.DataFrame(
            {KEY: list(states), "_from": [s.closed_until for s in states.values()]},
            schema={KEY: pl.String, "_from": pl.Int64},
        )
        ts = pl.col("timestamp").cast(pl.Int64)
        closed = (
            candles.join(bounds, on=KEY, how="inner")
            .filter((ts >= pl.col("_from")) & (ts < close_to))
            .drop("_from")
            .sort(KEY, "timestamp")
        )
        # carry what the next buckets need, drop what was consumed
        for kind in KINDS:
            for key, state in states.items():
                taken = taken_rows[kind][key]
                if taken:
                    state.context[kind] = _context_row(kind, state.context.get(kind), taken)
                state.buffers[kind] = remaining[kind][key]
        for state in states.values():
            state.closed_until = close_to
        minutes = self._roll_up(day, states, closed, close_to)
        return [closed], minutes

    def _roll_up(
        self, day: date, states: dict[str, _InstrumentDay], closed: pl.DataFrame, close_to: int
    ) -> list[pl.DataFrame]:
        roll_to = close_to - close_to % _MINUTE.us
        out = []
        by_key = closed.partition_by(KEY, as_dict=True, maintain_order=True) if closed.height else {}
        for key, state in states.items():
            rows = by_key.get((key,))
            pending = state.pending_15s
            if rows is not None:
                pending = rows if pending is None else pl.concat([pending, rows])
            if pending is None:
                continue
            ts = pending["timestamp"].cast(pl.Int64)
            ready = pending.filter(ts < roll_to)
            if ready.height == 0 or roll_to <= state.rolled_until:
                state.pending_15s = pending
                continue
            minute = rollup(ready, _MINUTE)
            minute = minute.filter(pl.col("timestamp").cast(pl.Int64) >= state.rolled_until)
            out.append(minute)
            state.rolled_until = roll_to
            # the last row of the rolled minutes is the next minute's context
            state.pending_15s = pl.concat([ready.tail(1), pending.filter(ts >= roll_to)])
        return out


def _context_row(kind: str, previous: tuple | None, taken: list[tuple]) -> tuple:
    """What the next buckets need from the consumed rows (in batch order)."""
    if kind != "derivative_ticker":
        return taken[-1]
    # one row carrying the last non-null value of each derivative field
    values = list(previous[3:]) if previous is not None else [None] * len(TICKER_FIELDS)
    for row in taken:
        for i, v in enumerate(row[3:]):
            if v is not None:
                values[i] = v
    last = taken[-1]
    return (last[0], last[1], last[2], *values)


_ = BUCKET  # the compute module's bucket column: the grid the closed rows come from
