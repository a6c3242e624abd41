"""Column names of Parquet files, read from their footers only (a few KB each, also on gs://).

Needed because one warehouse table can be fed files with different columns (depth-5 and
depth-25 book snapshots), and a BigQuery load job must not mix schemas: the loader groups the
files by their columns and runs one load job per group.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import pyarrow.parquet as pq

from market_data_assets.storage.gcs import arrow_filesystem

_FOOTER_READERS = 16
"""Footer reads are small and latency-bound: read many at once."""


def parquet_column_names(uris: Sequence[str]) -> list[tuple[str, ...]]:
    """For each ``gs://`` URI or local path, the column names of its Parquet schema, in file order."""
    gcs = arrow_filesystem() if any(u.startswith("gs://") for u in uris) else None

    def read(uri: str) -> tuple[str, ...]:
        try:
            if uri.startswith("gs://"):
                return tuple(pq.read_schema(uri.removeprefix("gs://"), filesystem=gcs).names)
            return tuple(pq.read_schema(uri).names)
        except (OSError, ValueError) as exc:
            raise OSError(f"cannot read the Parquet footer of {uri}: {exc}") from exc

    if len(uris) <= 1:
        return [read(u) for u in uris]
    with ThreadPoolExecutor(max_workers=min(_FOOTER_READERS, len(uris))) as pool:
        return list(pool.map(read, uris))
