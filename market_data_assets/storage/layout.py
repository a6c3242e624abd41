"""The lake's path layout, as pure functions: the one place a storage path is spelled.

Every path is relative to the storage root (``MARKET_DATA_ROOT``), uses ``/`` and stays four
levels below the root (``<area>/by_date/day-D/<dim>-V/<file>``), as the seed layout asks. The
same relative path is a local file under the root folder or an object under ``gs://bucket/prefix``.

Every path component that comes from data (exchange ids, instrument keys, data types,
timeframes) is validated here, so no symbol can ever produce a path outside its folder.
"""

from __future__ import annotations

import re
from datetime import date
from typing import TYPE_CHECKING

from market_data_assets.candles.timeframes import TIMEFRAMES
from market_data_assets.errors import MarketDataError
from market_data_assets.tardis.formats import DATA_TYPES

if TYPE_CHECKING:
    import polars as pl

    from market_data_assets.storage.base import ObjectInfo, ObjectStore

__all__ = ["TIMEFRAMES"]  # the timeframe names come from the timeframe table; paths validate against them

INSTRUMENTS_AREA = "instrument_availability"
TARGETS_AREA = "download_targets"
RAW_TICKS_AREA = "raw_tick_data"
RAW_MANIFEST_AREA = "raw_tick_manifests"
CANDLES_AREA = "processed_candles"
BOOK_SNAPSHOTS_AREA = "processed_book_snapshots"
REPORTS_AREA = "missing_data_reports"
FEATURES_AREA = "processed_features"
LIVE_TICKS_AREA = "live_tick_data"
LIVE_CANDLES_AREA = "live_candles"
LIVE_GAPS_AREA = "live_gaps"
LIVE_RECONCILIATION_AREA = "live_reconciliation"
AREAS: tuple[str, ...] = (
    INSTRUMENTS_AREA,
    TARGETS_AREA,
    RAW_TICKS_AREA,
    RAW_MANIFEST_AREA,
    CANDLES_AREA,
    BOOK_SNAPSHOTS_AREA,
    REPORTS_AREA,
    FEATURES_AREA,
)
"""Every top-level folder the batch pipeline writes, in pipeline order."""
LIVE_AREAS: tuple[str, ...] = (LIVE_TICKS_AREA, LIVE_CANDLES_AREA, LIVE_GAPS_AREA)
"""The folders the live service (``market-data live``) writes."""
KEYED_AREAS: tuple[str, ...] = (CANDLES_AREA, BOOK_SNAPSHOTS_AREA, FEATURES_AREA)
"""Areas of one file per instrument under ``timeframe-TF`` folders, written through the IO manager."""

EXCHANGE_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
"""A Tardis exchange id; always applied with ``fullmatch`` (``$`` would let a trailing newline in)."""
KEY_FIELD_CHARS = "A-Z0-9._-"
"""The characters of a key field (VENUE, TYPE, SYMBOL): path-safe on every filesystem and in GCS."""
KEY_FIELD_PATTERN = rf"[{KEY_FIELD_CHARS}]*[A-Z0-9_-][{KEY_FIELD_CHARS}]*"
"""One field: those characters, not empty and not only dots (``..`` would be a path)."""
INSTRUMENT_KEY_PATTERN = rf"{KEY_FIELD_PATTERN}:{KEY_FIELD_PATTERN}:{KEY_FIELD_PATTERN}"
"""The canonical key ``VENUE:TYPE:SYMBOL``: the one definition (``check_instrument_key`` applies it
with ``fullmatch``; key building and the missing-data report apply ``INSTRUMENT_KEY_REGEX``)."""
INSTRUMENT_KEY_REGEX = rf"^{INSTRUMENT_KEY_PATTERN}$"
"""The same rule for polars' ``str.contains`` (Rust regex: ``$`` is the end of the text only)."""
_INSTRUMENT_KEY = re.compile(INSTRUMENT_KEY_PATTERN)

MAX_INSTRUMENT_KEY_LENGTH = 200
"""Longest canonical key. A key is a file name (``KEY.parquet``) and local writes go through a
temporary ``.KEY.parquet.tmp-<32 hex>`` beside it: 200 + 46 characters stays under the 255-byte
name limit of common filesystems (ext4, APFS, NTFS) with room to spare. Longer keys are refused
where keys are made (``instruments.keys.add_keys``) and wherever a key becomes a path."""


def is_exchange_id(value: object) -> bool:
    return isinstance(value, str) and EXCHANGE_ID.fullmatch(value) is not None


class LayoutError(MarketDataError, ValueError):
    """A value that cannot be part of a storage path; the message names it."""


