"""Every environment variable the project reads, in one typed, validated place.

Nothing else in the code base calls ``os.environ`` for configuration: modules receive a
``Settings`` (or the value they need from it). The defaults give the embedded setup — a local
``./data`` folder, a DuckDB warehouse under it, and no Tardis key — so a fresh clone runs with no
variables set. The README's settings table is generated from ``SETTINGS_DOC`` below.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import date
from pathlib import Path
from typing import Any

from market_data_assets.errors import MarketDataError
from market_data_assets.storage.layout import is_exchange_id

DEFAULT_EXCHANGES = ("binance", "binance-futures", "deribit", "bitmex", "coinbase")
TARDIS_API_URL_DEFAULT = "https://api.tardis.dev/v1"
TARDIS_DATASETS_URL_DEFAULT = "https://datasets.tardis.dev/v1"
DUCKDB_MEMORY_LIMIT_DEFAULT = "384MB"
DUCKDB_THREADS_DEFAULT = 2
DUCKDB_BATCH_FILES_DEFAULT = 500
_DUCKDB_MEMORY = re.compile(r"^(\d+(?:\.\d+)?)\s*([KMGT]i?B)$", re.IGNORECASE)
TARDIS_MACHINE_WS_URL_DEFAULT = "ws://127.0.0.1:8001"
"""tardis-machine's WebSocket port is its HTTP port (8000) + 1."""


class SettingsError(MarketDataError, ValueError):
    """A configuration value is invalid; the message names the variable and the value."""


class Secret:
    """A string that never shows itself in ``repr``, ``str``, logs or exception text."""

    __slots__ = ("_value",)

    def __init__(self, value: str | None) -> None:
        self._value = value or None

    def reveal(self) -> str | None:
        return self._value

    def __bool__(self) -> bool:
        return self._value is not None

    def __repr__(self) -> str:
        return "Secret(***)" if self._value else "Secret(None)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


