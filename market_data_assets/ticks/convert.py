"""Tardis CSV.gz -> typed, tuned Parquet, streamed in bounded memory.

Two routes, one result (same schema, same values, same errors):

- Most files: polars' streaming CSV reader (it decompresses gzip lazily, in chunks: peak RSS stays
  flat however large the day) hands row batches of one row group each to pyarrow's Parquet writer,
  which can choose encodings per column (see ``parquet_writer``; trades come out at 66% of polars'
  default size). Every batch is checked on the way through (required values present, values the
  spec allows (``values``: finite, non-negative prices and amounts, known sides), timestamps
  inside the day's window) with the exact CSV line, column and value of the first offence. Grouped Tardis files (one
  ``OPTIONS`` file for thousands of options) are split into one file per instrument key as they
  stream.
- Book files of one instrument: polars' own ``scan_csv -> sink_parquet``, checked afterwards from
  the footer statistics; anything off sends the file down the first route, which names the line
  (see ``polars_sink``).

Nothing is written under a final name here: files land under temporary names in ``out_dir`` and
the caller publishes each with ``store.put_file(move=True)``. On any error every temporary file of
the conversion is removed before the exception propagates.

A file with rows, none of them for a requested symbol, is an error (``WrongSymbolError``), not an
empty day: it means the symbol mapping is wrong, and recording it as empty would make whole
instruments look empty at the source.
"""

from __future__ import annotations

import gzip
import hashlib
import uuid
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

import polars as pl
import pyarrow as pa

from market_data_assets.days import (
    EXCHANGE_TIMESTAMP_SLACK,
    LOCAL_TIMESTAMP_TOLERANCE,
    US_PER_DAY,
    US_PER_SECOND,
    day_start_us,
    from_us,
)
from market_data_assets.storage.layout import check_instrument_key
from market_data_assets.tardis.formats import (
    CATEGORY_TYPE,
    INSTRUMENT_KEY_COLUMN,
    DataTypeSpec,
    get_spec,
    header_mismatch,
)
from market_data_assets.ticks.errors import (
    BadValueError,
    CorruptGzipError,
    HeaderError,
    TickFileError,
    TimestampWindowError,
    WrongSymbolError,
)
from market_data_assets.ticks.locate import find_bad_cell
from market_data_assets.ticks.parquet_writer import (
    KeyedParquetSink,
    constant_dictionary_array,
    row_group_rows,
)
from market_data_assets.ticks.polars_sink import (
    FooterSummary,
    footer_summary,
    prefers_polars_writer,
    sink_single_instrument,
)
from market_data_assets.ticks.values import combo_symbols, first_bad_value


@dataclass(frozen=True)
class TimestampWindow:
    """The accepted timestamp ranges (µs since the epoch, half-open) for one partition day."""

    day: date

    def _around_day(self, margin: timedelta) -> tuple[int, int]:
        start, pad = day_start_us(self.day), int(margin.total_seconds()) * US_PER_SECOND
        return start - pad, start + US_PER_DAY + pad

    @property
    def local(self) -> tuple[int, int]:
        return self._around_day(LOCAL_TIMESTAMP_TOLERANCE)

    @property
    def exchange(self) -> tuple[int, int]:
        return self._around_day(EXCHANGE_TIMESTAMP_SLACK)

    def by_column(self) -> tuple[tuple[str, tuple[int, int], str], ...]:
        """(column, accepted range, the rule in words) for each checked timestamp column."""
        return (
            ("local_timestamp", self.local, "local_timestamp must lie in the file's day"),
            ("timestamp", self.exchange, "exchange timestamp must lie within the day ± the boundary slack"),
        )


@dataclass(frozen=True)
class ConvertedFile:
    """One finished Parquet file (under a temporary name in ``out_dir``) ready to publish."""

    instrument_key: str
    data_type: str
    path: Path
    rows: int
    bytes: int
    sha256: str
    min_timestamp: datetime | None
    """Smallest exchange ``timestamp`` in the file (UTC)."""
    max_timestamp: datetime | None
    source_bytes: int
    """Size of the CSV.gz the file came from (shared by every instrument of a grouped file)."""