def check_exchange(exchange: str) -> str:
    if not is_exchange_id(exchange):
        raise LayoutError(f"invalid exchange id {exchange!r}: expected lowercase letters, digits and '-'")
    return exchange


def check_instrument_key(key: str) -> str:
    """A canonical key ``VENUE:TYPE:SYMBOL`` whose fields only use ``[A-Z0-9._-]``."""
    if not isinstance(key, str) or _INSTRUMENT_KEY.fullmatch(key) is None:
        raise LayoutError(
            f"invalid instrument key {key!r:.300}: expected VENUE:TYPE:SYMBOL with fields in [A-Z0-9._-]"
        )
    if len(key) > MAX_INSTRUMENT_KEY_LENGTH:
        raise LayoutError(
            f"instrument key {key[:60]!r}... is {len(key)} characters long; the maximum is "
            f"{MAX_INSTRUMENT_KEY_LENGTH} (it must fit a file name with a temporary suffix)"
        )
    return key


def check_data_type(data_type: str) -> str:
    if data_type not in DATA_TYPES:
        raise LayoutError(f"unknown data type {data_type!r}; known: {', '.join(DATA_TYPES)}")
    return data_type


def check_timeframe(timeframe: str) -> str:
    if timeframe not in TIMEFRAMES:
        raise LayoutError(f"unknown timeframe {timeframe!r}; known: {', '.join(TIMEFRAMES)}")
    return timeframe


def day_dir(day: date) -> str:
    if not isinstance(day, date):
        raise LayoutError(f"expected a date, got {day!r}")
    return f"day-{day.isoformat()}"


def venue_of_key(key: str) -> str:
    """``BINANCE-FUTURES:PERP:BTC-USDT`` -> ``binance-futures`` (the Tardis exchange id)."""
    return check_instrument_key(key).split(":", 1)[0].lower()


def key_prefix_for_exchange(exchange: str) -> str:
    """File-name prefix of an exchange's keys; the colon keeps BINANCE apart from BINANCE-FUTURES."""
    return check_exchange(exchange).upper() + ":"


def exchange_files(store: ObjectStore, folder: str, exchange: str) -> list[ObjectInfo]:
    """The objects of ``exchange`` in one layout ``folder`` of per-instrument files (``KEY.parquet``):
    one listing, narrowed by the venue's key prefix, so a day folder of every exchange is never
    listed whole."""
    return store.list(f"{folder}/{key_prefix_for_exchange(exchange)}")


# --- per-asset paths -------------------------------------------------------------------------


def instruments_path(day: date, exchange: str) -> str:
    return f"{INSTRUMENTS_AREA}/by_date/{day_dir(day)}/venue-{check_exchange(exchange)}/instruments.parquet"


def targets_path(day: date, exchange: str) -> str:
    return f"{TARGETS_AREA}/by_date/{day_dir(day)}/venue-{check_exchange(exchange)}/targets.parquet"


def raw_ticks_dir(day: date, data_type: str) -> str:
    return f"{RAW_TICKS_AREA}/by_date/{day_dir(day)}/data_type-{check_data_type(data_type)}"


def raw_ticks_path(day: date, data_type: str, key: str) -> str:
    return f"{raw_ticks_dir(day, data_type)}/{check_instrument_key(key)}.parquet"


def raw_ticks_path_expr(day: date, data_type: str = "data_type", key: str = "instrument_key") -> pl.Expr:
    """``raw_ticks_path`` vectorized over a frame's ``data_type`` and ``instrument_key`` columns (for a
    year of targets at once). It does not validate: the caller checks the columns first
    (``INSTRUMENT_KEY_REGEX``, data types from the specs)."""
    import polars as pl

    return pl.concat_str(
        [
            pl.lit(f"{RAW_TICKS_AREA}/by_date/{day_dir(day)}/data_type-"),
            pl.col(data_type),
            pl.lit("/"),
            pl.col(key),
            pl.lit(".parquet"),
        ]
    )


def raw_manifest_path(day: date, exchange: str) -> str:
    """Per-partition manifest of the raw tick files (rows, bytes, hash, source size, ...)."""
    return f"{RAW_MANIFEST_AREA}/by_date/{day_dir(day)}/venue-{check_exchange(exchange)}/manifest.parquet"


def candles_dir(day: date, timeframe: str) -> str:
    return timeframe_dir(CANDLES_AREA, day, timeframe)


def candles_path(day: date, timeframe: str, key: str) -> str:
    return f"{candles_dir(day, timeframe)}/{check_instrument_key(key)}.parquet"


def book_snapshots_dir(day: date, timeframe: str) -> str:
    return timeframe_dir(BOOK_SNAPSHOTS_AREA, day, timeframe)


