"""Definitions and targets against the real sandbox over HTTP: metadata with a key, symbol parsing
without one (the instruments endpoint answers 401), and every selected file really downloadable
with CSV `symbol` values that map back to the selected instruments."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path

import polars as pl
import pytest

from market_data_assets.instruments import build_instrument_definitions, load_targets_config, select_targets
from market_data_assets.sandbox import RunningSandbox, SandboxConfig
from market_data_assets.settings import DEFAULT_EXCHANGES, Settings
from market_data_assets.tardis.client import DownloadRequest, TardisClient
from market_data_assets.tardis.errors import TardisAuthError

DAY = date(2024, 9, 1)  # first of the month: the datasets are free without a key


@pytest.fixture(scope="module")
def small_sandbox() -> Iterator[RunningSandbox]:
    from market_data_assets.sandbox import start_sandbox

    running = start_sandbox(SandboxConfig(trades_per_day=20))
    try:
        yield running
    finally:
        running.stop()


async def _fetch(sb: RunningSandbox, exchange: str, key: str | None) -> tuple[dict, list[dict] | None]:
    async with TardisClient(sb.api_url, sb.datasets_url, key, max_retries=0) as client:
        details = await client.exchange_details(exchange)
        try:
            instruments = await client.instruments(exchange)
        except TardisAuthError:
            instruments = None
        return details, instruments


@pytest.mark.parametrize("exchange", DEFAULT_EXCHANGES)
@pytest.mark.slow
def test_without_a_key_symbol_parsing_gives_the_metadata_keys(
    small_sandbox: RunningSandbox, exchange: str
) -> None:
    details, instruments = asyncio.run(_fetch(small_sandbox, exchange, small_sandbox.api_key))
    assert instruments is not None
    _, anonymous = asyncio.run(_fetch(small_sandbox, exchange, None))
    if exchange == "bitmex":
        assert anonymous is not None  # metadata is free on BitMEX
    else:
        assert anonymous is None  # 401 without a key
    keyed = build_instrument_definitions(exchange, DAY, details, instruments)
    parsed = build_instrument_definitions(exchange, DAY, details, None)
    assert keyed.height > 0
    assert keyed["instrument_key"].to_list() == parsed["instrument_key"].to_list()
    assert keyed["dataset_symbol"].to_list() == parsed["dataset_symbol"].to_list()


def _csv_symbols(path: Path) -> set[str]:
    with gzip.open(path, "rt") as handle:
        text = handle.read()
    if not text:
        return set()
    return set(pl.read_csv(text.encode(), columns=["symbol"], infer_schema=False)["symbol"])


@pytest.mark.parametrize("exchange", DEFAULT_EXCHANGES)
@pytest.mark.slow
def test_bundled_targets_download_and_split_by_symbol_in_csv(
    small_sandbox: RunningSandbox, exchange: str, tmp_path: Path
) -> None:
    details, instruments = asyncio.run(_fetch(small_sandbox, exchange, small_sandbox.api_key))
    definitions = build_instrument_definitions(exchange, DAY, details, instruments)
    config = load_targets_config(Settings.from_env({}).targets_file)
    targets = select_targets(definitions, details, config, exchange, DAY)
    assert targets.height > 0, exchange
    assert set(targets["data_type"]) <= set(config.data_types_by_exchange[exchange])
    files = (
        targets.select("data_type", "dataset_symbol", "grouped").unique().sort("data_type", "dataset_symbol")
    )
    dest: Callable[[DownloadRequest], Path] = lambda r: tmp_path / f"{r.data_type}-{r.symbol}.csv.gz"  # noqa: E731

    async def download_all() -> list:
        async with TardisClient(
            small_sandbox.api_url, small_sandbox.datasets_url, None, max_retries=0
        ) as client:
            reqs = [DownloadRequest(exchange, dt, DAY, sym) for dt, sym, _ in files.iter_rows()]
            return [r async for r in client.download_many(reqs, dest)]

    results = asyncio.run(download_all())
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]
    if exchange == "deribit":  # the BTC options rule is served by one grouped OPTIONS file
        options = targets.filter(pl.col("instrument_key").str.starts_with("DERIBIT:OPTION:"))
        assert options.height >= 20 and set(options["dataset_symbol"]) == {"OPTIONS"}
    all_csv_symbols = set(definitions["symbol_in_csv"])
    for data_type, dataset_symbol, grouped in files.iter_rows():
        wanted = set(
            targets.filter((pl.col("data_type") == data_type) & (pl.col("dataset_symbol") == dataset_symbol))[
                "symbol_in_csv"
            ]
        )
        seen = _csv_symbols(tmp_path / f"{data_type}-{dataset_symbol}.csv.gz")
        if data_type == "trades":
            assert seen, (data_type, dataset_symbol)  # every selected instrument trades in the sandbox
        if grouped:
            assert seen <= all_csv_symbols, (data_type, dataset_symbol, seen - all_csv_symbols)
            assert seen & wanted, (data_type, dataset_symbol)
        else:
            assert seen <= wanted, (data_type, dataset_symbol, seen)
