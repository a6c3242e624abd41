"""raw_ticks: every Tardis file of the day's download targets, as typed Parquet per instrument.

Wiring only: the work is ``ticks.pipeline.materialize_raw_ticks``. The asset writes its files
itself (through the object store, atomically, with a manifest) rather than returning data to an
IO manager: a partition is gigabytes of ticks that must never sit in memory at once.
"""

import asyncio
from datetime import timedelta

import dagster as dg
import polars as pl

from market_data_assets.defs.common import partitioned_asset
from market_data_assets.defs.resources import MarketDataResource
from market_data_assets.partitions import DayExchange, Partitioning, partitions_of_context
from market_data_assets.polars_arrow import to_polars
from market_data_assets.storage.base import ObjectStore
from market_data_assets.storage.layout import raw_manifest_path, targets_path
from market_data_assets.ticks.pipeline import RawTicksResult, materialize_raw_ticks

_MAX_FAILURE_ROWS = 50


class RawTicksConfig(dg.Config):
    force: bool = False
    """Download and convert every file again, even those the manifest says are done."""


def _read_targets(store: ObjectStore, part: DayExchange) -> pl.DataFrame:
    path = targets_path(part.day, part.exchange)
    if not store.exists(path):
        raise dg.Failure(
            description=(
                f"no download targets for {part.key}: {store.uri(path)} does not exist; "
                "materialize download_targets for this partition first"
            )
        )
    return to_polars(store.read_parquet(path))


async def _run_partitions(
    context: dg.AssetExecutionContext, market_data: MarketDataResource, force: bool
) -> list[RawTicksResult]:
    store = market_data.store()
    settings = market_data.settings
    results = []
    async with market_data.tardis_client() as client:
        for part in partitions_of_context(context):
            targets = _read_targets(store, part)
            result = await materialize_raw_ticks(
                client,
                store,
                targets,
                part.day,
                part.exchange,
                force=force,
                convert_workers=settings.convert_workers,
                io_concurrency=settings.io_concurrency,
                progress=context.log.info,
                staging_max_age=timedelta(hours=settings.staging_max_age_hours),
            )
            context.log.info(
                f"{part.key}: {len(result.files)} files, {result.rows:,} rows, "
                f"{len(result.failures)} failed, {result.skipped} resumed in {result.seconds:.1f}s"
            )
            results.append(result)
    return results


def _sum_by_type(results: list[RawTicksResult], attr: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for result in results:
        for data_type, value in getattr(result, attr).items():
            out[data_type] = out.get(data_type, 0) + value
    return dict(sorted(out.items()))


def _failures_markdown(results: list[RawTicksResult]) -> str:
    rows = [(r.day, r.exchange, f) for r in results for f in r.failures]
    if not rows:
        return "(none)"
    lines = ["| day | exchange | data type | dataset symbol | error |", "|---|---|---|---|---|"]
    for day, exchange, f in rows[:_MAX_FAILURE_ROWS]:
        error = f.error.replace("|", "\\|").replace("\n", " ")[:300]
        lines.append(f"| {day} | {exchange} | {f.data_type} | {f.dataset_symbol} | {error} |")
    if len(rows) > _MAX_FAILURE_ROWS:
        lines.append(f"| … | | | | {len(rows) - _MAX_FAILURE_ROWS} more |")
    return "\n".join(lines)


def _metadata(results: list[RawTicksResult], store: ObjectStore) -> dict[str, dg.MetadataValue]:
    seconds = sum(r.seconds for r in results)
    rows = sum(r.rows for r in results)
    written = sum(r.bytes for r in results)
    source = sum(r.source_bytes for r in results)
    empty = sorted(f"{r.day} {r.exchange} {dt} {sym}" for r in results for dt, sym in r.empty_groups)
    first = results[0]
    return {
        "dagster/row_count": dg.MetadataValue.int(rows),
        "files": dg.MetadataValue.int(sum(len(r.files) for r in results)),
        "files_by_data_type": dg.MetadataValue.json(_sum_by_type(results, "files_by_type")),
        "rows_by_data_type": dg.MetadataValue.json(_sum_by_type(results, "rows_by_type")),
        "bytes_by_data_type": dg.MetadataValue.json(_sum_by_type(results, "bytes_by_type")),
        "parquet_bytes": dg.MetadataValue.int(written),
        "source_bytes": dg.MetadataValue.int(source),
        "seconds": dg.MetadataValue.float(round(seconds, 3)),
        "rows_per_second": dg.MetadataValue.float(round(rows / seconds, 1) if seconds else 0.0),
        "source_mb_per_second": dg.MetadataValue.float(round(source / 1e6 / seconds, 3) if seconds else 0.0),
        "failures": dg.MetadataValue.md(_failures_markdown(results)),
        "failed_downloads": dg.MetadataValue.int(sum(len(r.failures) for r in results)),
        "empty_groups": dg.MetadataValue.json(empty),
        "resumed_downloads": dg.MetadataValue.int(sum(r.skipped for r in results)),
        "dropped_rows_other_instruments": dg.MetadataValue.int(sum(r.dropped_rows for r in results)),
        "manifest": dg.MetadataValue.path(store.uri(raw_manifest_path(first.day, first.exchange))),
    }


def raw_ticks_assets(partitioning: Partitioning) -> list[dg.AssetsDefinition]:
    """``raw_ticks``."""

    @partitioned_asset(
        partitioning,
        group="ingest",
        kinds={"tardis", "parquet"},
        deps=[dg.AssetKey("download_targets")],
        description=(
            "Every Tardis CSV.gz file named by the partition's download targets, downloaded concurrently and "
            "streamed into typed, zstd Parquet (one file per instrument; grouped OPTIONS/PERPETUALS files are "
            "split): `raw_tick_data/by_date/day-D/data_type-T/KEY.parquet`, with a per-partition manifest "
            "(`raw_tick_manifests/...`) that makes re-runs resume. Set `force` to redo every file."
        ),
    )
    def raw_ticks(
        context: dg.AssetExecutionContext, config: RawTicksConfig, market_data: MarketDataResource
    ) -> dg.MaterializeResult:
        results = asyncio.run(_run_partitions(context, market_data, config.force))
        metadata = _metadata(results, market_data.store())
        failed = [(r, f) for r in results for f in r.failures]
        if failed:
            listed = "; ".join(
                f"{r.day} {r.exchange} {f.data_type}/{f.dataset_symbol}" for r, f in failed[:20]
            )
            raise dg.Failure(
                description=f"{len(failed)} raw tick download(s) failed after retries: {listed}",
                metadata=metadata,
            )
        return dg.MaterializeResult(metadata=metadata)

    return [raw_ticks]