# name -> (default, meaning), as the README's settings table shows them (Markdown): the table is
# generated from here by ``settings_table()``, and a test keeps the README equal to it.
SETTINGS_DOC: dict[str, tuple[str, str]] = {
    "MARKET_DATA_ROOT": (
        "`./data`",
        "Storage root: a folder or `gs://bucket/prefix`. The only switch between local and GCS.",
    ),
    "MARKET_DATA_EXCHANGES": (
        f"`{','.join(DEFAULT_EXCHANGES)}`",
        "Comma-separated Tardis exchange ids: the exchange partitions.",
    ),
    "MARKET_DATA_START_DATE": (
        "`2024-01-01`",
        "First day of the date partitions (YYYY-MM-DD).",
    ),
    "MARKET_DATA_END_DATE": (
        "today (UTC)",
        "Optional last day offered by the date partitions (YYYY-MM-DD).",
    ),
    "MARKET_DATA_WAREHOUSE": (
        "`duckdb`",
        "`duckdb` (file `<root>/warehouse.duckdb`), `duckdb:///path` or `bigquery://PROJECT/DATASET`. A `gs://` root works with `duckdb:///path` (the lake is read through the store) or BigQuery.",
    ),
    "MARKET_DATA_DUCKDB_MEMORY_LIMIT": (
        "`384MB`",
        "DuckDB warehouse: `memory_limit` of its connections (`KB`/`MB`/`GB`/`TB` or `KiB`/`MiB`/`GiB`/`TiB`, at least 32MB); a larger slice spills to `<file>.tmp`.",
    ),
    "MARKET_DATA_DUCKDB_THREADS": (
        "`2`",
        "DuckDB warehouse: `threads` of its connections.",
    ),
    "MARKET_DATA_DUCKDB_BATCH_FILES": (
        "`500`",
        "DuckDB warehouse: most lake files staged by one `INSERT` (a slice is staged in batches).",
    ),
    "MARKET_DATA_TARGETS_FILE": (
        "bundled `download_targets.yaml`",
        "Which instruments and data types to download, per exchange.",
    ),
    "MARKET_DATA_CONCURRENCY": (
        "`16`",
        "Parallel downloads (HTTP connections) per run.",
    ),
    "MARKET_DATA_CONVERT_WORKERS": (
        "`2`",
        "CSV.gz → Parquet conversions running at once.",
    ),
    "MARKET_DATA_STAGING_MAX_AGE_HOURS": (
        "`24`",
        "Staging entries not owned by a live run on this host (other hosts' folders, loose temp files) are removed once this old; folders of dead local runs go at once. See `market-data clean-staging`.",
    ),
    "MARKET_DATA_BACKFILL_DAYS_PER_RUN": (
        "`7`",
        "Days per run in a multi-run backfill (one GCE VM per shard).",
    ),
    "MARKET_DATA_SENSOR_LOOKBACK_DAYS": (
        "`3`",
        "Days the `tardis_new_days` sensor requests on its first tick.",
    ),
    "MARKET_DATA_IO_CONCURRENCY": (
        "`32`",
        "Object reads/writes in flight per step (candle, book snapshot and raw tick files): sized to hide ~30 ms of GCS latency; a local folder writes a slice on at most one thread per core.",
    ),
    "MARKET_DATA_SPARSE_CANDLE_TYPES": (
        "`OPTION,COMBO`",
        "Instrument types whose candles are sparse (only buckets with ticks); the others get every bucket. docs/CANDLES.md.",
    ),
    "MARKET_DATA_CANDLE_CHUNK_ROWS": (
        "`2000000`",
        "Tick rows per vectorized candle pass (instruments are never split): bounds a step's memory.",
    ),
    "TARDIS_API_KEY": (
        "none",
        "Tardis key (secret: never logged, never in metadata or errors; a value with control, space or non-ASCII characters is refused). Without it only first-of-month days download, and instruments metadata (except BitMEX) is unavailable, so keys come from parsing symbol ids. A key Tardis refuses fails `instrument_definitions`.",
    ),
    "TARDIS_API_URL": (
        f"`{TARDIS_API_URL_DEFAULT}`",
        "Metadata API base; `http://127.0.0.1:PORT/v1` for the sandbox.",
    ),
    "TARDIS_DATASETS_URL": (
        f"`{TARDIS_DATASETS_URL_DEFAULT}`",
        "Datasets base; `http://127.0.0.1:PORT/v1` for the sandbox.",
    ),
    "TARDIS_REQUESTS_PER_MINUTE": (
        "`2400`",
        "Client-side request rate cap (Tardis allows about 3,000/min).",
    ),
    "TARDIS_MAX_RETRIES": (
        "`8`",
        "Retries for 429/5xx/network errors, exponential backoff with jitter.",
    ),
    "TARDIS_MACHINE_WS_URL": (
        f"`{TARDIS_MACHINE_WS_URL_DEFAULT}`",
        "tardis-machine's WebSocket base for `market-data live` (its HTTP port + 1; the sandbox prints its own).",
    ),
    "MARKET_DATA_LIVE_MAX_LAG_S": (
        "`300`",
        "The `live_freshness` sensor warns when an exchange's newest live candle is older than this (seconds).",
    ),
    "MARKET_DATA_LIVE_LATENESS_S": (
        "`2`",
        "Seconds of stream time a live bucket stays open after its end for late messages (docs/LIVE.md).",
    ),
}


def settings_table() -> str:
    """The README's settings table (Markdown), one row per variable of ``SETTINGS_DOC``."""
    lines = ["| variable | meaning | default |", "|---|---|---|"]
    lines += [f"| `{name}` | {meaning} | {default} |" for name, (default, meaning) in SETTINGS_DOC.items()]
    return "\n".join(lines) + "\n"


def _bundled_targets_file() -> Path:
    return Path(__file__).with_name("download_targets.yaml")


