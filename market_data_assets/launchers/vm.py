"""Pure functions that turn one Dagster run into one Compute Engine instance resource.

Nothing here talks to Google or to Dagster's instance: given the launcher's configuration, the run's
id, job and tags, and the command it must execute, they return the ``compute_v1.Instance`` that
``ComputeApi.insert_instance`` sends. Keeping this pure makes the GCE rules (label and name syntax,
metadata size limits, no secrets in metadata) testable on their own.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources

from google.cloud import compute_v1

from market_data_assets.errors import MarketDataError
from market_data_assets.launchers.run_tags import MACHINE_TYPE_TAG, exchange_of_run_tags

# https://cloud.google.com/compute/docs/metadata/setting-custom-metadata#limitations
METADATA_VALUE_MAX_BYTES = 256 * 1024
METADATA_TOTAL_MAX_BYTES = 512 * 1024
LABEL_MAX_CHARS = 63
MAX_LABELS = 64

# Metadata keys the startup script reads (keep in sync with vm_startup.sh).
MD_STARTUP_SCRIPT = "startup-script"
MD_RUN_ID = "dagster-run-id"
MD_COMMAND = "dagster-execute-run-command"
MD_COMPRESSED_ARGS = "dagster-compressed-execute-run-args"
MD_RUN_ENV = "dagster-run-env"
MD_SECRET_ENV = "dagster-secret-env"
MD_WORKDIR = "dagster-run-workdir"
MD_DELETE_ON_EXIT = "market-data-delete-vm-on-exit"
MD_COMPUTE_API = "market-data-compute-api"
MD_SECRETMANAGER_API = "market-data-secretmanager-api"

# Variables forwarded from the daemon's environment to every run, unless a run-level override says otherwise.
FORWARDED_PREFIXES = ("MARKET_DATA_",)
FORWARDED_NAMES = (
    "TARDIS_API_URL",
    "TARDIS_DATASETS_URL",
    "TARDIS_REQUESTS_PER_MINUTE",
    "TARDIS_MAX_RETRIES",
)
# Secrets never go into metadata (anyone with compute.instances.get can read it): the VM fetches
# them from Secret Manager instead, see ``secret_env``.
_SECRET_NAME = re.compile(r"(API_KEY|SECRET|PASSWORD|TOKEN|CREDENTIAL|PRIVATE_KEY)", re.IGNORECASE)
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MACHINE_TYPE = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
_INSTANCE_NAME = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")


class VmSpecError(MarketDataError, ValueError):
    """The run cannot be turned into a valid VM; the message names the value at fault."""


@dataclass(frozen=True)
class VmConfig:
    """What every run VM shares (the launcher's ``config`` in dagster.yaml)."""

    project: str
    zone: str
    source_image: str
    machine_type: str = "e2-standard-4"
    boot_disk_size_gb: int = 50
    boot_disk_type: str = "pd-balanced"
    service_account_email: str = "default"
    scopes: tuple[str, ...] = ("https://www.googleapis.com/auth/cloud-platform",)
    network: str = "global/networks/default"
    subnetwork: str | None = None
    external_ip: bool = False
    spot: bool = False
    labels: Mapping[str, str] = field(default_factory=dict)
    instance_name_prefix: str = "dagster-run"
    dagster_home: str = "/opt/dagster/dagster_home"
    workdir: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    secret_env: Mapping[str, str] = field(default_factory=dict)
    delete_vm_on_exit: bool = True
    compute_api_endpoint: str | None = None
    secretmanager_api_endpoint: str | None = None
    startup_script: str | None = None


def bundled_startup_script() -> str:
    """The startup script shipped with the package (deploy/vm/startup.sh links to it)."""
    return resources.files("market_data_assets.launchers").joinpath("vm_startup.sh").read_text()


def instance_name(prefix: str, run_id: str) -> str:
    """Deterministic VM name for a run, so terminate/health checks find it even without tags."""
    name = sanitize_label_value(f"{prefix}-{run_id}").replace("_", "-").strip("-")
    if not name or not name[0].isalpha():
        name = f"r-{name}"
    name = name[:63].rstrip("-")
    if not _INSTANCE_NAME.fullmatch(name):
        raise VmSpecError(f"instance name {name!r} (from prefix {prefix!r}) is not a valid GCE name")
    return name


def sanitize_label_value(value: str) -> str:
    """GCE label values: at most 63 of ``[a-z0-9_-]`` (lowercased, other characters become '-')."""
    return re.sub(r"[^a-z0-9_-]", "-", value.lower())[:LABEL_MAX_CHARS]


def sanitize_label_key(key: str) -> str:
    """GCE label keys: like values, but non-empty and starting with a lowercase letter."""
    clean = sanitize_label_value(key)
    if not clean or not clean[0].isalpha():
        clean = f"k-{clean}"[:LABEL_MAX_CHARS]
    return clean


def run_labels(config: VmConfig, run_id: str, job_name: str, tags: Mapping[str, str]) -> dict[str, str]:
    """Labels for billing and ``gcloud compute instances list --filter``: run, job, exchange."""
    labels = {sanitize_label_key(k): sanitize_label_value(v) for k, v in config.labels.items()}
    labels.update(
        {
            "managed-by": "dagster-gce-run-launcher",
            "dagster-run-id": sanitize_label_value(run_id),
            "dagster-job": sanitize_label_value(job_name),
        }
    )
    exchange = exchange_of_run_tags(tags)
    if exchange:
        labels["market-data-exchange"] = sanitize_label_value(exchange)
    if len(labels) > MAX_LABELS:
        raise VmSpecError(f"{len(labels)} labels exceed GCE's limit of {MAX_LABELS}")
    return labels


def machine_type_for_run(config: VmConfig, tags: Mapping[str, str]) -> str:
    machine_type = tags.get(MACHINE_TYPE_TAG) or config.machine_type
    if not _MACHINE_TYPE.fullmatch(machine_type):
        raise VmSpecError(
            f"machine type {machine_type!r} (tag {MACHINE_TYPE_TAG}) is not a GCE machine type name"
        )
    return machine_type


def check_env_is_not_secret(names: Sequence[str]) -> None:
    """Refuse secret-looking variables in plain metadata; they belong in ``secret_env``."""
    for name in names:
        if not _ENV_NAME.fullmatch(name):
            raise VmSpecError(f"environment variable name {name!r} is not valid")
        if _SECRET_NAME.search(name):
            raise VmSpecError(
                f"{name} looks like a secret and would be readable in VM metadata; "
                "list it under the launcher's secret_env (fetched from Secret Manager on the VM) instead"
            )


def secret_resource(project: str, secret: str) -> str:
    """``tardis-api-key`` -> ``projects/P/secrets/tardis-api-key/versions/latest``; full names kept."""
    if secret.startswith("projects/"):
        return secret if "/versions/" in secret else f"{secret}/versions/latest"
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,255}", secret):
        raise VmSpecError(f"secret {secret!r} is neither a secret id nor a projects/... resource name")
    return f"projects/{project}/secrets/{secret}/versions/latest"


