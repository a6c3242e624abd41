"""The shape of the code: what the Definitions hold, and which packages may import what."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest


def test_definitions_load_with_every_asset_check_job_and_sensor():
    from market_data_assets.candles.timeframes import TIMEFRAMES as timeframes
    from market_data_assets.definitions import defs
    from market_data_assets.features.registry import FEATURE_TIMEFRAMES

    assert {k.to_user_string() for k in defs.resolve_all_asset_keys()} == {
        "instrument_definitions",
        "download_targets",
        "raw_ticks",
        *(f"candles_{tf}" for tf in timeframes),
        "book_snapshots",
        "bq_candles",
        *(f"features_{tf}" for tf in FEATURE_TIMEFRAMES),
        "bq_features",
        "missing_data_report",
        "live_reconciliation",
    }
    graph = defs.resolve_asset_graph()
    checks = {k.name for k in graph.asset_check_keys}
    assert checks == {
        "raw_ticks_complete",
        "instrument_keys_unique",
        "candle_volume_matches_raw_trades",
        "candle_timestamps_inside_day",
        "no_unexplained_live_differences",
    }
    assert {j.name for j in defs.resolve_all_job_defs()} >= {"ingest_job", "process_job", "daily_job"}
    assert defs.resolve_sensor_def("tardis_new_days") is not None
    # Every asset says what it is in the UI.
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.description, key
        assert node.group_name != "default", key


@pytest.mark.slow
def test_core_packages_never_import_dagster():
    """The house rule: behaviour lives in plain-Python core packages; only defs/ wires Dagster."""
    import pkgutil
    import subprocess
    import sys

    import market_data_assets

    core = (
        "tardis",
        "sandbox",
        "instruments",
        "ticks",
        "candles",
        "live",
        "storage",
        "warehouse",
        "quality",
        "new_days",
    )
    modules = [
        m.name
        for m in pkgutil.walk_packages(market_data_assets.__path__, "market_data_assets.")
        if m.name.split(".")[1] in core
    ]
    assert len(modules) > 20
    code = "import importlib, sys\n" + "".join(f"importlib.import_module({m!r})\n" for m in modules)
    code += "bad = sorted(m for m in sys.modules if m == 'dagster' or m.startswith('dagster.'))\nprint(bad)\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# --- the whole graph as a reviewed text -------------------------------------------------------

SNAPSHOT = Path(__file__).resolve().parent / "snapshots" / "definitions.txt"


def describe_definitions(defs: dg.Definitions) -> str:
    """Every asset (group, partitions, backfill policy, deps with their partition mapping), check,
    job, sensor, schedule and resource, one fact a line and sorted, so a change to the graph is a small diff."""
    graph = defs.resolve_asset_graph()
    lines: list[str] = []
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        lines.append(f"asset {key.to_user_string()}")
        lines.append(f"  group {node.group_name} kinds {sorted(node.kinds)} owners {list(node.owners)}")
        lines.append(f"  partitions {node.partitions_def!r}")
        lines.append(f"  backfill_policy {node.backfill_policy!r}")
        for parent in sorted(node.parent_keys, key=lambda k: k.to_user_string()):
            mapping = node.partition_mappings.get(parent)
            lines.append(f"  dep {parent.to_user_string()} mapping {mapping!r}")
    for check_key in sorted(graph.asset_check_keys, key=lambda c: (c.asset_key.to_user_string(), c.name)):
        check = graph.get(check_key)
        lines.append(
            f"check {check_key.asset_key.to_user_string()}:{check_key.name} blocking={check.blocking}"
        )
    for job in sorted(defs.resolve_all_job_defs(), key=lambda j: j.name):
        if job.name.startswith("__"):
            continue  # Dagster's implicit job of every asset
        keys = sorted(k.to_user_string() for k in job.asset_layer.selected_asset_keys)
        lines.append(f"job {job.name} assets {keys}")
    for sensor in sorted(defs.sensors or [], key=lambda s: s.name):
        jobs = sorted(j.name for j in sensor.jobs) if sensor.has_jobs else []
        lines.append(
            f"sensor {sensor.name} jobs {jobs} every {sensor.minimum_interval_seconds}s "
            f"default {sensor.default_status.value}"
        )
    for name in sorted(s.name for s in defs.schedules or []):
        schedule = defs.resolve_schedule_def(name)
        lines.append(
            f"schedule {schedule.name} job {schedule.job_name} cron {schedule.cron_schedule!r} "
            f"tz {schedule.execution_timezone} default {schedule.default_status.value}"
        )
    for key, resource in sorted((defs.resources or {}).items()):
        fields = sorted(getattr(type(resource), "model_fields", {}))  # config and nested resources
        lines.append(f"resource {key} {type(resource).__name__} fields {fields}")
    return "\n".join(lines) + "\n"


def test_definitions_match_the_reviewed_snapshot():
    """A change to the graph (an asset, a dep, a mapping, a check, a job, a sensor) must show up as a
    diff of snapshots/definitions.txt in review. After an intended change, regenerate the file with
    ``UPDATE_SNAPSHOTS=1 pytest market_data_assets_tests/test_architecture.py`` and commit it."""
    import difflib
    import os

    from market_data_assets.defs import build_definitions
    from market_data_assets.settings import Settings

    got = describe_definitions(build_definitions(Settings()))  # the defaults, whatever the environment
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(got)
    want = SNAPSHOT.read_text()
    diff = "".join(difflib.unified_diff(want.splitlines(True), got.splitlines(True), "snapshot", "defs"))
    assert got == want, f"the Definitions changed (UPDATE_SNAPSHOTS=1 to accept):\n{diff}"


# --- imports --------------------------------------------------------------------------------


def _import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports, at any depth of its code (a lazy import inside a
    function still ties the two modules together for a reader)."""
    import ast

    import market_data_assets

    root = Path(market_data_assets.__file__).resolve().parent
    modules: dict[str, Path] = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                edges.update(t for a in node.names if (t := resolve(a.name)))
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package
                    for _ in range(node.level - 1):
                        anchor = anchor.rpartition(".")[0]
                    base = f"{anchor}.{base}" if base else anchor
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    target = full if full in modules else resolve(base)
                    if target:
                        edges.add(target)
        edges.discard(name)
        graph[name] = edges
    return graph


def _circles(graph: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(component)
    return found


def test_import_circle_finder_sees_a_circle():
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]
    assert _circles({"a": {"b"}, "b": set()}) == []


def test_no_import_circle_among_the_package_modules():
    circles = {frozenset(m.removeprefix("market_data_assets.") for m in c) for c in _circles(_import_graph())}
    assert not circles, f"import circles: {sorted(sorted(c) for c in circles)}"


# --- errors ---------------------------------------------------------------------------------


def test_every_error_class_of_the_package_derives_from_market_data_error():
    """One root: ``except MarketDataError`` catches every refusal the project explains (the test
    server's own internals under sandbox/ aside)."""
    import importlib
    import inspect
    import pkgutil

    import market_data_assets
    from market_data_assets.errors import MarketDataError

    strays = []
    for info in pkgutil.walk_packages(market_data_assets.__path__, "market_data_assets."):
        if ".sandbox" in info.name or info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for name, cls in inspect.getmembers(module, inspect.isclass):
            if (
                cls.__module__ == info.name
                and issubclass(cls, Exception)
                and not issubclass(cls, MarketDataError)
            ):
                strays.append(f"{info.name}.{name}")
    assert strays == []
