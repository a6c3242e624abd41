"""A mixed exchange-day built in vectorized chunks equals the same day built instrument by instrument,
and the density policy: dense and sparse files, exact roll-ups under both, densify on read.

The day: one heavy perpetual (trades, book, ticker, liquidations), a second perpetual whose book
comes from quotes, a future with a ticker, 240 thin options (a few trades and quotes each, some
only in the next day's file but stamped on D, some only stamped on D+1: no candles), long runs of
empty buckets, one-sided books. Chunks are forced small so many instruments share each pass.
"""

from __future__ import annotations

import math
import random
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

from market_data_assets import reader
from market_data_assets.candles.build import (
    COMPLETE_META_KEY,
    build_base_candles,
    build_book_snapshots,
    build_rolled_up_candles,
)
from market_data_assets.candles.compute import InstrumentDayTicks, compute_candles
from market_data_assets.candles.densify import densify
from market_data_assets.candles.density import INSTRUMENT_TYPES, DensityPolicy
from market_data_assets.candles.rollup import rollup
from market_data_assets.candles.schema import CANDLE_SCHEMA
from market_data_assets.candles.timeframes import TIMEFRAME_TABLE, get_timeframe
from market_data_assets.storage.layout import TIMEFRAMES, book_snapshots_path, candles_path, raw_ticks_path
from market_data_assets.storage.local import LocalStore
from market_data_assets.storage.slices import SliceRef, StoredSlice
from market_data_assets_tests.support.candles import (
    DAY,
    EXCHANGE,
    NEXT,
    WIDTHS,
    assert_rows_equal,
    at,
    reference_book_as_of_end,
    reference_candles,
    write_ticks,
)

pytestmark = pytest.mark.slow


PERP = "BINANCE:PERP:BTC-USDT"
PERP_QUOTES = "BINANCE:PERP:ETH-USDT"
FUTURE = "BINANCE:FUTURE:BTC-USDT-240329"
N_OPTIONS = 240
OPTIONS = [
    f"BINANCE:OPTION:BTC-USDT-{40000 + 500 * i}-240105-{'CALL' if i % 2 else 'PUT'}" for i in range(N_OPTIONS)
]
LATE_OPTION = OPTIONS[7]  # its only trade stamped on D sits in file D+1
NEXT_ONLY_OPTION = OPTIONS[8]  # only a trade stamped on D+1: no candles on D
US = 1_000_000
DAY_END = at(0, day=NEXT)


def _trade(ts: int, price: float, amount: float, side: str) -> dict:
    return {"timestamp": ts, "price": price, "amount": amount, "side": side}


def _snap(ts: int, ap: float | None, aa: float | None, bp: float | None, ba: float | None) -> dict:
    return {"timestamp": ts, "ask_price_0": ap, "ask_amount_0": aa, "bid_price_0": bp, "bid_amount_0": ba}


def _quote(ts: int, ap: float | None, aa: float | None, bp: float | None, ba: float | None) -> dict:
    return {"timestamp": ts, "ask_price": ap, "ask_amount": aa, "bid_price": bp, "bid_amount": ba}


def _stamps(rng: random.Random, n: int, lo: int = at(0), hi: int = DAY_END) -> list[int]:
    """Nearly sorted stamps with ties, boundary hits and a few late arrivals (out of file order)."""
    out = sorted(rng.randrange(lo, hi) for _ in range(n))
    for i in range(0, n, 97):
        out[i] = out[i] // (15 * US) * 15 * US  # exactly on a bucket boundary
    for i in range(5, n, 211):
        out[i] = out[i - 3]  # a late arrival stamped like an earlier row
    return out


