"""Small helpers for Dagster metadata shared by every asset module."""

from __future__ import annotations

import dagster as dg
import polars as pl


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