def run_env(config: VmConfig, daemon_env: Mapping[str, str]) -> dict[str, str]:
    """The plain (non-secret) environment of the run: forwarded daemon vars, config env, DAGSTER_HOME."""
    env = {
        name: value
        for name, value in daemon_env.items()
        if (name.startswith(FORWARDED_PREFIXES) or name in FORWARDED_NAMES) and not _SECRET_NAME.search(name)
    }
    env.update(config.env)
    env["DAGSTER_HOME"] = config.dagster_home
    for secret_name in config.secret_env:
        env.pop(secret_name, None)
    check_env_is_not_secret(list(env))
    return dict(sorted(env.items()))


def render_env_file(env: Mapping[str, str]) -> str:
    """``export NAME='value'`` lines (POSIX-quoted) that the startup script sources."""
    return "".join(f"export {name}={shlex.quote(value)}\n" for name, value in env.items())


def render_secret_env(config: VmConfig) -> str:
    """``NAME projects/.../versions/latest`` lines: names of secrets only, never their values."""
    for name in config.secret_env:
        if not _ENV_NAME.fullmatch(name):
            raise VmSpecError(f"secret_env variable name {name!r} is not valid")
    return "".join(f"{name} {secret_resource(config.project, s)}\n" for name, s in config.secret_env.items())


