"""GceRunLauncher end to end: the VM request, then the VM's own startup script completing the run.

The Compute/metadata/Secret Manager side is ``FakeGce`` (a local fake speaking the REST protocols, used
by the real ``google-cloud-compute`` client and by the script's ``curl`` calls); the Dagster side is a
real SQLite instance and a real ``dagster api execute_run`` subprocess.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import shlex
import subprocess
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import dagster as dg
from dagster._core.launcher.base import WorkerStatus
from dagster._core.storage.dagster_run import DagsterRunStatus
from dagster._daemon.monitoring.run_monitoring import monitor_started_run
from dagster._grpc.types import ExecuteRunArgs
from dagster._serdes import deserialize_value

from market_data_assets.launchers.run_tags import (
    GCE_INSTANCE_TAG,
    GCE_MACHINE_TYPE_TAG,
    GCE_ZONE_TAG,
    MACHINE_TYPE_TAG,
)
from market_data_assets_tests.fixtures.dagster_instance import (
    TARDIS_KEY_VALUE,
    TARDIS_SECRET,
    TEST_PROJECT,
    TEST_ZONE,
    GceTestInstance,
)
from market_data_assets_tests.support import launcher_defs

VENV_BIN = str(Path(sys.executable).parent)


def vm_boot_env() -> dict[str, str]:
    """What a fresh VM has before the startup script runs: a PATH, no project variables."""
    return {"PATH": f"{VENV_BIN}:/usr/local/bin:/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root")}


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def metadata_of(body: dict) -> dict[str, str]:
    return {item["key"]: item["value"] for item in body["metadata"]["items"]}


def launch(g: GceTestInstance, asset: str, key: str, tags: dict[str, str] | None = None) -> dg.DagsterRun:
    run = g.create_asset_run(asset, key, tags)
    g.instance.launch_run(run.run_id, g.workspace)
    launched = g.instance.get_run_by_id(run.run_id)
    assert launched is not None
    return launched


def test_vm_request_carries_machine_type_labels_and_decodable_run_args(gce_instance: GceTestInstance) -> None:
    g = gce_instance
    run = launch(g, "shard_file", "2024-01-02|deribit", {MACHINE_TYPE_TAG: "n2-highmem-8"})

    [body] = g.fake.requests.inserts
    name = f"dagster-run-{run.run_id}"
    assert body["name"] == name
    assert body["machineType"] == f"zones/{TEST_ZONE}/machineTypes/n2-highmem-8"
    disk = body["disks"][0]
    assert disk["boot"] is True and disk["autoDelete"] is True
    assert (
        disk["initializeParams"]["sourceImage"]
        == f"projects/{TEST_PROJECT}/global/images/family/market-data-run"
    )
    assert int(disk["initializeParams"]["diskSizeGb"]) == 30
    assert body["serviceAccounts"][0]["email"] == f"dagster-run@{TEST_PROJECT}.iam.gserviceaccount.com"
    assert body["labels"] == {
        "team": "market-data",
        "managed-by": "dagster-gce-run-launcher",
        "dagster-run-id": run.run_id,
        "dagster-job": "__asset_job",
        "market-data-exchange": "deribit",
    }

    md = metadata_of(body)
    # The compressed value is what `dagster api execute_run` reads from DAGSTER_COMPRESSED_EXECUTE_RUN_ARGS.
    args = deserialize_value(
        zlib.decompress(base64.b64decode(md["dagster-compressed-execute-run-args"])).decode()
    )
    assert isinstance(args, ExecuteRunArgs)
    assert args.run_id == run.run_id
    assert args.instance_ref is not None
    with dg.DagsterInstance.from_ref(args.instance_ref) as via_ref:  # the ref reaches this very instance
        assert via_ref.get_run_by_id(run.run_id) is not None
    # Dagster's own entry point for the code location (``dagster`` on the image's PATH).
    assert shlex.split(md["dagster-execute-run-command"]) == ["dagster", "api", "execute_run"]
    assert md["dagster-run-id"] == run.run_id
    assert md["startup-script"].startswith("#!/usr/bin/env bash")
    env_lines = md["dagster-run-env"].splitlines()
    assert f"export MARKET_DATA_ROOT={shlex.quote(os.environ['MARKET_DATA_ROOT'])}" in env_lines
    assert f"export DAGSTER_HOME={shlex.quote(str(g.home))}" in env_lines
    # The secret is named (where to fetch it), never included.
    assert md["dagster-secret-env"] == f"TARDIS_API_KEY {TARDIS_SECRET}\n"
    assert TARDIS_KEY_VALUE not in json.dumps(body)
    assert all(len(v.encode()) <= 256 * 1024 for v in md.values())

    tags = run.tags
    assert (tags[GCE_INSTANCE_TAG], tags[GCE_ZONE_TAG], tags[GCE_MACHINE_TYPE_TAG]) == (
        name,
        TEST_ZONE,
        "n2-highmem-8",
    )
    assert g.instance.run_launcher.check_run_worker_health(run).status == WorkerStatus.RUNNING


def test_startup_script_executes_the_run_to_success_and_deletes_the_vm(
    gce_instance: GceTestInstance, tmp_path: Path
) -> None:
    g = gce_instance
    key = "2024-01-05|binance"
    run = launch(g, "shard_file", key)
    name = run.tags[GCE_INSTANCE_TAG]
    assert run.status == DagsterRunStatus.STARTING

    vm = g.fake.boot(name, vm_boot_env(), tmp_path / "vm.log")
    vm.wait(timeout=120)
    log = (tmp_path / "vm.log").read_text()
    # The script's own exit status is moot: deleting its VM shuts it down (SIGTERM) mid-cleanup.
    assert f"run {run.run_id} worker exited with status 0" in log, log

    finished = g.instance.get_run_by_id(run.run_id)
    assert finished is not None and finished.status == DagsterRunStatus.SUCCESS
    records = g.instance.fetch_materializations(dg.AssetKey("shard_file"), limit=100).records
    assert [r.partition_key for r in records if r.run_id == run.run_id] == [key]
    written = json.loads(launcher_defs.partition_file("shard_file", key).read_text())
    assert written["run_id"] == run.run_id
    # The run saw the Tardis key it fetched from Secret Manager (checked by hash; never written out).
    assert written["tardis_key_sha256"] == hashlib.sha256(TARDIS_KEY_VALUE.encode()).hexdigest()
    assert g.fake.requests.secret_reads == [TARDIS_SECRET]
    assert TARDIS_KEY_VALUE not in log

    # The VM deleted itself through the Compute API, and health reflects a finished, successful run.
    assert g.fake.requests.deletes == [name]
    assert g.fake.instances == {}
    assert g.instance.run_launcher.check_run_worker_health(finished).status == WorkerStatus.SUCCESS


def _start_blocking_run(g: GceTestInstance, tmp_path: Path) -> tuple[dg.DagsterRun, subprocess.Popen]:
    run = launch(g, "blocking_partition", "2024-01-03|binance")
    vm = g.fake.boot(run.tags[GCE_INSTANCE_TAG], vm_boot_env(), tmp_path / "vm.log")
    started = launcher_defs.output_dir() / "blocking_started"
    wait_for(lambda: started.exists() or vm.poll() is not None, "the run's step to start")
    assert vm.poll() is None, (tmp_path / "vm.log").read_text()
    current = g.instance.get_run_by_id(run.run_id)
    assert current is not None and current.status == DagsterRunStatus.STARTED
    return current, vm


def test_terminate_deletes_the_vm_and_the_run_ends_canceled(
    gce_instance: GceTestInstance, tmp_path: Path
) -> None:
    g = gce_instance
    run, vm = _start_blocking_run(g, tmp_path)
    launcher = g.instance.run_launcher
    assert launcher.check_run_worker_health(run).status == WorkerStatus.RUNNING

    assert launcher.terminate(run.run_id) is True
    vm.wait(timeout=60)
    wait_for(lambda: g.instance.get_run_by_id(run.run_id).status == DagsterRunStatus.CANCELED, "CANCELED")

    assert g.fake.instances == {}
    assert run.tags[GCE_INSTANCE_TAG] in g.fake.requests.deletes
    assert not launcher_defs.partition_file("blocking_partition", "2024-01-03|binance").exists()
    assert launcher.terminate(run.run_id) is False  # already finished


def test_terminate_without_a_vm_cancels_the_run_itself(gce_instance: GceTestInstance) -> None:
    g = gce_instance
    run = launch(g, "shard_file", "2024-01-04|deribit")
    g.fake.preempt(run.tags[GCE_INSTANCE_TAG])  # the VM never booted and is gone
    assert g.instance.run_launcher.terminate(run.run_id) is False
    assert g.instance.get_run_by_id(run.run_id).status == DagsterRunStatus.CANCELED


def test_run_monitoring_fails_a_run_whose_vm_vanished(gce_instance: GceTestInstance, tmp_path: Path) -> None:
    g = gce_instance
    run, vm = _start_blocking_run(g, tmp_path)
    g.fake.preempt(run.tags[GCE_INSTANCE_TAG])  # host failure: no shutdown, no chance to report
    vm.wait(timeout=30)
    assert g.instance.get_run_by_id(run.run_id).status == DagsterRunStatus.STARTED

    health = g.instance.run_launcher.check_run_worker_health(run)
    assert health.status == WorkerStatus.FAILED and "no longer exists" in (health.msg or "")
    record = g.instance.get_run_record_by_id(run.run_id)
    monitor_started_run(g.instance, g.workspace, record, logging.getLogger("test"))
    assert g.instance.get_run_by_id(run.run_id).status == DagsterRunStatus.FAILURE


def test_health_follows_vm_state(gce_instance: GceTestInstance) -> None:
    g = gce_instance
    run = launch(g, "shard_file", "2024-01-01|binance")
    name = run.tags[GCE_INSTANCE_TAG]
    launcher = g.instance.run_launcher
    started = run.with_status(DagsterRunStatus.STARTED)
    for state in ("PROVISIONING", "STAGING", "RUNNING"):
        g.fake.set_status(name, state)
        assert launcher.check_run_worker_health(started).status == WorkerStatus.RUNNING, state
    for state in ("TERMINATED", "STOPPED", "SUSPENDED"):
        g.fake.set_status(name, state)
        assert launcher.check_run_worker_health(started).status == WorkerStatus.FAILED, state
        assert launcher.check_run_worker_health(run.with_status(DagsterRunStatus.SUCCESS)).status == (
            WorkerStatus.SUCCESS
        )
    untagged = g.create_asset_run("shard_file", "2024-01-01|deribit").with_status(DagsterRunStatus.STARTED)
    assert launcher.check_run_worker_health(untagged).status == WorkerStatus.UNKNOWN
    assert "get-serial-port-output" in (launcher.get_run_worker_debug_info(started) or "")
