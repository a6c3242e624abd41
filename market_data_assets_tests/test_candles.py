"""Candles: every timeframe against a plain-Python reference computed from the ticks in the test.

The generated day has the awkward cases: a trade at exactly midnight and at a bucket boundary,
several trades with one timestamp, exchange timestamps out of file order, a trade at
23:59:59.999999 filed in the next day's file (belongs to D), a trade of D-1 at the top of file D
(does not), long stretches without trades, an instrument that starts at 12:34:56, one whose only
trade of D sits in file D+1, one-sided books, duplicate snapshot timestamps, quotes standing in
for snapshots, null derivative fields and liquidations on both sides.
"""

from __future__ import annotations

import math
import random
from datetime import timedelta
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

from market_data_assets.candles.build import (
    COMPLETE_META_KEY,
    build_base_candles,
    build_rolled_up_candles,
)
from market_data_assets.candles.compute import (
    CandleInputError,
    InstrumentDayTicks,
    compute_candles,
    order_by_exchange_time,
)
from market_data_assets.candles.rollup import rollup
from market_data_assets.candles.schema import CANDLE_COLUMNS, CANDLE_SCHEMA, Rollup
from market_data_assets.candles.timeframes import TIMEFRAME_TABLE, get_timeframe
from market_data_assets.storage.layout import TIMEFRAMES, candles_dir, candles_path, raw_ticks_path
from market_data_assets.storage.local import LocalStore
from market_data_assets_tests.support.candles import (
    DAY,
    EXCHANGE,
    NEXT,
    WIDTHS,
    assert_rows_equal,
    at,
    reference_candles,
    write_ticks,
)

BTC = "BINANCE:SPOT_PAIR:BTC-USDT"
ETH = "BINANCE:SPOT_PAIR:ETH-USDT"
LATE = "BINANCE:SPOT_PAIR:SOL-USDT"
AFTER = "BINANCE:SPOT_PAIR:XRP-USDT"
OTHER_VENUE = "BINANCE-FUTURES:PERP:BTC-USDT"


def _trade(ts: int, price: float, amount: float, side: str = "buy") -> dict:
    return {"timestamp": ts, "price": price, "amount": amount, "side": side}


def _snap(ts: int, ap: float | None, aa: float | None, bp: float | None, ba: float | None) -> dict:
    return {"timestamp": ts, "ask_price_0": ap, "ask_amount_0": aa, "bid_price_0": bp, "bid_amount_0": ba}


# file D rows (in file order), then file D+1 rows
BTC_TRADES_D = [
    _trade(at(0, micro=-100_000), 99.0, 9.0),  # stamped on D-1: not part of D
    _trade(at(0), 100.0, 1.0, "buy"),  # exactly midnight: first bucket
    _trade(at(0, 0, 15), 101.0, 2.0, "sell"),  # exactly on a 15s boundary: second bucket
    _trade(at(0, 0, 14, 999_999), 100.5, 0.5, "unknown"),  # filed after the boundary trade, stamped before
    _trade(at(0, 1, 0, 500_000), 102.0, 1.0, "buy"),  # three trades with one timestamp
    _trade(at(0, 1, 0, 500_000), 103.0, 1.5, "sell"),
    _trade(at(0, 1, 0, 500_000), 101.5, 0.25, "buy"),
    _trade(at(1, 0, 0), 104.0, 3.0, "sell"),  # after an hour without trades
    _trade(at(5, 59, 59, 999_999), 104.5, 0.1, "buy"),
    _trade(at(23, 59, 59, 900_000), 105.0, 1.0, "buy"),
]
BTC_TRADES_NEXT = [
    _trade(at(23, 59, 59, 999_999), 106.0, 2.0, "sell"),  # D's last microsecond, filed in D+1
    _trade(at(0, day=NEXT), 107.0, 1.0, "buy"),  # D+1: not part of D
]
ETH_TRADES_D = [  # starts mid-day
    _trade(at(12, 34, 56), 2000.0, 1.0, "buy"),
    _trade(at(12, 34, 58), 2001.0, 4.0, "sell"),
    _trade(at(13, 0, 0), 1999.0, 2.0, "buy"),
]
LATE_TRADES_NEXT = [_trade(at(23, 59, 59, 500_000), 20.0, 3.0, "buy")]  # only file D+1 has it
AFTER_TRADES_NEXT = [_trade(at(0, 0, 1, day=NEXT), 0.5, 10.0, "sell")]  # no trade stamped in D

