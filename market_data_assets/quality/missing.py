"""Expected vs present: what raw tick data should exist, what storage holds, and why gaps exist.

Expected comes from the download targets of each day (what we chose to fetch). Present comes
from ONE listing per day and data type (never one request per file) plus the partition's
manifest, which says what the download saw: data, an empty file at the source, or a failure.

Every expected (data type, instrument) gets exactly one status:

=====================  ==========================================================================
status                 meaning
=====================  ==========================================================================
present                the file is stored and matches its manifest entry (size, and rows if verified)
missing                no file, and nothing explains it (never downloaded, or deleted since)
empty_at_source        Tardis answered with an empty file (no trading), or the grouped file had no
                       rows for this instrument
failed_download        the download kept failing after retries (the manifest keeps the error)
incomplete             the file is stored but differs from its manifest entry (size or row count)
                       or is not a readable Parquet file
explained_by_incident  missing, and the day overlaps a Tardis incident report (its details quoted)
=====================  ==========================================================================
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from market_data_assets.storage import layout
from market_data_assets.storage.store import LocalStore, ObjectStore

STATUSES: tuple[str, ...] = (
    "present",
    "missing",
    "empty_at_source",
    "failed_download",
    "incomplete",
    "explained_by_incident",
)
GAP_STATUSES: tuple[str, ...] = tuple(s for s in STATUSES if s != "present")

REPORT_SCHEMA: dict[str, pl.DataType] = {
    "exchange": pl.String(),
    "day": pl.Date(),
    "data_type": pl.String(),
    "instrument_key": pl.String(),
    "dataset_symbol": pl.String(),
    "status": pl.String(),
    "detail": pl.String(),
    "path": pl.String(),
    "stored_bytes": pl.Int64(),
    "manifest_bytes": pl.Int64(),
    "manifest_rows": pl.Int64(),
}


@dataclass(frozen=True)
class Incident:
    start: datetime
    end: datetime
    status: str
    details: str

    def overlaps(self, day: date) -> bool:
        day_start = datetime.combine(day, time(), tzinfo=UTC)
        return self.start < day_start + timedelta(days=1) and self.end > day_start


def incidents_from_details(exchange_details: dict | None) -> list[Incident]:
    """Tardis ``incidentReports`` -> Incident list (malformed entries are skipped, not fatal)."""
    out: list[Incident] = []
    for raw in (exchange_details or {}).get("incidentReports") or []:
        try:
            start = datetime.fromisoformat(str(raw["from"]).replace("Z", "+00:00"))
            end = datetime.fromisoformat(str(raw["to"]).replace("Z", "+00:00"))
        except (KeyError, ValueError):
            continue
        out.append(Incident(start, end, str(raw.get("status", "")), str(raw.get("details", ""))))
    return out


def _empty_report() -> pl.DataFrame:
    return pl.DataFrame(schema=REPORT_SCHEMA)


def stored_files(store: ObjectStore, day: date, exchange: str, data_types: Iterable[str]) -> dict[str, int]:
    """Stored raw tick files of one exchange-day: relative path -> size, one listing per data type."""
    prefix_key = layout.key_prefix_for_exchange(exchange)
    files: dict[str, int] = {}
    for data_type in sorted(set(data_types)):
        for obj in store.list(f"{layout.raw_ticks_dir(day, data_type)}/{prefix_key}"):
            files[obj.path] = obj.size
    return files


def read_manifest_or_empty(store: ObjectStore, day: date, exchange: str) -> pl.DataFrame | None:
    path = layout.raw_manifest_path(day, exchange)
    if not store.exists(path):
        return None
    return pl.from_arrow(store.read_parquet(path))  # type: ignore[return-value]


def classify_day(
    *,
    exchange: str,
    day: date,
    targets: pl.DataFrame,
    manifest: pl.DataFrame | None,
    stored: dict[str, int],
    incidents: list[Incident] | None = None,
    row_counts: dict[str, int | None] | None = None,
) -> pl.DataFrame:
    """One report row per target (data type × instrument) of one exchange-day.

    ``row_counts`` (path -> rows read from the Parquet footer, None if unreadable) enables the
    deep check; without it only sizes are compared.
    """
    if targets.height == 0:
        return _empty_report()
    day_incidents = [i for i in (incidents or []) if i.overlaps(day)]

    by_key: dict[tuple[str, str], dict] = {}
    group_status: dict[tuple[str, str], dict] = {}
    if manifest is not None and manifest.height:
        for row in manifest.iter_rows(named=True):
            if row.get("instrument_key"):
                by_key[(row["data_type"], row["instrument_key"])] = row
            group = (row["data_type"], row["dataset_symbol"])
            # A group is "failed" or "empty" as a whole; an ok entry for any member means the file had data.
            previous = group_status.get(group)
            if previous is None or row["status"] == "ok":
                group_status[group] = row

    rows: list[dict] = []
    for t in targets.select("data_type", "instrument_key", "dataset_symbol", "grouped").iter_rows(named=True):
        data_type, key, dataset_symbol = t["data_type"], t["instrument_key"], t["dataset_symbol"]
        path = layout.raw_ticks_path(day, data_type, key)
        entry = by_key.get((data_type, key))
        group = group_status.get((data_type, dataset_symbol))
        size = stored.get(path)
        status, detail = _classify(entry, group, size, path, t["grouped"], row_counts, day_incidents)
        rows.append(
            {
                "exchange": exchange,
                "day": day,
                "data_type": data_type,
                "instrument_key": key,
                "dataset_symbol": dataset_symbol,
                "status": status,
                "detail": detail,
                "path": path,
                "stored_bytes": size,
                "manifest_bytes": entry.get("bytes") if entry else None,
                "manifest_rows": entry.get("rows") if entry else None,
            }
        )
    return pl.DataFrame(rows, schema=REPORT_SCHEMA)


def _classify(
    entry: dict | None,
    group: dict | None,
    size: int | None,
    path: str,
    grouped: bool,
    row_counts: dict[str, int | None] | None,
    incidents: list[Incident],
) -> tuple[str, str]:
    if size is not None:
        if entry is None or entry.get("status") != "ok":
            return "present", "stored but not recorded in the manifest"
        if entry.get("bytes") is not None and int(entry["bytes"]) != size:
            return "incomplete", f"stored size {size} B differs from the manifest's {entry['bytes']} B"
        if row_counts is not None and path in row_counts:
            rows = row_counts[path]
            if rows is None:
                return "incomplete", "not a readable Parquet file"
            if entry.get("rows") is not None and int(entry["rows"]) != rows:
                return "incomplete", f"{rows} rows stored, the manifest recorded {entry['rows']}"
        return "present", ""
    # Not stored: the manifest says why, if it can.
    for source in (entry, group):
        if source is None:
            continue
        if source.get("status") == "failed":
            return "failed_download", str(source.get("error") or "download failed")
        if source.get("status") == "empty":
            return "empty_at_source", "Tardis returned an empty file"
    if grouped and group is not None and group.get("status") == "ok" and entry is None:
        return (
            "empty_at_source",
            f"no rows for this instrument in the grouped file {group.get('dataset_symbol')}",
        )
    if incidents:
        return "explained_by_incident", " | ".join(f"{i.status}: {i.details}" for i in incidents)
    if entry is not None and entry.get("status") == "ok":
        return "missing", "recorded in the manifest but no longer stored"
    return "missing", "never downloaded"


def parquet_row_counts(store: ObjectStore, paths: Iterable[str]) -> dict[str, int | None]:
    """Rows per file from the Parquet footer (None when the file is not readable Parquet)."""
    out: dict[str, int | None] = {}
    for path in paths:
        try:
            source = (
                store.uri(path) if isinstance(store, LocalStore) else pa.BufferReader(store.get_bytes(path))
            )
            out[path] = pq.read_metadata(source).num_rows
        except Exception:  # any unreadable file is "incomplete", whatever the parser said
            out[path] = None
    return out


def report_for_day(
    store: ObjectStore,
    day: date,
    exchange: str,
    *,
    incidents: list[Incident] | None = None,
    verify_rows: bool = False,
    data_type: str | None = None,
) -> pl.DataFrame:
    """The missing-data report of one exchange-day, from what storage holds."""
    targets_path = layout.targets_path(day, exchange)
    if not store.exists(targets_path):
        return _empty_report()
    targets = pl.from_arrow(store.read_parquet(targets_path))
    assert isinstance(targets, pl.DataFrame)
    if data_type is not None:
        targets = targets.filter(pl.col("data_type") == data_type)
    manifest = read_manifest_or_empty(store, day, exchange)
    stored = stored_files(store, day, exchange, targets.get_column("data_type").unique().to_list())
    counts = parquet_row_counts(store, stored) if verify_rows else None
    return classify_day(
        exchange=exchange,
        day=day,
        targets=targets,
        manifest=manifest,
        stored=stored,
        incidents=incidents,
        row_counts=counts,
    )


def report_for_range(
    store: ObjectStore,
    start: date,
    end: date,
    exchanges: Iterable[str],
    *,
    data_type: str | None = None,
    incidents: dict[str, list[Incident]] | None = None,
    verify_rows: bool = False,
    workers: int = 8,
) -> pl.DataFrame:
    """Reports of every exchange-day in ``[start, end]``, computed concurrently (I/O bound)."""
    from concurrent.futures import ThreadPoolExecutor

    if end < start:
        raise ValueError(f"end {end} is before start {start}")
    jobs = [(start + timedelta(days=i), ex) for ex in exchanges for i in range((end - start).days + 1)]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        frames = list(
            pool.map(
                lambda job: report_for_day(
                    store,
                    job[0],
                    job[1],
                    incidents=(incidents or {}).get(job[1]),
                    data_type=data_type,
                    verify_rows=verify_rows,
                ),
                jobs,
            )
        )
    frames = [f for f in frames if f.height]
    return pl.concat(frames) if frames else _empty_report()


def summarize(report: pl.DataFrame) -> pl.DataFrame:
    """Counts per exchange, data type and status (statuses as columns), for printing."""
    if report.height == 0:
        return pl.DataFrame(
            schema={"exchange": pl.String(), "data_type": pl.String(), **{s: pl.UInt32() for s in STATUSES}}
        )
    counts = report.group_by("exchange", "data_type", "status").len()
    wide = counts.pivot(on="status", index=["exchange", "data_type"], values="len").fill_null(0)
    for s in STATUSES:
        if s not in wide.columns:
            wide = wide.with_columns(pl.lit(0, dtype=pl.UInt32).alias(s))
    return wide.select("exchange", "data_type", *STATUSES).sort("exchange", "data_type")
