"""``ExchangeTaggingRunCoordinator``: the QueuedRunCoordinator, plus an exchange tag on every run.

The queue's ``tag_concurrency_limits`` can only count tags that are on the run. Dagster puts
``dagster/partition/exchange`` on single-partition runs but not on the range runs a
``BackfillPolicy.multi_run`` backfill creates (those only carry ``dagster/asset_partition_range_*``),
so a limit on the Dagster tag would not hold back backfills at all. This coordinator adds
``market_data/exchange`` (derived by ``exchange_of_run_tags``) when a run is submitted, before it is
queued, and the limits in deploy/dagster.yaml key on that tag. Everything else is the stock
QueuedRunCoordinator (same config schema, and the daemon still recognises it as queued).
"""

from __future__ import annotations

from dagster._core.run_coordinator.base import SubmitRunContext
from dagster._core.run_coordinator.queued_run_coordinator import QueuedRunCoordinator
from dagster._core.storage.dagster_run import DagsterRun

from market_data_assets.launchers.run_tags import EXCHANGE_TAG, exchange_of_run_tags


class ExchangeTaggingRunCoordinator(QueuedRunCoordinator):
    """Queued coordinator that tags each run with the one exchange it covers (if any)."""

    def submit_run(self, context: SubmitRunContext) -> DagsterRun:
        run = context.dagster_run
        exchange = exchange_of_run_tags(run.tags)
        if exchange and run.tags.get(EXCHANGE_TAG) != exchange:
            self._instance.add_run_tags(run.run_id, {EXCHANGE_TAG: exchange})
            run = run.with_tags({**run.tags, EXCHANGE_TAG: exchange})
            context = SubmitRunContext(run, context.workspace)
        return super().submit_run(context)
