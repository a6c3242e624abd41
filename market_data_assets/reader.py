"""The library API downstream services import: instruments, ticks, candles, book snapshots, features, gaps.

Everything is a lazy polars scan over exactly the files a request needs: paths are computed
from the layout (day × data type/timeframe × instrument key), one listing per day tells which
exist, and the time-range filter is pushed into the Parquet scan (row-group statistics), so a
one-hour read of one instrument touches one or two files, not the lake. Works on a local root
or ``gs://bucket/prefix`` (``MARKET_DATA_ROOT`` by default).

    from market_data_assets import reader
    btc = reader.scan_candles("1m", ["DERIBIT:PERP:BTC-USD"], "2024-03-01", "2024-03-02").collect()
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, date, datetime, timedelta

import polars as pl
import pyarrow as pa

from market_data_assets.candles.densify import densify
from market_data_assets.candles.schema import CANDLE_SCHEMA, book_snapshot_schema
from market_data_assets.days import EXCHANGE_TIMESTAMP_SLACK, day_start, parse_tardis_time
from market_data_assets.features.registry import FEATURE_SCHEMA, FEATURE_TIMEFRAMES
from market_data_assets.polars_arrow import polars_schema, to_polars
from market_data_assets.quality.missing import report_for_range
from market_data_assets.settings import Settings
from market_data_assets.storage import layout, open_store
from market_data_assets.storage.base import ObjectStore
from market_data_assets.tardis.formats import get_spec
from market_data_assets.warehouse.factory import bigquery_target
from market_data_assets.warehouse.schema import BATCH_SOURCE, LIVE_SOURCE, SOURCE_COLUMN

TimeLike = str | date | datetime


def _store(root: str | None) -> ObjectStore:
    return open_store(root or Settings.from_env().root)


def _as_datetime(value: TimeLike) -> datetime:
    """A date or ISO string becomes midnight UTC; naive datetimes are taken as UTC."""
    if isinstance(value, str):
        value = parse_tardis_time(value) if "T" in value or " " in value else date.fromisoformat(value)
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return day_start(value)


def _days(start: datetime, end: datetime, slack: timedelta = timedelta(0)) -> list[date]:
    """Days whose file can hold a timestamp in ``[start, end)``: a file of day F holds [F - slack, F+1 + slack)."""
    first, last = (start - slack).date(), (end + slack - timedelta(microseconds=1)).date()
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def _scan_options(store: ObjectStore) -> dict:
    if store.root.startswith("gs://"):
        from market_data_assets.storage.readers import storage_options_for

        return {"storage_options": storage_options_for(store.root)}
    return {}


def _existing(store: ObjectStore, folders_and_paths: dict[str, list[str]]) -> list[str]:
    """The wanted paths that exist: one listing per folder, never one request per file."""
    found: list[str] = []
    for folder, paths in folders_and_paths.items():
        present = {o.path for o in store.list(folder + "/")}
        found.extend(p for p in paths if p in present)
    return found


def _scan_keyed(
    store: ObjectStore,
    folder_of: Callable[[date], str],
    path_of: Callable[[date, str], str],
    keys: Sequence[str],
    start: TimeLike,
    end: TimeLike,
    empty_schema: pa.Schema,
    slack: timedelta = timedelta(0),
    whole_days: Callable[[pl.DataFrame], pl.DataFrame] | None = None,
) -> pl.LazyFrame:
    """Scan the existing files of ``keys`` for the days that can hold ``[start, end)``, time-filtered.

    ``whole_days``, if given, transforms the files' whole days before the time filter (it reads them).
    """
    start_dt, end_dt = _as_datetime(start), _as_datetime(end)
    wanted = {folder_of(day): [path_of(day, k) for k in keys] for day in _days(start_dt, end_dt, slack)}
    paths = _existing(store, wanted)
    if not paths:
        return pl.LazyFrame(schema=polars_schema(empty_schema))
    scan = pl.scan_parquet([store.uri(p) for p in paths], **_scan_options(store))
    if whole_days is not None:
        scan = whole_days(scan.collect()).lazy()
    return scan.filter((pl.col("timestamp") >= start_dt) & (pl.col("timestamp") < end_dt))


def _check_keys(keys: Iterable[str] | str) -> list[str]:
    keys = [keys] if isinstance(keys, str) else list(keys)
    return [layout.check_instrument_key(k) for k in keys]


def instruments(
    day: TimeLike,
    exchange: str | Sequence[str] | None = None,
    *,
    instrument_type: str | Sequence[str] | None = None,
    base: str | Sequence[str] | None = None,
    quote: str | Sequence[str] | None = None,
    root: str | None = None,
) -> pl.DataFrame:
    """Instrument definitions listed on ``day`` (every stored venue unless ``exchange`` is given).

    ``instrument_type`` uses the key's TYPE (SPOT_PAIR, PERP, FUTURE, OPTION, COMBO).
    """
    store = _store(root)
    d = _as_datetime(day).date()
    if exchange is None:
        prefix = f"{layout.INSTRUMENTS_AREA}/by_date/{layout.day_dir(d)}/"
        paths = [o.path for o in store.list(prefix) if o.path.endswith("/instruments.parquet")]
    else:
        exchanges = [exchange] if isinstance(exchange, str) else list(exchange)
        paths = [layout.instruments_path(d, ex) for ex in exchanges]
        paths = [p for p in paths if store.exists(p)]
    if not paths:
        return pl.DataFrame()
    df = pl.scan_parquet([store.uri(p) for p in paths], **_scan_options(store))
    for column, wanted in (("instrument_type", instrument_type), ("base", base), ("quote", quote)):
        if wanted is not None:
            values = [wanted] if isinstance(wanted, str) else list(wanted)
            df = df.filter(pl.col(column).is_in(values))
    return df.collect()


def scan_ticks(
    data_type: str, keys: Iterable[str] | str, start: TimeLike, end: TimeLike, *, root: str | None = None
) -> pl.LazyFrame:
    """Raw ticks of ``keys`` with exchange ``timestamp`` in ``[start, end)``.

    Tardis files are split by local_timestamp, so a day's last ticks can sit in the next day's
    file: the scan includes every file whose day ± the converter's boundary slack overlaps the range.
    """
    return _scan_keyed(
        _store(root),
        lambda d: layout.raw_ticks_dir(d, data_type),
        lambda d, k: layout.raw_ticks_path(d, data_type, k),
        _check_keys(keys),
        start,
        end,
        get_spec(layout.check_data_type(data_type)).arrow_schema,
        slack=EXCHANGE_TIMESTAMP_SLACK,
    )


def scan_candles(
    timeframe: str,
    keys: Iterable[str] | str,
    start: TimeLike,
    end: TimeLike,
    *,
    dense: bool = False,
    include_live: bool = False,
    root: str | None = None,
) -> pl.LazyFrame:
    """Candles of ``keys`` at ``timeframe`` whose bucket start is in ``[start, end)``, as stored.

    ``include_live=True`` (15s and 1m): batch candles where the day's batch file exists, the live
    service's candles (``live_candles/…``) for the other instrument-days, with a ``source`` column
    (``batch`` | ``live``); ``dense`` applies to the batch part (live rows are as streamed).

    Options and combos are stored sparse (only buckets with ticks; docs/CANDLES.md). ``dense=True``
    puts every instrument-day on its full grid first, filling the omitted buckets exactly as a
    dense file would hold them (this reads the days' files eagerly).
    """
    layout.check_timeframe(timeframe)
    store = _store(root)
    checked = _check_keys(keys)
    batch = _scan_keyed(
        store,
        lambda d: layout.candles_dir(d, timeframe),
        lambda d, k: layout.candles_path(d, timeframe, k),
        checked,
        start,
        end,
        CANDLE_SCHEMA,
        whole_days=densify if dense else None,
    )
    if not include_live:
        return batch
    return _with_live(store, timeframe, checked, _as_datetime(start), _as_datetime(end), batch)


def _with_live(
    store: ObjectStore, timeframe: str, keys: list[str], start: datetime, end: datetime, batch: pl.LazyFrame
) -> pl.LazyFrame:
    """Batch rows + live rows of the instrument-days batch does not have, with ``source``."""
    days = _days(start, end)
    have_batch = _existing(
        store,
        {
            layout.candles_dir(d, timeframe): [layout.candles_path(d, timeframe, k) for k in keys]
            for d in days
        },
    )
    batch_days = pl.DataFrame(
        {
            "instrument_key": [layout.key_from_file_name(p) for p in have_batch],
            "_day": [date.fromisoformat(p.split("/day-", 1)[1][:10]) for p in have_batch],
        },
        schema={"instrument_key": pl.String, "_day": pl.Date},
    )
    out = batch.with_columns(pl.lit(BATCH_SOURCE, pl.String).alias(SOURCE_COLUMN))
    live_paths = [
        o.path
        for d in days
        for o in store.list(layout.live_candles_dir(d, timeframe) + "/")
        if o.path.endswith(".parquet")
    ]
    if not live_paths:
        return out
    live = (
        pl.scan_parquet([store.uri(p) for p in live_paths], **_scan_options(store))
        .filter(
            pl.col("instrument_key").is_in(keys)
            & (pl.col("timestamp") >= start)
            & (pl.col("timestamp") < end)
        )
        .unique(["instrument_key", "timestamp"], keep="first", maintain_order=True)
        .with_columns(pl.col("timestamp").dt.date().alias("_day"))
        .join(batch_days.lazy(), on=["instrument_key", "_day"], how="anti")
        .select([*CANDLE_SCHEMA.names])
        .with_columns(pl.lit(LIVE_SOURCE, pl.String).alias(SOURCE_COLUMN))
    )
    return pl.concat([out, live], how="vertical_relaxed").sort("instrument_key", "timestamp")


def scan_book_snapshots(
    timeframe: str,
    keys: Iterable[str] | str,
    start: TimeLike,
    end: TimeLike,
    *,
    depth: int = 5,
    root: str | None = None,
) -> pl.LazyFrame:
    """The book as of each bucket end (``depth`` levels where stored), buckets in ``[start, end)``."""
    layout.check_timeframe(timeframe)
    return _scan_keyed(
        _store(root),
        lambda d: layout.book_snapshots_dir(d, timeframe),
        lambda d, k: layout.book_snapshots_path(d, timeframe, k),
        _check_keys(keys),
        start,
        end,
        book_snapshot_schema(depth),
    )


def scan_features(
    timeframe: str,
    keys: Iterable[str] | str,
    start: TimeLike,
    end: TimeLike,
    columns: Sequence[str] | None = None,
    *,
    root: str | None = None,
) -> pl.LazyFrame:
    """MFT features (docs/FEATURES.md) of ``keys`` at ``timeframe`` for buckets starting in ``[start, end)``.

    ``columns`` projects (any of ``FEATURE_SCHEMA``'s names; the scan reads only those). Each row's
    ``available_at`` = timestamp + timeframe is when it is known (point in time).
    """
    if timeframe not in FEATURE_TIMEFRAMES:
        raise ValueError(f"no features at {timeframe!r}; feature timeframes: {', '.join(FEATURE_TIMEFRAMES)}")
    if columns is not None:
        unknown = [c for c in columns if c not in FEATURE_SCHEMA.names]
        if unknown:
            raise ValueError(f"unknown feature columns {unknown}; known: {', '.join(FEATURE_SCHEMA.names)}")
    scan = _scan_keyed(
        _store(root),
        lambda d: layout.features_dir(d, timeframe),
        lambda d, k: layout.features_path(d, timeframe, k),
        _check_keys(keys),
        start,
        end,
        FEATURE_SCHEMA,
    )
    return scan if columns is None else scan.select(list(columns))


def missing_data(
    start: TimeLike,
    end: TimeLike,
    exchanges: str | Sequence[str] | None = None,
    *,
    data_type: str | None = None,
    verify_rows: bool = False,
    root: str | None = None,
) -> pl.DataFrame:
    """The missing-data report over ``[start, end]`` (days, inclusive); see quality/missing.py."""
    settings = Settings.from_env()
    exchanges = [exchanges] if isinstance(exchanges, str) else list(exchanges or settings.exchanges)
    return report_for_range(
        _store(root),
        _as_datetime(start).date(),
        _as_datetime(end).date(),
        exchanges,
        data_type=data_type,
        verify_rows=verify_rows,
    )


def query_candles_bigquery(
    client,  # google.cloud.bigquery.Client
    timeframe: str,
    keys: Iterable[str] | str,
    start: TimeLike,
    end: TimeLike,
    *,
    warehouse: str | None = None,
) -> pl.DataFrame:
    """Candles from the BigQuery table ``candles_<timeframe>`` (partition-pruned by timestamp).

    The table is the one the ``bq_candles`` asset loads: project and dataset come from
    ``warehouse`` (``bigquery://PROJECT/DATASET``), by default ``MARKET_DATA_WAREHOUSE``.
    """
    from google.cloud import bigquery

    from market_data_assets.warehouse.bigquery_warehouse import emulator_host

    layout.check_timeframe(timeframe)
    project, dataset = bigquery_target(warehouse or Settings.from_env().warehouse)
    table = f"`{project}.{dataset}.candles_{timeframe}`"
    job = client.query(
        f"SELECT * FROM {table} WHERE timestamp >= @start AND timestamp < @end "
        "AND instrument_key IN UNNEST(@keys) ORDER BY instrument_key, timestamp",
        job_config=bigquery.QueryJobConfig(
            query_parameters=[
                bigquery.ScalarQueryParameter("start", "TIMESTAMP", _as_datetime(start)),
                bigquery.ScalarQueryParameter("end", "TIMESTAMP", _as_datetime(end)),
                bigquery.ArrayQueryParameter("keys", "STRING", _check_keys(keys)),
            ]
        ),
    )
    # The Storage Read API (faster for large results) exists only on real BigQuery.
    return to_polars(job.result().to_arrow(create_bqstorage_client=not emulator_host()))
