"""The project's Dagster objects for tests: assets and checks by name, and the resources for a root.

Built by the same factories ``build_definitions`` calls, with the default settings' partitions
(every test partition is inside them); the resources take the process environment the test set.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import dagster as dg

from market_data_assets.defs.candles import candle_assets
from market_data_assets.defs.features import feature_assets
from market_data_assets.defs.instruments import instrument_assets
from market_data_assets.defs.io_managers import io_managers_for
from market_data_assets.defs.jobs import asset_jobs
from market_data_assets.defs.live import live_assets, live_sensors
from market_data_assets.defs.quality import quality_assets, quality_checks
from market_data_assets.defs.raw_ticks import raw_ticks_assets
from market_data_assets.defs.resources import MarketDataResource
from market_data_assets.defs.sensors import sensors_and_schedules
from market_data_assets.defs.warehouse import warehouse_assets
from market_data_assets.partitions import Partitioning
from market_data_assets.settings import Settings

PARTITIONING = Partitioning.of(Settings())
PARTITIONS_DEF = PARTITIONING.partitions_def


def assets(*names: str) -> list[dg.AssetsDefinition]:
    """Fresh assets of these names (every asset of the graph when none is named), in the given order."""
    p = PARTITIONING
    built = [
        *instrument_assets(p),
        *raw_ticks_assets(p),
        *candle_assets(p),
        *feature_assets(p),
        *warehouse_assets(p, "duckdb"),
        *quality_assets(p),
        *live_assets(p),
    ]
    by_name = {a.key.path[-1]: a for a in built}
    return [by_name[n] for n in names] if names else built


def asset(name: str) -> dg.AssetsDefinition:
    return assets(name)[0]


def check(name: str) -> dg.AssetChecksDefinition:
    (found,) = [c for c in quality_checks(PARTITIONING) if c.check_key.name == name]
    return found


def sensor(name: str) -> dg.SensorDefinition:
    by_group = {}
    for a in assets():
        by_group.setdefault(a.group_names_by_key[a.key], []).append(a)
    ingest = [*by_group["instruments"], *by_group["ingest"]]
    process = [a for g in ("candles", "features", "warehouse", "quality") for a in by_group[g]]
    sensors, _ = sensors_and_schedules(asset_jobs(ingest, process))
    (found,) = [s for s in [*sensors, *live_sensors()] if s.name == name]
    return found


def settings(root: str | Path | None = None) -> Settings:
    """The settings of the environment the test set, on ``root`` when given."""
    current = Settings.from_env()
    return current if root is None else replace(current, root=str(root))


def market_data(root: str | Path | None = None) -> MarketDataResource:
    return MarketDataResource.of(settings(root))


def resources(root: str | Path | None = None) -> dict[str, object]:
    """``market_data`` and the IO managers, on ``root`` when given."""
    resource = market_data(root)
    return {"market_data": resource, **io_managers_for(resource)}
