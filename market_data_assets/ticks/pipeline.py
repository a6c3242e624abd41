"""One (day, exchange) partition of raw ticks: download every file, convert, publish, record.

Downloads run concurrently through the Tardis client's ``download_many`` (results arrive as they
complete) while finished downloads are converted in a thread pool of ``convert_workers``: polars
and pyarrow release the GIL for the heavy work, so threads use both cores without a process
pool's start-up and pickling (and without fork-after-threads hazards in polars). Measured on
2 cores, four 5 M-row trades conversions: 2 threads 41 s wall / 10.9 s CPU, 2 spawned
processes 50 s / 12.7 s, one after another 49 s / 11.7 s (a loaded machine; the order held over
runs). A book snapshot file, which polars converts on every core by itself, takes all the
slots: a second conversion beside it would only add its memory. Back-pressure: the loop over
``download_many`` waits for free conversion slots before taking the next result, so at most a
window of downloaded-but-unconverted files sits on local disk and memory stays bounded by the
converters' (benchmarks/bench_partition.py measures a whole partition's peak RSS).

Each conversion's files are published with ``store.put_file(move=True)`` (atomic each), on a
bounded pool of ``io_concurrency`` (a grouped OPTIONS file splits into thousands of pieces, each a
GCS round trip), then the manifest is rewritten. A killed run therefore loses at most the groups in
flight; a re-run skips every group whose manifest rows still match storage
(``manifest.group_is_complete``: size and SHA-256, so a file whose bytes changed in place is
downloaded again).
Downloads are not inflated on arrival (``verify=False``): the conversion reads every byte anyway,
and inflating twice cost ~12% of a partition's CPU. A gzip found broken while converting (cut at
the origin; a cut connection is already caught by the client's Content-Length check) is
downloaded again, verified this time, and converted again.

A download that still fails after the client's retries, or a file that does not convert, is
recorded as ``failed`` and the others carry on; the caller decides what a failure means.
"""

from __future__ import annotations

import asyncio
import shutil
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from market_data_assets.storage.base import ObjectStore
from market_data_assets.storage.layout import raw_ticks_dir, raw_ticks_path
from market_data_assets.storage.parallel import DEFAULT_IO_CONCURRENCY, map_objects
from market_data_assets.storage.staging import DEFAULT_MAX_AGE, claim_work_dir, clean_staging
from market_data_assets.ticks.convert import convert_csv_gz, runs_on_every_core
from market_data_assets.ticks.errors import CorruptGzipError, TickFileError
from market_data_assets.ticks.manifest import (
    STATUS_EMPTY,
    STATUS_FAILED,
    STATUS_OK,
    GroupKey,
    ManifestRow,
    group_is_complete,
    read_manifest_rows,
    stored_sha256,
    write_manifest,
)

if TYPE_CHECKING:
    from market_data_assets.tardis.client import DownloadResult, TardisClient

Progress = Callable[[str], None]

TARGET_COLUMNS = ("exchange", "data_type", "instrument_key", "symbol_in_csv", "dataset_symbol", "grouped")


@dataclass(frozen=True)
class DownloadGroup:
    """One download: a (data_type, dataset_symbol) file and the instruments to split it into."""

    data_type: str
    dataset_symbol: str
    key_for_symbol: dict[str, str]

    @property
    def key(self) -> GroupKey:
        return (self.data_type, self.dataset_symbol)


@dataclass(frozen=True)
class GroupFailure:
    data_type: str
    dataset_symbol: str
    error: str


@dataclass
class RawTicksResult:
    """What one partition run did (the asset turns it into metadata)."""

    day: date
    exchange: str
    files: list[ManifestRow] = field(default_factory=list)
    """``ok`` manifest rows written by this run (resumed groups are not repeated here)."""
    failures: list[GroupFailure] = field(default_factory=list)
    empty_groups: list[GroupKey] = field(default_factory=list)
    skipped: int = 0
    """Download groups skipped because the manifest and storage say they are done."""
    downloaded: int = 0
    seconds: float = 0.0
    source_bytes: int = 0
    dropped_rows: int = 0
    """Rows of grouped files belonging to instruments not in the targets."""

    def _by_type(self, attr: str) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for row in self.files:
            out[row.data_type] += 1 if attr == "files" else getattr(row, attr)
        return dict(sorted(out.items()))

    @property
    def files_by_type(self) -> dict[str, int]:
        return self._by_type("files")

    @property
    def rows_by_type(self) -> dict[str, int]:
        return self._by_type("rows")

    @property
    def bytes_by_type(self) -> dict[str, int]:
        return self._by_type("bytes")

    @property
    def rows(self) -> int:
        return sum(r.rows for r in self.files)

    @property
    def bytes(self) -> int:
        return sum(r.bytes for r in self.files)