BTC_BOOK_D = [
    _snap(at(0, 0, 5), 101.0, 1.0, 99.0, 3.0),
    _snap(at(0, 0, 15), 101.5, 2.0, 100.5, 2.0),  # on the boundary
    _snap(at(0, 0, 20), 102.0, 1.0, None, None),  # one-sided: not covered
    _snap(at(0, 0, 20), 102.0, 1.0, 101.0, 1.0),  # same timestamp: this one wins
    _snap(at(0, 3, 0), 103.0, 0.5, 102.0, 1.5),
    _snap(at(2, 0, 0), 104.0, 1.0, None, None),  # book one-sided for hours
    _snap(at(6, 0, 0), 105.0, 2.0, 104.0, 1.0),
]
BTC_BOOK_NEXT = [
    _snap(at(23, 59, 59, 999_000), 106.0, 1.0, 105.0, 1.0),
    _snap(at(0, 0, 1, day=NEXT), 1, 1, 1, 1),
]
ETH_QUOTES_D = [
    {
        "timestamp": at(12, 0, 0),
        "ask_price": 2001.0,
        "ask_amount": 1.0,
        "bid_price": 1999.0,
        "bid_amount": 2.0,
    },
    {
        "timestamp": at(12, 40, 7),
        "ask_price": 2002.0,
        "ask_amount": 3.0,
        "bid_price": 2000.0,
        "bid_amount": 1.0,
    },
]
BTC_TICKER_D = [
    {"timestamp": at(0, 0, 30), "mark_price": 100.1, "index_price": 100.0, "funding_rate": 0.0001},
    {"timestamp": at(0, 0, 45), "mark_price": None, "index_price": 100.2, "open_interest": 5000.0},
    {"timestamp": at(3, 0, 0), "mark_price": 103.3, "funding_rate": None, "open_interest": 5100.0},
]
BTC_TICKER_NEXT = [{"timestamp": at(23, 59, 59, 999_999), "mark_price": 106.6}]
BTC_LIQUIDATIONS_D = [
    _trade(at(0, 1, 1), 102.0, 5.0, "sell"),
    _trade(at(0, 1, 2), 102.0, 1.0, "buy"),
    _trade(at(4, 0, 0), 104.0, 2.0, "sell"),
]


def _quotes_as_book(rows: list[dict]) -> list[dict]:
    return [
        _snap(r["timestamp"], r["ask_price"], r["ask_amount"], r["bid_price"], r["bid_amount"]) for r in rows
    ]


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "lake")


def _write_day(store: LocalStore, with_next_day: bool = True) -> None:
    write_ticks(store, "trades", DAY, BTC, BTC_TRADES_D)
    write_ticks(store, "trades", DAY, ETH, ETH_TRADES_D)
    write_ticks(store, "book_snapshot_5", DAY, BTC, BTC_BOOK_D)
    write_ticks(store, "quotes", DAY, ETH, ETH_QUOTES_D)
    write_ticks(store, "derivative_ticker", DAY, BTC, BTC_TICKER_D)
    write_ticks(store, "liquidations", DAY, BTC, BTC_LIQUIDATIONS_D)
    # Another venue whose key starts like ours: must never be read for binance.
    write_ticks(store, "trades", DAY, OTHER_VENUE, [_trade(at(1), 1e6, 1e6)])
    if with_next_day:
        write_ticks(store, "trades", NEXT, BTC, BTC_TRADES_NEXT)
        write_ticks(store, "trades", NEXT, LATE, LATE_TRADES_NEXT)
        write_ticks(store, "trades", NEXT, AFTER, AFTER_TRADES_NEXT)
        write_ticks(store, "book_snapshot_5", NEXT, BTC, BTC_BOOK_NEXT)
        write_ticks(store, "derivative_ticker", NEXT, BTC, BTC_TICKER_NEXT)


