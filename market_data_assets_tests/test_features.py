"""MFT features: every registry feature against plain Python on hand-built candles spanning midnight,
the point-in-time rule, a missing earlier day, sparse vs dense instruments, and the docs.

The hand-built candles have what makes feature code go wrong: closes null before an instrument's
first trade of a day, buckets without trades (zero volume, flat OHLC), flat closes (std 0),
constant signed volume (zero variance), missing mark/index/open interest, buckets without book
(null ofi_sum), an instrument that starts on D (no D-1 rows) and one whose D starts traded at
00:00 (its first return reaches the last bucket of D-1).
"""

from __future__ import annotations

import math
import random
import re
import statistics
from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest
from polars.testing import assert_series_equal

from market_data_assets.candles.compute import InstrumentDayTicks, compute_candles
from market_data_assets.candles.density import DensityPolicy
from market_data_assets.candles.schema import CANDLE_SCHEMA
from market_data_assets.candles.timeframes import get_timeframe
from market_data_assets.days import US_PER_DAY, day_start_us
from market_data_assets.features.build import (
    LOOKBACK_FLAG,
    build_features,
    lookback_span,
)
from market_data_assets.features.compute import compute_features
from market_data_assets.features.registry import (
    FEATURE_NAMES,
    FEATURE_SCHEMA,
    FEATURE_TIMEFRAMES,
    FEATURES,
    lookback_days,
)
from market_data_assets.storage.layout import CANDLES_AREA, features_path
from market_data_assets.storage.local import LocalStore
from market_data_assets.storage.slices import META_PREFIX, SliceRef, SlicesOutput, write_output

DAY = date(2024, 1, 10)
EXCHANGE = "binance-futures"
A = "BINANCE-FUTURES:PERP:BTC-USDT"  # trades from 00:00 every day: returns cross midnight
B = "BINANCE-FUTURES:PERP:ETH-USDT"  # first trade of each day at the 7th bucket: null closes before
C = "BINANCE-FUTURES:FUTURE:BTC-USDT-240329"  # only on D: every window crossing midnight is null
DOCS = Path(__file__).resolve().parents[1] / "docs" / "FEATURES.md"


