"""Every environment variable the project reads, in one typed, validated place.

Nothing else in the code base calls ``os.environ`` for configuration: modules receive a
``Settings`` (or the value they need from it). The defaults give the embedded setup — a local
``./data`` folder, a DuckDB warehouse under it, and no Tardis key — so a fresh clone runs with no
variables set.

Each setting is one row of ``SETTING_SPECS``: its variable, its ``Settings`` field, its default,
the function that parses and validates a set value, and its meaning. The dataclass defaults,
``Settings.from_env`` and the README's settings table (``settings_table()``, which a test keeps
equal to the README) all come from that row, so a default is written once and cannot drift
between the code and the docs.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Generic, TypeVar

from market_data_assets.errors import MarketDataError
from market_data_assets.storage.layout import is_exchange_id

T = TypeVar("T")
N = TypeVar("N", int, float)

_DUCKDB_MEMORY = re.compile(r"^(\d+(?:\.\d+)?)\s*([KMGT]i?B)$", re.IGNORECASE)


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


# --- parsers: (variable, stripped non-blank value) -> typed value, or SettingsError naming both --


def _parse_root(name: str, value: str) -> str:
    if value.startswith("gs://"):
        if not re.fullmatch(r"gs://[a-z0-9][a-z0-9._-]{1,220}(/.*)?", value):
            raise SettingsError(f"{name}={value!r} is not a valid gs://bucket[/prefix] URI")
    elif "://" in value:
        raise SettingsError(f"{name}={value!r}: only a folder path or gs://bucket/prefix is supported")
    return value


def _parse_exchanges(name: str, value: str) -> tuple[str, ...]:
    exchanges = tuple(dict.fromkeys(x.strip() for x in value.split(",") if x.strip()))
    if not exchanges:
        raise SettingsError(f"{name} is set but lists no exchange")
    for ex in exchanges:
        if not is_exchange_id(ex):
            raise SettingsError(
                f"{name}: {ex!r} is not a Tardis exchange id (lowercase letters, digits, '-')"
            )
    return exchanges


def _parse_date(name: str, value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise SettingsError(f"{name}={value!r} is not a date in YYYY-MM-DD form") from None


def _is_bigquery_uri(value: str) -> bool:
    return re.fullmatch(r"bigquery://[a-z][a-z0-9-]{4,61}[a-z0-9]/[A-Za-z0-9_]{1,1024}", value) is not None


def _parse_warehouse(name: str, value: str) -> str:
    if not (value == "duckdb" or value.startswith("duckdb:///") or _is_bigquery_uri(value)):
        raise SettingsError(
            f"{name}={value!r}: expected 'duckdb', 'duckdb:///path' or 'bigquery://PROJECT/DATASET'"
        )
    return value


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


def _bundled_targets_file() -> Path:
    return Path(__file__).with_name("download_targets.yaml")


def _parse_targets_file(name: str, value: str) -> Path:
    """A set file must exist now: a typo should fail at start-up, not in the first run."""
    path = Path(value)
    if not path.is_file():
        raise SettingsError(f"{name}={value!r} does not exist")
    return path


def _parse_instrument_types(name: str, value: str) -> tuple[str, ...]:
    """``OPTION,COMBO`` -> a tuple of instrument types ('none' or '-' for an empty list).

    ``candles.density`` is imported here, not at the top: it pulls in the instruments package,
    whose modules import this one."""
    from market_data_assets.candles.density import INSTRUMENT_TYPES

    if value.lower() in ("none", "-"):
        return ()
    types = tuple(dict.fromkeys(t.strip().upper() for t in value.split(",") if t.strip()))
    unknown = [t for t in types if t not in INSTRUMENT_TYPES]
    if unknown:
        raise SettingsError(
            f"{name}={value!r}: unknown instrument types {unknown}; known: {', '.join(INSTRUMENT_TYPES)}"
        )
    return types


def _parse_api_key(name: str, value: str) -> Secret:
    """A key goes into an HTTP header: only printable ASCII without spaces. The message names the
    variable and the position, never the value (it is a secret)."""
    for i, ch in enumerate(value):
        if not "!" <= ch <= "~":
            raise SettingsError(
                f"{name} contains a control, space or non-ASCII character (U+{ord(ch):04X} at position "
                f"{i + 1}); copy the key again without line breaks (the value is not shown)"
            )
    return Secret(value)


def _parse_url(name: str, value: str) -> str:
    if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", value):
        raise SettingsError(f"{name}={value!r} is not an http(s) URL")
    return value.rstrip("/")


def _parse_ws_url(name: str, value: str) -> str:
    if not re.match(r"^wss?://[^\s/]+(/\S*)?$", value):
        raise SettingsError(f"{name}={value!r} is not a ws(s):// URL")
    return value.rstrip("/")


@dataclass(frozen=True)
class Bounded(Generic[N]):
    """Parses a ``kind`` (int or float) in ``[lo, hi]``: the bounds live with the parser, so each
    numeric row of the table says its range where it says its default."""

    kind: type[N]
    lo: N
    hi: N

    def __call__(self, name: str, value: str) -> N:
        try:
            x = self.kind(value)
        except ValueError:
            raise SettingsError(
                f"{name}={value!r} is not {'an integer' if self.kind is int else 'a number'}"
            ) from None
        if not self.lo <= x <= self.hi:
            raise SettingsError(f"{name}={x} is outside [{self.lo}, {self.hi}]")
        return x


# --- the table --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SettingSpec(Generic[T]):
    """One setting: everything the dataclass, ``from_env`` and the README's table need.

    ``default`` is the value used when the variable is unset or blank, or a zero-argument factory
    for a default that cannot be a constant (none of the plain defaults is callable). It is not
    parsed: it is already the typed value. ``shown_default`` is the README's default cell when the
    default is not a plain value; otherwise the cell is the value in backticks.
    """

    field: str
    variable: str
    default: T | Callable[[], T]
    parse: Callable[[str, str], T]
    meaning: str
    shown_default: str | None = None

    def __post_init__(self) -> None:
        self.shown()  # a default the README cannot show needs a shown_default: fail at import

    def default_value(self) -> T:
        default = self.default
        return default() if callable(default) else default  # pyright: ignore[reportReturnType]

    def shown(self) -> str:
        """The README's default cell (Markdown)."""
        return self.shown_default if self.shown_default is not None else _markdown_value(self.default)


