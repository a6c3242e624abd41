"""pyarrow tables and schemas as polars frames, typed as what they are.

``pl.from_arrow`` returns a DataFrame for a Table but is declared ``DataFrame | Series``; these two
helpers say "a table in, a DataFrame out" once, so callers need no cast and a checker still sees
every other mistake around them.
"""

from __future__ import annotations

import polars as pl
import pyarrow as pa


def to_polars(table: pa.Table) -> pl.DataFrame:
    """The table as a DataFrame (zero-copy where polars can)."""
    frame = pl.from_arrow(table)
    if not isinstance(frame, pl.DataFrame):  # a Table always gives a DataFrame; a guard, not a branch
        raise TypeError(f"expected a DataFrame from a pyarrow Table, got {type(frame).__name__}")
    return frame


def polars_schema(schema: pa.Schema) -> pl.Schema:
    """The polars dtypes of an arrow schema (the conversion ``to_polars`` applies to its columns)."""
    return to_polars(schema.empty_table()).schema
