"""Shared by the candle and book snapshot tests: raw tick files in the lake layout, and references.

The references recompute every candle feature straight from tick rows with plain Python loops,
independently of ``market_data_assets.candles`` (they share only the documented definitions).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta

import pyarrow as pa

from market_data_assets.storage.base import ObjectStore
from market_data_assets.storage.layout import raw_ticks_path
from market_data_assets.tardis.formats import INSTRUMENT_KEY_COLUMN, get_spec

DAY = date(2024, 1, 2)
NEXT = DAY + timedelta(days=1)
EXCHANGE = "binance"
US = 1_000_000
DAY_US = 86_400 * US
WIDTHS = {"15s": 15, "1m": 60, "5m": 300, "15m": 900, "1h": 3600, "4h": 14400, "24h": 86400}


def day_start(day: date = DAY) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()) * US


def at(h: int, m: int = 0, s: int = 0, micro: int = 0, day: date = DAY) -> int:
    """Epoch microseconds of ``day`` h:m:s.micro UTC."""
    return day_start(day) + ((h * 60 + m) * 60 + s) * US + micro


def write_ticks(store: ObjectStore, data_type: str, file_day: date, key: str, rows: list[dict]) -> str:
    """A normalized tick Parquet file as the raw_ticks asset writes it (spec schema, layout path)."""
    spec = get_spec(data_type)
    schema = spec.arrow_schema
    columns: dict[str, pa.Array] = {}
    for field in schema:
        name = field.name
        if name == INSTRUMENT_KEY_COLUMN:
            values: list = [key] * len(rows)
        elif name == "exchange":
            values = [EXCHANGE] * len(rows)
        elif name == "symbol":
            values = [key.split(":")[2]] * len(rows)
        elif name == "local_timestamp":
            values = [r.get("local_timestamp", r["timestamp"]) for r in rows]
        else:
            values = [r.get(name) for r in rows]
        if pa.types.is_timestamp(field.type):
            columns[name] = pa.array(values, pa.int64()).cast(field.type)
        elif pa.types.is_dictionary(field.type):
            columns[name] = pa.array(values, pa.string()).dictionary_encode().cast(field.type)
        else:
            columns[name] = pa.array(values, field.type)
    path = raw_ticks_path(file_day, data_type, key)
    store.write_parquet(pa.table(columns, schema=schema), path)
    return path


# --- references -------------------------------------------------------------------------------


def _of_day(rows: Iterable[dict], day: date = DAY) -> list[dict]:
    """Rows stamped inside ``day`` by exchange time, stably ordered by it (file order breaks ties)."""
    lo, hi = day_start(day), day_start(day) + DAY_US
    return sorted((r for r in rows if lo <= r["timestamp"] < hi), key=lambda r: r["timestamp"])


def reference_candles(
    trades: list[dict],
    timeframe: str,
    book: list[dict] | None = None,
    derivative: list[dict] | None = None,
    liquidations: list[dict] | None = None,
    day: date = DAY,
) -> list[dict]:
    """Every candle column, one dict per bucket of the day, by plain loops over the tick rows."""
    width = WIDTHS[timeframe] * US
    start = day_start(day)
    n = DAY_US // width
    t = _of_day(trades, day)
    r2 = [0.0] + [(math.log(b["price"]) - math.log(a["price"])) ** 2 for a, b in zip(t, t[1:], strict=False)]
    per_bucket: list[list[int]] = [[] for _ in range(n)]
    for i, tr in enumerate(t):
        per_bucket[(tr["timestamp"] - start) // width].append(i)
    out = []
    last_close = None
    for k in range(n):
        idx = per_bucket[k]
        trs = [t[i] for i in idx]
        row: dict = {"timestamp": start + k * width}
        if trs:
            prices = [x["price"] for x in trs]
            row |= {"open": prices[0], "high": max(prices), "low": min(prices), "close": prices[-1]}
            last_close = prices[-1]
        else:
            row |= {"open": last_close, "high": last_close, "low": last_close, "close": last_close}
        volume = sum(x["amount"] for x in trs)
        notional = sum(x["price"] * x["amount"] for x in trs)
        row |= {
            "volume": volume,
            "notional": notional,
            "vwap": notional / volume if volume else None,
            "trade_count": len(trs),
            "buy_volume": sum(x["amount"] for x in trs if x["side"] == "buy"),
            "sell_volume": sum(x["amount"] for x in trs if x["side"] == "sell"),
            "buy_count": sum(1 for x in trs if x["side"] == "buy"),
            "sell_count": sum(1 for x in trs if x["side"] == "sell"),
            "realized_variance": sum(r2[i] for i in idx),
            "max_trade_amount": max((x["amount"] for x in trs), default=None),
        }
        out.append(row)
    _reference_book(out, book or [], width, day)
    _reference_derivative(out, derivative or [], width, day)
    _reference_liquidations(out, liquidations or [], width, day)
    return out


def _reference_book(out: list[dict], book: list[dict], width: int, day: date) -> None:
    snaps = _of_day(book, day)
    end = day_start(day) + DAY_US
    segments = []  # (from, to, state) of the step function; zero-length steps drop out naturally
    for i, s in enumerate(snaps):
        nxt = snaps[i + 1]["timestamp"] if i + 1 < len(snaps) else end
        segments.append((s["timestamp"], nxt, s))
    for row in out:
        b0, b1 = row["timestamp"], row["timestamp"] + width
        cov, spread, mid, imb = 0, 0.0, 0.0, 0.0
        for s0, s1, s in segments:
            overlap = min(s1, b1) - max(s0, b0)
            if overlap <= 0:
                continue
            ap, aa, bp, ba = (
                s.get("ask_price_0"),
                s.get("ask_amount_0"),
                s.get("bid_price_0"),
                s.get("bid_amount_0"),
            )
            if None in (ap, aa, bp, ba) or aa + ba <= 0:
                continue
            cov += overlap
            spread += (ap - bp) * overlap
            mid += (ap + bp) / 2 * overlap
            imb += (ba - aa) / (ba + aa) * overlap
        row |= {
            "book_covered_us": cov,
            "spread_time_integral": spread,
            "mid_time_integral": mid,
            "imbalance_time_integral": imb,
            "twa_spread": spread / cov if cov else None,
            "twa_mid": mid / cov if cov else None,
            "twa_imbalance": imb / cov if cov else None,
            "snapshot_count": sum(1 for s in snaps if b0 <= s["timestamp"] < b1),
        }


DERIVATIVE_FIELDS = ("mark_price", "index_price", "funding_rate", "open_interest")


def _reference_derivative(out: list[dict], ticker: list[dict], width: int, day: date) -> None:
    rows = _of_day(ticker, day)
    for row in out:
        b1 = row["timestamp"] + width
        for f in DERIVATIVE_FIELDS:
            vals = [r[f] for r in rows if r["timestamp"] < b1 and r.get(f) is not None]
            row[f] = vals[-1] if vals else None


def _reference_liquidations(out: list[dict], liquidations: list[dict], width: int, day: date) -> None:
    rows = _of_day(liquidations, day)
    for row in out:
        b0, b1 = row["timestamp"], row["timestamp"] + width
        inside = [r for r in rows if b0 <= r["timestamp"] < b1]
        row |= {
            "liquidation_buy_volume": sum(r["amount"] for r in inside if r["side"] == "buy"),
            "liquidation_sell_volume": sum(r["amount"] for r in inside if r["side"] == "sell"),
            "liquidation_buy_count": sum(1 for r in inside if r["side"] == "buy"),
            "liquidation_sell_count": sum(1 for r in inside if r["side"] == "sell"),
        }


def reference_book_as_of_end(book: list[dict], timeframe: str, depth: int, day: date = DAY) -> list[dict]:
    """For each bucket: the last snapshot (file order breaks ties) stamped strictly before the bucket end."""
    width = WIDTHS[timeframe] * US
    start = day_start(day)
    snaps = _of_day(book, day)
    out = []
    for k in range(DAY_US // width):
        end = start + (k + 1) * width
        before = [s for s in snaps if s["timestamp"] < end]
        s = before[-1] if before else None
        row = {"timestamp": start + k * width, "snapshot_timestamp": s["timestamp"] if s else None}
        for i in range(depth):
            for name in (f"ask_price_{i}", f"ask_amount_{i}", f"bid_price_{i}", f"bid_amount_{i}"):
                row[name] = s.get(name) if s else None
        out.append(row)
    return out


def assert_rows_equal(actual: list[dict], expected: list[dict], context: str, rel: float = 1e-9) -> None:
    """Column-by-column comparison; floats to ``rel`` (summation order differs), the rest exactly."""
    assert len(actual) == len(expected), f"{context}: {len(actual)} rows, expected {len(expected)}"
    for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
        for name, ev in e.items():
            av = a[name]
            if isinstance(av, datetime):
                av = int(av.timestamp()) * US + av.microsecond
            where = f"{context}: row {i} (bucket {e['timestamp']}) column {name}: got {av!r}, expected {ev!r}"
            if ev is None or av is None:
                assert av is None and ev is None, where
            elif isinstance(ev, float) or isinstance(av, float):
                # Integrals are in price*microseconds: terms of ~1e7 may cancel to ~0 at 1e-9 precision.
                abs_tol = 1e-3 if name.endswith("_time_integral") else 1e-12
                assert math.isclose(av, ev, rel_tol=rel, abs_tol=abs_tol), where
            else:
                assert av == ev, where