def _build_all(store: LocalStore) -> None:
    build_base_candles(store, DAY, EXCHANGE)
    for tf in TIMEFRAMES[1:]:
        build_rolled_up_candles(store, DAY, EXCHANGE, tf)


def _read(store: LocalStore, tf: str, key: str) -> list[dict]:
    return pl.read_parquet(store.uri(candles_path(DAY, tf, key))).to_dicts()


EXPECTED_INPUTS = {
    BTC: dict(
        trades=BTC_TRADES_D + BTC_TRADES_NEXT,
        book=BTC_BOOK_D + BTC_BOOK_NEXT,
        derivative=BTC_TICKER_D + BTC_TICKER_NEXT,
        liquidations=BTC_LIQUIDATIONS_D,
    ),
    ETH: dict(trades=ETH_TRADES_D, book=_quotes_as_book(ETH_QUOTES_D)),
    LATE: dict(trades=LATE_TRADES_NEXT),
}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> LocalStore:
    """The generated day, with D+1, built once through every timeframe (tests only read it)."""
    store = LocalStore(tmp_path_factory.mktemp("candles") / "lake")
    _write_day(store)
    _build_all(store)
    return store


@pytest.mark.parametrize("timeframe", TIMEFRAMES)
@pytest.mark.slow
def test_every_timeframe_equals_reference_from_ticks(built: LocalStore, timeframe: str) -> None:
    store = built
    for key, inputs in EXPECTED_INPUTS.items():
        actual = _read(store, timeframe, key)
        expected = reference_candles(timeframe=timeframe, **inputs)
        assert_rows_equal(actual, expected, f"{key} {timeframe}")
        assert {r["timeframe"] for r in actual} == {timeframe}
        assert {(r["instrument_key"], r["exchange"], r["instrument_type"]) for r in actual} == {
            (key, EXCHANGE, "SPOT_PAIR")
        }
    written = {p.name for p in Path(store.uri(candles_dir(DAY, timeframe))).glob("*.parquet")}
    assert written == {f"{k}.parquet" for k in EXPECTED_INPUTS}, "AFTER has no trade in D; no other venue"


@pytest.mark.slow
def test_edge_cases_land_where_the_definitions_say(built: LocalStore) -> None:
    """Spot checks that do not lean on the reference: the day boundary and the grid rules by hand."""
    store = built
    c15 = _read(store, "15s", BTC)
    assert len(c15) == 5760
    assert (c15[0]["open"], c15[0]["trade_count"]) == (100.0, 2)  # midnight trade; D-1 trade excluded
    assert (c15[0]["close"], c15[0]["volume"]) == (100.5, 1.5)  # 00:00:14.999999 sorted into bucket 0
    assert (c15[1]["open"], c15[1]["trade_count"]) == (101.0, 1)  # boundary trade opens bucket 1
    b = c15[4]  # 00:01:00: three trades with one timestamp keep their file order
    assert (b["open"], b["high"], b["low"], b["close"], b["trade_count"]) == (102.0, 103.0, 101.5, 101.5, 3)
    assert (b["buy_count"], b["sell_count"], b["buy_volume"], b["sell_volume"]) == (2, 1, 1.25, 1.5)
    empty = c15[100]
    assert (empty["open"], empty["high"], empty["low"], empty["close"]) == (101.5,) * 4
    assert (empty["trade_count"], empty["volume"], empty["vwap"], empty["max_trade_amount"]) == (
        0,
        0.0,
        None,
        None,
    )
    last = c15[-1]  # 23:59:45: the 23:59:59.999999 trade from file D+1 is in D
    assert (last["close"], last["trade_count"], last["volume"]) == (106.0, 2, 3.0)
    day = _read(store, "24h", BTC)[0]
    assert day["trade_count"] == 10 and day["open"] == 100.0 and day["close"] == 106.0
    eth = _read(store, "15s", ETH)
    first = 12 * 240 + 34 * 4 + 3  # 12:34:45
    assert all(r["open"] is None and r["close"] is None and r["trade_count"] == 0 for r in eth[:first])
    assert eth[first]["open"] == 2000.0 and eth[first + 1]["open"] == 2001.0
    assert eth[-1]["close"] == 1999.0 and eth[-1]["trade_count"] == 0
    assert eth[first]["snapshot_count"] == 0 and eth[first]["twa_spread"] == 2.0  # quotes held since 12:00


