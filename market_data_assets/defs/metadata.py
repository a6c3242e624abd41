"""Small helpers for Dagster metadata shared by every asset module."""

from __future__ import annotations

import resource
import time
from dataclasses import dataclass

import dagster as dg
import polars as pl

from market_data_assets.storage.base import ObjectStore


def markdown_preview(df: pl.DataFrame, rows: int = 10) -> dg.MetadataValue:
    """A markdown table of the first ``rows`` rows, rendered by polars (no extra dependency)."""
    if df.height == 0:
        return dg.MetadataValue.md("(no rows)")
    with pl.Config(
        tbl_formatting="MARKDOWN",
        tbl_hide_column_data_types=True,
        tbl_hide_dataframe_shape=True,
        tbl_rows=rows,
        tbl_cols=-1,
        fmt_str_lengths=80,
    ):
        return dg.MetadataValue.md(str(df.head(rows)))


@dataclass(frozen=True)
class StageClock:
    """Wall, CPU and store requests of one step from its start: the figures every stage reports.

    CPU is the process's (all threads): Dagster's multiprocess executor gives each step its own
    process, so it is the step's. ``peak_rss_mb`` is the process's high-water mark.
    """

    wall: float
    cpu: float
    requests: int

    @classmethod
    def start(cls, store: ObjectStore) -> StageClock:
        return cls(time.perf_counter(), time.process_time(), store.requests)

    def metadata(self, store: ObjectStore, files_read_by_polars: int = 0) -> dict[str, dg.MetadataValue]:
        """``store_requests``: the store's own calls plus one per file polars read (its GETs are
        not seen by the store; a footer and a body can be two, so this is a lower bound)."""
        requests = store.requests - self.requests + files_read_by_polars
        return {
            "stage_wall_s": dg.MetadataValue.float(round(time.perf_counter() - self.wall, 3)),
            "stage_cpu_s": dg.MetadataValue.float(round(time.process_time() - self.cpu, 3)),
            "store_requests": dg.MetadataValue.int(requests),
            "peak_rss_mb": dg.MetadataValue.int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024),
        }