class ConvertedFiles(list[ConvertedFile]):
    """The files of one conversion, plus what did not become a file.

    A list (one entry per instrument key) so callers can iterate it directly; the attributes
    report the rows of symbols the caller did not ask for and whether the day had no data at all.
    """

    def __init__(
        self,
        files: list[ConvertedFile] | None = None,
        *,
        source_bytes: int = 0,
        source_rows: int = 0,
        unknown_symbols: Mapping[str, int] | None = None,
        empty: bool = False,
    ) -> None:
        super().__init__(files or [])
        self.source_bytes = source_bytes
        self.source_rows = source_rows
        self.unknown_symbols: dict[str, int] = dict(unknown_symbols or {})
        """Rows per symbol absent from ``key_for_symbol`` (other instruments of a grouped file)."""
        self.empty = empty
        """True when the download held no rows (Tardis answers an empty gzip for a day without data)."""

    @property
    def dropped_rows(self) -> int:
        return sum(self.unknown_symbols.values())

    def __repr__(self) -> str:
        return (
            f"ConvertedFiles({list.__repr__(self)}, source_rows={self.source_rows}, "
            f"dropped_rows={self.dropped_rows}, empty={self.empty})"
        )


def runs_on_every_core(data_type: str, keys: int) -> bool:
    """Whether converting a ``data_type`` file of ``keys`` instrument keys keeps every core busy by
    itself: the polars route, whose streaming engine runs on all cores. The pyarrow route's batch
    handling is partly serial, so two such conversions side by side do use two cores."""
    return prefers_polars_writer(get_spec(data_type), keys)


def convert_csv_gz(
    src: Path,
    data_type: str,
    out_dir: Path,
    key_for_symbol: Mapping[str, str],
    day: date,
    source_name: str,
) -> ConvertedFiles:
    """Convert one Tardis CSV.gz into one Parquet file per instrument key (temporary names).

    ``key_for_symbol`` maps the CSV ``symbol`` value to the canonical instrument key; rows of other
    symbols are dropped and counted. ``source_name`` names the file in error messages (e.g. the
    dataset URL path). Raises a ``TickFileError`` subclass naming the file and line on bad input.
    """
    spec = get_spec(data_type)
    for key in key_for_symbol.values():
        check_instrument_key(key)
    label = source_name or str(src)
    source_bytes = src.stat().st_size
    header = _read_header(src, label)
    if header is None:
        return ConvertedFiles(source_bytes=source_bytes, empty=True)
    mismatch = header_mismatch(data_type, header)
    if mismatch is not None:
        raise HeaderError(label, mismatch, line=1)

    out_dir.mkdir(parents=True, exist_ok=True)
    window = TimestampWindow(day)
    if prefers_polars_writer(spec, len(key_for_symbol)):
        ((symbol, key),) = key_for_symbol.items()
        converted = _convert_in_polars(src, spec, out_dir, symbol, key, window)
        if converted is not None:
            return ConvertedFiles(
                [converted], source_bytes=source_bytes, source_rows=converted.rows, empty=False
            )
    return _convert_streaming(src, spec, out_dir, key_for_symbol, window, label)


def _convert_in_polars(
    src: Path, spec: DataTypeSpec, out_dir: Path, symbol: str, key: str, window: TimestampWindow
) -> ConvertedFile | None:
    """The fast route (``polars_sink``); None, with nothing left behind, when the file needs the
    row-by-row path: a cell polars cannot parse, a missing value, a timestamp outside the window,
    another symbol, or no rows."""
    out = out_dir / f".convert-{uuid.uuid4().hex[:12]}.parquet"
    try:
        sha256 = sink_single_instrument(src, spec, key, out)
        summary = footer_summary(out, spec, symbol, key)
    except (pl.exceptions.PolarsError, OSError):
        summary = None
    except BaseException:
        out.unlink(missing_ok=True)
        raise
    if summary is None or not _inside_window(summary, window):
        out.unlink(missing_ok=True)
        return None
    ts_lo, ts_hi = summary.ranges_us["timestamp"]
    return ConvertedFile(
        instrument_key=key,
        data_type=spec.name,
        path=out,
        rows=summary.rows,
        bytes=out.stat().st_size,
        sha256=sha256,
        min_timestamp=_to_datetime(ts_lo),
        max_timestamp=_to_datetime(ts_hi),
        source_bytes=src.stat().st_size,
    )


def _inside_window(summary: FooterSummary, window: TimestampWindow) -> bool:
    for name, (lo, hi), _ in window.by_column():
        seen_lo, seen_hi = summary.ranges_us[name]
        if seen_lo < lo or seen_hi >= hi:
            return False
    return True