def _markdown_value(value: object) -> str:
    """A plain default as the README shows it: ``16``, ``300`` (floats as ``:g``), ``2024-01-01``,
    tuples comma-joined like the variable takes them."""
    if isinstance(value, float):
        text = f"{value:g}"
    elif isinstance(value, date):
        text = value.isoformat()
    elif isinstance(value, tuple):
        text = ",".join(str(item) for item in value)
    elif isinstance(value, (str, int)) and not isinstance(value, bool):
        text = str(value)
    else:
        raise TypeError(f"default {value!r} has no plain Markdown form: give its SettingSpec a shown_default")
    return f"`{text}`"


SETTING_SPECS: tuple[SettingSpec[Any], ...] = (
    SettingSpec(
        variable="MARKET_DATA_ROOT",
        field="root",
        default="./data",
        parse=_parse_root,
        meaning="Storage root: a folder or `gs://bucket/prefix`. The only switch between local and GCS.",
    ),
    SettingSpec(
        variable="MARKET_DATA_EXCHANGES",
        field="exchanges",
        default=("binance", "binance-futures", "deribit", "bitmex", "coinbase"),
        parse=_parse_exchanges,
        meaning="Comma-separated Tardis exchange ids: the exchange partitions.",
    ),
    SettingSpec(
        variable="MARKET_DATA_START_DATE",
        field="start_date",
        default=date(2024, 1, 1),
        parse=_parse_date,
        meaning="First day of the date partitions (YYYY-MM-DD).",
    ),
    SettingSpec[date | None](
        variable="MARKET_DATA_END_DATE",
        field="end_date",
        default=None,
        shown_default="today (UTC)",
        parse=_parse_date,
        meaning="Optional last day offered by the date partitions (YYYY-MM-DD).",
    ),
    SettingSpec(
        variable="MARKET_DATA_WAREHOUSE",
        field="warehouse",
        default="duckdb",
        parse=_parse_warehouse,
        meaning="`duckdb` (file `<root>/warehouse.duckdb`), `duckdb:///path` or `bigquery://PROJECT/DATASET`. A `gs://` root works with `duckdb:///path` (the lake is read through the store) or BigQuery.",
    ),
    SettingSpec(
        variable="MARKET_DATA_DUCKDB_MEMORY_LIMIT",
        field="duckdb_memory_limit",
        default="384MB",
        parse=_parse_memory,
        meaning="DuckDB warehouse: `memory_limit` of its connections (`KB`/`MB`/`GB`/`TB` or `KiB`/`MiB`/`GiB`/`TiB`, at least 32MB); a larger slice spills to `<file>.tmp`.",
    ),
    SettingSpec(
        variable="MARKET_DATA_DUCKDB_THREADS",
        field="duckdb_threads",
        default=2,
        parse=Bounded(int, 1, 256),
        meaning="DuckDB warehouse: `threads` of its connections.",
    ),
    SettingSpec(
        variable="MARKET_DATA_DUCKDB_BATCH_FILES",
        field="duckdb_batch_files",
        default=500,
        parse=Bounded(int, 1, 100_000),
        meaning="DuckDB warehouse: most lake files staged by one `INSERT` (a slice is staged in batches).",
    ),
    SettingSpec(
        variable="MARKET_DATA_TARGETS_FILE",
        field="targets_file",
        default=_bundled_targets_file,
        shown_default="bundled `download_targets.yaml`",
        parse=_parse_targets_file,
        meaning="Which instruments and data types to download, per exchange.",
    ),
    SettingSpec(
        variable="MARKET_DATA_CONCURRENCY",
        field="concurrency",
        default=16,
        parse=Bounded(int, 1, 512),
        meaning="Parallel downloads (HTTP connections) per run.",
    ),
    SettingSpec(
        variable="MARKET_DATA_CONVERT_WORKERS",
        field="convert_workers",
        default=2,
        parse=Bounded(int, 1, 64),
        meaning="CSV.gz → Parquet conversions running at once.",
    ),
    SettingSpec(
        variable="MARKET_DATA_STAGING_MAX_AGE_HOURS",
        field="staging_max_age_hours",
        default=24,
        parse=Bounded(int, 0, 24 * 366),
        meaning="Staging entries not owned by a live run on this host (other hosts' folders, loose temp files) are removed once this old; folders of dead local runs go at once. See `market-data clean-staging`.",
    ),
    SettingSpec(
        variable="MARKET_DATA_BACKFILL_DAYS_PER_RUN",
        field="backfill_days_per_run",
        default=7,
        parse=Bounded(int, 1, 366),
        meaning="Days per run in a multi-run backfill (one GCE VM per shard).",
    ),
    SettingSpec(
        variable="MARKET_DATA_SENSOR_LOOKBACK_DAYS",
        field="sensor_lookback_days",
        default=3,
        parse=Bounded(int, 1, 3660),
        meaning="Days the `tardis_new_days` sensor requests on its first tick.",
    ),
    SettingSpec(
        variable="MARKET_DATA_IO_CONCURRENCY",
        field="io_concurrency",
        default=32,
        parse=Bounded(int, 1, 256),
        meaning="Object reads/writes in flight per step (candle, book snapshot and raw tick files): sized to hide ~30 ms of GCS latency; a local folder writes a slice on at most one thread per core.",
    ),
    SettingSpec(
        variable="MARKET_DATA_SPARSE_CANDLE_TYPES",
        field="sparse_candle_types",
        default=("OPTION", "COMBO"),  # candles.density.DEFAULT_SPARSE_TYPES (a test keeps them equal)
        parse=_parse_instrument_types,
        meaning="Instrument types whose candles are sparse (only buckets with ticks); the others get every bucket. docs/CANDLES.md.",
    ),
    SettingSpec(
        variable="MARKET_DATA_CANDLE_CHUNK_ROWS",
        field="candle_chunk_rows",
        default=2_000_000,
        parse=Bounded(int, 1_000, 10**9),
        meaning="Tick rows per vectorized candle pass (instruments are never split): bounds a step's memory.",
    ),
    SettingSpec(
        variable="TARDIS_API_KEY",
        field="tardis_api_key",
        default=lambda: Secret(None),
        shown_default="none",
        parse=_parse_api_key,
        meaning="Tardis key (secret: never logged, never in metadata or errors; a value with control, space or non-ASCII characters is refused). Without it only first-of-month days download, and instruments metadata (except BitMEX) is unavailable, so keys come from parsing symbol ids. A key Tardis refuses fails `instrument_definitions`.",
    ),
    SettingSpec(
        variable="TARDIS_API_URL",
        field="tardis_api_url",
        default="https://api.tardis.dev/v1",
        parse=_parse_url,
        meaning="Metadata API base; `http://127.0.0.1:PORT/v1` for the sandbox.",
    ),
    SettingSpec(
        variable="TARDIS_DATASETS_URL",
        field="tardis_datasets_url",
        default="https://datasets.tardis.dev/v1",
        parse=_parse_url,
        meaning="Datasets base; `http://127.0.0.1:PORT/v1` for the sandbox.",
    ),
    SettingSpec(
        variable="TARDIS_REQUESTS_PER_MINUTE",
        field="tardis_requests_per_minute",
        default=2400,
        parse=Bounded(int, 1, 1_000_000),
        meaning="Client-side request rate cap (Tardis allows about 3,000/min).",
    ),
    SettingSpec(
        variable="TARDIS_MAX_RETRIES",
        field="tardis_max_retries",
        default=8,
        parse=Bounded(int, 0, 100),
        meaning="Retries for 429/5xx/network errors, exponential backoff with jitter.",
    ),
    SettingSpec(
        variable="TARDIS_MACHINE_WS_URL",
        field="tardis_machine_ws_url",
        default="ws://127.0.0.1:8001",
        parse=_parse_ws_url,
        meaning="tardis-machine's WebSocket base for `market-data live` (its HTTP port + 1; the sandbox prints its own).",
    ),
    SettingSpec(
        variable="MARKET_DATA_LIVE_MAX_LAG_S",
        field="live_max_lag_s",
        default=300.0,
        parse=Bounded(float, 1.0, 86_400.0 * 30),
        meaning="The `live_freshness` sensor warns when an exchange's newest live candle is older than this (seconds).",
    ),
    SettingSpec(
        variable="MARKET_DATA_LIVE_LATENESS_S",
        field="live_lateness_s",
        default=2.0,
        parse=Bounded(float, 0.0, 3600.0),
        meaning="Seconds of stream time a live bucket stays open after its end for late messages (docs/LIVE.md).",
    ),
)
"""Every setting, in the README's order (``settings_table()`` renders it row by row)."""

