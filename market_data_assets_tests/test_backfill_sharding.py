"""Sharded backfills: how Dagster 1.13 splits a date × exchange backfill with BackfillPolicy.multi_run.

A real SQLite instance, a real webserver (in-process, served by uvicorn) receiving the GraphQL
mutation from ``scripts/launch_backfill.py``, and Dagster's own backfill daemon iteration creating and
submitting the runs, which execute in process (SyncInMemoryRunLauncher stands in for the GCE launcher,
whose own tests cover the VM side).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import threading
import time
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from types import ModuleType

import dagster as dg
import pytest
import uvicorn
from click.testing import CliRunner, Result
from dagster._cli.asset import asset_materialize_command
from dagster._core.execution.backfill import BulkActionStatus
from dagster._core.remote_origin import InProcessCodeLocationOrigin
from dagster._core.storage.dagster_run import DagsterRunStatus, RunsFilter
from dagster._core.test_utils import InProcessTestWorkspaceLoadTarget
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._daemon.backfill import execute_backfill_iteration
from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import QueuedRunCoordinatorDaemon
from dagster_webserver.app import create_app_from_workspace_process_context

from market_data_assets.launchers.run_tags import EXCHANGE_TAG, RANGE_END_TAG, RANGE_START_TAG
from market_data_assets_tests.fixtures.dagster_instance import (
    REPO_ROOT,
    TEST_DEFS_ORIGIN,
    write_instance_yaml,
)
from market_data_assets_tests.fixtures.gcs import free_port
from market_data_assets_tests.support import launcher_defs

pytestmark = pytest.mark.servers


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "launch_backfill", REPO_ROOT / "scripts" / "launch_backfill.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


launch_backfill = load_script()


class Webserver:
    """dagster-webserver's ASGI app on uvicorn in a thread of this process."""

    def __init__(self, context: WorkspaceProcessContext) -> None:
        self.port = free_port()
        app = create_app_from_workspace_process_context(context)
        self._server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        )
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    @property
    def graphql_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/graphql"

    def __enter__(self) -> Webserver:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("in-process webserver did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)


@pytest.fixture(scope="module")
def backfill_env(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[WorkspaceProcessContext, Webserver]]:
    home = tmp_path_factory.mktemp("backfill") / "dagster_home"
    write_instance_yaml(
        home,
        {
            "run_launcher": {
                "module": "dagster._core.launcher.sync_in_memory_run_launcher",
                "class": "SyncInMemoryRunLauncher",
            },
            # The project's queue (as in deploy/): runs wait in it until the queue daemon starts them.
            "run_coordinator": {
                "module": "market_data_assets.launchers.coordinator",
                "class": "ExchangeTaggingRunCoordinator",
                "config": {"max_concurrent_runs": 4},
            },
            "telemetry": {"enabled": False},
        },
    )
    with (
        dg.DagsterInstance.from_config(str(home)) as instance,
        WorkspaceProcessContext(
            instance, InProcessTestWorkspaceLoadTarget(InProcessCodeLocationOrigin(TEST_DEFS_ORIGIN))
        ) as context,
        Webserver(context) as server,
    ):
        yield context, server


def run_backfill_to_completion(context: WorkspaceProcessContext, backfill_id: str) -> list[dg.DagsterRun]:
    """Iterate the backfill and run-queue daemons (as `dagster-daemon run` does) until the backfill completes."""
    instance = context.instance
    queue_daemon = QueuedRunCoordinatorDaemon(interval_seconds=1)
    for _ in range(20):
        backfill = instance.get_backfill(backfill_id)
        if backfill.status != BulkActionStatus.REQUESTED:
            break
        for error in execute_backfill_iteration(context, logging.getLogger("backfill-test")):
            assert error is None, error
        list(queue_daemon.run_iteration(context))  # launches queued runs; they execute synchronously
    assert instance.get_backfill(backfill_id).status == BulkActionStatus.COMPLETED_SUCCESS
    return list(instance.get_runs(filters=RunsFilter(tags={"dagster/backfill": backfill_id})))


def keys_materialized_by(instance: dg.DagsterInstance, run_id: str) -> set[str]:
    records = instance.fetch_materializations(dg.AssetKey("shard_file"), limit=1000).records
    return {r.partition_key for r in records if r.run_id == run_id}


def rectangle(start: str, end: str) -> set[str]:
    """Independent expectation of a range over ``date|exchange`` keys: dates × exchanges between the ends."""
    (d0, e0), (d1, e1) = start.split("|"), end.split("|")
    exchanges = list(launcher_defs.EXCHANGES)
    exs = exchanges[exchanges.index(e0) : exchanges.index(e1) + 1]
    first, last = date.fromisoformat(d0), date.fromisoformat(d1)
    return {f"{first + timedelta(days=i)}|{ex}" for i in range((last - first).days + 1) for ex in exs}


def test_multi_run_backfill_shards_per_exchange_and_per_n_days(
    backfill_env: tuple[WorkspaceProcessContext, Webserver], capsys: pytest.CaptureFixture[str]
) -> None:
    context, server = backfill_env
    exit_code = launch_backfill.main(
        ["--url", server.graphql_url, "--asset", "shard_file", "--from", "2024-01-01", "--to", "2024-01-06"]
        + ["--exchange", "binance", "--exchange", "deribit", "--title", "six days"]
    )
    assert exit_code == 0, capsys.readouterr().err
    backfill_id = capsys.readouterr().out.strip()

    runs = run_backfill_to_completion(context, backfill_id)
    # 6 days x 2 exchanges with multi_run(3): one run per exchange per 3 days.
    assert len(runs) == 2 * (6 // launcher_defs.BACKFILL_DAYS_PER_RUN) == 4
    shards = sorted((r.tags[RANGE_START_TAG], r.tags[RANGE_END_TAG]) for r in runs)
    assert shards == [
        ("2024-01-01|binance", "2024-01-03|binance"),
        ("2024-01-01|deribit", "2024-01-03|deribit"),
        ("2024-01-04|binance", "2024-01-06|binance"),
        ("2024-01-04|deribit", "2024-01-06|deribit"),
    ]
    every_key = set()
    for run in runs:
        assert run.status == DagsterRunStatus.SUCCESS
        expected = rectangle(run.tags[RANGE_START_TAG], run.tags[RANGE_END_TAG])
        assert len(expected) == 3
        assert keys_materialized_by(context.instance, run.run_id) == expected
        for key in expected:  # each partition's file exists and was written by this shard's run
            written = json.loads(launcher_defs.partition_file("shard_file", key).read_text())
            assert written == {"partition": key, "run_id": run.run_id, "tardis_key_sha256": None}
        every_key |= expected
    assert every_key == rectangle("2024-01-01|binance", "2024-01-06|deribit")


def test_range_backfill_with_no_more_days_than_exchanges_is_sharded_by_day(
    backfill_env: tuple[WorkspaceProcessContext, Webserver], capsys: pytest.CaptureFixture[str]
) -> None:
    """Dagster groups a multi-partition subset by whichever dimension has FEWER distinct keys (ties go
    to the primary, time, dimension) and chunks the other one by N. With 2 days x 2 exchanges that is
    one run per day spanning both exchanges -- not per exchange. docs/ORCHESTRATION.md explains."""
    context, server = backfill_env
    start, end = "2024-01-05|binance", "2024-01-06|deribit"  # a range is the rectangle of the two ends
    args = ["--url", server.graphql_url, "--asset", "shard_file", "--partition-range", start, end]
    assert launch_backfill.main(args) == 0
    runs = run_backfill_to_completion(context, capsys.readouterr().out.strip())
    assert sorted((r.tags[RANGE_START_TAG], r.tags[RANGE_END_TAG]) for r in runs) == [
        ("2024-01-05|binance", "2024-01-05|deribit"),
        ("2024-01-06|binance", "2024-01-06|deribit"),
    ]
    for run in runs:
        assert run.status == DagsterRunStatus.SUCCESS
        assert keys_materialized_by(context.instance, run.run_id) == rectangle(
            run.tags[RANGE_START_TAG], run.tags[RANGE_END_TAG]
        )
        assert EXCHANGE_TAG not in run.tags  # spans two exchanges: only the global cap applies
    assert set().union(*(keys_materialized_by(context.instance, r.run_id) for r in runs)) == rectangle(
        start, end
    )


def test_script_reports_a_refused_backfill(
    backfill_env: tuple[WorkspaceProcessContext, Webserver], capsys: pytest.CaptureFixture[str]
) -> None:
    _, server = backfill_env
    code = launch_backfill.main(
        ["--url", server.graphql_url, "--asset", "shard_file", "--partition", "2031-01-01|binance"]
    )
    assert code == 1
    assert "2031-01-01|binance" in capsys.readouterr().err


def test_script_rejects_incomplete_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    assert launch_backfill.main(["--asset", "shard_file", "--dry-run"]) == 2
    assert "partition" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        launch_backfill.main(["--asset", "shard_file", "--from", "2024-01-01", "--to", "2024-01-02"])


def _materialize_cli(home: Path, monkeypatch: pytest.MonkeyPatch, *args: str) -> Result:
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    pointer = ["-m", "market_data_assets_tests.support.launcher_defs", "-a", "defs", "--select", "shard_file"]
    return CliRunner().invoke(asset_materialize_command, [*pointer, *args])


def test_cli_materialize_one_partition(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`dagster asset materialize --partition "2024-01-02|binance"`: one run, in process, on $DAGSTER_HOME."""
    home = tmp_path / "dagster_home"
    write_instance_yaml(home, {"telemetry": {"enabled": False}})
    result = _materialize_cli(home, monkeypatch, "--partition", "2024-01-02|binance")
    assert result.exit_code == 0, result.output
    with dg.DagsterInstance.from_config(str(home)) as instance:
        [run] = instance.get_runs()
        assert run.status == DagsterRunStatus.SUCCESS and run.tags["dagster/partition/exchange"] == "binance"
        assert keys_materialized_by(instance, run.run_id) == {"2024-01-02|binance"}
    written = json.loads(launcher_defs.partition_file("shard_file", "2024-01-02|binance").read_text())
    assert written["run_id"] == run.run_id


def test_cli_partition_range_is_refused_for_multi_run_assets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dagster 1.13's CLI runs a range only for BackfillPolicy.single_run assets; ours are multi_run, so
    ranges go through a backfill (UI or scripts/launch_backfill.py) -- as docs/ORCHESTRATION.md says."""
    home = tmp_path / "dagster_home"
    write_instance_yaml(home, {"telemetry": {"enabled": False}})
    result = _materialize_cli(
        home, monkeypatch, "--partition-range", "2024-01-01|binance...2024-01-03|binance"
    )
    assert result.exit_code != 0
    assert "BackfillPolicy.single_run()" in str(result.exception)
    assert not launcher_defs.partition_file("shard_file", "2024-01-01|binance").exists()
