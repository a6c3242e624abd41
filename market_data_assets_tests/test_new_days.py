"""The sensor's planner without a server: which runs newly exported days call for."""

from __future__ import annotations

from datetime import date

from market_data_assets.new_days import PlannedRun, last_complete_day, plan_new_days
from market_data_assets.settings import Settings

SETTINGS = Settings.from_env(
    {
        "MARKET_DATA_EXCHANGES": "deribit,bitmex",
        "MARKET_DATA_START_DATE": "2024-03-01",
        "MARKET_DATA_SENSOR_LOOKBACK_DAYS": "2",
    }
)
TODAY = date(2024, 6, 1)


def _keys(planned: list[PlannedRun]) -> list[str]:
    return sorted(run.run_key for run in planned)


def test_last_complete_day_reads_exported_until():
    assert last_complete_day({"datasets": {"exportedUntil": "2024-03-10T00:00:00.000Z"}}) == date(2024, 3, 9)
    assert last_complete_day({"datasets": {"exportedUntil": "2024-03-10T05:30:00.000Z"}}) == date(2024, 3, 9)
    assert last_complete_day({"datasets": {}}) is None
    assert last_complete_day({}) is None


def test_first_tick_looks_back_then_each_new_day_ingests_it_and_processes_the_one_before():
    available = {"deribit": date(2024, 3, 9), "bitmex": date(2024, 3, 9)}
    first, cursor = plan_new_days(SETTINGS, {}, available, TODAY)
    assert _keys(first) == sorted(
        [f"ingest|2024-03-0{d}|{ex}" for d in (8, 9) for ex in ("deribit", "bitmex")]
        + [f"process|2024-03-08|{ex}" for ex in ("deribit", "bitmex")]
    )
    assert cursor == {"deribit": "2024-03-09", "bitmex": "2024-03-09"}

    again, same = plan_new_days(SETTINGS, cursor, available, TODAY)
    assert again == [] and same == cursor

    later, advanced = plan_new_days(SETTINGS, cursor, {**available, "deribit": date(2024, 3, 11)}, TODAY)
    assert _keys(later) == [
        "ingest|2024-03-10|deribit",
        "ingest|2024-03-11|deribit",
        "process|2024-03-09|deribit",
        "process|2024-03-10|deribit",
    ]
    assert advanced == {"deribit": "2024-03-11", "bitmex": "2024-03-09"}


def test_an_unknown_exchange_is_skipped_and_keeps_its_cursor():
    planned, cursor = plan_new_days(SETTINGS, {"bitmex": "2024-03-05"}, {"deribit": None}, TODAY)
    assert planned == [] and cursor == {"bitmex": "2024-03-05"}


def test_no_day_before_start_date_nor_after_end_date_or_today():
    early = plan_new_days(SETTINGS, {}, {"deribit": date(2024, 3, 1)}, TODAY)[0]
    assert _keys(early) == ["ingest|2024-03-01|deribit"]  # the lookback stops at start_date

    capped = Settings.from_env(
        {
            "MARKET_DATA_EXCHANGES": "deribit",
            "MARKET_DATA_START_DATE": "2024-03-01",
            "MARKET_DATA_END_DATE": "2024-03-04",
        }
    )
    planned, cursor = plan_new_days(capped, {"deribit": "2024-03-03"}, {"deribit": date(2024, 3, 20)}, TODAY)
    assert _keys(planned) == ["ingest|2024-03-04|deribit", "process|2024-03-03|deribit"]
    assert cursor == {"deribit": "2024-03-04"}

    by_today = plan_new_days(SETTINGS, {"deribit": "2024-05-31"}, {"deribit": date(2024, 7, 1)}, TODAY)[0]
    assert _keys(by_today) == ["ingest|2024-06-01|deribit", "process|2024-05-31|deribit"]
