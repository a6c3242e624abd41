"""Test data for the warehouse tests: lake-shaped tables built here, plus independent read-backs.

No tests live here. Tables follow the lake's schemas (``CANDLE_SCHEMA``, ``book_snapshot_schema``)
column by column, with values that differ per row, per instrument and per seed, so a lost,
duplicated or misplaced row changes what the read-back returns.
"""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, time, timedelta

import pyarrow as pa

from market_data_assets.candles.schema import CANDLE_SCHEMA, book_snapshot_schema

IDENTITY = ("instrument_key", "exchange", "instrument_type", "timeframe", "timestamp")


def _values(field: pa.Field, n: int, rng: random.Random) -> pa.Array:
    if pa.types.is_integer(field.type):
        return pa.array([rng.randrange(0, 1000) for _ in range(n)], field.type)
    if pa.types.is_floating(field.type):
        values = [round(rng.uniform(1, 1e5), 6) for _ in range(n)]
        if field.nullable:
            values = [None if rng.random() < 0.2 else v for v in values]
        return pa.array(values, field.type)
    if pa.types.is_timestamp(field.type):
        base = datetime(2024, 1, 1, tzinfo=UTC)
        return pa.array([base + timedelta(seconds=rng.randrange(0, 10**6)) for _ in range(n)], field.type)
    raise AssertionError(f"test data has no generator for {field}")


def lake_table(
    schema: pa.Schema,
    exchange: str,
    day: date,
    key: str,
    rows: int,
    *,
    timeframe: str = "1m",
    seed: int = 0,
    start: datetime | None = None,
    step: timedelta = timedelta(minutes=1),
) -> pa.Table:
    """``rows`` buckets of one instrument on ``day`` (or from ``start``), typed exactly as ``schema``."""
    rng = random.Random(f"{exchange}|{day}|{key}|{seed}")
    first = start or datetime.combine(day, time(0), tzinfo=UTC)
    columns: dict[str, pa.Array] = {}
    for field in schema:
        if field.name == "instrument_key":
            columns[field.name] = pa.array([key] * rows, field.type)
        elif field.name == "exchange":
            columns[field.name] = pa.array([exchange] * rows, field.type)
        elif field.name == "instrument_type":
            columns[field.name] = pa.array([key.split(":")[1]] * rows, field.type)
        elif field.name == "density":
            columns[field.name] = pa.array(["dense"] * rows, field.type)
        elif field.name == "timeframe":
            columns[field.name] = pa.array([timeframe] * rows, field.type)
        elif field.name == "timestamp":
            columns[field.name] = pa.array([first + i * step for i in range(rows)], field.type)
        elif field.name == "book_depth":
            depth = sum(1 for n in schema.names if n.startswith("ask_price_"))
            columns[field.name] = pa.array([depth] * rows, field.type)
        else:
            columns[field.name] = _values(field, rows, rng)
    return pa.table(columns, schema=schema)


def candle_table(exchange: str, day: date, key: str, rows: int, **kw: object) -> pa.Table:
    return lake_table(CANDLE_SCHEMA, exchange, day, key, rows, **kw)  # type: ignore[arg-type]


def book_table(exchange: str, day: date, key: str, rows: int, depth: int, **kw: object) -> pa.Table:
    return lake_table(book_snapshot_schema(depth), exchange, day, key, rows, **kw)  # type: ignore[arg-type]


def canonical_rows(table: pa.Table, columns: list[str]) -> list[tuple]:
    """Rows as comparable tuples, timestamps as UTC instants, sorted; missing columns are None."""
    out = []
    for row in table.to_pylist():
        values = []
        for c in columns:
            v = row.get(c)
            if isinstance(v, datetime):
                v = v.astimezone(UTC) if v.tzinfo else v.replace(tzinfo=UTC)
            values.append(v)
        out.append(tuple(values))
    return sorted(out, key=repr)