def _convert_streaming(
    src: Path,
    spec: DataTypeSpec,
    out_dir: Path,
    key_for_symbol: Mapping[str, str],
    window: TimestampWindow,
    label: str,
) -> ConvertedFiles:
    """Row batches through the checks into pyarrow's tuned writer, split by instrument key."""
    source_bytes = src.stat().st_size
    sink = KeyedParquetSink(spec, out_dir)
    stats = _StreamStats(combos=combo_symbols(key_for_symbol))
    try:
        for batch in _batches(src, spec, label):
            _convert_batch(batch, spec, key_for_symbol, window, label, stats, sink)
        if stats.rows and not stats.matched:
            raise WrongSymbolError(label, _wrong_symbol_message(stats, key_for_symbol))
        written = sink.close()
    except BaseException:
        sink.abort()
        raise

    files = [
        ConvertedFile(
            instrument_key=f.instrument_key,
            data_type=spec.name,
            path=f.path,
            rows=f.rows,
            bytes=f.path.stat().st_size,
            sha256=_sha256(f.path),
            min_timestamp=_to_datetime(f.min_timestamp_us),
            max_timestamp=_to_datetime(f.max_timestamp_us),
            source_bytes=source_bytes,
        )
        for f in written
    ]
    return ConvertedFiles(
        files,
        source_bytes=source_bytes,
        source_rows=stats.rows,
        unknown_symbols=stats.unknown,
        empty=stats.rows == 0,
    )


@dataclass
class _StreamStats:
    rows: int = 0
    matched: int = 0
    """Rows of requested symbols."""
    unknown: dict[str, int] = field(default_factory=dict)
    combos: frozenset[str] = frozenset()


def _wrong_symbol_message(stats: _StreamStats, key_for_symbol: Mapping[str, str]) -> str:
    def listed(items: list[str]) -> str:
        return ", ".join(items[:5]) + (f" and {len(items) - 5} more" if len(items) > 5 else "")

    found = sorted(stats.unknown.items(), key=lambda kv: (-kv[1], kv[0]))
    return (
        f"none of its {stats.rows:,} rows is for a requested symbol: it holds "
        f"{listed([f'{sym!r} ({n:,} rows)' for sym, n in found])}, the targets asked for "
        f"{listed([repr(s) for s in sorted(key_for_symbol)])}; the symbol mapping (dataset id -> CSV "
        "`symbol` value) is wrong, or Tardis served another instrument's file"
    )


def _read_header(src: Path, label: str) -> list[str] | None:
    """The header's column names, or None when the file holds no data (empty body or empty gzip)."""
    if src.stat().st_size == 0:
        return None
    try:
        with gzip.open(src, "rb") as fh:
            first = fh.readline()
    except (OSError, EOFError, zlib.error) as exc:
        raise CorruptGzipError(label, f"not a readable gzip stream ({exc})", line=1) from None
    if not first.strip():
        return None
    return first.decode("utf-8", errors="replace").rstrip("\r\n").split(",")


def _batches(src: Path, spec: DataTypeSpec, label: str) -> Iterator[pl.DataFrame]:
    """Row batches of one row group each, in file order, with CSV errors turned into ours."""
    lf = pl.scan_csv(src, schema=spec.polars_read_schema, has_header=True)
    try:
        yield from lf.collect_batches(chunk_size=row_group_rows(spec), maintain_order=True)
    except pl.exceptions.NoDataError:
        return
    except OSError as exc:
        raise CorruptGzipError(
            label, f"truncated or corrupt gzip stream ({exc})", line=_line_where_gzip_breaks(src)
        ) from None
    except pl.exceptions.PolarsError as exc:
        found = find_bad_cell(src, spec)
        if found is None:
            raise TickFileError(label, f"cannot parse the CSV: {str(exc).splitlines()[0]}") from None
        line, problem = found
        raise BadValueError(label, problem, line=line) from None


def _line_where_gzip_breaks(src: Path) -> int:
    """The line being read when the gzip stream ends early or fails its checksum (slow path).

    ``zlib`` rather than ``gzip``: it hands out every byte it could inflate before the break,
    where ``gzip.read`` drops the last partial chunk with its ``EOFError``.
    """
    lines = 1
    inflater = zlib.decompressobj(wbits=31)
    try:
        with src.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                while chunk:
                    if inflater.eof:  # the next member of a multi-member gzip
                        inflater = zlib.decompressobj(wbits=31)
                    lines += inflater.decompress(chunk).count(b"\n")
                    chunk = inflater.unused_data
    except zlib.error:
        pass
    return lines


def _first_true(mask: pl.Series) -> int | None:
    if not mask.any():
        return None
    return int(mask.arg_true()[0])


