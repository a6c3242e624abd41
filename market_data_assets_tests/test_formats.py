"""Tick data-type specs against real Tardis headers, and the names they give Parquet columns."""

from __future__ import annotations

from market_data_assets.tardis.formats import DATA_TYPES, header_mismatch


def test_real_csv_headers_match_specs(tardis_samples):
    real = {
        "book_snapshot_25": "binance-futures_book_snapshot_25_BTCUSDT.csv",
        "book_snapshot_5": "binance-futures_book_snapshot_5_BTCUSDT.csv",
        "trades": "bitmex_trades_XBTUSD.csv",
        "incremental_book_L2": "deribit_incremental_book_L2_BTC-PERPETUAL.csv",
        "quotes": "huobi-dm-swap_quotes_BTC-USD.csv",
    }
    for data_type, name in real.items():
        header = (tardis_samples / "csv_real" / name).read_text().splitlines()[0].split(",")
        assert header_mismatch(data_type, header) is None, name
    synthetic = {"derivative_ticker": "derivative_ticker_1.csv", "options_chain": "options_chain.csv"}
    for data_type, name in synthetic.items():
        header = (
            (tardis_samples / "csv_synthetic_tardis_format" / name).read_text().splitlines()[0].split(",")
        )
        assert header_mismatch(data_type, header) is None, name


def test_header_mismatch_names_the_columns():
    problem = header_mismatch(
        "trades", ["exchange", "symbol", "timestamp", "local_timestamp", "id", "side", "price"]
    )
    assert problem is not None and "missing ['amount']" in problem
    assert "columns out of order" in (
        header_mismatch("trades", ["symbol", "exchange", *DATA_TYPES["trades"].csv_header[2:]]) or ""
    )


def test_book_columns_are_bigquery_safe():
    import re

    for spec in DATA_TYPES.values():
        for name in spec.arrow_schema.names:
            assert re.match(r"^[a-z_][a-z0-9_]*$", name), name
