"""``GceRunLauncher``: one Compute Engine VM per Dagster run.

Why a VM per run: a multi-year backfill is thousands of day × exchange partitions, each downloading
GBs from Tardis and converting them with polars. Giving every run (one exchange × N days, see
``BackfillPolicy.multi_run``) its own machine isolates memory, lets a run ask for a bigger machine by
tag, and costs nothing while idle because the VM deletes itself when the run ends.

How a run reaches the VM (the same route as dagster-docker and dagster-aws's ECS launcher): the
launcher builds ``ExecuteRunArgs`` (job origin, run id, instance ref), compresses them the way
``dagster api execute_run --compressed-input-json`` / ``DAGSTER_COMPRESSED_EXECUTE_RUN_ARGS`` expects
(zlib + base64) and stores them in VM metadata next to a generic startup script
(``vm_startup.sh``). The worker on the VM writes events and the final status to the shared
PostgreSQL instance; the launcher only creates, inspects and deletes VMs.

Run monitoring: ``check_run_worker_health`` maps the VM's state to a ``WorkerStatus`` so the daemon
fails runs whose VM vanished (spot preemption, manual delete) instead of leaving them STARTED forever.
Enable ``run_monitoring`` in dagster.yaml (see deploy/dagster.yaml for the values and why).
"""

from __future__ import annotations

import base64
import os
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, Self

from dagster import (
    Array,
    BoolSource,
    Field,
    IntSource,
    Noneable,
    Permissive,
    StringSource,
)
from dagster import _check as check
from dagster._core.launcher.base import CheckRunHealthResult, LaunchRunContext, RunLauncher, WorkerStatus
from dagster._core.storage.dagster_run import DagsterRun, DagsterRunStatus
from dagster._grpc.types import ExecuteRunArgs
from dagster._serdes import ConfigurableClass, serialize_value
from dagster._serdes.config_class import ConfigurableClassData

from market_data_assets.launchers.gce_api import ComputeApi, GoogleComputeApi
from market_data_assets.launchers.run_tags import (
    GCE_INSTANCE_TAG,
    GCE_MACHINE_TYPE_TAG,
    GCE_PROJECT_TAG,
    GCE_ZONE_TAG,
)
from market_data_assets.launchers.vm import VmConfig, build_instance, instance_name

# GCE instance.status values, grouped by what they mean for the run worker.
_ALIVE = frozenset({"PROVISIONING", "STAGING", "RUNNING", "REPAIRING"})
_STOPPING = frozenset({"STOPPING", "SUSPENDING"})
_DOWN = frozenset({"TERMINATED", "STOPPED", "SUSPENDED"})


def compress_execute_run_args(args: ExecuteRunArgs) -> str:
    """The value ``dagster api execute_run`` reads from DAGSTER_COMPRESSED_EXECUTE_RUN_ARGS."""
    return base64.b64encode(zlib.compress(serialize_value(args).encode())).decode()


def execute_run_command(args: ExecuteRunArgs) -> list[str]:
    """``[python, -m, dagster, api, execute_run]``: Dagster's own command minus the inline JSON."""
    command = list(args.get_command_args())
    check.invariant(
        command[-3:-1] == ["api", "execute_run"], f"unexpected execute_run command {command[:-1]}"
    )
    return command[:-1]


def parse_env_vars(entries: Sequence[str], environ: Mapping[str, str]) -> dict[str, str]:
    """``["NAME", "NAME=value"]`` -> dict; a bare name takes the daemon's value (like DockerRunLauncher)."""
    env: dict[str, str] = {}
    for entry in entries:
        name, sep, value = entry.partition("=")
        if sep:
            env[name] = value
        elif name in environ:
            env[name] = environ[name]
    return env


