"""instrument_definitions and download_targets: what exists on a day, and what we fetch of it."""

import asyncio
from collections import Counter

import dagster as dg
import polars as pl

from market_data_assets.defs.common import partitioned_asset
from market_data_assets.defs.io_managers import by_partition
from market_data_assets.defs.metadata import markdown_preview
from market_data_assets.defs.resources import MarketDataResource
from market_data_assets.instruments.definitions import build_instrument_definitions
from market_data_assets.instruments.targets import load_targets_config, select_targets, unmatched_rules
from market_data_assets.partitions import Partitioning, partitions_of_context
from market_data_assets.tardis.errors import TardisAuthError, TardisError

_PREVIEW_COLUMNS = [
    "instrument_key",
    "instrument_type",
    "exchange_symbol",
    "base",
    "quote",
    "expiry",
    "key_source",
]


async def _fetch_metadata(
    market_data: MarketDataResource, exchanges: set[str], log: dg.DagsterLogManager
) -> dict[str, tuple[dict, list[dict] | None]]:
    """Exchange details and instruments metadata, once per exchange for the whole run.

    Instruments metadata needs a paid key (BitMEX is free). Without a key a 401 is expected: the
    definitions then come from parsing dataset symbol ids, each row says so (``key_source``) and
    so does the materialization's metadata. With a key, a 401/403 means the key was refused: that
    is an error (naming the variable, never its value), not a silent switch to parsed symbols,
    whose tick sizes, multipliers, fees and listing dates would differ from the metadata's.
    """
    has_key = bool(market_data.settings.tardis_api_key)
    out: dict[str, tuple[dict, list[dict] | None]] = {}
    async with market_data.tardis_client() as client:
        for exchange in sorted(exchanges):
            details = await client.exchange_details(exchange)
            try:
                instruments: list[dict] | None = await client.instruments(exchange)
            except TardisAuthError as exc:
                if has_key:
                    raise dg.Failure(
                        description=(
                            f"{exchange}: Tardis refused TARDIS_API_KEY for instruments metadata "
                            f"(HTTP {exc.status}): {exc}. Check the key and its plan, or unset "
                            "TARDIS_API_KEY to build keys from dataset symbol ids (key_source=symbol_parse)."
                        )
                    ) from None
                log.warning(
                    f"{exchange}: instruments metadata needs a Tardis API key (TARDIS_API_KEY is not set); "
                    "building keys from dataset symbol ids (key_source=symbol_parse)"
                )
                instruments = None
            out[exchange] = (details, instruments)
    return out


def _definitions_metadata(frames: dict[str, pl.DataFrame]) -> dict[str, dg.MetadataValue]:
    rows = sum(df.height for df in frames.values())
    by_type: Counter[str] = Counter()
    by_source: Counter[str] = Counter()
    for df in frames.values():
        by_type.update(dict(df.group_by("instrument_type").len().iter_rows()))
        by_source.update(dict(df.group_by("key_source").len().iter_rows()))
    first = next(iter(frames.values()))
    preview = first.select([c for c in _PREVIEW_COLUMNS if c in first.columns])
    return {
        "dagster/row_count": dg.MetadataValue.int(rows),
        "partitions": dg.MetadataValue.int(len(frames)),
        "instruments_by_type": dg.MetadataValue.json(dict(sorted(by_type.items()))),
        "key_source": dg.MetadataValue.json(dict(sorted(by_source.items()))),
        "preview": markdown_preview(preview),
    }


def _known_exchanges(market_data: MarketDataResource, log: dg.DagsterLogManager) -> set[str]:
    """The partition exchanges plus Tardis's exchange list (one small request); the settings alone
    when the list cannot be fetched, so an offline run still catches a typo among them."""
    known = set(market_data.settings.exchanges)

    async def fetch() -> list[dict]:
        async with market_data.tardis_client() as client:
            return await client.exchanges()

    try:
        known |= {str(e["id"]) for e in asyncio.run(fetch()) if isinstance(e, dict) and "id" in e}
    except TardisError as exc:
        log.warning(
            f"Tardis exchange list unavailable ({exc}); checking the targets file against MARKET_DATA_EXCHANGES"
        )
    return known


