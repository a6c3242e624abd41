"""Asset jobs: ingestion of a day, and the processing that follows once the next day is in."""

import dagster as dg

from market_data_assets.defs.candles import CANDLE_ASSETS
from market_data_assets.defs.features import FEATURE_ASSETS
from market_data_assets.defs.instruments import INSTRUMENT_ASSETS
from market_data_assets.defs.quality import QUALITY_ASSETS
from market_data_assets.defs.raw_ticks import RAW_TICKS_ASSETS
from market_data_assets.defs.warehouse import WAREHOUSE_ASSETS

INGEST_KEYS: list[dg.AssetKey] = [k for a in (*INSTRUMENT_ASSETS, *RAW_TICKS_ASSETS) for k in a.keys]
PROCESS_KEYS: list[dg.AssetKey] = [
    k for a in (*CANDLE_ASSETS, *FEATURE_ASSETS, *WAREHOUSE_ASSETS, *QUALITY_ASSETS) for k in a.keys
]

ingest_job = dg.define_asset_job(
    "ingest_job",
    selection=dg.AssetSelection.assets(*INGEST_KEYS),
    description="Definitions, targets and raw ticks of a day × exchange.",
)
process_job = dg.define_asset_job(
    "process_job",
    selection=dg.AssetSelection.assets(*PROCESS_KEYS),
    description="Candles, book snapshots, features, warehouse load and missing-data report of a day × exchange "
    "(run once the next day's raw ticks are in: they hold the day's last trades).",
)
daily_job = dg.define_asset_job(
    "daily_job",
    selection=dg.AssetSelection.assets(*INGEST_KEYS, *PROCESS_KEYS),
    description="The whole graph for a day × exchange.",
)
JOBS = [ingest_job, process_job, daily_job]
