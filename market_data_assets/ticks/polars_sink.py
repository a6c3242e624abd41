"""The fast route for book snapshots: polars' own streaming ``scan_csv -> sink_parquet``, checked after.

Book snapshot files (``book_snapshot_5/25``) are one instrument per file and almost all floats.
Per-column encodings gain nothing on them (measured on realistic 1 M-row days: 98-99% of polars'
size), and pyarrow's writer encodes 104 float columns 1.8x slower than polars'
(benchmarks/bench_convert.py), so the whole conversion runs inside polars' streaming engine, which
overlaps gzip decompression, parsing and writing on every core. (``incremental_book_L2`` keeps
pyarrow's writer: its narrow rows come out 29% smaller there at the same speed, measured on a
sandbox day.) The spec's ``parquet_writer`` says which route a data type takes. The files of the
two routes hold the same schema and values and differ only in encodings: polars offers no choice
per column, so its timestamps are PLAIN under zstd rather than delta-encoded (7% of a book
snapshot file's bytes).

What the streaming path checks row by row is checked here from the written file's footer:
every row group's statistics give its null counts, timestamp range and the range of every float
column (the spec's value rules, ``ticks.values``; NaN is written as ``-inf`` so that the
statistics, which skip NaN, show it), and the symbol column's min and max say the file holds one
symbol. When anything is off (or polars cannot parse a cell),
the caller deletes the file and runs the row-by-row path, which finds the offending line and
names it. Bad input therefore costs a second pass; good input costs one.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from market_data_assets.tardis.formats import INSTRUMENT_KEY_COLUMN, DataTypeSpec
from market_data_assets.ticks.parquet_writer import row_group_rows
from market_data_assets.ticks.values import footer_values_ok, nan_to_neg_inf

ZSTD_LEVEL = 3
"""polars' default: level 1 writes book snapshots 11% larger for no measurable gain in time."""


def prefers_polars_writer(spec: DataTypeSpec, keys: int) -> bool:
    """Whether ``spec`` files of ``keys`` instrument keys go through polars' sink (see module doc)."""
    return spec.parquet_writer == "polars" and keys == 1


def sink_single_instrument(src: Path, spec: DataTypeSpec, key: str, out: Path) -> str:
    """Convert the whole CSV.gz ``src`` into ``out`` (typed, renamed, plus ``instrument_key``) and
    return the file's SHA-256, hashed as the bytes go out rather than re-read afterwards.

    Raises polars' own errors on unparseable cells; the caller removes ``out`` on any failure.
    """
    columns = [
        (
            pl.col(c.csv_name).cast(pl.Datetime("us", "UTC"))
            if c.kind == "timestamp"
            else nan_to_neg_inf(c, pl.col(c.csv_name))
        ).alias(c.name)
        for c in spec.columns
    ]
    columns.append(pl.lit(key, dtype=pl.Categorical).alias(INSTRUMENT_KEY_COLUMN))
    with out.open("wb") as fh:
        sink = _HashingWriter(fh)
        pl.scan_csv(src, schema=spec.polars_read_schema, has_header=True).select(columns).sink_parquet(
            sink,  # pyright: ignore[reportArgumentType]  a binary file-like writer, duck-typed
            compression="zstd",
            compression_level=ZSTD_LEVEL,
            row_group_size=row_group_rows(spec),
            statistics=True,
            arrow_schema=_sink_schema(spec),
        )
    return sink.digest.hexdigest()


class _HashingWriter(io.RawIOBase):
    """A binary file that hashes what polars' sink writes through it (the sink writes in order)."""

    def __init__(self, fh: BinaryIO) -> None:
        self._fh = fh
        self.digest = hashlib.sha256()

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        return self._fh.write(data)

    def flush(self) -> None:
        self._fh.flush()


def _sink_schema(spec: DataTypeSpec) -> pa.Schema:
    """The spec's Arrow schema as polars must be told it (large_string dictionary values); files
    read back as exactly ``spec.arrow_schema``, nullability included."""
    return pa.schema(
        f.with_type(pa.dictionary(f.type.index_type, pa.large_string()))
        if pa.types.is_dictionary(f.type)
        else f
        for f in spec.arrow_schema
    )


@dataclass(frozen=True)
class FooterSummary:
    """What the footer statistics of a written tick file prove about all of its rows."""

    rows: int
    ranges_us: dict[str, tuple[int, int]]
    """Smallest and largest value (µs since the epoch) of each timestamp column with any value."""


def footer_summary(path: Path, spec: DataTypeSpec, symbol: str, key: str) -> FooterSummary | None:
    """The file's rows and timestamp ranges if its statistics show every required value present,
    every float value allowed by the spec (for instrument ``key``) and ``symbol`` as the only
    symbol; None when they do not (or are missing), meaning: check the rows one by one."""
    meta = pq.read_metadata(path)
    if meta.num_rows == 0:
        return None
    index = {meta.schema.column(i).name: i for i in range(meta.num_columns)}
    required = [c.name for c in spec.columns if not c.nullable]
    ranges: dict[str, tuple[int, int]] = {}
    for g in range(meta.num_row_groups):
        group = meta.row_group(g)
        for name in required:
            stats = group.column(index[name]).statistics
            if stats is None or not stats.has_null_count or stats.null_count:
                return None
        for col in spec.float_columns:
            stats = group.column(index[col.name]).statistics
            if stats is None:
                return None
            if stats.has_min_max and not footer_values_ok(col, stats.min_raw, stats.max_raw, key):
                return None
        stats = group.column(index["symbol"]).statistics
        if stats is None or not stats.has_min_max or not (stats.min == stats.max == symbol):
            return None
        for name in spec.timestamp_columns:
            stats = group.column(index[name]).statistics
            if stats is None:
                return None
            if not stats.has_min_max:  # a nullable column with only nulls in this group
                continue
            lo, hi = ranges.get(name, (stats.min_raw, stats.max_raw))
            ranges[name] = (min(lo, stats.min_raw), max(hi, stats.max_raw))
    return FooterSummary(rows=meta.num_rows, ranges_us=ranges)
