"""The slow, exact second look at a file the fast path rejected: which line, which column, which value.

polars reports a parse failure by byte offset at best. When that happens the converter re-reads the
file here, row by row with the ``csv`` module, and checks every cell against the spec, so the error
can name the line a user should open. Only failing files pay for this pass.
"""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

from market_data_assets.tardis.formats import DataTypeSpec

_BOOLS = {"true", "false"}


def _cell_problem(kind: str, value: str, nullable: bool) -> str | None:
    if value == "":
        return None if nullable or kind == "string" else "is empty but the column requires a value"
    try:
        if kind == "timestamp":
            int(value)
        elif kind == "float":
            float(value)
        elif kind == "bool" and value.lower() not in _BOOLS:
            return "is not true/false"
    except ValueError:
        return "is not an integer" if kind == "timestamp" else "is not a number"
    return None


def find_bad_cell(source: Path, spec: DataTypeSpec) -> tuple[int, str] | None:
    """(line number, description) of the first cell that does not fit ``spec``, or None."""
    with gzip.open(source, "rt", newline="") as raw:
        reader = csv.reader(raw)
        next(reader, None)
        width = len(spec.columns)
        for line, row in enumerate(reader, start=2):
            if len(row) != width:
                return line, f"has {len(row)} fields, expected {width}"
            for col, value in zip(spec.columns, row, strict=True):
                problem = _cell_problem(col.kind, value, col.nullable)
                if problem is not None:
                    return line, f"column {col.csv_name!r}: value {value!r} {problem}"
    return None