def instrument_assets(partitioning: Partitioning) -> list[dg.AssetsDefinition]:
    """``instrument_definitions`` and ``download_targets``."""

    @partitioned_asset(
        partitioning,
        group="instruments",
        kinds={"tardis", "polars", "parquet"},
        io_manager_key="layout_io_manager",
        description=(
            "Every instrument listed on the day at the exchange, with its canonical key "
            "(VENUE:TYPE:SYMBOL), contract terms as of that day (the `changes` history applied) and "
            "the Tardis data types it offers. `instrument_availability/by_date/day-D/venue-EX/instruments.parquet`."
        ),
    )
    def instrument_definitions(
        context: dg.AssetExecutionContext, market_data: MarketDataResource
    ):  # one DataFrame, or dict[partition_key, DataFrame] for a multi-partition run
        parts = partitions_of_context(context)
        metadata = asyncio.run(_fetch_metadata(market_data, {p.exchange for p in parts}, context.log))
        frames = {
            p.key: build_instrument_definitions(p.exchange, p.day, *metadata[p.exchange]) for p in parts
        }
        context.add_output_metadata(_definitions_metadata(frames))
        return frames[parts[0].key] if len(parts) == 1 else frames

    @partitioned_asset(
        partitioning,
        group="instruments",
        kinds={"polars", "parquet"},
        io_manager_key="layout_io_manager",
        description=(
            "Which (instrument, data type) pairs to download for the day, chosen from the stored definitions "
            "by the targets file (MARKET_DATA_TARGETS_FILE). Uses grouped Tardis files (OPTIONS, PERPETUALS, ...) "
            "where the exchange offers them. `download_targets/by_date/day-D/venue-EX/targets.parquet`."
        ),
    )
    def download_targets(
        context: dg.AssetExecutionContext,
        market_data: MarketDataResource,
        instrument_definitions,  # one DataFrame, or dict[partition_key, DataFrame] (multi-partition run)
    ):  # one DataFrame, or dict[partition_key, DataFrame] for a multi-partition run
        parts = partitions_of_context(context)
        definitions = by_partition(instrument_definitions, [p.key for p in parts])
        settings = market_data.settings
        config = load_targets_config(
            settings.targets_file, known_exchanges=_known_exchanges(market_data, context.log)
        )

        details = market_data.exchange_details({p.exchange for p in parts})
        frames: dict[str, pl.DataFrame] = {}
        unmatched: list[str] = []
        for p in parts:
            frames[p.key] = select_targets(definitions[p.key], details[p.exchange], config, p.exchange, p.day)
            for line in unmatched_rules(definitions[p.key], config, p.exchange):
                context.log.warning(f"{p.key}: download targets rule {line}")
                unmatched.append(f"{p.key}: {line}")
            if frames[p.key].height == 0:
                context.log.warning(
                    f"{p.key}: the targets file selects nothing"
                    + (" (allow_empty: true)" if config.allow_empty else "; raw_ticks_complete will fail")
                )
        rows = sum(df.height for df in frames.values())
        by_type: Counter[str] = Counter()
        downloads = 0
        for df in frames.values():
            by_type.update(dict(df.group_by("data_type").len().iter_rows()))
            downloads += df.select("data_type", "dataset_symbol").unique().height
        first = frames[parts[0].key]
        context.add_output_metadata(
            {
                "dagster/row_count": dg.MetadataValue.int(rows),
                "downloads": dg.MetadataValue.int(downloads),
                "targets_by_data_type": dg.MetadataValue.json(dict(sorted(by_type.items()))),
                "unmatched_rules": dg.MetadataValue.json(unmatched),
                "preview": markdown_preview(first),
            }
        )
        return frames[parts[0].key] if len(parts) == 1 else frames

    return [instrument_definitions, download_targets]
