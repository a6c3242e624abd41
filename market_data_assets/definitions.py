"""``defs``: the one Definitions object — assets, checks, sensors, jobs and resources."""

import warnings

import dagster as dg
from dagster_shared.utils.warnings import BetaWarning, PreviewWarning

# We use backfill policies and partitioned asset checks knowingly; keep `dagster dev` and the
# CLI free of a warning per asset.
warnings.filterwarnings("ignore", category=BetaWarning)
warnings.filterwarnings("ignore", category=PreviewWarning)

from market_data_assets.defs import build_definitions  # noqa: E402

defs: dg.Definitions = build_definitions()