def book_snapshots_path(day: date, timeframe: str, key: str) -> str:
    return f"{book_snapshots_dir(day, timeframe)}/{check_instrument_key(key)}.parquet"


def features_dir(day: date, timeframe: str) -> str:
    return timeframe_dir(FEATURES_AREA, day, timeframe)


def features_path(day: date, timeframe: str, key: str) -> str:
    return f"{features_dir(day, timeframe)}/{check_instrument_key(key)}.parquet"


def timeframe_dir(area: str, day: date, timeframe: str) -> str:
    """The folder of one timeframe of a per-instrument area (candles, book snapshots, ...)."""
    if area not in KEYED_AREAS:
        raise LayoutError(f"{area!r} is not a per-instrument area; known: {', '.join(KEYED_AREAS)}")
    return f"{area}/by_date/{day_dir(day)}/timeframe-{check_timeframe(timeframe)}"


def slice_marker_path(area: str, day: date, timeframe: str, exchange: str) -> str:
    """The marker written LAST when an exchange's slice of a timeframe folder is complete.

    It sits beside the instrument files (``_slice-EXCHANGE.json``: no key can start with ``_``
    and it is not Parquet), records what the slice holds, and tells "materialized with no
    instrument" apart from "never materialized".
    """
    return f"{timeframe_dir(area, day, timeframe)}/_slice-{check_exchange(exchange)}.json"


def report_path(day: date, exchange: str) -> str:
    return f"{REPORTS_AREA}/by_date/{day_dir(day)}/venue-{check_exchange(exchange)}/report.parquet"


def key_from_file_name(name: str) -> str:
    """``.../DERIBIT:PERP:BTC-USD.parquet`` -> ``DERIBIT:PERP:BTC-USD``."""
    base = name.rsplit("/", 1)[-1]
    if not base.endswith(".parquet"):
        raise LayoutError(f"not a Parquet file name: {name!r}")
    return check_instrument_key(base[: -len(".parquet")])


# --- the live service's areas (market-data live) ----------------------------------------------
# Append-only micro-batches: each file is named by the exchange, the first timestamp it holds
# and the writer's id, so two writers (a restart) never overwrite each other.


def _part_name(exchange: str, first_us: int, writer: str) -> str:
    if not re.match(r"^[a-z0-9]{1,32}$", writer):
        raise LayoutError(f"writer id {writer!r} must be 1-32 lowercase letters/digits")
    return f"{check_exchange(exchange)}_{int(first_us):017d}_{writer}.parquet"


def live_ticks_dir(day: date, exchange: str) -> str:
    return f"{LIVE_TICKS_AREA}/by_date/{day_dir(day)}/venue-{check_exchange(exchange)}"


def live_ticks_path(day: date, exchange: str, first_local_us: int, writer: str) -> str:
    """One bronze micro-batch of raw normalized messages (day of their local timestamp)."""
    return f"{live_ticks_dir(day, exchange)}/{_part_name(exchange, first_local_us, writer)}"


def live_candles_dir(day: date, timeframe: str) -> str:
    return f"{LIVE_CANDLES_AREA}/by_date/{day_dir(day)}/timeframe-{check_timeframe(timeframe)}"


def live_candles_path(day: date, timeframe: str, exchange: str, first_bucket_us: int, writer: str) -> str:
    """One micro-batch of closed live candles of ``exchange`` (all its instruments)."""
    return f"{live_candles_dir(day, timeframe)}/{_part_name(exchange, first_bucket_us, writer)}"


def live_gaps_dir(day: date, exchange: str) -> str:
    return f"{LIVE_GAPS_AREA}/by_date/{day_dir(day)}/venue-{check_exchange(exchange)}"


def live_gaps_path(day: date, exchange: str, from_us: int, writer: str) -> str:
    """One recorded gap of the live stream (day of its start)."""
    return f"{live_gaps_dir(day, exchange)}/{_part_name(exchange, from_us, writer)}"


def live_reconciliation_path(day: date, exchange: str) -> str:
    """The ``live_reconciliation`` asset's report (live vs batch 15s candles of the partition)."""
    return (
        f"{LIVE_RECONCILIATION_AREA}/by_date/{day_dir(day)}/venue-{check_exchange(exchange)}/report.parquet"
    )


def live_checkpoint_path(exchange: str) -> str:
    """Where the live service of ``exchange`` records how far its written candles reach (a restart
    after a crash starts its ``startup`` gap there)."""
    return f"{LIVE_CANDLES_AREA}/checkpoints/venue-{check_exchange(exchange)}/checkpoint.json"
