"""MFT features at all six timeframes for a large exchange-day: the project vs a pandas rolling implementation.

Run: ``python benchmarks/bench_features.py [--options 3000] [--dense 24] [--repeat 3]``

The input is a synthetic Deribit-sized exchange-day of candles, generated here (no sandbox run
needed): ``--options`` sparse option instruments (a few dozen traded 1m buckets a day each, and
not every option trades every day) and ``--dense`` dense perpetuals/futures (every bucket), over D
and the 20 days before it (the 24h features' lookback). The 1m candles are generated; 5m … 24h are
rolled up from them with the production ``candles.rollup``, so every timeframe's candles are what
the pipeline would store.

Timed (best of ``--repeat``; ``cpu`` = process CPU over all threads):
- project compute: ``features.compute.compute_features`` for each of the six timeframes on the
  candles of its lookback span (sparse candles densified inside, as in production);
- project end to end: the same through the store as the assets run it: ``features_output`` reading
  the stored candle slices of a local lake and the slices writer writing the feature files;
- pandas: the same features from the same candles with pandas: densify (reindex every instrument-day
  on its grid, carry close/derivatives within the day), then ``groupby(instrument).rolling(20)``;
- for scale, the candle roll-ups 1m -> 5m … 24h of D alone (a lower bound of that day's candle
  processing, which also builds 15s and 1m from the ticks).
The project and pandas values are checked equal (every feature, null masks exactly, values to a
relative 1e-6: pandas' rolling std/sum drift) before the times are printed.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl

from market_data_assets.candles.rollup import rollup
from market_data_assets.candles.schema import CANDLE_SCHEMA
from market_data_assets.candles.timeframes import get_timeframe
from market_data_assets.days import US_PER_DAY, day_start_us
from market_data_assets.features.build import features_output, lookback_span, open_lookback
from market_data_assets.features.compute import compute_features
from market_data_assets.features.registry import FEATURE_NAMES, FEATURE_TIMEFRAMES, lookback_days
from market_data_assets.storage.layout import CANDLES_AREA
from market_data_assets.storage.local import LocalStore
from market_data_assets.storage.slices import SlicesOutput, write_output

DAY = date(2024, 3, 1)
EXCHANGE = "deribit"
MINUTE = 60_000_000


def synthetic_1m_day(day: date, n_options: int, n_dense: int, seed: int) -> pl.DataFrame:
    """1m candles of one day (CANDLE_SCHEMA): dense perps/futures and sparse options."""
    rng = np.random.default_rng(seed)
    start = day_start_us(day)
    keys, stamps, dense_flags = [], [], []
    for i in range(n_dense):
        kind = "PERP" if i % 3 == 0 else "FUTURE"
        keys.append(
            np.full(
                1440, f"DERIBIT:{kind}:BTC-USD-{i:03d}" if kind == "FUTURE" else f"DERIBIT:PERP:C{i:03d}-USD"
            )
        )
        stamps.append(start + np.arange(1440, dtype=np.int64) * MINUTE)
        dense_flags.append(np.ones(1440, bool))
    for j in range(n_options):
        if rng.random() < 0.25:  # not every option trades every day
            continue
        n = int(rng.integers(5, 80))
        buckets = np.unique(rng.integers(0, 1440, n))
        keys.append(np.full(len(buckets), f"DERIBIT:OPTION:BTC-USD-{20000 + 500 * j}-240329-CALL"))
        stamps.append(start + buckets.astype(np.int64) * MINUTE)
        dense_flags.append(np.zeros(len(buckets), bool))
    key = np.concatenate(keys)
    ts = np.concatenate(stamps)
    dense = np.concatenate(dense_flags)
    n = len(key)
    first = np.r_[True, key[1:] != key[:-1]]
    traded = (rng.random(n) < 0.7) | ~dense | first
    steps = np.where(traded, rng.normal(0, 0.002, n), 0.0)
    group = np.cumsum(first) - 1
    base = 100.0 * (1 + (group % 50))
    log_path = np.cumsum(steps)
    log_path -= np.repeat(log_path[first], np.diff(np.r_[np.flatnonzero(first), n]))
    close = base * np.exp(log_path)
    hi = np.where(traded, close * (1 + rng.random(n) * 1e-3), close)
    lo = np.where(traded, close * (1 - rng.random(n) * 1e-3), close)
    bv = np.where(traded, rng.exponential(2.0, n) * (rng.random(n) < 0.8), 0.0)
    sv = np.where(traded, rng.exponential(2.0, n), 0.0)
    volume = bv + sv
    notional = volume * close
    count = np.where(traded, rng.integers(1, 20, n), 0)
    spread = close * 1e-4
    covered = rng.random(n) < 0.95
    instrument_type = np.array([k.split(":")[1] for k in key])
    oi = 1e6 + np.cumsum(rng.normal(0, 100, n))
    frame = pl.DataFrame(
        {
            "instrument_key": key,
            "exchange": EXCHANGE,
            "instrument_type": instrument_type,
            "density": np.where(dense, "dense", "sparse"),
            "timeframe": "1m",
            "timestamp": pl.Series(ts).cast(pl.Datetime("us", "UTC")),
            "open": close,
            "high": hi,
            "low": lo,
            "close": close,
            "volume": volume,
            "notional": notional,
            "vwap": np.where(volume > 0, close, np.nan),
            "trade_count": count,
            "buy_volume": bv,
            "sell_volume": sv,
            "buy_count": (bv > 0).astype(np.int64),
            "sell_count": (sv > 0).astype(np.int64),
            "realized_variance": np.where(traded, rng.random(n) * 1e-6, 0.0),
            "max_trade_amount": np.where(traded, np.maximum(bv, sv), np.nan),
            "book_covered_us": np.where(covered, MINUTE, 0),
            "spread_time_integral": np.where(covered, spread * MINUTE, 0.0),
            "mid_time_integral": np.where(covered, close * MINUTE, 0.0),
            "imbalance_time_integral": 0.0,
            "twa_spread": np.where(covered, spread, np.nan),
            "twa_mid": np.where(covered, close, np.nan),
            "twa_imbalance": np.where(covered, 0.0, np.nan),
            "snapshot_count": np.where(covered, 5, 0),
            "close_spread": np.where(covered, spread, np.nan),
            "close_mid": np.where(covered, close, np.nan),
            "close_imbalance": np.where(covered, 0.0, np.nan),
            "ofi_sum": np.where(covered, rng.normal(0, 5, n), np.nan),
            "mark_price": close * 1.0002,
            # as candles carry it: null only before the day's first report
            "index_price": np.where((group % 5 == 0) & (ts < start + 10 * MINUTE), np.nan, close),
            "funding_rate": 1e-4,
            "open_interest": oi,
            "liquidation_buy_volume": 0.0,
            "liquidation_sell_volume": 0.0,
            "liquidation_buy_count": 0,
            "liquidation_sell_count": 0,
        }
    ).fill_nan(None)
    return pl.from_arrow(frame.select(CANDLE_SCHEMA.names).to_arrow().cast(CANDLE_SCHEMA))  # type: ignore[return-value]


def candles_by_timeframe(n_options: int, n_dense: int) -> dict[str, dict[date, pl.DataFrame]]:
    """tf -> day -> candles, for each timeframe's lookback span."""
    days = lookback_span(DAY, "24h")
    minute = {d: synthetic_1m_day(d, n_options, n_dense, seed=i) for i, d in enumerate(days)}
    out: dict[str, dict[date, pl.DataFrame]] = {}
    for tf in FEATURE_TIMEFRAMES:
        span = lookback_span(DAY, tf)
        out[tf] = {d: minute[d] if tf == "1m" else rollup(minute[d], get_timeframe(tf)) for d in span}
    return out


