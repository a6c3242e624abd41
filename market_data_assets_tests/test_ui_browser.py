"""The Dagster UI, for real (issue 8): a headless Chromium reads a live ``dagster-webserver``.

Two partitions of ``instrument_definitions`` and ``download_targets`` are materialized from the
Tardis sandbox by real runs on a fresh instance; ``dagster-webserver`` serves that instance and
the repository's ``workspace.yaml``. The browser must then show every asset of the project in the
global lineage graph, and the partitions page of ``instrument_definitions`` must show exactly the
two materialized partitions and the run that wrote them. Screenshots land in ``test-artifacts/``
(``asset_graph.png``, ``partitions.png``; ``failure.png`` shows the page when an assertion fails).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from urllib.parse import quote, urlencode

import dagster as dg
import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from market_data_assets.sandbox import RunningSandbox
from market_data_assets_tests.fixtures.webserver import WebserverProcess

REPO_ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO_ROOT / "test-artifacts"
PARTITIONS = ("2024-03-01|bitmex", "2024-03-02|bitmex")
MATERIALIZED = ("instrument_definitions", "download_targets")
# Written out here, not read from the Definitions: the UI must show what the project promises.
GRAPH_ASSETS = (
    "instrument_definitions",
    "download_targets",
    "raw_ticks",
    "candles_15s",
    "candles_1m",
    "candles_5m",
    "candles_15m",
    "candles_1h",
    "candles_4h",
    "candles_24h",
    "book_snapshots",
    "features_1m",
    "features_5m",
    "features_15m",
    "features_1h",
    "features_4h",
    "features_24h",
    "bq_candles",
    "bq_features",
    "missing_data_report",
)
# The lineage page zooms to fit the graph's width and draws "minimal" nodes, with names cut to
# 18 characters, below 60 % zoom; this viewport keeps the whole graph above that.
GRAPH_VIEWPORT = {
    "width": 3600,
    "height": 4400,
}  # the candles (seven) and features (six) groups stack their assets
UI_TIMEOUT_MS = 30_000


def _materialize(instance: dg.DagsterInstance) -> dict[str, str]:
    """Real runs of the two instrument assets, one per partition; partition key -> run id."""
    from market_data_assets.defs import build_definitions

    defs = build_definitions()  # the variables the test set

    job = defs.resolve_implicit_global_asset_job_def()
    run_ids: dict[str, str] = {}
    for key in PARTITIONS:
        result = job.execute_in_process(
            partition_key=key, asset_selection=[dg.AssetKey(a) for a in MATERIALIZED], instance=instance
        )
        assert result.success, f"materializing {MATERIALIZED} for {key} failed"
        run_ids[key] = result.run_id
    return run_ids


def _check_asset_graph(page: Page, base_url: str, groups: set[str], run_ids: dict[str, str]) -> None:
    # Groups start collapsed when there are several; open them all (the UI's "Expand all groups").
    expanded = ",".join(f"global@global:{group}" for group in sorted(groups))
    page.goto(f"{base_url}/asset-groups?{urlencode({'expanded': expanded})}")
    expect(page.get_by_text("Global asset lineage")).to_be_visible(timeout=UI_TIMEOUT_MS)
    nodes = page.locator("foreignObject")
    for name in GRAPH_ASSETS:
        # exact=True: a name the UI shortened ("instr…_definitions") does not count as visible.
        expect(nodes.get_by_text(name, exact=True).first).to_be_visible(timeout=UI_TIMEOUT_MS)
    # Each node then loads its live data: a materialized asset's "Latest event" links to the run
    # that last wrote it (the second partition's); raw_ticks, never materialized here, links to none.
    latest_run = run_ids[PARTITIONS[-1]]
    for name in (*MATERIALIZED, "raw_ticks"):
        node = _graph_node(page, name)
        expect(node.get_by_text("Loading...")).to_have_count(0, timeout=UI_TIMEOUT_MS)
        run_links = node.locator('a[href^="/runs/"]')
        if name in MATERIALIZED:
            expect(run_links).to_have_attribute(
                "href", re.compile(f"^/runs/{latest_run}"), timeout=UI_TIMEOUT_MS
            )
        else:
            expect(run_links).to_have_count(0)
    page.screenshot(path=str(ARTIFACTS / "asset_graph.png"))


def _graph_node(page: Page, name: str) -> Locator:
    """The box of one asset in the lineage graph (the HTML inside its SVG foreignObject)."""
    return page.locator("foreignObject > div").filter(has=page.get_by_text(name, exact=True))


def _check_partitions_page(page: Page, base_url: str, run_ids: dict[str, str]) -> None:
    latest = PARTITIONS[-1]
    query = urlencode({"view": "partitions", "status": "MATERIALIZED", "partition": latest}, quote_via=quote)
    page.goto(f"{base_url}/assets/instrument_definitions?{query}")
    expect(page.get_by_text("Materialized (2)", exact=True)).to_be_visible(timeout=UI_TIMEOUT_MS)
    expect(page.get_by_text("2 Partitions Selected", exact=True)).to_be_visible(timeout=UI_TIMEOUT_MS)
    # The date and exchange lists, filtered to materialized partitions.
    for part in {p for key in PARTITIONS for p in key.split("|")}:
        expect(page.get_by_text(part, exact=True).first).to_be_visible(timeout=UI_TIMEOUT_MS)
    # The selected partition's panel: its key, its status and the run that wrote it.
    expect(page.get_by_text(latest, exact=True).first).to_be_visible(timeout=UI_TIMEOUT_MS)
    expect(page.get_by_role("link", name=run_ids[latest][:8])).to_be_visible(timeout=UI_TIMEOUT_MS)
    page.screenshot(path=str(ARTIFACTS / "partitions.png"))


@pytest.mark.browser
def test_asset_graph_and_materialized_partitions_in_the_dagster_ui(
    sandbox_env: RunningSandbox,
    dagster_home: Path,
    launch_webserver: Callable[..., WebserverProcess],
    chromium: Callable[[], AbstractContextManager[Browser]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))
    ARTIFACTS.mkdir(exist_ok=True)
    # Creating the instance first makes its SQLite storage before the webserver opens it.
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        # The server imports the project while this process runs the materializations.
        webserver = launch_webserver(dict(os.environ))
        run_ids = _materialize(instance)
        server = webserver.wait_until_loaded()
        missing = set(GRAPH_ASSETS) - set(server.asset_groups)
        assert not missing, f"the webserver's code location lacks {sorted(missing)}"
        server.dismiss_community_dialog()

    with chromium() as browser:
        page = browser.new_page(viewport=GRAPH_VIEWPORT)
        try:
            _check_asset_graph(page, server.url, set(server.asset_groups.values()), run_ids)
            page.set_viewport_size({"width": 1600, "height": 1000})
            _check_partitions_page(page, server.url, run_ids)
        except AssertionError:
            page.screenshot(path=str(ARTIFACTS / "failure.png"))
            raise