def hand_built(timeframe: str, days: list[date], seed: int = 7) -> pl.DataFrame:
    """Candle rows (CANDLE_SCHEMA) of A and B on ``days`` and of C on the last day, dense."""
    rng = random.Random(seed)
    tf = get_timeframe(timeframe)
    rows: list[dict] = []
    for key in (A, B, C):
        close = 100.0 if key != B else 50.0
        oi = 1000.0
        for day in days if key != C else days[-1:]:
            start = day_start_us(day)
            last: float | None = None
            for i in range(tf.buckets_per_day):
                t = start + i * tf.us
                traded = (key == A and i == 0) or (not (key == B and i < 6) and rng.random() < 0.8)
                flat = (i // 7) % 9 == 3  # stretches of flat closes and constant signed volume
                if traded:
                    if not flat:
                        close *= math.exp(rng.gauss(0, 0.002))
                    hi, lo = close * (1 + rng.random() * 1e-3), close * (1 - rng.random() * 1e-3)
                    bv, sv = (2.0, 1.0) if flat else (rng.choice([0.0, rng.random() * 5]), rng.random() * 5)
                    count = rng.randint(1, 9)
                    last = close
                    ohlc = (close, hi, lo, close)
                else:
                    bv = sv = 0.0
                    count = 0
                    ohlc = (last, last, last, last)
                volume = bv + sv + (0.5 if traded and not flat else 0.0)
                notional = volume * close if traded else 0.0
                if traded and rng.random() < 0.05:
                    notional = 0.0
                oi = oi + rng.choice([0.0, 1.0, -2.5]) if rng.random() < 0.9 else oi
                covered = rng.random() < 0.85
                rows.append(
                    {
                        "instrument_key": key,
                        "exchange": EXCHANGE,
                        "instrument_type": key.split(":")[1],
                        "density": "dense",
                        "timeframe": tf.name,
                        "timestamp": t,
                        "open": ohlc[0],
                        "high": ohlc[1],
                        "low": ohlc[2],
                        "close": ohlc[3],
                        "volume": volume,
                        "notional": notional,
                        "vwap": notional / volume if volume else None,
                        "trade_count": count,
                        "buy_volume": bv,
                        "sell_volume": sv,
                        "buy_count": 1 if bv else 0,
                        "sell_count": 1 if sv else 0,
                        "realized_variance": rng.random() * 1e-5 if traded else 0.0,
                        "max_trade_amount": max(bv, sv) if traded else None,
                        "book_covered_us": tf.us if covered else 0,
                        "ofi_sum": rng.gauss(0, 3) if covered else None,
                        "mark_price": close * 1.0001 if rng.random() < 0.9 else None,
                        "index_price": close if rng.random() < 0.9 else None,
                        "open_interest": oi if rng.random() < 0.95 else None,
                    }
                )
    frame = pl.DataFrame(rows, infer_schema_length=None).with_columns(
        pl.col("timestamp").cast(pl.Datetime("us", "UTC"))
    )
    missing = [f for f in CANDLE_SCHEMA if f.name not in frame.columns]
    frame = frame.with_columns(pl.lit(None if f.nullable else 0).alias(f.name) for f in missing)
    frame = frame.select(CANDLE_SCHEMA.names)
    return pl.from_arrow(frame.to_arrow().cast(CANDLE_SCHEMA))  # type: ignore[return-value]


# --- the plain-Python reference ----------------------------------------------------------------


def reference(candles: pl.DataFrame, day: date, timeframe: str) -> dict[tuple[str, int], dict]:
    """(key, bucket start us) -> every feature of D, by the definitions in docs/FEATURES.md."""
    width = get_timeframe(timeframe).us
    by = {
        (r["instrument_key"], r["timestamp"]): r
        for r in candles.with_columns(pl.col("timestamp").cast(pl.Int64)).to_dicts()
    }
    out = {}
    d0 = day_start_us(day)
    for key in sorted({k for k, _ in by}):
        for t in range(d0, d0 + US_PER_DAY, width):
            if (key, t) not in by:
                continue

            def row(k: int, key: str = key, t: int = t) -> dict | None:
                return by.get((key, t - k * width))

            def lr(k: int) -> float | None:
                a, b = row(k), row(k + 1)
                if a is None or b is None or a["close"] is None or b["close"] is None:
                    return None
                return math.log(a["close"] / b["close"])

            w = [row(k) for k in range(20)]
            full = all(r is not None for r in w)
            full21 = full and row(20) is not None
            r0 = w[0]
            f: dict[str, float | None] = {}
            f["log_return"] = lr(0)
            f["realized_vol_20"] = math.sqrt(sum(r["realized_variance"] for r in w)) if full else None
            traded = [r for r in w if full and r["trade_count"] > 0]
            f["parkinson_vol_20"] = (
                math.sqrt(
                    sum(math.log(r["high"] / r["low"]) ** 2 for r in traded) / (4 * math.log(2) * len(traded))
                )
                if traded
                else None
            )
            closes = [r["close"] for r in w] if full else [None]
            if None in closes or statistics.stdev(closes) == 0:
                f["zscore_close_20"] = None
            else:
                f["zscore_close_20"] = (r0["close"] - statistics.fmean(closes)) / statistics.stdev(closes)
            tot = r0["buy_volume"] + r0["sell_volume"]
            f["trade_imbalance"] = (r0["buy_volume"] - r0["sell_volume"]) / tot if tot else None
            pairs = [(w[k]["buy_volume"] - w[k]["sell_volume"], lr(k)) for k in range(20)] if full21 else []
            pairs = [(x, y) for x, y in pairs if y is not None]
            xs = [x for x, _ in pairs]
            if len(pairs) < 3 or len(set(xs)) == 1:
                f["kyle_lambda_20"] = None
            else:
                mx, my = statistics.fmean(xs), statistics.fmean(y for _, y in pairs)
                f["kyle_lambda_20"] = sum((x - mx) * (y - my) for x, y in pairs) / sum(
                    (x - mx) ** 2 for x in xs
                )
            terms = (
                [
                    abs(lr(k)) / w[k]["notional"]
                    for k in range(20)
                    if w[k]["notional"] > 0 and lr(k) is not None
                ]
                if full21
                else []
            )
            f["amihud_20"] = statistics.fmean(terms) if terms else None
            m, i = r0["mark_price"], r0["index_price"]
            f["basis_bps"] = (m - i) / i * 10_000 if m is not None and i is not None else None
            prev = row(1)
            oi0, oi1 = r0["open_interest"], prev["open_interest"] if prev else None
            f["open_interest_change"] = oi0 - oi1 if oi0 is not None and oi1 is not None else None
            f["ofi"] = r0["ofi_sum"]
            f["available_at"] = t + width
            out[(key, t)] = f
    return out


def assert_features_equal(got: pl.DataFrame, expected: dict[tuple[str, int], dict], context: str) -> int:
    rows = got.with_columns(pl.col("timestamp", "available_at").cast(pl.Int64)).to_dicts()
    assert len(rows) == len(expected), context
    checked = 0
    for r in rows:
        e = expected[(r["instrument_key"], r["timestamp"])]
        for name in (*FEATURE_NAMES, "available_at"):
            av, ev = r[name], e[name]
            where = f"{context} {r['instrument_key']} {r['timestamp']} {name}: got {av}, expected {ev}"
            if ev is None or av is None:
                assert av is None and ev is None, where
            else:
                assert math.isclose(av, ev, rel_tol=1e-9, abs_tol=1e-15), where
                checked += 1
    return checked


def write_candle_slices(store: LocalStore, candles: pl.DataFrame, days: list[date], timeframe: str) -> None:
    for day in days:
        lo = day_start_us(day)
        part = candles.filter(
            pl.col("timestamp").cast(pl.Int64).is_between(lo, lo + US_PER_DAY, closed="left")
        )
        output = SlicesOutput(
            CANDLES_AREA, day, EXCHANGE, (timeframe,), iter([{timeframe: part}]), lambda _: CANDLE_SCHEMA
        )
        write_output(store, output, 4)


# --- tests ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("timeframe", FEATURE_TIMEFRAMES)
@pytest.mark.slow
def test_every_feature_equals_plain_python_on_candles_spanning_midnight(
    tmp_path: Path, timeframe: str
) -> None:
    store = LocalStore(tmp_path / "lake")
    days = lookback_span(DAY, timeframe)
    candles = hand_built(timeframe, days)
    write_candle_slices(store, candles, days, timeframe)
    summary = build_features(store, DAY, EXCHANGE, timeframe)
    assert summary.flags[LOOKBACK_FLAG] == "true"
    got = pl.concat(pl.read_parquet(store.uri(features_path(DAY, timeframe, k))) for k in (A, B, C))
    assert got.columns == FEATURE_SCHEMA.names
    expected = reference(candles, DAY, timeframe)
    checked = assert_features_equal(got, expected, timeframe)
    assert checked > len(expected) * 3
    if timeframe == "1m":  # the interesting cases are all there
        d0 = day_start_us(DAY)
        assert expected[(A, d0)]["log_return"] is not None  # crosses midnight
        assert (
            expected[(B, d0)]["log_return"] is None
            and expected[(C, d0 + 18 * 60_000_000)]["realized_vol_20"] is None
            and expected[(C, d0 + 19 * 60_000_000)]["realized_vol_20"] is not None
        )
        for name in FEATURE_NAMES:
            values = [e[name] for e in expected.values()]
            assert any(v is None for v in values) and any(v is not None for v in values), name


def test_lookback_days_follow_the_registry() -> None:
    assert {tf: lookback_days(tf) for tf in FEATURE_TIMEFRAMES} == {
        "1m": 1,
        "5m": 1,
        "15m": 1,
        "1h": 1,
        "4h": 4,
        "24h": 20,
    }


@pytest.mark.parametrize(
    ("timeframe", "cut"), [("1m", (13, 7)), ("1m", (0, 0)), ("1h", (5, 0)), ("24h", (0, 0))]
)
@pytest.mark.slow
def test_no_feature_of_row_t_uses_data_at_or_after_t_plus_tf(timeframe: str, cut: tuple[int, int]) -> None:
    """Change every input stamped at or after an instant X; no row with available_at <= X may change."""
    days = lookback_span(DAY, timeframe)
    candles = hand_built(timeframe, days)
    x = day_start_us(DAY) + (cut[0] * 60 + cut[1]) * 60_000_000
    if timeframe == "24h":
        x = day_start_us(DAY)
    future = pl.col("timestamp").cast(pl.Int64) >= x
    numeric = [n for n, t in candles.schema.items() if t in (pl.Float64, pl.Int64)]
    rng = random.Random(3)
    noise = pl.Series([rng.random() * 3 + 0.5 for _ in range(candles.height)])
    changed = candles.with_columns(
        *(
            pl.when(future)
            .then(pl.col(n) * noise.cast(pl.Float64).alias("_n"))
            .otherwise(pl.col(n))
            .cast(candles.schema[n])
            .alias(n)
            for n in numeric
        )
    )
    changed = changed.with_columns(
        pl.when(future).then(pl.lit(0, pl.Int64)).otherwise(pl.col("trade_count")).alias("trade_count")
    )
    before = compute_features(candles, DAY, timeframe)
    after = compute_features(changed, DAY, timeframe)
    known = pl.col("available_at").cast(pl.Int64) <= x
    assert before.filter(known).equals(after.filter(known))
    later = before.filter(~known)
    if later.height:  # and the perturbation did reach the rows after X
        assert not later.equals(after.filter(~known))


@pytest.mark.parametrize("timeframe", ["1m", "1h", "4h"])
@pytest.mark.slow
def test_missing_earlier_day_nulls_exactly_the_windows_that_need_it(tmp_path: Path, timeframe: str) -> None:
    store = LocalStore(tmp_path / "lake")
    days = lookback_span(DAY, timeframe)
    candles = hand_built(timeframe, days)
    write_candle_slices(store, candles, days, timeframe)
    build_features(store, DAY, EXCHANGE, timeframe)
    full = {k: pl.read_parquet(store.uri(features_path(DAY, timeframe, k))) for k in (A, B, C)}
    gone = DAY - timedelta(days=1)
    ref = SliceRef(CANDLES_AREA, gone, timeframe, EXCHANGE)
    for gone_file in store.list(ref.folder + "/"):
        store.delete(gone_file.path)
    summary = build_features(store, DAY, EXCHANGE, timeframe)
    assert summary.flags[LOOKBACK_FLAG] == "false"
    width = get_timeframe(timeframe).us
    gone_end = day_start_us(gone) + US_PER_DAY
    for key, before in full.items():
        path = store.uri(features_path(DAY, timeframe, key))
        assert pq.read_metadata(path).metadata[(META_PREFIX + LOOKBACK_FLAG).encode()] == b"false"
        after = pl.read_parquet(path)
        for f in FEATURES:
            t = after["timestamp"].cast(pl.Int64)
            crosses = t - f.lookback * width < gone_end
            if key == C:  # C never had D-1 rows: nothing changes
                crosses = crosses & False
            assert after.filter(crosses)[f.name].null_count() == int(crosses.sum()), (key, f.name)
            # Equal values (a rolling kernel's rounding may depend on the rows before its window).
            assert_series_equal(
                before.filter(~crosses)[f.name], after.filter(~crosses)[f.name], rel_tol=1e-12, abs_tol=1e-12
            )
            if f.lookback and key == A:
                assert before.filter(crosses)[f.name].null_count() < int(crosses.sum()), (key, f.name)


def _random_ticks(seed: int, days: list[date]) -> InstrumentDayTicks:
    rng = random.Random(seed)
    trades, book = [], []
    price = 100.0
    for day in days:
        t = day_start_us(day)
        end = t + US_PER_DAY
        while t < end:
            t += int(rng.expovariate(1 / 40e6))
            if rng.random() < 0.5:
                price *= math.exp(rng.gauss(0, 0.001))
                trades.append(
                    {
                        "timestamp": t,
                        "price": price,
                        "amount": rng.random(),
                        "side": rng.choice(["buy", "sell"]),
                    }
                )
            else:
                bid = price - rng.random()
                book.append(
                    {
                        "timestamp": t,
                        "ask_price_0": bid + 1,
                        "ask_amount_0": rng.random(),
                        "bid_price_0": bid,
                        "bid_amount_0": rng.random(),
                    }
                )

    def lazy(rows: list[dict]) -> pl.LazyFrame:
        return pl.DataFrame(rows).with_columns(pl.col("timestamp").cast(pl.Datetime("us", "UTC"))).lazy()

    return InstrumentDayTicks(trades=lazy(trades), book=lazy(book))


def test_sparse_instruments_get_the_dense_grid_values_at_their_stored_buckets() -> None:
    """An option's sparse candles give exactly the features the same candles computed dense give."""
    key = "BINANCE-FUTURES:OPTION:BTC-USDT-50000-240112-CALL"
    days = lookback_span(DAY, "1m")
    ticks = _random_ticks(5, days)
    out = {}
    for name, policy in (("sparse", DensityPolicy()), ("dense", DensityPolicy(frozenset()))):
        frames = [compute_candles(ticks, d, key, EXCHANGE, get_timeframe("1m"), policy) for d in days]
        out[name] = compute_features(pl.concat([f for f in frames if f is not None]), DAY, "1m")
    sparse, dense = out["sparse"], out["dense"]
    assert dense.height == 1440 and 100 < sparse.height < 1440 and set(sparse["density"]) == {"sparse"}
    at_stored = dense.join(sparse.select("timestamp"), on="timestamp").drop("density")
    assert at_stored.equals(sparse.drop("density"))


def test_docs_list_exactly_the_registry() -> None:
    text = DOCS.read_text()
    section = text.split("## Features", 1)[1].split("\n## ", 1)[0]
    documented = re.findall(r"^\| `([a-z0-9_]+)` \|", section, flags=re.M)
    assert documented == list(FEATURE_NAMES)
    for f in FEATURES:
        row = next(line for line in section.splitlines() if line.startswith(f"| `{f.name}` |"))
        assert f.unit in row and f.null_rule in row and str(f.window) in row, f.name
    assert "available_at" in text and "lookback_complete" in text