def build_metadata(items: Mapping[str, str]) -> compute_v1.Metadata:
    """Metadata with GCE's size limits checked up front, naming the offending key."""
    total = 0
    for key, value in items.items():
        size = len(value.encode())
        total += size + len(key.encode())
        if size > METADATA_VALUE_MAX_BYTES:
            raise VmSpecError(
                f"metadata value {key!r} is {size} bytes; GCE allows {METADATA_VALUE_MAX_BYTES} per value"
            )
    if total > METADATA_TOTAL_MAX_BYTES:
        raise VmSpecError(f"VM metadata totals {total} bytes; GCE allows {METADATA_TOTAL_MAX_BYTES}")
    return compute_v1.Metadata(items=[compute_v1.Items(key=k, value=v) for k, v in items.items()])


def build_instance(
    config: VmConfig,
    *,
    run_id: str,
    job_name: str,
    tags: Mapping[str, str],
    command: Sequence[str],
    compressed_args: str,
    daemon_env: Mapping[str, str],
) -> compute_v1.Instance:
    """The complete instance resource for one run."""
    zone = config.zone
    items = {
        MD_STARTUP_SCRIPT: config.startup_script or bundled_startup_script(),
        MD_RUN_ID: run_id,
        MD_COMMAND: shlex.join(command),
        MD_COMPRESSED_ARGS: compressed_args,
        MD_RUN_ENV: render_env_file(run_env(config, daemon_env)),
        MD_SECRET_ENV: render_secret_env(config),
        MD_DELETE_ON_EXIT: "true" if config.delete_vm_on_exit else "false",
    }
    if config.workdir:
        items[MD_WORKDIR] = config.workdir
    if config.compute_api_endpoint:
        items[MD_COMPUTE_API] = config.compute_api_endpoint.rstrip("/") + "/compute/v1"
    if config.secretmanager_api_endpoint:
        items[MD_SECRETMANAGER_API] = config.secretmanager_api_endpoint.rstrip("/")

    interface = compute_v1.NetworkInterface(network=config.network)
    if config.subnetwork:
        interface.subnetwork = config.subnetwork
    if config.external_ip:
        interface.access_configs = [compute_v1.AccessConfig(name="External NAT", type_="ONE_TO_ONE_NAT")]

    scheduling = compute_v1.Scheduling(automatic_restart=False, on_host_maintenance="MIGRATE")
    if config.spot:
        # A preempted run VM is deleted; run monitoring then fails the run and run retries re-queue it.
        scheduling = compute_v1.Scheduling(
            provisioning_model="SPOT", instance_termination_action="DELETE", automatic_restart=False
        )

    return compute_v1.Instance(
        name=instance_name(config.instance_name_prefix, run_id),
        machine_type=f"zones/{zone}/machineTypes/{machine_type_for_run(config, tags)}",
        labels=run_labels(config, run_id, job_name, tags),
        metadata=build_metadata(items),
        disks=[
            compute_v1.AttachedDisk(
                boot=True,
                auto_delete=True,
                initialize_params=compute_v1.AttachedDiskInitializeParams(
                    source_image=config.source_image,
                    disk_size_gb=config.boot_disk_size_gb,
                    disk_type=f"zones/{zone}/diskTypes/{config.boot_disk_type}",
                ),
            )
        ],
        network_interfaces=[interface],
        service_accounts=[
            compute_v1.ServiceAccount(email=config.service_account_email, scopes=list(config.scopes))
        ],
        scheduling=scheduling,
    )
