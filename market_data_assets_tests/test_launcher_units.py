"""The pure rules behind the GCE launcher: names, labels, metadata limits, secrets, exchange tags."""

from __future__ import annotations

import re

import pytest
from google.cloud import compute_v1

from market_data_assets.launchers.gce import parse_env_vars
from market_data_assets.launchers.run_tags import exchange_of_partition_key, exchange_of_run_tags
from market_data_assets.launchers.vm import (
    METADATA_VALUE_MAX_BYTES,
    VmConfig,
    VmSpecError,
    build_instance,
    build_metadata,
    instance_name,
    run_env,
    sanitize_label_key,
    sanitize_label_value,
    secret_resource,
)

GCE_NAME = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")  # from the Compute Engine docs
GCE_LABEL_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")
CONFIG = VmConfig(project="p-1", zone="europe-west1-b", source_image="projects/p-1/global/images/family/x")
RUN_ID = "8fec0701-b20a-4178-8387-17a8d07ce071"


def _instance(
    config: VmConfig = CONFIG,
    tags: dict[str, str] | None = None,
    args: str = "eJw=",
    env: dict[str, str] | None = None,
) -> compute_v1.Instance:
    return build_instance(
        config,
        run_id=RUN_ID,
        job_name="__ASSET_JOB",
        tags=tags or {},
        command=["dagster", "api", "execute_run"],
        compressed_args=args,
        daemon_env=env or {},
    )


@pytest.mark.parametrize("prefix", ["dagster-run", "Market_Data", "9lives", "x" * 80])
def test_instance_names_follow_gce_rules(prefix: str) -> None:
    name = instance_name(prefix, RUN_ID)
    assert GCE_NAME.match(name), name
    assert name == instance_name(prefix, RUN_ID)  # deterministic: terminate finds it without tags


def test_labels_are_sanitized() -> None:
    assert sanitize_label_value("Binance Futures/USD!") == "binance-futures-usd-"
    assert sanitize_label_key("9 Team") == "k-9-team"
    assert len(sanitize_label_value("a" * 100)) == 63
    labels = _instance(VmConfig(**{**CONFIG.__dict__, "labels": {"Cost Center": "R&D 42"}})).labels
    assert labels["cost-center"] == "r-d-42"
    assert all(GCE_LABEL_VALUE.match(v) for v in labels.values())


def test_machine_type_tag_overrides_and_is_validated() -> None:
    assert _instance(tags={"market_data/machine_type": "c3-highmem-22"}).machine_type.endswith(
        "/c3-highmem-22"
    )
    assert _instance().machine_type == "zones/europe-west1-b/machineTypes/e2-standard-4"
    with pytest.raises(VmSpecError, match="not a GCE machine type"):
        _instance(tags={"market_data/machine_type": "n2; rm -rf /"})


def test_metadata_over_the_gce_limit_is_refused_naming_the_key() -> None:
    build_metadata({"k": "x" * METADATA_VALUE_MAX_BYTES})  # exactly at the limit is fine
    with pytest.raises(VmSpecError, match="dagster-compressed-execute-run-args"):
        _instance(args="x" * (METADATA_VALUE_MAX_BYTES + 1))


def test_secrets_never_become_plain_metadata() -> None:
    env = run_env(CONFIG, {"MARKET_DATA_ROOT": "gs://b/lake", "TARDIS_API_KEY": "k", "HOME": "/root"})
    assert env == {"DAGSTER_HOME": "/opt/dagster/dagster_home", "MARKET_DATA_ROOT": "gs://b/lake"}
    for name in ("DAGSTER_PG_PASSWORD", "TARDIS_API_KEY", "SLACK_TOKEN"):
        with pytest.raises(VmSpecError, match="secret_env"):
            run_env(VmConfig(**{**CONFIG.__dict__, "env": {name: "v"}}), {})


def test_secret_resources_and_env_entries() -> None:
    assert secret_resource("p-1", "tardis-api-key") == "projects/p-1/secrets/tardis-api-key/versions/latest"
    assert secret_resource("p-1", "projects/o/secrets/s") == "projects/o/secrets/s/versions/latest"
    assert secret_resource("p-1", "projects/o/secrets/s/versions/3") == "projects/o/secrets/s/versions/3"
    with pytest.raises(VmSpecError):
        secret_resource("p-1", "bad name")
    assert parse_env_vars(["A", "B=2", "MISSING"], {"A": "1"}) == {"A": "1", "B": "2"}


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        ({"dagster/partition/exchange": "deribit", "dagster/partition": "2024-01-02|deribit"}, "deribit"),
        ({"dagster/partition": "2024-01-02|binance-futures"}, "binance-futures"),
        (
            {
                "dagster/asset_partition_range_start": "2024-01-01|bitmex",
                "dagster/asset_partition_range_end": "2024-01-07|bitmex",
            },
            "bitmex",
        ),
        (
            {
                "dagster/asset_partition_range_start": "2024-01-01|binance",
                "dagster/asset_partition_range_end": "2024-01-01|deribit",
            },
            None,
        ),
        ({}, None),
    ],
)
def test_exchange_of_run_tags(tags: dict[str, str], expected: str | None) -> None:
    assert exchange_of_run_tags(tags) == expected


def test_exchange_of_partition_key_rejects_malformed_keys() -> None:
    assert exchange_of_partition_key("2024-01-15") is None
    assert exchange_of_partition_key("2024-01-15|2024-01-16") is None
    assert exchange_of_partition_key("binance|2024-01-15") == "binance"