def download_groups(targets: pl.DataFrame, exchange: str) -> list[DownloadGroup]:
    """Target rows of ``exchange`` grouped into downloads, in a stable order."""
    missing = [c for c in TARGET_COLUMNS if c not in targets.columns]
    if missing:
        raise ValueError(f"download targets lack columns {missing}; expected {list(TARGET_COLUMNS)}")
    groups: dict[GroupKey, dict[str, str]] = {}
    rows = targets.filter(pl.col("exchange") == exchange).select(
        "data_type", "dataset_symbol", "symbol_in_csv", "instrument_key"
    )
    for data_type, dataset_symbol, symbol_in_csv, key in rows.iter_rows():
        mapping = groups.setdefault((data_type, dataset_symbol), {})
        if mapping.get(symbol_in_csv, key) != key:
            raise ValueError(
                f"download targets map {exchange} {data_type} {dataset_symbol} symbol {symbol_in_csv!r} "
                f"to two instrument keys: {mapping[symbol_in_csv]!r} and {key!r}"
            )
        mapping[symbol_in_csv] = key
    return [DownloadGroup(dt, ds, keys) for (dt, ds), keys in sorted(groups.items())]


def source_name(exchange: str, data_type: str, day: date, dataset_symbol: str) -> str:
    """How a downloaded file is named in errors: its dataset URL path."""
    return f"{exchange}/{data_type}/{day:%Y/%m/%d}/{dataset_symbol}.csv.gz"


async def materialize_raw_ticks(
    client: TardisClient,
    store: ObjectStore,
    targets: pl.DataFrame,
    day: date,
    exchange: str,
    *,
    force: bool = False,
    convert_workers: int = 2,
    io_concurrency: int = DEFAULT_IO_CONCURRENCY,
    progress: Progress | None = None,
    staging_max_age: timedelta = DEFAULT_MAX_AGE,
) -> RawTicksResult:
    """Download, convert and publish every raw tick file of one partition; see the module docstring.

    First removes what dead runs left in the staging folder (``storage.staging.clean_staging``;
    ``staging_max_age`` for entries whose owner cannot be checked)."""
    started = time.perf_counter()
    say = progress or (lambda _msg: None)
    result = RawTicksResult(day=day, exchange=exchange)
    cleaned = await asyncio.to_thread(clean_staging, store.staging_dir(), max_age=staging_max_age)
    if cleaned.removed:
        say(f"removed {len(cleaned.removed)} staging entries of dead runs ({cleaned.freed_bytes:,} bytes)")
    groups = download_groups(targets, exchange)
    previous = [] if force else read_manifest_rows(store, day, exchange)
    ledger = _Ledger(store, day, exchange, {g.key for g in groups}, previous)

    todo = [g for g in groups if force or not ledger.is_complete(g)]
    result.skipped = len(groups) - len(todo)
    say(f"{exchange} {day}: {len(groups)} downloads, {result.skipped} already done, {len(todo)} to do")
    if todo:
        run = _PartitionRun(
            client, store, day, exchange, ledger, result, say, convert_workers, io_concurrency
        )
        await run.download_and_convert(todo)
    await asyncio.to_thread(ledger.write)
    result.seconds = time.perf_counter() - started
    return result


