"""market_data_assets: Tardis.dev market data -> Parquet lake -> candles -> warehouse, as Dagster assets."""

__version__ = "0.1.0"