# --- pandas reference ---------------------------------------------------------------------------------

_CARRIED = ["close", "mark_price", "index_price", "open_interest", "close_spread"]


def pandas_features(candles: pd.DataFrame, day: date, timeframe: str) -> pd.DataFrame:
    """The registry's features with pandas: dense grid per instrument over the span, rolling 20."""
    width = get_timeframe(timeframe).us
    first_day = day - timedelta(days=lookback_days(timeframe))
    lo, d0, hi = day_start_us(first_day), day_start_us(day), day_start_us(day) + US_PER_DAY
    candles = candles.copy()
    candles = candles[(candles["t"] >= lo) & (candles["t"] < hi)]
    keys = sorted(candles.loc[candles["t"] >= d0, "instrument_key"].unique())
    candles = candles[candles["instrument_key"].isin(keys)].copy()
    candles["day"] = candles["t"] // US_PER_DAY
    # densify: every bucket of each (instrument, day) present; omitted buckets are empty ones
    present_days = candles[["instrument_key", "day"]].drop_duplicates()
    per_day = US_PER_DAY // width
    grid_days = present_days.loc[present_days.index.repeat(per_day)].copy()
    grid_days["t"] = grid_days["day"] * US_PER_DAY + np.tile(np.arange(per_day) * width, len(present_days))
    dense = grid_days.merge(candles.drop(columns="day"), on=["instrument_key", "t"], how="left")
    dense = dense.sort_values(["instrument_key", "t"], kind="stable")
    filled = dense["trade_count"].isna()
    g = dense.groupby(["instrument_key", "day"], sort=False)
    for c in _CARRIED:
        dense[c] = g[c].ffill()
    for c in ["trade_count", "buy_volume", "sell_volume", "notional", "realized_variance"]:
        dense[c] = dense[c].fillna(0)
    dense.loc[filled, "high"] = dense.loc[filled, "close"]
    dense.loc[filled, "low"] = dense.loc[filled, "close"]
    dense.loc[filled, "ofi_sum"] = np.where(dense.loc[filled, "close_spread"].notna(), 0.0, np.nan)
    # the full grid over the span (absent rows where the lake has no candle)
    grid = pd.DataFrame(
        {
            "instrument_key": np.repeat(keys, (hi - lo) // width),
            "t": np.tile(np.arange(lo, hi, width, dtype=np.int64), len(keys)),
        }
    )
    s = grid.merge(dense, on=["instrument_key", "t"], how="left")
    s["present"] = s["trade_count"].notna().astype(float)
    gb = s.groupby("instrument_key", sort=False)

    def roll(col: pd.Series, n: int = 20, how: str = "sum") -> pd.Series:
        r = col.groupby(s["instrument_key"], sort=False).rolling(n, min_periods=n)
        return getattr(r, how)().reset_index(level=0, drop=True)

    def span_ok(lookback: int) -> pd.Series:
        return (
            roll(s["present"], lookback + 1) == lookback + 1 if lookback else pd.Series(True, index=s.index)
        )

    out = pd.DataFrame({"instrument_key": s["instrument_key"], "t": s["t"]})
    prev_close = gb["close"].shift(1)
    lr = np.log(s["close"] / prev_close)
    out["log_return"] = lr.where(span_ok(1))
    out["realized_vol_20"] = np.sqrt(roll(s["realized_variance"])).where(span_ok(19))
    traded = (s["trade_count"] > 0).astype(float)
    term = np.where(traded > 0, np.log(s["high"] / s["low"]) ** 2, 0.0)
    m = roll(traded)
    out["parkinson_vol_20"] = np.sqrt(roll(pd.Series(term, index=s.index)) / (4 * math.log(2) * m)).where(
        (m > 0) & span_ok(19)
    )
    # pandas' online rolling std loses up to 1e-2 relative on near-flat windows (19 equal option
    # closes and one tick): the reference takes the std of each window with numpy, two-pass.
    mean, std = roll(s["close"], how="mean"), _window_std(s["close"].to_numpy())
    flat = roll(s["close"], how="max") == roll(s["close"], how="min")
    out["zscore_close_20"] = ((s["close"] - mean) / std).where(~flat & std.notna() & span_ok(19))
    tot = s["buy_volume"] + s["sell_volume"]
    out["trade_imbalance"] = ((s["buy_volume"] - s["sell_volume"]) / tot).where(tot != 0)
    used = lr.notna()
    x = (s["buy_volume"] - s["sell_volume"]).where(used)
    y = lr.where(used)
    n = roll(used.astype(float))
    sx, sy, sxy, sxx = (roll(v.fillna(0.0)) for v in (x, y, x * y, x * x))
    xr = x.groupby(s["instrument_key"], sort=False).rolling(20, min_periods=1)
    constant = xr.max().reset_index(level=0, drop=True) == xr.min().reset_index(level=0, drop=True)
    out["kyle_lambda_20"] = ((n * sxy - sx * sy) / (n * sxx - sx * sx)).where(
        (n >= 3) & ~constant & span_ok(20)
    )
    am = (lr.abs() / s["notional"]).where((s["notional"] > 0) & used)
    cnt = roll(am.notna().astype(float))
    out["amihud_20"] = (roll(am.fillna(0.0)) / cnt).where((cnt > 0) & span_ok(20))
    out["basis_bps"] = (s["mark_price"] - s["index_price"]) / s["index_price"] * 10_000
    out["open_interest_change"] = (s["open_interest"] - gb["open_interest"].shift(1)).where(span_ok(1))
    out["ofi"] = s["ofi_sum"]
    out["stored"] = s["t"].isin([]) | False
    out = out[out["t"] >= d0]
    # rows: every bucket of D for dense instruments, the stored ones for sparse instruments
    stored = candles.loc[candles["t"] >= d0, ["instrument_key", "t", "density"]]
    out = out.merge(stored, on=["instrument_key", "t"], how="left")
    dense_keys = set(stored.loc[stored["density"] == "dense", "instrument_key"])
    out = out[out["instrument_key"].isin(dense_keys) | out["density"].notna()]
    return out.drop(columns=["stored", "density"]).reset_index(drop=True)


def _window_std(values: np.ndarray, n: int = 20, chunk: int = 1 << 20) -> pd.Series:
    """ddof=1 std of each trailing window of ``n`` (NaN when any value is NaN), in chunks of rows."""
    out = np.full(len(values), np.nan)
    padded = np.r_[np.full(n - 1, np.nan), values]
    for lo in range(0, len(values), chunk):
        windows = np.lib.stride_tricks.sliding_window_view(padded[lo : lo + chunk + n - 1], n)
        out[lo : lo + len(windows)] = windows.std(axis=1, ddof=1)
    return pd.Series(out)


# --- running -------------------------------------------------------------------------------------------


def _best(fn, repeat: int):  # type: ignore[no-untyped-def]
    best = best_cpu = float("inf")
    value = None
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        value = fn()
        best = min(best, time.perf_counter() - t0)
        best_cpu = min(best_cpu, time.process_time() - c0)
    return best, best_cpu, value


def _check(project: dict[str, pl.DataFrame], reference: dict[str, pd.DataFrame]) -> None:
    for tf, ours in project.items():
        ref = pl.from_pandas(reference[tf]).sort("instrument_key", "t")
        ours = ours.with_columns((pl.col("timestamp").cast(pl.Int64)).alias("t")).sort("instrument_key", "t")
        assert ours.height == ref.height, f"{tf}: {ours.height} rows vs pandas {ref.height}"
        assert (ours["t"] == ref["t"]).all() and (ours["instrument_key"] == ref["instrument_key"]).all(), tf
        for name in FEATURE_NAMES:
            a, b = ours[name], ref[name].fill_nan(None)
            assert (a.is_null() == b.is_null()).all(), f"{tf} {name}: null masks differ"
            excess = ((a - b).abs() - (1e-6 * b.abs() + 1e-12)).max()
            assert excess is None or excess <= 0, f"{tf} {name}: values differ by {excess}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--options", type=int, default=3000)
    parser.add_argument("--dense", type=int, default=24)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--no-lake", dest="lake", action="store_false", help="skip the end-to-end run through a local lake"
    )
    args = parser.parse_args()

    t0 = time.perf_counter()
    candles = candles_by_timeframe(args.options, args.dense)
    inputs = {tf: pl.concat(list(days.values())) for tf, days in candles.items()}
    d_rows = {tf: candles[tf][DAY].height for tf in FEATURE_TIMEFRAMES}
    instruments = candles["1m"][DAY]["instrument_key"].n_unique()
    print(
        f"synthetic exchange-day {DAY}: {instruments} instruments with 1m candles on D "
        f"({args.dense} dense, the rest sparse options), candle rows of D per timeframe {d_rows}; "
        f"generated in {time.perf_counter() - t0:.1f} s",
        flush=True,
    )

    def project() -> dict[str, pl.DataFrame]:
        return {tf: compute_features(inputs[tf], DAY, tf) for tf in FEATURE_TIMEFRAMES}

    pandas_inputs = {  # bucket start as integer microseconds in column t
        tf: frame.with_columns(pl.col("timestamp").cast(pl.Int64).alias("t")).to_pandas()
        for tf, frame in inputs.items()
    }

    def reference() -> dict[str, pd.DataFrame]:
        return {tf: pandas_features(pandas_inputs[tf], DAY, tf) for tf in FEATURE_TIMEFRAMES}

    ours = project()
    _check(ours, reference())
    print(
        f"values checked equal: {sum(f.height for f in ours.values()):,} feature rows x {len(FEATURE_NAMES)} features"
    )

    wall, cpu, _ = _best(project, args.repeat)
    per_tf = {
        tf: _best(lambda tf=tf: compute_features(inputs[tf], DAY, tf), 1)[0] for tf in FEATURE_TIMEFRAMES
    }
    print(
        f"project compute, six timeframes: {wall:.3f} s ({cpu:.3f} s cpu)  per timeframe: "
        + ", ".join(f"{tf} {s:.3f}" for tf, s in per_tf.items()),
        flush=True,
    )
    p_wall, p_cpu, _ = _best(reference, max(1, args.repeat - 1))
    print(
        f"pandas rolling reference, six timeframes: {p_wall:.3f} s ({p_cpu:.3f} s cpu): "
        f"project compute is {p_wall / wall:.1f}x faster",
        flush=True,
    )
    minute_d = candles["1m"][DAY]

    def rollups() -> None:
        finer = minute_d
        for tf in FEATURE_TIMEFRAMES[1:]:
            finer = rollup(finer, get_timeframe(tf))

    r_wall, r_cpu, _ = _best(rollups, args.repeat)
    print(
        f"for scale: candle roll-ups 1m -> 5m ... 24h of D alone: {r_wall:.3f} s ({r_cpu:.3f} s cpu)",
        flush=True,
    )
    if not args.lake:
        return
    with tempfile.TemporaryDirectory() as tmp:
        store = LocalStore(Path(tmp) / "lake")
        for tf, days in candles.items():
            for d, frame in days.items():
                write_output(
                    store,
                    SlicesOutput(
                        CANDLES_AREA, d, EXCHANGE, (tf,), iter([{tf: frame}]), lambda _: CANDLE_SCHEMA
                    ),
                    16,
                )
        files = len(store.list(f"{CANDLES_AREA}/"))

        def end_to_end() -> None:
            for tf in FEATURE_TIMEFRAMES:
                write_output(
                    store,
                    features_output(store, DAY, EXCHANGE, tf, open_lookback(store, DAY, EXCHANGE, tf)),
                    16,
                )

        e_wall, e_cpu, _ = _best(end_to_end, 1)
        print(
            f"project end to end through a local lake ({files:,} candle files of the lookback spans read, "
            f"feature files written): {e_wall:.3f} s ({e_cpu:.3f} s cpu)",
            flush=True,
        )


if __name__ == "__main__":
    main()