class GceRunLauncher(RunLauncher, ConfigurableClass):
    """Launches each run on its own Compute Engine VM, which deletes itself when the run ends."""

    def __init__(
        self,
        vm_config: VmConfig,
        env_vars: Sequence[str] = (),
        inst_data: ConfigurableClassData | None = None,
        compute_api: ComputeApi | None = None,
    ):
        self._inst_data = inst_data
        self._vm_config = vm_config
        self._env_vars = list(env_vars)
        self._compute_api = compute_api
        super().__init__()

    # --- configuration -------------------------------------------------------------------------------

    @property
    def inst_data(self) -> ConfigurableClassData | None:
        return self._inst_data

    @property
    def vm_config(self) -> VmConfig:
        return self._vm_config

    @classmethod
    def config_type(cls) -> dict[str, Field]:
        return {
            "project": Field(StringSource, description="GCP project the run VMs are created in."),
            "zone": Field(StringSource, description="Zone of the run VMs, e.g. europe-west1-b."),
            "source_image": Field(
                StringSource,
                description="Boot image with the project installed, e.g. projects/P/global/images/family/market-data-run.",
            ),
            "machine_type": Field(StringSource, is_required=False, default_value="e2-standard-4"),
            "boot_disk_size_gb": Field(IntSource, is_required=False, default_value=50),
            "boot_disk_type": Field(StringSource, is_required=False, default_value="pd-balanced"),
            "service_account_email": Field(StringSource, is_required=False, default_value="default"),
            "scopes": Field(
                Array(str),
                is_required=False,
                default_value=["https://www.googleapis.com/auth/cloud-platform"],
            ),
            "network": Field(StringSource, is_required=False, default_value="global/networks/default"),
            "subnetwork": Field(Noneable(StringSource), is_required=False, default_value=None),
            "external_ip": Field(
                BoolSource,
                is_required=False,
                default_value=False,
                description="Give run VMs a public IP. Off by default: use Cloud NAT for Tardis egress.",
            ),
            "spot": Field(BoolSource, is_required=False, default_value=False),
            "labels": Field(Permissive(), is_required=False, default_value={}),
            "instance_name_prefix": Field(StringSource, is_required=False, default_value="dagster-run"),
            "dagster_home": Field(StringSource, is_required=False, default_value="/opt/dagster/dagster_home"),
            "workdir": Field(Noneable(StringSource), is_required=False, default_value=None),
            "env_vars": Field(
                Array(str),
                is_required=False,
                default_value=[],
                description="Extra NAME (copied from the daemon) or NAME=value variables for the run. "
                "MARKET_DATA_* and non-secret TARDIS_* are forwarded automatically. Secrets are refused.",
            ),
            "secret_env": Field(
                Permissive(),
                is_required=False,
                default_value={"TARDIS_API_KEY": "tardis-api-key"},
                description="NAME: secret id or projects/P/secrets/S[/versions/V]; read on the VM from Secret Manager.",
            ),
            "delete_vm_on_exit": Field(BoolSource, is_required=False, default_value=True),
            "compute_api_endpoint": Field(
                Noneable(StringSource),
                is_required=False,
                default_value=None,
                description="Compute REST endpoint override (fakes/emulators only; uses anonymous credentials).",
            ),
            "secretmanager_api_endpoint": Field(
                Noneable(StringSource), is_required=False, default_value=None
            ),
            "startup_script_path": Field(
                Noneable(StringSource),
                is_required=False,
                default_value=None,
                description="Replace the bundled startup script (market_data_assets/launchers/vm_startup.sh).",
            ),
        }

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData, config_value: Mapping[str, Any]) -> Self:
        script_path = config_value.get("startup_script_path")
        startup_script = None
        if script_path:
            with open(script_path, encoding="utf-8") as f:
                startup_script = f.read()
        vm_config = VmConfig(
            project=config_value["project"],
            zone=config_value["zone"],
            source_image=config_value["source_image"],
            machine_type=config_value["machine_type"],
            boot_disk_size_gb=config_value["boot_disk_size_gb"],
            boot_disk_type=config_value["boot_disk_type"],
            service_account_email=config_value["service_account_email"],
            scopes=tuple(config_value["scopes"]),
            network=config_value["network"],
            subnetwork=config_value.get("subnetwork"),
            external_ip=config_value["external_ip"],
            spot=config_value["spot"],
            labels={str(k): str(v) for k, v in (config_value.get("labels") or {}).items()},
            instance_name_prefix=config_value["instance_name_prefix"],
            dagster_home=config_value["dagster_home"],
            workdir=config_value.get("workdir"),
            secret_env={str(k): str(v) for k, v in (config_value.get("secret_env") or {}).items()},
            delete_vm_on_exit=config_value["delete_vm_on_exit"],
            compute_api_endpoint=config_value.get("compute_api_endpoint"),
            secretmanager_api_endpoint=config_value.get("secretmanager_api_endpoint"),
            startup_script=startup_script,
        )
        return cls(vm_config=vm_config, env_vars=config_value.get("env_vars") or [], inst_data=inst_data)

    @property
    def compute(self) -> ComputeApi:
        """Created on first use: the daemon and webserver load the instance without touching GCP."""
        if self._compute_api is None:
            self._compute_api = GoogleComputeApi(api_endpoint=self._vm_config.compute_api_endpoint)
        return self._compute_api

    # --- launching -----------------------------------------------------------------------------------

    def launch_run(self, context: LaunchRunContext) -> None:
        run = context.dagster_run
        job_code_origin = check.not_none(
            context.job_code_origin,
            "GceRunLauncher needs runs created from a code location (job_code_origin)",
        )
        args = ExecuteRunArgs(
            job_origin=job_code_origin,
            run_id=run.run_id,
            instance_ref=self._instance.get_ref(),
            set_exit_code_on_failure=True,
        )
        env = {**os.environ}
        config = self._vm_config
        if self._env_vars:
            extra = parse_env_vars(self._env_vars, env)
            config = replace(config, env={**config.env, **extra})
        instance = build_instance(
            config,
            run_id=run.run_id,
            job_name=run.job_name,
            tags=run.tags,
            command=execute_run_command(args),
            compressed_args=compress_execute_run_args(args),
            daemon_env=env,
        )
        machine_type = instance.machine_type.rsplit("/", 1)[-1]
        self._instance.report_engine_event(
            f"Creating GCE VM {instance.name} ({machine_type}) in {config.project}/{config.zone} for this run.",
            run,
            cls=self.__class__,
        )
        self.compute.insert_instance(config.project, config.zone, instance)
        self._instance.add_run_tags(
            run.run_id,
            {
                GCE_INSTANCE_TAG: instance.name,
                GCE_ZONE_TAG: config.zone,
                GCE_PROJECT_TAG: config.project,
                GCE_MACHINE_TYPE_TAG: machine_type,
            },
        )

    def _vm_of(self, run: DagsterRun) -> tuple[str, str, str]:
        tags = run.tags
        return (
            tags.get(GCE_PROJECT_TAG, self._vm_config.project),
            tags.get(GCE_ZONE_TAG, self._vm_config.zone),
            tags.get(GCE_INSTANCE_TAG) or instance_name(self._vm_config.instance_name_prefix, run.run_id),
        )

    # --- termination and health ------------------------------------------------------------------------

    def terminate(self, run_id: str) -> bool:
        """Delete the run's VM. The guest's shutdown sends SIGTERM to the worker, which reports the run
        CANCELED; if the VM dies too fast for that, run monitoring's cancel timeout finishes the job.
        If the VM is already gone, no worker is left to report anything, so the run is marked CANCELED here.
        """
        run = self._instance.get_run_by_id(run_id)
        if run is None or run.is_finished:
            return False
        self._instance.report_run_canceling(run)
        project, zone, name = self._vm_of(run)
        if self.compute.delete_instance(project, zone, name):
            self._instance.report_engine_event(
                f"Deleting GCE VM {name} in {project}/{zone} to terminate the run.", run, cls=self.__class__
            )
            return True
        self._instance.report_run_canceled(
            run, message=f"GCE VM {name} in {project}/{zone} was already gone."
        )
        return False

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        project, zone, name = self._vm_of(run)
        vm = self.compute.get_instance(project, zone, name)
        if vm is None:
            if run.status == DagsterRunStatus.SUCCESS:
                return CheckRunHealthResult(
                    WorkerStatus.SUCCESS, f"VM {name} deleted after the run succeeded"
                )
            if GCE_INSTANCE_TAG not in run.tags:
                return CheckRunHealthResult(
                    WorkerStatus.UNKNOWN, f"no VM was recorded for this run (looked for {name})"
                )
            return CheckRunHealthResult(
                WorkerStatus.FAILED, f"VM {name} in {zone} no longer exists", run_worker_id=name
            )
        state = vm.status
        if state in _ALIVE or (state in _STOPPING and not run.is_finished):
            return CheckRunHealthResult(WorkerStatus.RUNNING, f"VM {name} is {state}", run_worker_id=name)
        if run.status == DagsterRunStatus.SUCCESS:
            return CheckRunHealthResult(WorkerStatus.SUCCESS, f"VM {name} is {state}", run_worker_id=name)
        return CheckRunHealthResult(
            WorkerStatus.FAILED,
            f"VM {name} is {state} while the run is {run.status.value}",
            run_worker_id=name,
        )

    def get_run_worker_debug_info(
        self, run: DagsterRun, include_container_logs: bool | None = True
    ) -> str | None:
        project, zone, name = self._vm_of(run)
        vm = self.compute.get_instance(project, zone, name)
        state = vm.status if vm is not None else "NOT FOUND"
        return (
            f"GCE VM {name} ({project}/{zone}) is {state}. Boot and run output: "
            f"gcloud compute instances get-serial-port-output {name} --zone {zone} --project {project}"
        )