@pytest.mark.slow
def test_next_day_trades_stay_out_of_the_next_days_candles(store: LocalStore) -> None:
    _write_day(store)
    build_base_candles(store, NEXT, EXCHANGE)
    nxt = pl.read_parquet(store.uri(candles_path(NEXT, "15s", BTC)))
    assert nxt["trade_count"].sum() == 1 and nxt["open"].drop_nulls()[0] == 107.0
    assert not Path(store.uri(candles_path(NEXT, "15s", LATE))).exists()  # its only trade is D's
    assert Path(store.uri(candles_path(NEXT, "15s", AFTER))).exists()


@pytest.mark.slow
def test_missing_next_day_is_built_and_flagged_incomplete(store: LocalStore) -> None:
    _write_day(store, with_next_day=False)
    summary = build_base_candles(store, DAY, EXCHANGE)
    assert summary.complete_through_midnight is False
    assert sorted(summary.instruments) == [BTC, ETH]
    meta = pq.read_schema(store.uri(candles_path(DAY, "15s", BTC))).metadata
    assert meta[COMPLETE_META_KEY] == b"false"
    rolled = build_rolled_up_candles(store, DAY, EXCHANGE, "1m")
    assert rolled.complete_through_midnight is False
    assert pq.read_schema(store.uri(candles_path(DAY, "1m", BTC))).metadata[COMPLETE_META_KEY] == b"false"
    # D+1 arrives: the rebuild includes the late trade and is complete.
    write_ticks(store, "trades", NEXT, BTC, BTC_TRADES_NEXT)
    again = build_base_candles(store, DAY, EXCHANGE)
    assert again.complete_through_midnight is True
    assert pl.read_parquet(store.uri(candles_path(DAY, "15s", BTC)))["trade_count"].sum() == 10


@pytest.mark.slow
def test_rebuild_replaces_the_slice_and_deletes_stale_files(store: LocalStore) -> None:
    _write_day(store)
    build_base_candles(store, DAY, EXCHANGE)
    stale = Path(store.uri(candles_path(DAY, "15s", ETH)))
    assert stale.exists()
    Path(store.uri(raw_ticks_path(DAY, "trades", ETH))).unlink()
    summary = build_base_candles(store, DAY, EXCHANGE)
    assert summary.deleted_stale == 1 and not stale.exists()
    assert Path(store.uri(candles_path(DAY, "15s", BTC))).exists()


def test_non_positive_price_is_a_clear_error_naming_the_file(store: LocalStore) -> None:
    write_ticks(store, "trades", DAY, BTC, [_trade(at(1), 100.0, 1.0), _trade(at(2), 0.0, 1.0)])
    with pytest.raises(CandleInputError, match=r"trades/BINANCE:SPOT_PAIR:BTC-USDT\.parquet.*non-positive"):
        build_base_candles(store, DAY, EXCHANGE)
    assert not Path(store.uri(candles_dir(DAY, "15s"))).exists()


