"""Asset jobs: ingestion of a day, and the processing that follows once the next day is in."""

from collections.abc import Sequence
from dataclasses import dataclass

import dagster as dg
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition


@dataclass(frozen=True)
class AssetJobs:
    """The three jobs and the asset keys of their two stages (the sensor requests a stage's keys)."""

    ingest_keys: list[dg.AssetKey]
    process_keys: list[dg.AssetKey]
    ingest: UnresolvedAssetJobDefinition
    process: UnresolvedAssetJobDefinition
    daily: UnresolvedAssetJobDefinition

    @property
    def all(self) -> list[UnresolvedAssetJobDefinition]:
        return [self.ingest, self.process, self.daily]


def asset_jobs(ingest: Sequence[dg.AssetsDefinition], process: Sequence[dg.AssetsDefinition]) -> AssetJobs:
    """``ingest_job`` over the ``ingest`` assets, ``process_job`` over ``process``, ``daily_job`` over both."""
    ingest_keys = [k for a in ingest for k in a.keys]
    process_keys = [k for a in process for k in a.keys]
    return AssetJobs(
        ingest_keys=ingest_keys,
        process_keys=process_keys,
        ingest=dg.define_asset_job(
            "ingest_job",
            selection=dg.AssetSelection.assets(*ingest_keys),
            description="Definitions, targets and raw ticks of a day × exchange.",
        ),
        process=dg.define_asset_job(
            "process_job",
            selection=dg.AssetSelection.assets(*process_keys),
            description="Candles, book snapshots, features, warehouse load and missing-data report of a day × "
            "exchange (run once the next day's raw ticks are in: they hold the day's last trades).",
        ),
        daily=dg.define_asset_job(
            "daily_job",
            selection=dg.AssetSelection.assets(*ingest_keys, *process_keys),
            description="The whole graph for a day × exchange.",
        ),
    )
