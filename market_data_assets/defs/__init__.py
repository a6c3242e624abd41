"""Dagster wiring only: assets, asset checks, sensors, schedules, jobs and resources.

The behaviour lives in the core packages; the modules here turn it into Dagster objects. Each
module offers a factory that takes what the settings decide (the partitions and the backfill
policy, the warehouse kind): ``build_definitions`` reads the settings once and passes them down.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import dagster as dg

from market_data_assets.settings import Settings

if TYPE_CHECKING:
    from market_data_assets.defs.jobs import AssetJobs


@dataclass(frozen=True)
class Graph:
    """The assets, checks, jobs, sensors and schedules the settings make: what ``build_definitions``
    wires with resources, and what tests take single objects from."""

    ingest: list[dg.AssetsDefinition]
    process: list[dg.AssetsDefinition]
    live: list[dg.AssetsDefinition]
    checks: list[dg.AssetChecksDefinition]
    jobs: AssetJobs
    sensors: list[dg.SensorDefinition]
    schedules: list

    @property
    def assets(self) -> list[dg.AssetsDefinition]:
        return [*self.ingest, *self.process, *self.live]


def build_graph(settings: Settings) -> Graph:
    """One factory per ``defs`` module, fed the partitioning (and warehouse kind) of ``settings``."""
    from market_data_assets.defs.candles import candle_assets
    from market_data_assets.defs.features import feature_assets
    from market_data_assets.defs.instruments import instrument_assets
    from market_data_assets.defs.jobs import asset_jobs
    from market_data_assets.defs.live import live_assets, live_sensors
    from market_data_assets.defs.quality import quality_assets, quality_checks
    from market_data_assets.defs.raw_ticks import raw_ticks_assets
    from market_data_assets.defs.sensors import sensors_and_schedules
    from market_data_assets.defs.warehouse import warehouse_assets
    from market_data_assets.partitions import Partitioning

    partitioning = Partitioning.of(settings)
    ingest = [*instrument_assets(partitioning), *raw_ticks_assets(partitioning)]
    process = [
        *candle_assets(partitioning),
        *feature_assets(partitioning),
        *warehouse_assets(partitioning, settings.warehouse_kind),
        *quality_assets(partitioning),
    ]
    jobs = asset_jobs(ingest, process)
    sensors, schedules = sensors_and_schedules(jobs)
    return Graph(
        ingest=ingest,
        process=process,
        live=live_assets(partitioning),
        checks=quality_checks(partitioning),
        jobs=jobs,
        sensors=[*sensors, *live_sensors()],
        schedules=schedules,
    )


def build_definitions(settings: Settings | None = None) -> dg.Definitions:
    """The project's Definitions for ``settings`` (default: ``Settings.from_env()``, read here once).

    A run's step processes build the same Definitions from the same environment, so every step of a
    run sees the settings its run was launched with.
    """
    from market_data_assets.defs.io_managers import io_managers_for
    from market_data_assets.defs.resources import MarketDataResource, google_resources

    settings = settings or Settings.from_env()
    graph = build_graph(settings)
    # Each step runs in its own process (isolation, both cores). Forked from a server that has
    # already imported the code location, a step starts in ~0.1 s instead of ~2 s of imports: a
    # processing run has nine steps and two checks.
    executor = dg.multiprocess_executor.configured(
        {"start_method": {"forkserver": {"preload_modules": ["market_data_assets.definitions"]}}}
    )
    gcs, bigquery = google_resources(settings)
    market_data = MarketDataResource(settings=settings, gcs=gcs, bigquery=bigquery)
    return dg.Definitions(
        executor=executor,
        assets=graph.assets,
        asset_checks=graph.checks,
        jobs=graph.jobs.all,
        sensors=graph.sensors,
        schedules=graph.schedules,
        resources={
            "market_data": market_data,
            "gcs": gcs,
            "bigquery": bigquery,
            **io_managers_for(market_data),
        },
    )
