"""deploy/: the production and local dagster.yaml load, validate and behave as their comments claim."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._config import process_config, resolve_to_config_type
from dagster._core.instance.config import dagster_instance_config
from dagster._core.launcher import DefaultRunLauncher
from dagster._core.remote_origin import InProcessCodeLocationOrigin
from dagster._core.storage.dagster_run import DagsterRunStatus
from dagster._core.test_utils import InProcessTestWorkspaceLoadTarget
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import QueuedRunCoordinatorDaemon
from dagster_gcp.gcs.compute_log_manager import GCSComputeLogManager
from dagster_postgres import DagsterPostgresStorage

from market_data_assets.launchers.coordinator import ExchangeTaggingRunCoordinator
from market_data_assets.launchers.gce import GceRunLauncher
from market_data_assets.launchers.run_tags import EXCHANGE_TAG, RANGE_END_TAG, RANGE_START_TAG
from market_data_assets_tests.fixtures.dagster_instance import (
    REPO_ROOT,
    TEST_DEFS_ORIGIN,
    write_instance_yaml,
)
from market_data_assets_tests.support import launcher_defs
from market_data_assets_tests.support.fake_gce import FakeGce

DEPLOY = REPO_ROOT / "deploy"
TARDIS_REQUESTS_PER_MINUTE_BUDGET = 3000  # TARDIS.md: about 3,000 requests/minute on the common plans
PG_PASSWORD = "pg-password-never-in-metadata"
PROD_ENV = {
    "DAGSTER_PG_HOST": "10.20.0.5",
    "DAGSTER_PG_USERNAME": "dagster",
    "DAGSTER_PG_PASSWORD": PG_PASSWORD,
    "DAGSTER_PG_DB": "dagster",
    "DAGSTER_COMPUTE_LOG_BUCKET": "test-project-dagster-logs",
    "GCP_PROJECT": "test-project",
    "MARKET_DATA_RUN_ZONE": "europe-west1-b",
    "MARKET_DATA_RUN_IMAGE": "projects/test-project/global/images/family/market-data-run",
    "MARKET_DATA_RUN_SERVICE_ACCOUNT": "dagster-run@test-project.iam.gserviceaccount.com",
}


@pytest.fixture
def prod_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for name, value in PROD_ENV.items():
        monkeypatch.setenv(name, value)
    return PROD_ENV


def prod_yaml() -> dict:
    return yaml.safe_load((DEPLOY / "dagster.yaml").read_text())


def test_production_yaml_validates_and_resolves_from_env(prod_env: dict[str, str], tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text((DEPLOY / "dagster.yaml").read_text())
    config, _ = dagster_instance_config(str(home))  # whole file against Dagster's instance schema

    pg = process_config(
        resolve_to_config_type(DagsterPostgresStorage.config_type()), config["storage"]["postgres"]
    )
    assert pg.success, pg.errors
    assert pg.value["postgres_db"]["hostname"] == "10.20.0.5"
    assert pg.value["postgres_db"]["password"] == PG_PASSWORD  # from the env, not from the file
    assert PG_PASSWORD not in (DEPLOY / "dagster.yaml").read_text()

    assert config["run_retries"]["enabled"] and config["run_monitoring"]["enabled"]
    compute_logs = config["compute_logs"]
    assert (compute_logs["module"], compute_logs["class"]) == (
        GCSComputeLogManager.__module__,
        GCSComputeLogManager.__name__,
    )
    checked = process_config(
        resolve_to_config_type(GCSComputeLogManager.config_type()), compute_logs["config"]
    )
    assert checked.success, checked.errors


def test_global_cap_times_per_run_rate_stays_within_the_tardis_budget() -> None:
    config = prod_yaml()
    max_runs = config["run_coordinator"]["config"]["max_concurrent_runs"]
    env = dict(e.split("=", 1) for e in config["run_launcher"]["config"]["env_vars"] if "=" in e)
    per_run = int(env["TARDIS_REQUESTS_PER_MINUTE"])
    assert max_runs * per_run <= 0.8 * TARDIS_REQUESTS_PER_MINUTE_BUDGET


def _range_tags(start: str, end: str, backfill: str | None = None) -> dict[str, str]:
    tags = {RANGE_START_TAG: start, RANGE_END_TAG: end}
    if backfill:
        tags["dagster/backfill"] = backfill
    return tags


def test_production_queue_and_launcher_limit_runs_per_exchange(
    prod_env: dict[str, str], gcs_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The production run_coordinator/run_launcher/compute_logs blocks, on SQLite and the local fakes."""
    bucket = gcs_env.removeprefix("gs://").split("/")[0]
    monkeypatch.setenv("DAGSTER_COMPUTE_LOG_BUCKET", bucket)  # GCSComputeLogManager checks it exists
    fake = FakeGce()
    try:
        config = prod_yaml()
        del config["storage"], config["local_artifact_storage"]  # SQLite under the temp home instead
        config["run_launcher"]["config"]["compute_api_endpoint"] = fake.endpoint
        config["compute_logs"]["config"]["local_dir"] = str(tmp_path / "compute_logs")
        home = tmp_path / "home"
        write_instance_yaml(home, config)
        with (
            dg.DagsterInstance.from_config(str(home)) as instance,
            WorkspaceProcessContext(
                instance, InProcessTestWorkspaceLoadTarget(InProcessCodeLocationOrigin(TEST_DEFS_ORIGIN))
            ) as process_context,
        ):
            assert isinstance(instance.run_coordinator, ExchangeTaggingRunCoordinator)
            assert isinstance(instance.run_launcher, GceRunLauncher)
            assert isinstance(instance.compute_log_manager, GCSComputeLogManager)
            assert {"QUEUED_RUN_COORDINATOR", "MONITORING", "EVENT_LOG_CONSUMER"} <= set(
                instance.get_required_daemon_types()
            )
            workspace = process_context.create_request_context()
            location = workspace.get_code_location(workspace.code_location_names[0])
            remote_job = location.get_repository("__repository__").get_full_job("__ASSET_JOB")
            job_def = launcher_defs.defs.resolve_implicit_global_asset_job_def()

            def submit(tags: dict[str, str]) -> str:
                run = instance.create_run_for_job(
                    job_def=job_def,
                    asset_selection={dg.AssetKey("shard_file")},
                    tags=tags,
                    remote_job_origin=remote_job.get_remote_origin(),
                    job_code_origin=remote_job.get_python_origin(),
                )
                instance.submit_run(run.run_id, workspace)
                return run.run_id

            single = launcher_defs.partitions.get_tags_for_partition_key
            runs = {
                "binance-1": submit(_range_tags("2024-01-01|binance", "2024-01-03|binance", "bf1")),
                "binance-2": submit(_range_tags("2024-01-04|binance", "2024-01-06|binance", "bf1")),
                "binance-3": submit(dict(single("2024-01-06|binance"))),
                "deribit-1": submit(_range_tags("2024-01-01|deribit", "2024-01-03|deribit", "bf1")),
                "deribit-2": submit(dict(single("2024-01-06|deribit"))),
            }
            for name, run_id in runs.items():
                run = instance.get_run_by_id(run_id)
                assert run.status == DagsterRunStatus.QUEUED
                assert run.tags[EXCHANGE_TAG] == name.split("-")[0]

            list(QueuedRunCoordinatorDaemon(interval_seconds=1).run_iteration(process_context))
            deadline = time.monotonic() + 60
            while len(fake.requests.inserts) < 4 and time.monotonic() < deadline:
                time.sleep(0.05)  # dequeue_use_threads: launches finish on the daemon's threads

            launched = {b["labels"]["dagster-run-id"] for b in fake.requests.inserts}
            assert launched == {runs[n] for n in ("binance-1", "binance-2", "deribit-1", "deribit-2")}
            assert instance.get_run_by_id(runs["binance-3"]).status == DagsterRunStatus.QUEUED
            list(QueuedRunCoordinatorDaemon(interval_seconds=1).run_iteration(process_context))
            assert len(fake.requests.inserts) == 4  # still capped: two binance runs are in flight

            body = next(
                b for b in fake.requests.inserts if b["labels"]["dagster-run-id"] == runs["binance-1"]
            )
            assert body["labels"]["market-data-exchange"] == "binance"
            md = {i["key"]: i["value"] for i in body["metadata"]["items"]}
            env = md["dagster-run-env"].splitlines()
            assert "export TARDIS_REQUESTS_PER_MINUTE=300" in env
            assert "export DAGSTER_PG_HOST=10.20.0.5" in env
            assert f"export MARKET_DATA_ROOT={gcs_env}" in env
            assert sorted(md["dagster-secret-env"].splitlines()) == [
                "DAGSTER_PG_PASSWORD projects/test-project/secrets/dagster-pg-password/versions/latest",
                "TARDIS_API_KEY projects/test-project/secrets/tardis-api-key/versions/latest",
            ]
            assert PG_PASSWORD not in json.dumps(fake.requests.inserts)
    finally:
        fake.close()


@pytest.mark.slow
def test_local_yaml_loads_a_sqlite_instance_with_the_default_launcher(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((DEPLOY / "local" / "dagster.yaml").read_text())
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with dg.DagsterInstance.get() as instance:
        assert isinstance(instance.run_launcher, DefaultRunLauncher)
        assert isinstance(instance.run_coordinator, ExchangeTaggingRunCoordinator)
        queue = instance.run_coordinator.get_run_queue_config()
        assert queue.max_concurrent_runs == 2
        assert queue.tag_concurrency_limits[0]["key"] == EXCHANGE_TAG
        instance.get_runs()  # storage initialised
    assert (home / "history" / "runs.db").exists()


@pytest.mark.parametrize(
    "script",
    [
        "deploy/vm/startup.sh",
        "deploy/vm/build_image.sh",
        "deploy/orchestration/deploy_vms.sh",
        "deploy/orchestration/orchestrator_startup.sh",
        "deploy/live/deploy_live_vm.sh",
    ],
)
def test_shell_scripts_parse(script: str) -> None:
    result = subprocess.run(["bash", "-n", str(REPO_ROOT / script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
