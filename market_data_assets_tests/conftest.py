"""Shared pytest set-up. Fixtures live in ``fixtures/`` modules, one per real part they start."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = [
    "market_data_assets_tests.fixtures.sandbox",
    "market_data_assets_tests.fixtures.gcs",
    "market_data_assets_tests.fixtures.bigquery",
    "market_data_assets_tests.fixtures.pipeline",
    "market_data_assets_tests.fixtures.dagster_instance",
    "market_data_assets_tests.fixtures.webserver",
]

SERVER_FIXTURES = frozenset(
    {
        "sandbox",
        "sandbox_env",
        "sandbox_fresh",
        "make_sandbox",
        "pipeline_lake",
        "gcs_emulator",
        "gcs_env",
        "bigquery_emulator",
        "gce_instance",
        "launch_webserver",
        "headless_chromium",
        "chromium",
    }
)
"""Fixtures that start a real part on 127.0.0.1 (see ``fixtures/``): a test using one is a
``servers`` test whether or not its module says so."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test that starts a server ``servers``, so ``-m "not servers"`` is the fast tier."""
    for item in items:
        if SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.servers)


REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"
TARDIS_SAMPLES = SHARED / "tardis-samples"


@pytest.fixture(scope="session")
def tardis_samples() -> Path:
    """The real Tardis excerpts in ../shared (read in place, never copied into the repo)."""
    if not TARDIS_SAMPLES.is_dir():
        pytest.fail(f"{TARDIS_SAMPLES} is missing: tests read the real Tardis samples from ../shared")
    return TARDIS_SAMPLES


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test sees the developer's MARKET_DATA_*/TARDIS_* variables or writes to ./data."""
    import os

    for name in list(os.environ):
        if name.startswith(("MARKET_DATA_", "TARDIS_")):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MARKET_DATA_ROOT", str(tmp_path / "lake"))