class _PartitionRun:
    """The downloads and conversions of one partition's groups still to do.

    Downloads stream in as they finish; each successful one is converted and published on a
    bounded pool (``_ConversionSlots``) while the next downloads continue, and every outcome,
    failures included, replaces its group's rows in the ledger (the manifest) as it lands.
    """

    def __init__(
        self,
        client: TardisClient,
        store: ObjectStore,
        day: date,
        exchange: str,
        ledger: _Ledger,
        result: RawTicksResult,
        say: Progress,
        convert_workers: int,
        io_concurrency: int,
    ) -> None:
        self.client, self.store, self.day, self.exchange = client, store, day, exchange
        self.ledger, self.result, self.say = ledger, result, say
        self.io_concurrency = io_concurrency
        self.work = claim_work_dir(store.staging_dir(), "raw-ticks")
        self.slots = _ConversionSlots(max(1, convert_workers))
        self.executor = ThreadPoolExecutor(max_workers=max(1, convert_workers), thread_name_prefix="convert")
        self.dest: dict[GroupKey, Path] = {}

    async def download_and_convert(self, todo: list[DownloadGroup]) -> None:
        from market_data_assets.tardis.client import DownloadRequest

        by_request = {(g.data_type, g.dataset_symbol): g for g in todo}
        self.dest = {g.key: self.work / f"{i:06d}.csv.gz" for i, g in enumerate(todo)}
        requests = [DownloadRequest(self.exchange, g.data_type, self.day, g.dataset_symbol) for g in todo]
        tasks: set[asyncio.Task[None]] = set()
        try:
            downloads = self.client.download_many(
                requests, dest_for=lambda r: self.dest[(r.data_type, r.symbol)], verify=False
            )
            async for res in downloads:
                group = by_request[(res.request.data_type, res.request.symbol)]
                self.result.downloaded += 1
                if not res.ok:
                    await self._record(
                        group, [self._failed(group, f"download failed: {res.error}", res.bytes)], 0
                    )
                    continue
                weight = (
                    self.slots.capacity
                    if runs_on_every_core(group.data_type, len(group.key_for_symbol))
                    else 1
                )
                await self.slots.acquire(weight)
                task = asyncio.create_task(self._finish(res, group, weight))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            if tasks:
                await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.to_thread(self.executor.shutdown, True, cancel_futures=True)
            await asyncio.to_thread(shutil.rmtree, self.work, True)

    async def _convert(self, res: DownloadResult, group: DownloadGroup) -> tuple[list[ManifestRow], int]:
        return await asyncio.get_running_loop().run_in_executor(
            self.executor,
            _convert_and_publish,
            self.store,
            res,
            group,
            self.day,
            self.exchange,
            self.work,
            self.io_concurrency,
        )

    async def _finish(self, res: DownloadResult, group: DownloadGroup, weight: int) -> None:
        try:
            try:
                rows, dropped = await self._convert(res, group)
            except CorruptGzipError:
                # Downloads are not inflated on arrival (the conversion reads every byte anyway), so
                # a stream damaged on the way shows here: fetch it again, verified this time.
                res = await self.client.download(res.request, self.dest[group.key], verify=True)
                rows, dropped = await self._convert(res, group)
        except Exception as exc:  # noqa: BLE001 - one bad group must not stop the partition
            rows, dropped = [self._failed(group, f"{type(exc).__name__}: {exc}", res.bytes)], 0
        finally:
            self.slots.release(weight)
        await self._record(group, rows, res.bytes, dropped)

    def _failed(self, group: DownloadGroup, error: str, downloaded: int) -> ManifestRow:
        return _failed_row(group, self.day, self.exchange, error, downloaded)

    async def _record(
        self, group: DownloadGroup, rows: list[ManifestRow], downloaded: int, dropped: int = 0
    ) -> None:
        await self.ledger.replace(group.key, rows)
        _account(self.result, group, rows, downloaded)
        self.result.dropped_rows += dropped
        self.say(_describe(group, rows))


