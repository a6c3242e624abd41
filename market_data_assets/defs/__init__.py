"""Dagster wiring only: assets, asset checks, sensors, schedules, jobs and resources.

The behaviour lives in the core packages; the modules here turn it into Dagster objects.
"""

from __future__ import annotations

import dagster as dg

from market_data_assets.settings import Settings, get_settings


def build_definitions(settings: Settings | None = None) -> dg.Definitions:
    """The project's Definitions; resources read ``settings.py`` at run time."""
    from market_data_assets.defs.candles import CANDLE_ASSETS
    from market_data_assets.defs.features import FEATURE_ASSETS
    from market_data_assets.defs.instruments import INSTRUMENT_ASSETS
    from market_data_assets.defs.io_managers import io_managers_for
    from market_data_assets.defs.jobs import JOBS
    from market_data_assets.defs.live import LIVE_ASSETS, LIVE_SENSORS
    from market_data_assets.defs.quality import QUALITY_ASSETS, QUALITY_CHECKS
    from market_data_assets.defs.raw_ticks import RAW_TICKS_ASSETS
    from market_data_assets.defs.resources import MarketDataResource
    from market_data_assets.defs.sensors import SCHEDULES, SENSORS
    from market_data_assets.defs.warehouse import WAREHOUSE_ASSETS

    settings = settings or get_settings()
    # Each step runs in its own process (isolation, both cores). Forked from a server that has
    # already imported the code location, a step starts in ~0.1 s instead of ~2 s of imports: a
    # processing run has nine steps and two checks.
    executor = dg.multiprocess_executor.configured(
        {"start_method": {"forkserver": {"preload_modules": ["market_data_assets.definitions"]}}}
    )
    market_data = MarketDataResource()
    return dg.Definitions(
        executor=executor,
        assets=[
            *INSTRUMENT_ASSETS,
            *RAW_TICKS_ASSETS,
            *CANDLE_ASSETS,
            *FEATURE_ASSETS,
            *WAREHOUSE_ASSETS,
            *QUALITY_ASSETS,
            *LIVE_ASSETS,
        ],
        asset_checks=QUALITY_CHECKS,
        jobs=JOBS,
        sensors=[*SENSORS, *LIVE_SENSORS],
        schedules=SCHEDULES,
        resources={
            "market_data": market_data,
            **io_managers_for(market_data),
        },
    )
