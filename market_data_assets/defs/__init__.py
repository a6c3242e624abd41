"""Dagster wiring only: assets, asset checks, sensors, schedules, jobs and resources.

The behaviour lives in the core packages; the modules here turn it into Dagster objects.
"""

from __future__ import annotations

import dagster as dg

from market_data_assets.settings import Settings, get_settings


def build_definitions(settings: Settings | None = None) -> dg.Definitions:
    settings = settings or get_settings()
    return dg.Definitions(assets=[], resources={})