class _ConversionSlots:
    """``capacity`` conversion slots. A conversion that keeps every core busy by itself (polars'
    own sink, see ``convert.runs_on_every_core``) takes all of them: a second one beside it would
    gain no speed and double the peak memory (measured by benchmarks/bench_partition.py)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._free = capacity
        self._changed = asyncio.Event()

    async def acquire(self, n: int) -> None:
        while self._free < n:
            self._changed.clear()
            await self._changed.wait()
        self._free -= n

    def release(self, n: int) -> None:
        self._free += n
        self._changed.set()


class _Ledger:
    """The manifest rows of the partition, rewritten atomically as groups finish.

    ``replace`` returns once a manifest including the group is stored, so a kill after it loses
    nothing. Writes coalesce: groups finishing while a write is in flight are stored together by
    the next one, so a slow store (one GCS upload per write) never becomes one write per group.
    """

    def __init__(
        self, store: ObjectStore, day: date, exchange: str, wanted: set[GroupKey], previous: list[ManifestRow]
    ) -> None:
        self.store, self.day, self.exchange = store, day, exchange
        self.rows: dict[GroupKey, list[ManifestRow]] = defaultdict(list)
        for row in previous:
            if row.group in wanted:
                self.rows[row.group].append(row)
        self._sizes: dict[str, dict[str, int]] = {}
        self._lock = asyncio.Lock()
        self._version = 0
        self._stored_version = 0

    def _stored_sizes(self, data_type: str) -> dict[str, int]:
        if data_type not in self._sizes:
            prefix = raw_ticks_dir(self.day, data_type) + "/"
            self._sizes[data_type] = {o.path: o.size for o in self.store.list(prefix)}
        return self._sizes[data_type]

    def is_complete(self, group: DownloadGroup) -> bool:
        rows = self.rows.get(group.key, [])
        if not rows:
            return False
        return group_is_complete(
            rows,
            group.key_for_symbol.values(),
            self._stored_sizes(group.data_type),
            hash_of=lambda path: stored_sha256(self.store, path),
        )

    async def replace(self, group: GroupKey, rows: list[ManifestRow]) -> None:
        self.rows[group] = rows
        self._version += 1
        mine = self._version
        async with self._lock:
            if self._stored_version >= mine:
                return  # a write that started after this update already stored it
            version, snapshot = self._version, self._snapshot()
            await asyncio.to_thread(write_manifest, self.store, self.day, self.exchange, snapshot)
            self._stored_version = version

    def _snapshot(self) -> list[ManifestRow]:
        return [r for rows in self.rows.values() for r in rows]

    def write(self) -> None:
        write_manifest(self.store, self.day, self.exchange, self._snapshot())


def _convert_and_publish(
    store: ObjectStore,
    res: DownloadResult,
    group: DownloadGroup,
    day: date,
    exchange: str,
    work: Path,
    io_concurrency: int = DEFAULT_IO_CONCURRENCY,
) -> tuple[list[ManifestRow], int]:
    """Runs in a worker thread: convert one download, publish its files, describe them as rows.

    Returns the group's manifest rows and the rows dropped for symbols outside the targets."""
    assert res.path is not None
    name = source_name(exchange, group.data_type, day, group.dataset_symbol)
    out_dir = work / f"out-{uuid.uuid4().hex[:8]}"
    base = {
        "exchange": exchange,
        "day": day,
        "data_type": group.data_type,
        "dataset_symbol": group.dataset_symbol,
    }
    try:
        converted = convert_csv_gz(res.path, group.data_type, out_dir, group.key_for_symbol, day, name)
        if converted.empty:
            empty = ManifestRow(
                **base, instrument_key=None, path=None, status=STATUS_EMPTY, source_bytes=res.bytes
            )
            return [empty], 0
        files = list(converted)
        paths = [raw_ticks_path(day, group.data_type, f.instrument_key) for f in files]
        # A grouped file (OPTIONS) splits into thousands of pieces: publish them concurrently.
        map_objects(
            lambda i: store.put_file(files[i].path, paths[i], move=True),
            range(len(files)),
            lambda i: store.uri(paths[i]),
            io_concurrency,
        )
        rows: list[ManifestRow] = []
        for f, path in zip(files, paths, strict=True):
            rows.append(
                ManifestRow(
                    **base,
                    instrument_key=f.instrument_key,
                    path=path,
                    status=STATUS_OK,
                    rows=f.rows,
                    bytes=f.bytes,
                    source_bytes=f.source_bytes,
                    sha256=f.sha256,
                    min_timestamp=f.min_timestamp,
                    max_timestamp=f.max_timestamp,
                )
            )
        written = {f.instrument_key for f in converted}
        for key in sorted(set(group.key_for_symbol.values()) - written):
            rows.append(
                ManifestRow(
                    **base, instrument_key=key, path=None, status=STATUS_EMPTY, source_bytes=res.bytes
                )
            )
        return rows, converted.dropped_rows
    except CorruptGzipError:
        raise  # the caller downloads the file again
    except TickFileError as exc:
        return [_failed_row(group, day, exchange, str(exc), res.bytes)], 0
    finally:
        res.path.unlink(missing_ok=True)
        shutil.rmtree(out_dir, ignore_errors=True)


def _failed_row(group: DownloadGroup, day: date, exchange: str, error: str, source_bytes: int) -> ManifestRow:
    return ManifestRow(
        exchange=exchange,
        day=day,
        data_type=group.data_type,
        dataset_symbol=group.dataset_symbol,
        instrument_key=None,
        path=None,
        status=STATUS_FAILED,
        source_bytes=source_bytes,
        error=error,
    )


def _account(
    result: RawTicksResult, group: DownloadGroup, rows: list[ManifestRow], source_bytes: int
) -> None:
    result.source_bytes += source_bytes
    for row in rows:
        if row.status == STATUS_OK:
            result.files.append(row)
        elif row.status == STATUS_FAILED:
            result.failures.append(GroupFailure(group.data_type, group.dataset_symbol, row.error or ""))
        elif row.instrument_key is None:
            result.empty_groups.append(group.key)


def _describe(group: DownloadGroup, rows: list[ManifestRow]) -> str:
    ok = [r for r in rows if r.status == STATUS_OK]
    if any(r.status == STATUS_FAILED for r in rows):
        return f"FAILED {group.data_type} {group.dataset_symbol}: {rows[0].error}"
    if not ok:
        return f"empty {group.data_type} {group.dataset_symbol}"
    return f"ok {group.data_type} {group.dataset_symbol}: {len(ok)} files, {sum(r.rows for r in ok):,} rows"
