"""Test-only code location for the orchestration tests (launcher, backfills).

It mirrors the project's shape -- date × exchange partitions keyed ``"2024-01-15|binance"`` and a
``BackfillPolicy.multi_run`` -- without depending on the real assets, so these tests exercise Dagster's
machinery and the launcher alone. Each asset writes one small JSON file per partition under
``MARKET_DATA_ROOT`` (which the launcher forwards to the VM), so a test can check that every partition
of every run was really written, and by which run.
"""

import hashlib
import json
import os
import time
from pathlib import Path

import dagster as dg

EXCHANGES = ("binance", "deribit")
partitions = dg.MultiPartitionsDefinition(
    {
        "date": dg.DailyPartitionsDefinition(start_date="2024-01-01", end_date="2024-01-07"),
        "exchange": dg.StaticPartitionsDefinition(list(EXCHANGES)),
    }
)
BACKFILL_DAYS_PER_RUN = 3
BLOCK_DEADLINE_SECONDS = 60.0


def output_dir() -> Path:
    return Path(os.environ["MARKET_DATA_ROOT"]) / "orchestration_test"


def partition_file(asset: str, key: str) -> Path:
    return output_dir() / asset / f"{key.replace('|', '__')}.json"


def _write(context: dg.AssetExecutionContext, asset: str) -> None:
    key_hash = None
    if os.environ.get("TARDIS_API_KEY"):
        key_hash = hashlib.sha256(os.environ["TARDIS_API_KEY"].encode()).hexdigest()
    for key in context.partition_keys:
        path = partition_file(asset, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(
            json.dumps({"partition": key, "run_id": context.run.run_id, "tardis_key_sha256": key_hash})
        )
        tmp.replace(path)


@dg.asset(partitions_def=partitions, backfill_policy=dg.BackfillPolicy.multi_run(BACKFILL_DAYS_PER_RUN))
def shard_file(context: dg.AssetExecutionContext) -> None:
    """One JSON file per partition of the run."""
    _write(context, "shard_file")


@dg.asset(partitions_def=partitions)
def blocking_partition(context: dg.AssetExecutionContext) -> None:
    """Signals that it started, then waits (bounded) for a release file: lets tests act mid-run."""
    started = output_dir() / "blocking_started"
    started.parent.mkdir(parents=True, exist_ok=True)
    started.write_text(context.run.run_id)
    release = output_dir() / "release"
    deadline = time.monotonic() + BLOCK_DEADLINE_SECONDS
    while not release.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{release} did not appear within {BLOCK_DEADLINE_SECONDS}s")
        time.sleep(0.05)
    _write(context, "blocking_partition")


defs = dg.Definitions(assets=[shard_file, blocking_partition], executor=dg.in_process_executor)
