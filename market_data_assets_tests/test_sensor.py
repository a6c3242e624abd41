"""tardis_new_days against the live sandbox, evaluated with build_sensor_context (the planner's
rules alone: test_new_days.py)."""

from __future__ import annotations

import json
from datetime import date

import dagster as dg
import pytest

from market_data_assets_tests.support.graph import market_data, sensor


@pytest.fixture
def sensor_env(sandbox, monkeypatch, tmp_path):
    monkeypatch.setenv("TARDIS_API_URL", sandbox.api_url)
    monkeypatch.setenv("TARDIS_DATASETS_URL", sandbox.datasets_url)
    monkeypatch.setenv("TARDIS_API_KEY", sandbox.api_key)
    monkeypatch.setenv("MARKET_DATA_EXCHANGES", "deribit,bitmex")
    monkeypatch.setenv("MARKET_DATA_START_DATE", "2024-01-01")
    monkeypatch.setenv("MARKET_DATA_SENSOR_LOOKBACK_DAYS", "2")
    sandbox.set_exported_until(date(2024, 3, 10))
    yield sandbox
    sandbox.set_exported_until(date(2024, 12, 31))


def _tick(cursor: str | None, instance: dg.DagsterInstance) -> dg.SensorResult:
    with dg.build_sensor_context(
        cursor=cursor, instance=instance, resources={"market_data": market_data()}
    ) as context:
        return sensor("tardis_new_days")(context)


def _keys(result: dg.SensorResult) -> list[str]:
    return sorted(r.run_key for r in result.run_requests or [])


def test_first_tick_then_new_day_then_restart(sensor_env):
    with dg.instance_for_test() as instance:
        first = _tick(None, instance)
        # exportedUntil 2024-03-10T00:00Z: the last complete day is 03-09; lookback 2 days.
        assert _keys(first) == sorted(
            [f"ingest|2024-03-0{d}|{ex}" for d in (8, 9) for ex in ("deribit", "bitmex")]
            + [f"process|2024-03-08|{ex}" for ex in ("deribit", "bitmex")]
        )
        by_key = {r.run_key: r for r in first.run_requests}
        ingest = by_key["ingest|2024-03-09|deribit"]
        assert ingest.partition_key == "2024-03-09|deribit"
        assert {k.to_user_string() for k in ingest.asset_selection} >= {"raw_ticks", "download_targets"}
        assert json.loads(first.cursor) == {"bitmex": "2024-03-09", "deribit": "2024-03-09"}

        # Nothing new yet: no request, cursor unchanged.
        again = _tick(first.cursor, instance)
        assert not again.run_requests
        assert json.loads(again.cursor) == json.loads(first.cursor)

        # The sandbox exports one more day: only that day is requested (and processing of the one before).
        sensor_env.set_exported_until(date(2024, 3, 11))
        later = _tick(first.cursor, instance)
        assert _keys(later) == sorted(
            [f"ingest|2024-03-10|{ex}" for ex in ("deribit", "bitmex")]
            + [f"process|2024-03-09|{ex}" for ex in ("deribit", "bitmex")]
        )

        # A restart with the stored cursor requests nothing twice.
        restarted = _tick(later.cursor, instance)
        assert not restarted.run_requests
