"""``defs``: the one Definitions object — assets, checks, sensors, jobs and resources."""

from __future__ import annotations

import dagster as dg

from market_data_assets.defs import build_definitions

defs: dg.Definitions = build_definitions()