_SPEC_OF_FIELD: dict[str, SettingSpec[Any]] = {spec.field: spec for spec in SETTING_SPECS}


def _default(name: str) -> Any:
    """The dataclass field of ``Settings.<name>``, its default taken from the table (typed ``Any`` so
    the field keeps its own annotation)."""
    spec = _SPEC_OF_FIELD[name]
    if callable(spec.default):
        return field(default_factory=spec.default)
    return field(default=spec.default)


# Defaults other modules need before they have a Settings (read from the table, written there).
DEFAULT_EXCHANGES: tuple[str, ...] = _SPEC_OF_FIELD["exchanges"].default_value()
DUCKDB_MEMORY_LIMIT_DEFAULT: str = _SPEC_OF_FIELD["duckdb_memory_limit"].default_value()
DUCKDB_THREADS_DEFAULT: int = _SPEC_OF_FIELD["duckdb_threads"].default_value()
DUCKDB_BATCH_FILES_DEFAULT: int = _SPEC_OF_FIELD["duckdb_batch_files"].default_value()


def settings_table() -> str:
    """The README's settings table (Markdown), one row per ``SETTING_SPECS`` entry."""
    lines = ["| variable | meaning | default |", "|---|---|---|"]
    lines += [f"| `{spec.variable}` | {spec.meaning} | {spec.shown()} |" for spec in SETTING_SPECS]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Settings:
    """The validated settings. Fields are spelled out (so attribute access is type-checked);
    their defaults come from ``SETTING_SPECS``."""

    root: str = _default("root")
    exchanges: tuple[str, ...] = _default("exchanges")
    start_date: date = _default("start_date")
    end_date: date | None = _default("end_date")
    warehouse: str = _default("warehouse")
    duckdb_memory_limit: str = _default("duckdb_memory_limit")
    duckdb_threads: int = _default("duckdb_threads")
    duckdb_batch_files: int = _default("duckdb_batch_files")
    targets_file: Path = _default("targets_file")
    concurrency: int = _default("concurrency")
    convert_workers: int = _default("convert_workers")
    staging_max_age_hours: int = _default("staging_max_age_hours")
    backfill_days_per_run: int = _default("backfill_days_per_run")
    sensor_lookback_days: int = _default("sensor_lookback_days")
    io_concurrency: int = _default("io_concurrency")
    sparse_candle_types: tuple[str, ...] = _default("sparse_candle_types")
    candle_chunk_rows: int = _default("candle_chunk_rows")
    tardis_api_key: Secret = _default("tardis_api_key")
    tardis_api_url: str = _default("tardis_api_url")
    tardis_datasets_url: str = _default("tardis_datasets_url")
    tardis_requests_per_minute: int = _default("tardis_requests_per_minute")
    tardis_max_retries: int = _default("tardis_max_retries")
    tardis_machine_ws_url: str = _default("tardis_machine_ws_url")
    live_lateness_s: float = _default("live_lateness_s")
    live_max_lag_s: float = _default("live_max_lag_s")

    @property
    def warehouse_kind(self) -> str:
        return "bigquery" if self.warehouse.startswith("bigquery://") else "duckdb"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read and validate every variable; raise ``SettingsError`` naming the bad one.

        A variable that is unset or blank takes its default (a blank line in an env file means
        "not set", not "empty"); a set one is stripped and parsed by its spec."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for spec in SETTING_SPECS:
            raw = (env.get(spec.variable) or "").strip()
            values[spec.field] = spec.parse(spec.variable, raw) if raw else spec.default_value()

        start, end = values["start_date"], values["end_date"]
        if end is not None and end < start:
            raise SettingsError(f"MARKET_DATA_END_DATE={end} is before MARKET_DATA_START_DATE={start}")
        return cls(**values)
