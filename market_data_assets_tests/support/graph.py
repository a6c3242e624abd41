"""The project's Dagster objects for tests: assets, checks and sensors by name, and the resources
for a root.

Taken from ``defs.build_graph`` (what ``build_definitions`` wires) with the default settings'
partitions, inside which every test partition lies; the resources take the process environment
the test set.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import dagster as dg

from market_data_assets.defs import Graph, build_graph
from market_data_assets.defs.io_managers import io_managers_for
from market_data_assets.defs.resources import MarketDataResource
from market_data_assets.partitions import build_partitions_def
from market_data_assets.settings import Settings

PARTITIONS_DEF = build_partitions_def(Settings())


def graph() -> Graph:
    """A fresh graph: Dagster objects are not shared between tests."""
    return build_graph(Settings())


def assets(*names: str) -> list[dg.AssetsDefinition]:
    """The assets of these names in the given order (every asset when none is named)."""
    built = graph().assets
    by_name = {a.key.path[-1]: a for a in built}
    return [by_name[n] for n in names] if names else built


def asset(name: str) -> dg.AssetsDefinition:
    return assets(name)[0]


def group(name: str) -> list[dg.AssetsDefinition]:
    """The assets of a UI group (``candles``, ``warehouse``, ...)."""
    return [a for a in graph().assets if a.group_names_by_key[a.key] == name]


def check(name: str) -> dg.AssetChecksDefinition:
    (found,) = [c for c in graph().checks if c.check_key.name == name]
    return found


def sensor(name: str) -> dg.SensorDefinition:
    (found,) = [s for s in graph().sensors if s.name == name]
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