def test_unreadable_tick_file_is_a_clear_error_naming_it(store: LocalStore) -> None:
    import pyarrow as pa

    bad = pa.table(
        {"timestamp": pa.array([at(1)], pa.int64()).cast(pa.timestamp("us", tz="UTC")), "price": [1.0]}
    )
    store.write_parquet(bad, raw_ticks_path(DAY, "trades", BTC))  # no amount, no side
    with pytest.raises(
        CandleInputError,
        match=r"cannot build BINANCE:SPOT_PAIR:BTC-USDT from .*trades/BINANCE:SPOT_PAIR:BTC-USDT\.parquet",
    ):
        build_base_candles(store, DAY, EXCHANGE)
    assert not Path(store.uri(candles_dir(DAY, "15s"))).exists()


def test_written_files_have_the_published_schema(built: LocalStore) -> None:
    store = built
    for tf in TIMEFRAMES:
        schema = pq.read_schema(store.uri(candles_path(DAY, tf, BTC)))
        assert schema.remove_metadata() == CANDLE_SCHEMA, tf
        assert pq.read_metadata(store.uri(candles_path(DAY, tf, BTC))).num_rows == 86_400 // WIDTHS[tf]


# --- roll-up consistency on a random day --------------------------------------------------------


def _random_day(seed: int, n_trades: int = 4000, n_snaps: int = 1500) -> InstrumentDayTicks:
    """Random ticks with clustered timestamps, ties, gaps, one-sided books and sparse derivative fields."""
    rng = random.Random(seed)
    lo = at(0) - 2_000_000
    hi = at(0, day=NEXT) + 2_000_000

    def stamps(n: int) -> list[int]:
        out = []
        while len(out) < n:
            base = rng.randrange(lo, hi)
            if rng.random() < 0.2:
                base = base // 15_000_000 * 15_000_000  # exactly on a boundary
            out.extend([base] * rng.choice([1, 1, 1, 2, 3]))
        return out[:n]

    price = 100.0
    trades = []
    for ts in stamps(n_trades):
        price *= math.exp(rng.gauss(0, 0.001))
        trades.append(_trade(ts, price, rng.expovariate(2.0), rng.choice(["buy", "sell", "unknown"])))
    book = []
    for ts in stamps(n_snaps):
        bid = price * (1 - rng.random() * 1e-3)
        one_sided = rng.random() < 0.1
        book.append(
            _snap(ts, bid + rng.random(), rng.random() * 3, None if one_sided else bid, rng.random() * 3)
        )
    ticker = [
        {
            f: (rng.random() if rng.random() < 0.6 else None)
            for f in ("mark_price", "index_price", "funding_rate", "open_interest")
        }
        | {"timestamp": ts}
        for ts in stamps(600)
    ]
    liqs = [_trade(ts, 100.0, rng.random(), rng.choice(["buy", "sell"])) for ts in stamps(200)]
    return InstrumentDayTicks(
        trades=pl.DataFrame(trades).with_columns(pl.col("timestamp").cast(pl.Datetime("us", "UTC"))).lazy(),
        book=pl.DataFrame(book).with_columns(pl.col("timestamp").cast(pl.Datetime("us", "UTC"))).lazy(),
        derivative_ticker=pl.DataFrame(ticker)
        .with_columns(pl.col("timestamp").cast(pl.Datetime("us", "UTC")))
        .lazy(),
        liquidations=pl.DataFrame(liqs)
        .with_columns(pl.col("timestamp").cast(pl.Datetime("us", "UTC")))
        .lazy(),
    )