def _perp_inputs(seed: int, n_trades: int, quotes: bool) -> dict[str, list[dict]]:
    rng = random.Random(seed)
    price = 100.0
    trades = []
    for ts in _stamps(rng, n_trades):
        price *= math.exp(rng.gauss(0, 5e-4))
        trades.append(_trade(ts, price, rng.expovariate(1.0), rng.choice(["buy", "sell", "unknown"])))
    book = []
    for ts in _stamps(rng, n_trades // 3):
        bid = price * (1 - rng.random() * 1e-3)
        one_sided = rng.random() < 0.05
        book.append(
            _snap(ts, bid + rng.random(), rng.random() * 2, None if one_sided else bid, rng.random() * 2)
        )
    ticker = [
        {"timestamp": ts, "mark_price": 100 + rng.random(), "index_price": 100 + rng.random()}
        | ({"open_interest": 1e4 * rng.random()} if rng.random() < 0.5 else {})
        for ts in _stamps(rng, 300)
    ]
    liqs = [_trade(ts, 100.0, rng.random(), rng.choice(["buy", "sell"])) for ts in _stamps(rng, 50)]
    late = [
        _trade(at(23, 59, 59, 999_999), price, 1.0, "buy"),
        _trade(at(0, 0, 1, day=NEXT), price, 1.0, "sell"),
    ]
    return {"trades": trades, "late": late, "book": book, "ticker": ticker, "liqs": liqs, "quotes": quotes}


def _option_inputs(i: int) -> dict[str, list[dict]]:
    rng = random.Random(1000 + i)
    n = rng.choice([0, 1, 2, 3, 5, 8])
    trades = [
        _trade(ts, round(rng.uniform(1, 50), 2), rng.choice([0.1, 1.0, 2.5]), rng.choice(["buy", "sell"]))
        for ts in _stamps(rng, n)
    ]
    quotes = []
    for ts in _stamps(rng, rng.choice([0, 2, 6])):
        mid = rng.uniform(5, 40)
        quotes.append(
            _quote(
                ts, mid + 0.5, rng.random() * 10, None if rng.random() < 0.1 else mid - 0.5, rng.random() * 10
            )
        )
    if not trades:
        trades = [_trade(at(rng.randrange(24)), 10.0, 1.0, "buy")]
    return {"trades": trades, "quotes": quotes}


@pytest.fixture(scope="module")
def day(tmp_path_factory: pytest.TempPathFactory) -> tuple[LocalStore, dict[str, dict]]:
    store = LocalStore(tmp_path_factory.mktemp("exchange_day") / "lake")
    inputs: dict[str, dict] = {}
    perp = _perp_inputs(1, 20_000, quotes=False)
    write_ticks(store, "trades", DAY, PERP, perp["trades"])
    write_ticks(store, "trades", NEXT, PERP, perp["late"])
    write_ticks(store, "book_snapshot_5", DAY, PERP, perp["book"])
    write_ticks(store, "derivative_ticker", DAY, PERP, perp["ticker"])
    write_ticks(store, "liquidations", DAY, PERP, perp["liqs"])
    inputs[PERP] = {
        "trades": perp["trades"] + perp["late"],
        "book": perp["book"],
        "derivative": perp["ticker"],
        "liquidations": perp["liqs"],
    }
    eth = _perp_inputs(2, 3_000, quotes=True)
    write_ticks(store, "trades", DAY, PERP_QUOTES, eth["trades"])
    quotes = [
        _quote(s["timestamp"], s["ask_price_0"], s["ask_amount_0"], s["bid_price_0"], s["bid_amount_0"])
        for s in eth["book"]
    ]
    write_ticks(store, "quotes", DAY, PERP_QUOTES, quotes)
    write_ticks(store, "book_snapshot_5", DAY, PERP_QUOTES, eth["book"][:10])  # snapshots win over quotes
    inputs[PERP_QUOTES] = {"trades": eth["trades"], "book": eth["book"][:10]}
    fut = _perp_inputs(3, 400, quotes=False)
    write_ticks(store, "trades", DAY, FUTURE, fut["trades"])
    write_ticks(store, "derivative_ticker", DAY, FUTURE, fut["ticker"])
    inputs[FUTURE] = {"trades": fut["trades"], "derivative": fut["ticker"]}
    for i, key in enumerate(OPTIONS):
        opt = _option_inputs(i)
        if key == LATE_OPTION:
            write_ticks(store, "trades", NEXT, key, [_trade(at(23, 59, 58), 3.0, 1.0, "sell")])
            inputs[key] = {"trades": [_trade(at(23, 59, 58), 3.0, 1.0, "sell")]}
            continue
        if key == NEXT_ONLY_OPTION:
            write_ticks(store, "trades", NEXT, key, [_trade(at(1, day=NEXT), 3.0, 1.0, "sell")])
            continue
        write_ticks(store, "trades", DAY, key, opt["trades"])
        if opt["quotes"]:
            write_ticks(store, "quotes", DAY, key, opt["quotes"])
        inputs[key] = {
            "trades": opt["trades"],
            "book": [
                _snap(q["timestamp"], q["ask_price"], q["ask_amount"], q["bid_price"], q["bid_amount"])
                for q in opt["quotes"]
            ],
        }
    summary = build_base_candles(store, DAY, EXCHANGE, chunk_rows=4_000)  # many instruments per chunk
    assert summary.complete_through_midnight
    assert summary.skipped == [NEXT_ONLY_OPTION]
    for tf in TIMEFRAMES[1:]:
        build_rolled_up_candles(store, DAY, EXCHANGE, tf)
    return store, inputs


def _instrument_ticks(store: LocalStore, key: str) -> InstrumentDayTicks:
    """One instrument's files, opened on their own (the per-instrument way)."""

    def scan(data_type: str, columns: list[str]) -> pl.LazyFrame | None:
        paths = [raw_ticks_path(d, data_type, key) for d in (DAY, NEXT)]
        paths = [store.uri(p) for p in paths if Path(store.uri(p)).exists()]
        return pl.scan_parquet(paths).select(columns) if paths else None

    book = scan(
        "book_snapshot_5", ["timestamp", "ask_price_0", "ask_amount_0", "bid_price_0", "bid_amount_0"]
    )
    if book is None:
        quotes = scan("quotes", ["timestamp", "ask_price", "ask_amount", "bid_price", "bid_amount"])
        book = None if quotes is None else quotes.rename(lambda c: c if c == "timestamp" else f"{c}_0")
    trades = scan("trades", ["timestamp", "price", "amount", "side"])
    assert trades is not None
    return InstrumentDayTicks(
        trades=trades,
        book=book,
        derivative_ticker=scan(
            "derivative_ticker", ["timestamp", "mark_price", "index_price", "funding_rate", "open_interest"]
        ),
        liquidations=scan("liquidations", ["timestamp", "amount", "side"]),
    )


def _stored(store: LocalStore, tf: str, key: str) -> pl.DataFrame:
    return pl.read_parquet(store.uri(candles_path(DAY, tf, key)))


def _frames_identical(a: pl.DataFrame, b: pl.DataFrame, context: str) -> None:
    assert a.columns == b.columns == CANDLE_SCHEMA.names, context
    assert a.height == b.height, f"{context}: {a.height} rows vs {b.height}"
    for name in a.columns:
        x, y = a[name], b[name]
        assert (x.is_null() == y.is_null()).all(), f"{context} {name}: nulls differ"
        if x.dtype == pl.Float64:
            excess = ((x - y).abs() - (1e-9 * y.abs() + (1e-3 if "integral" in name else 1e-12))).max()
            assert excess is None or excess <= 0, f"{context} {name}: max excess difference {excess}"
        else:
            assert x.drop_nulls().to_list() == y.drop_nulls().to_list(), f"{context} {name}"


def test_vectorized_day_equals_instrument_by_instrument_at_every_timeframe(day) -> None:
    store, inputs = day
    for key in [PERP, PERP_QUOTES, FUTURE, *OPTIONS[:60]]:
        if key == NEXT_ONLY_OPTION:
            assert not Path(store.uri(candles_path(DAY, "15s", key))).exists()
            continue
        ticks = _instrument_ticks(store, key)
        for tf in TIMEFRAME_TABLE:
            direct = compute_candles(ticks, DAY, key, EXCHANGE, tf)
            assert direct is not None
            _frames_identical(_stored(store, tf.name, key), direct, f"{key} {tf.name}")


def test_dense_instruments_match_the_plain_python_reference(day) -> None:
    store, inputs = day
    # The reference is quadratic in Python: the busy instruments at coarser timeframes only.
    for key, timeframes in ((PERP, ("1h", "4h")), (PERP_QUOTES, ("15s", "1h")), (FUTURE, ("5m", "24h"))):
        for tf in timeframes:
            actual = _stored(store, tf, key)
            assert actual.height == 86_400 // WIDTHS[tf] and set(actual["density"]) == {"dense"}
            assert_rows_equal(
                actual.to_dicts(), reference_candles(timeframe=tf, **inputs[key]), f"{key} {tf}"
            )


def _observed_buckets(rows: dict, width: int) -> set[int]:
    stamps = [r["timestamp"] for source in rows.values() for r in source]
    return {t // width * width for t in stamps if at(0) <= t < DAY_END}


def test_sparse_options_hold_the_reference_rows_of_the_buckets_with_ticks(day) -> None:
    store, inputs = day
    checked = 0
    for key in OPTIONS[:80]:
        if key not in inputs:
            continue
        for tf in ("15s", "1m", "1h", "24h"):
            width = WIDTHS[tf] * US
            actual = _stored(store, tf, key)
            assert set(actual["density"]) == {"sparse"}
            observed = _observed_buckets(inputs[key], width)
            expected = [
                r for r in reference_candles(timeframe=tf, **inputs[key]) if r["timestamp"] in observed
            ]
            assert_rows_equal(actual.to_dicts(), expected, f"{key} {tf}")
            checked += 1
    assert checked > 200
    late = _stored(store, "15s", LATE_OPTION)
    assert late["trade_count"].to_list() == [1]  # the trade stamped 23:59:58 of D, read from file D+1


def test_sparse_files_are_a_fraction_of_dense_ones(day) -> None:
    store, _ = day
    rows = sum(
        pq.read_metadata(store.uri(candles_path(DAY, "15s", k))).num_rows
        for k in OPTIONS
        if k != NEXT_ONLY_OPTION
    )
    assert rows < N_OPTIONS * 20  # dense would be N_OPTIONS * 5,760


def test_densify_rebuilds_the_dense_computation_exactly(day) -> None:
    store, _ = day
    all_dense = DensityPolicy(frozenset())
    for key in OPTIONS[:40]:
        if key == NEXT_ONLY_OPTION:
            continue
        ticks = _instrument_ticks(store, key)
        for tf in TIMEFRAME_TABLE:
            dense = compute_candles(ticks, DAY, key, EXCHANGE, tf, policy=all_dense)
            assert dense is not None and dense.height == tf.buckets_per_day
            _frames_identical(densify(_stored(store, tf.name, key)), dense, f"densify {key} {tf.name}")


def test_reader_densifies_on_read(day) -> None:
    store, _ = day
    key = OPTIONS[3]
    sparse = reader.scan_candles("1m", [key], DAY, NEXT, root=store.root).collect()
    dense = reader.scan_candles("1m", [key], DAY, NEXT, dense=True, root=store.root).collect()
    assert sparse.height == _stored(store, "1m", key).height < 1440
    assert dense.height == 1440 and dense["timestamp"].is_sorted()
    assert set(dense["density"]) == {"dense"}
    assert (
        dense.filter(pl.col("trade_count") > 0)["vwap"].to_list()
        == sparse.filter(pl.col("trade_count") > 0)["vwap"].to_list()
    )
    window = reader.scan_candles(
        "1m", [key], f"{DAY}T10:00", f"{DAY}T11:00", dense=True, root=store.root
    ).collect()
    assert window.height == 60  # the filter applies after the grid is filled
    ticks = _instrument_ticks(store, key)
    expected = compute_candles(
        ticks, DAY, key, EXCHANGE, get_timeframe("1m"), policy=DensityPolicy(frozenset())
    )
    assert expected is not None
    _frames_identical(dense, expected, "reader dense")


@pytest.mark.parametrize("instrument_type", INSTRUMENT_TYPES)
def test_density_policy_for_each_instrument_type(tmp_path: Path, instrument_type: str) -> None:
    store = LocalStore(tmp_path / "lake")
    key = f"BINANCE:{instrument_type}:BTC-USDT-X"
    write_ticks(
        store, "trades", DAY, key, [_trade(at(1), 10.0, 1.0, "buy"), _trade(at(5, 0, 7), 11.0, 1.0, "sell")]
    )
    write_ticks(store, "quotes", DAY, key, [_quote(at(2), 11.0, 1.0, 9.0, 1.0)])
    sparse = instrument_type in ("OPTION", "COMBO")
    build_base_candles(store, DAY, EXCHANGE)
    df = _stored(store, "15s", key)
    assert df.height == (3 if sparse else 5_760)
    assert set(df["density"]) == {"sparse" if sparse else "dense"}
    assert (
        pq.read_schema(store.uri(candles_path(DAY, "15s", key))).metadata[
            b"market_data_assets.density_policy"
        ]
        == b"COMBO,OPTION"
    )
    # The policy is a setting: nothing sparse, or every type sparse.
    build_base_candles(store, DAY, EXCHANGE, policy=DensityPolicy(frozenset()))
    assert _stored(store, "15s", key).height == 5_760
    build_base_candles(store, DAY, EXCHANGE, policy=DensityPolicy(frozenset(INSTRUMENT_TYPES)))
    assert _stored(store, "15s", key).height == 3


def test_unknown_instrument_type_in_the_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="OPTIONS"):
        DensityPolicy(frozenset({"OPTIONS"}))


def test_rollup_chain_of_a_sparse_day_equals_direct_sparse_computation(day) -> None:
    store, _ = day
    for key in OPTIONS[:30]:
        if key == NEXT_ONLY_OPTION:
            continue
        ticks = _instrument_ticks(store, key)
        base = compute_candles(ticks, DAY, key, EXCHANGE)
        assert base is not None
        for tf in TIMEFRAME_TABLE[1:]:
            direct = compute_candles(ticks, DAY, key, EXCHANGE, tf)
            assert direct is not None
            _frames_identical(rollup(base, tf), direct, f"15s->{tf.name} {key}")


def test_book_snapshots_of_many_instruments_in_one_pass(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "lake")
    rng = random.Random(5)
    books = {}
    for i in range(12):
        key = f"BINANCE:PERP:C{i}-USDT"
        rows = [
            _snap(ts, rng.random(), 1.0, rng.random(), 1.0) for ts in _stamps(rng, rng.choice([0, 3, 40]) + 1)
        ]
        write_ticks(store, "book_snapshot_5", DAY, key, rows)
        books[key] = rows
    summary = build_book_snapshots(store, DAY, EXCHANGE)
    assert summary.instruments == sorted(books) and summary.files == 12 * len(TIMEFRAMES)
    for key, rows in books.items():
        for tf in ("15s", "4h"):
            actual = pl.read_parquet(store.uri(book_snapshots_path(DAY, tf, key))).to_dicts()
            assert_rows_equal(actual, reference_book_as_of_end(rows, tf, 5), f"{key} {tf}", rel=0.0)


def test_slice_marker_records_the_slice(day) -> None:
    store, _ = day
    stored = StoredSlice.open(store, SliceRef("processed_candles", DAY, "1m", EXCHANGE))
    assert stored.marker["files"] == len(stored.files) == len(OPTIONS) + 2  # +3 dense, -1 next-day only
    assert stored.flag("complete_through_midnight") == "true"
    assert stored.marker["rows"] == sum(pq.read_metadata(store.uri(f.path)).num_rows for f in stored.files)
    assert pq.read_schema(store.uri(candles_path(DAY, "1m", PERP))).metadata[COMPLETE_META_KEY] == b"true"


def test_one_chunk_for_the_whole_day_writes_the_same_files(day) -> None:
    """Snapshots, quotes, tickers and thin options all in ONE polars pass: the same bytes as small chunks."""
    store, _ = day
    folder = Path(store.uri(candles_path(DAY, "15s", PERP))).parent
    before = {p.name: p.read_bytes() for p in folder.glob("*.parquet")}
    build_base_candles(store, DAY, EXCHANGE, chunk_rows=10**9)
    after = {p.name: p.read_bytes() for p in folder.glob("*.parquet")}
    assert after.keys() == before.keys() and len(after) == N_OPTIONS + 2
    assert [name for name in before if after[name] != before[name]] == []