@dataclass(frozen=True)
class Settings:
    root: str = "./data"
    exchanges: tuple[str, ...] = DEFAULT_EXCHANGES
    start_date: date = date(2024, 1, 1)
    end_date: date | None = None
    warehouse: str = "duckdb"
    duckdb_memory_limit: str = DUCKDB_MEMORY_LIMIT_DEFAULT
    duckdb_threads: int = DUCKDB_THREADS_DEFAULT
    duckdb_batch_files: int = DUCKDB_BATCH_FILES_DEFAULT
    targets_file: Path = field(default_factory=_bundled_targets_file)
    concurrency: int = 16
    convert_workers: int = 2
    staging_max_age_hours: int = 24
    backfill_days_per_run: int = 7
    sensor_lookback_days: int = 3
    io_concurrency: int = 32
    sparse_candle_types: tuple[str, ...] = ("OPTION", "COMBO")
    candle_chunk_rows: int = 2_000_000
    tardis_api_key: Secret = field(default_factory=lambda: Secret(None))
    tardis_api_url: str = TARDIS_API_URL_DEFAULT
    tardis_datasets_url: str = TARDIS_DATASETS_URL_DEFAULT
    tardis_requests_per_minute: int = 2400
    tardis_max_retries: int = 8
    tardis_machine_ws_url: str = TARDIS_MACHINE_WS_URL_DEFAULT
    live_lateness_s: float = 2.0
    live_max_lag_s: float = 300.0

    @property
    def warehouse_kind(self) -> str:
        return "bigquery" if self.warehouse.startswith("bigquery://") else "duckdb"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read and validate every variable; raise ``SettingsError`` naming the bad one."""
        env = os.environ if env is None else env

        def get(name: str) -> str | None:
            value = env.get(name)
            return value.strip() if value is not None and value.strip() != "" else None

        root = get("MARKET_DATA_ROOT") or "./data"
        if root.startswith("gs://"):
            if not re.fullmatch(r"gs://[a-z0-9][a-z0-9._-]{1,220}(/.*)?", root):
                raise SettingsError(f"MARKET_DATA_ROOT={root!r} is not a valid gs://bucket[/prefix] URI")
        elif "://" in root:
            raise SettingsError(
                f"MARKET_DATA_ROOT={root!r}: only a folder path or gs://bucket/prefix is supported"
            )

        exchanges = DEFAULT_EXCHANGES
        raw = get("MARKET_DATA_EXCHANGES")
        if raw is not None:
            exchanges = tuple(dict.fromkeys(x.strip() for x in raw.split(",") if x.strip()))
            if not exchanges:
                raise SettingsError("MARKET_DATA_EXCHANGES is set but lists no exchange")
            for ex in exchanges:
                if not is_exchange_id(ex):
                    raise SettingsError(
                        f"MARKET_DATA_EXCHANGES: {ex!r} is not a Tardis exchange id (lowercase letters, digits, '-')"
                    )

        start = _parse_date("MARKET_DATA_START_DATE", get("MARKET_DATA_START_DATE")) or date(2024, 1, 1)
        end = _parse_date("MARKET_DATA_END_DATE", get("MARKET_DATA_END_DATE"))
        if end is not None and end < start:
            raise SettingsError(f"MARKET_DATA_END_DATE={end} is before MARKET_DATA_START_DATE={start}")

        warehouse = get("MARKET_DATA_WAREHOUSE") or "duckdb"
        if not (warehouse == "duckdb" or warehouse.startswith("duckdb:///") or _is_bigquery_uri(warehouse)):
            raise SettingsError(
                f"MARKET_DATA_WAREHOUSE={warehouse!r}: expected 'duckdb', 'duckdb:///path' or 'bigquery://PROJECT/DATASET'"
            )

        duckdb_memory_limit = _parse_memory(
            "MARKET_DATA_DUCKDB_MEMORY_LIMIT",
            get("MARKET_DATA_DUCKDB_MEMORY_LIMIT") or DUCKDB_MEMORY_LIMIT_DEFAULT,
        )

        targets = get("MARKET_DATA_TARGETS_FILE")
        targets_file = Path(targets) if targets else _bundled_targets_file()
        if targets and not targets_file.is_file():
            raise SettingsError(f"MARKET_DATA_TARGETS_FILE={targets!r} does not exist")

        defaults = {f.name: f.default for f in fields(cls)}
        numbers: dict[str, Any] = {  # each typed as its field (int or float), see _BOUNDED_NUMBERS
            name: _parse_bounded(variable, get(variable), defaults[name], lo, hi)
            for name, variable, lo, hi in _BOUNDED_NUMBERS
        }
        return cls(
            root=root,
            exchanges=exchanges,
            start_date=start,
            end_date=end,
            warehouse=warehouse,
            duckdb_memory_limit=duckdb_memory_limit,
            targets_file=targets_file,
            sparse_candle_types=_parse_instrument_types(
                "MARKET_DATA_SPARSE_CANDLE_TYPES", get("MARKET_DATA_SPARSE_CANDLE_TYPES")
            ),
            tardis_api_key=_parse_api_key("TARDIS_API_KEY", get("TARDIS_API_KEY")),
            tardis_api_url=_parse_url("TARDIS_API_URL", get("TARDIS_API_URL") or TARDIS_API_URL_DEFAULT),
            tardis_datasets_url=_parse_url(
                "TARDIS_DATASETS_URL", get("TARDIS_DATASETS_URL") or TARDIS_DATASETS_URL_DEFAULT
            ),
            tardis_machine_ws_url=_parse_ws_url(
                "TARDIS_MACHINE_WS_URL", get("TARDIS_MACHINE_WS_URL") or TARDIS_MACHINE_WS_URL_DEFAULT
            ),
            **numbers,
        )


def _parse_api_key(name: str, value: str | None) -> Secret:
    """A key goes into an HTTP header: only printable ASCII without spaces. The message names the
    variable and the position, never the value (it is a secret)."""
    for i, ch in enumerate(value or ""):
        if not "!" <= ch <= "~":
            raise SettingsError(
                f"{name} contains a control, space or non-ASCII character (U+{ord(ch):04X} at position "
                f"{i + 1}); copy the key again without line breaks (the value is not shown)"
            )
    return Secret(value)


def _is_bigquery_uri(value: str) -> bool:
    return re.fullmatch(r"bigquery://[a-z][a-z0-9-]{4,61}[a-z0-9]/[A-Za-z0-9_]{1,1024}", value) is not None


def _parse_date(name: str, value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise SettingsError(f"{name}={value!r} is not a date in YYYY-MM-DD form") from None


_BOUNDED_NUMBERS: tuple[tuple[str, str, float, float], ...] = (
    # (Settings field, variable, lowest, highest); the default is the field's own, written once.
    ("duckdb_threads", "MARKET_DATA_DUCKDB_THREADS", 1, 256),
    ("duckdb_batch_files", "MARKET_DATA_DUCKDB_BATCH_FILES", 1, 100_000),
    ("concurrency", "MARKET_DATA_CONCURRENCY", 1, 512),
    ("convert_workers", "MARKET_DATA_CONVERT_WORKERS", 1, 64),
    ("staging_max_age_hours", "MARKET_DATA_STAGING_MAX_AGE_HOURS", 0, 24 * 366),
    ("backfill_days_per_run", "MARKET_DATA_BACKFILL_DAYS_PER_RUN", 1, 366),
    ("sensor_lookback_days", "MARKET_DATA_SENSOR_LOOKBACK_DAYS", 1, 3660),
    ("io_concurrency", "MARKET_DATA_IO_CONCURRENCY", 1, 256),
    ("candle_chunk_rows", "MARKET_DATA_CANDLE_CHUNK_ROWS", 1_000, 10**9),
    ("tardis_requests_per_minute", "TARDIS_REQUESTS_PER_MINUTE", 1, 1_000_000),
    ("tardis_max_retries", "TARDIS_MAX_RETRIES", 0, 100),
    ("live_lateness_s", "MARKET_DATA_LIVE_LATENESS_S", 0.0, 3600.0),
    ("live_max_lag_s", "MARKET_DATA_LIVE_MAX_LAG_S", 1.0, 86_400.0 * 30),
)
"""The bounded numeric settings: an int field is parsed as an int, a float field as a float."""


def _parse_bounded(name: str, value: str | None, default: object, lo: float, hi: float) -> int | float:
    if isinstance(default, float):
        return _parse_float(name, value, default, lo, hi)
    if not isinstance(default, int):
        raise TypeError(f"{name}: a bounded setting needs an int or float default, not {default!r}")
    return _parse_int(name, value, default, int(lo), int(hi))


def _parse_int(name: str, value: str | None, default: int, lo: int, hi: int) -> int:
    if value is None:
        return default
    try:
        n = int(value)
    except ValueError:
        raise SettingsError(f"{name}={value!r} is not an integer") from None
    if not lo <= n <= hi:
        raise SettingsError(f"{name}={n} is outside [{lo}, {hi}]")
    return n


def _parse_instrument_types(name: str, value: str | None) -> tuple[str, ...]:
    """``OPTION,COMBO`` -> a tuple of instrument types ('none' or '-' for an empty list)."""
    from market_data_assets.candles.density import DEFAULT_SPARSE_TYPES, INSTRUMENT_TYPES

    if value is None:
        return DEFAULT_SPARSE_TYPES
    if value.lower() in ("none", "-"):
        return ()
    types = tuple(dict.fromkeys(t.strip().upper() for t in value.split(",") if t.strip()))
    unknown = [t for t in types if t not in INSTRUMENT_TYPES]
    if unknown:
        raise SettingsError(
            f"{name}={value!r}: unknown instrument types {unknown}; known: {', '.join(INSTRUMENT_TYPES)}"
        )
    return types


def _parse_memory(name: str, value: str) -> str:
    """A DuckDB memory size (``512MB``, ``1.5GiB``), at least 32 MB: DuckDB needs some to run at all."""
    match = _DUCKDB_MEMORY.match(value)
    if not match:
        raise SettingsError(
            f"{name}={value!r} is not a size like 512MB or 1GiB (KB, MB, GB, TB, KiB, MiB, GiB, TiB)"
        )
    number, unit = float(match.group(1)), match.group(2).upper()
    scale = (1024 if "I" in unit else 1000) ** ("KMGT".index(unit[0]) + 1)
    if number * scale < 32 * 10**6:
        raise SettingsError(f"{name}={value!r} is below 32MB")
    return f"{match.group(1)}{unit[0]}{'iB' if 'I' in unit else 'B'}"


def _parse_url(name: str, value: str) -> str:
    if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", value):
        raise SettingsError(f"{name}={value!r} is not an http(s) URL")
    return value.rstrip("/")


def _parse_ws_url(name: str, value: str) -> str:
    if not re.match(r"^wss?://[^\s/]+(/\S*)?$", value):
        raise SettingsError(f"{name}={value!r} is not a ws(s):// URL")
    return value.rstrip("/")


def _parse_float(name: str, value: str | None, default: float, lo: float, hi: float) -> float:
    if value is None:
        return default
    try:
        x = float(value)
    except ValueError:
        raise SettingsError(f"{name}={value!r} is not a number") from None
    if not lo <= x <= hi:
        raise SettingsError(f"{name}={x} is outside [{lo}, {hi}]")
    return x


def get_settings() -> Settings:
    """Settings of the current process environment (read each call: tests change the env)."""
    return Settings.from_env()