def _frames_equal(rolled: pl.DataFrame, direct: pl.DataFrame, context: str) -> None:
    assert rolled.columns == direct.columns == CANDLE_SCHEMA.names
    assert rolled.height == direct.height
    for col in CANDLE_COLUMNS:
        a, b = rolled[col.name], direct[col.name]
        assert a.null_count() == b.null_count() and (a.is_null() == b.is_null()).all(), (
            f"{context} {col.name} nulls"
        )
        if a.dtype == pl.Float64:
            diff = ((a - b).abs() - (1e-9 * b.abs() + (1e-3 if "integral" in col.name else 1e-12))).max()
            assert diff is None or diff <= 0, f"{context} {col.name}: max excess difference {diff}"
        else:
            assert (a == b).all() if a.null_count() < a.len() else True, f"{context} {col.name}"


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.slow
def test_rolled_up_15s_equals_direct_computation_at_every_timeframe(seed: int) -> None:
    ticks = _random_day(seed)
    base = compute_candles(ticks, DAY, BTC, EXCHANGE, get_timeframe("15s"))
    assert base is not None and base["trade_count"].sum() > 3000
    chained = base
    for tf in TIMEFRAME_TABLE[1:]:
        chained = rollup(chained, tf)  # the production chain: each from the next finer
        straight = rollup(base, tf)  # straight from 15s
        direct = compute_candles(ticks, DAY, BTC, EXCHANGE, tf)
        assert direct is not None
        _frames_equal(chained, direct, f"seed {seed} chain->{tf.name}")
        _frames_equal(straight, direct, f"seed {seed} 15s->{tf.name}")


@pytest.mark.slow
def test_random_day_matches_the_reference_too() -> None:
    """The random day against the plain-Python reference at 1h (every feature, ties and gaps included)."""
    ticks = _random_day(3, n_trades=1500, n_snaps=400)
    rows = {
        name: frame.collect().with_columns(pl.col("timestamp").cast(pl.Int64)).to_dicts()
        for name, frame in (
            ("trades", ticks.trades),
            ("book", ticks.book),
            ("derivative", ticks.derivative_ticker),
            ("liquidations", ticks.liquidations),
        )
    }
    chained = compute_candles(ticks, DAY, BTC, EXCHANGE)
    for tf in TIMEFRAME_TABLE[1:5]:
        chained = rollup(chained, tf)
    assert_rows_equal(chained.to_dicts(), reference_candles(timeframe="1h", **rows), "random 1h")


@pytest.mark.parametrize("late_share", [0.0, 0.01, 0.3, 0.9])
def test_order_by_exchange_time_is_a_stable_sort(late_share: float) -> None:
    """Nearly sorted input (the merge path) and mostly unsorted input (the fallback) alike."""
    rng = random.Random(int(late_share * 100))
    stamps = []
    for i in range(5000):
        ts = i // 3 * 10  # ties in threes
        if rng.random() < late_share:
            ts -= 10 * rng.randrange(1, 40)  # stamped like a row already seen (a tie) but arrived late
        stamps.append(ts)
    frame = pl.DataFrame({"_t": stamps, "file_row": list(range(len(stamps)))})
    expected = sorted(
        zip(stamps, range(len(stamps)), strict=True), key=lambda r: r[0]
    )  # Python's sort is stable
    got = order_by_exchange_time(frame)
    assert list(zip(got["_t"], got["file_row"], strict=True)) == expected


def test_every_column_has_a_rollup_rule_and_ratios_name_summed_columns() -> None:
    names = {c.name for c in CANDLE_COLUMNS}
    for c in CANDLE_COLUMNS:
        assert isinstance(c.rollup, Rollup)
        if c.rollup is Rollup.RATIO:
            assert {c.numerator, c.denominator} <= names
            assert all(
                CANDLE_COLUMNS[[x.name for x in CANDLE_COLUMNS].index(n)].rollup is Rollup.SUM
                for n in (c.numerator, c.denominator)
            )
    assert [tf.name for tf in TIMEFRAME_TABLE] == list(TIMEFRAMES)
    assert all(
        get_timeframe(tf.finer).us * (tf.us // get_timeframe(tf.finer).us) == tf.us
        for tf in TIMEFRAME_TABLE[1:]
    )
    assert timedelta(hours=24) == TIMEFRAME_TABLE[-1].duration
