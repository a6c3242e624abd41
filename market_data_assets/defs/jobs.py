"""Asset jobs: ingestion of a day, and the processing that follows once the next day is in."""

from __future__ import annotations

import dagster as dg

INGEST_ASSETS = ("instrument_definitions", "download_targets", "raw_ticks")
PROCESS_ASSETS = (
    "candles_15s",
    "candles_1m",
    "candles_5m",
    "candles_15m",
    "candles_1h",
    "candles_4h",
    "candles_24h",
    "book_snapshots",
    "bq_candles",
    "missing_data_report",
)

ingest_job = dg.define_asset_job(
    "ingest_job",
    selection=dg.AssetSelection.assets(*INGEST_ASSETS),
    description="Definitions, targets and raw ticks of a day × exchange.",
)
process_job = dg.define_asset_job(
    "process_job",
    selection=dg.AssetSelection.assets(*PROCESS_ASSETS),
    description="Candles, book snapshots, warehouse load and missing-data report of a day × exchange "
    "(run once the next day's raw ticks are in: they hold the day's last trades).",
)
daily_job = dg.define_asset_job(
    "daily_job",
    selection=dg.AssetSelection.assets(*INGEST_ASSETS, *PROCESS_ASSETS),
    description="The whole graph for a day × exchange.",
)
JOBS = [ingest_job, process_job, daily_job]