def _check_batch(
    batch: pl.DataFrame,
    spec: DataTypeSpec,
    window: TimestampWindow,
    label: str,
    offset: int,
    combos: frozenset[str] = frozenset(),
) -> None:
    """Required values present, values the spec allows, timestamps inside the window; errors name
    the CSV line."""
    required = [c.csv_name for c in spec.columns if not c.nullable]
    for name in required:
        if batch.get_column(name).null_count():  # O(1): polars keeps null counts per chunk
            idx = _first_true(batch.get_column(name).is_null())
            raise BadValueError(
                label,
                f"column {name!r} is empty but requires a value",
                line=offset + idx + 2,  # pyright: ignore[reportOperatorIssue]  null_count() > 0: a null is there
            )
    bad = first_bad_value(batch, spec, combos)
    if bad is not None:
        raise BadValueError(label, bad[1], line=offset + bad[0] + 2)
    for name, (lo, hi), what in window.by_column():
        col = batch.get_column(name)
        lo_seen, hi_seen = col.min(), col.max()
        if lo_seen is not None and (lo_seen < lo or hi_seen >= hi):  # pyright: ignore[reportOperatorIssue]
            idx = _first_true((col < lo) | (col >= hi))
            value = col[idx]  # pyright: ignore[reportArgumentType, reportCallIssue]
            raise TimestampWindowError(
                label,
                f"{name}={value} ({_describe_us(value)}) is outside [{_describe_us(lo)}, {_describe_us(hi)}): "
                f"{what} ({window.day}); are the timestamps in microseconds?",
                line=offset + idx + 2,  # pyright: ignore[reportOperatorIssue]
            )


def _convert_batch(
    batch: pl.DataFrame,
    spec: DataTypeSpec,
    key_for_symbol: Mapping[str, str],
    window: TimestampWindow,
    label: str,
    stats: _StreamStats,
    sink: KeyedParquetSink,
) -> None:
    offset = stats.rows
    stats.rows += batch.height
    if batch.height == 0:
        return
    _check_batch(batch, spec, window, label, offset, stats.combos)

    symbols = batch.get_column("symbol")
    first = symbols[0]
    codes = symbols.to_physical()  # Categorical codes: min == max is one symbol, without hashing
    if codes.min() == codes.max():
        key = key_for_symbol.get(first)
        parts = {key: batch} if key is not None else {}
        if key is None:
            stats.unknown[first] = stats.unknown.get(first, 0) + batch.height
    else:
        keyed = batch.with_columns(
            symbols.replace_strict(dict(key_for_symbol), default=None, return_dtype=pl.String).alias(
                INSTRUMENT_KEY_COLUMN
            )
        )
        unknown = keyed.filter(pl.col(INSTRUMENT_KEY_COLUMN).is_null())
        for sym, count in unknown.group_by("symbol").len().iter_rows():
            stats.unknown[sym] = stats.unknown.get(sym, 0) + count
        known = keyed.filter(pl.col(INSTRUMENT_KEY_COLUMN).is_not_null())
        parts = {
            k[0]: part.drop(INSTRUMENT_KEY_COLUMN)
            for k, part in known.partition_by(
                INSTRUMENT_KEY_COLUMN, maintain_order=True, as_dict=True
            ).items()
        }
    for key, part in parts.items():
        stats.matched += part.height
        ts = part.get_column("timestamp")
        sink.append(key, _to_arrow(part, spec, key), ts.min(), ts.max())  # pyright: ignore[reportArgumentType]


def _to_arrow(part: pl.DataFrame, spec: DataTypeSpec, key: str) -> pa.Table:
    """The batch in the spec's Arrow schema: renamed, timestamps typed, small vocabularies as
    dictionaries, plus the constant ``instrument_key`` column."""
    # Column by column: ``DataFrame.select`` would plan a lazy query per batch (~3 ms, measured).
    # The newest compat level hands strings over as views, which the spec's string_view type takes
    # without a copy (the older large_string conversion cost ~10% of the converter's CPU).
    arrays = [
        _category_array(part.get_column(col.csv_name))
        if col.kind == "category"
        else part.get_column(col.csv_name).to_arrow(compat_level=pl.CompatLevel.newest()).cast(col.arrow_type)
        for col in spec.columns
    ]
    arrays.append(constant_dictionary_array(key, part.height))
    return pa.Table.from_arrays(arrays, schema=spec.arrow_schema)


def _category_array(series: pl.Series) -> pa.Array | pa.ChunkedArray:
    """A small-vocabulary column as a dictionary array.

    Measured per 131k-row batch: a column with one value (exchange, symbol of a single-instrument
    file) built directly is ~100x cheaper than hashing it, and ``dictionary_encode`` beats a cast.
    """
    first = series[0]
    if first is not None and series.null_count() == 0 and (series == first).all():
        return constant_dictionary_array(first, series.len())
    return series.to_arrow().dictionary_encode().cast(CATEGORY_TYPE)


def _sha256(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _to_datetime(us: int | None) -> datetime | None:
    if us is None:
        return None
    return from_us(us)


def _describe_us(us: int) -> str:
    try:
        return _to_datetime(us).isoformat()  # pyright: ignore[reportOptionalMemberAccess]
    except OverflowError:
        return "out of range"
