"""Numbers as Tardis prints them: ``2152`` not ``2152.0``, ``8531.5``, empty cells for missing values.

Prices and amounts are carried as integers counting ``10**-decimals`` units (a price is a whole
number of ticks times the tick in those units), so printing them is exact: no float rounding can
ever produce ``0.30000000000000004`` in a file.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

import numpy as np
import polars as pl


def decimals_of(x: float) -> int:
    """Digits after the point of an increment as written: 0.5 -> 1, 0.00001 -> 5, 100 -> 0."""
    exponent = Decimal(repr(float(x))).normalize().as_tuple().exponent
    return max(0, -int(exponent))


def format_units(values: Sequence[int] | np.ndarray, decimals: int) -> list[str]:
    """Integers counting ``10**-decimals`` units -> shortest exact decimal text (``8531.5``, ``2152``)."""
    ints = values.tolist() if isinstance(values, np.ndarray) else [int(v) for v in values]
    if decimals == 0:
        return [str(v) for v in ints]
    scale = 10**decimals
    out = []
    for v in ints:
        q, r = divmod(v, scale)
        out.append(str(q) if r == 0 else f"{q}.{r:0{decimals}d}".rstrip("0"))
    return out


def _unsigned_text(column: pl.Expr, decimals: int) -> pl.Expr:
    if decimals == 0:
        return column.cast(pl.String)
    scale = 10**decimals
    whole = (column // scale).cast(pl.String)
    frac = (column % scale).cast(pl.String).str.zfill(decimals).str.strip_chars_end("0")
    return pl.when(frac == "").then(whole).otherwise(pl.concat_str([whole, pl.lit("."), frac]))


@dataclass(frozen=True)
class Cells:
    """One CSV column for ``join_cells``.

    ``values``: integers counting ``10**-decimals`` units, or floats (rounded to ``decimals``
    places here), or ready text (a string array), or one text shared by every row.
    ``present`` False -> an empty cell.
    """

    values: np.ndarray | str
    decimals: int = 0
    present: np.ndarray | None = None

    def take(self, rows: np.ndarray) -> Cells:
        """The same column restricted to ``rows`` (indices)."""
        if isinstance(self.values, str):
            return self
        present = None if self.present is None else np.asarray(self.present)[rows]
        return Cells(self.values[rows], self.decimals, present)


_POLARS_FROM_ROWS = 500
"""Below this many rows polars' fixed cost per call outweighs its speed (an option has ~50 rows)."""


def join_cells(columns: Sequence[Cells], rows: int) -> list[str]:
    """The comma-joined text of ``columns``, row by row, numbers formatted like ``format_units``.

    Large tables go through polars (several times faster than formatting cell by cell), small
    ones through plain Python; both give the same text.
    """
    if rows < _POLARS_FROM_ROWS:
        return _join_cells_python(columns, rows)
    data: dict[str, np.ndarray | pl.Series] = {"_row": np.arange(rows)}
    exprs: list[pl.Expr] = []
    for k, cells in enumerate(columns):
        if isinstance(cells.values, str):
            expr = pl.lit(cells.values)
        elif cells.values.dtype.kind in "OUS":
            data[f"v{k}"] = pl.Series(cells.values.tolist(), dtype=pl.String)
            expr = pl.col(f"v{k}")
        else:
            values = cells.values
            if values.dtype.kind == "f":
                values = np.round(values * 10**cells.decimals)
            data[f"v{k}"] = values.astype(np.int64)
            column = pl.col(f"v{k}")
            text = _unsigned_text(column.abs(), cells.decimals)
            expr = pl.when(column < 0).then(pl.concat_str([pl.lit("-"), text])).otherwise(text)
        if cells.present is not None:
            data[f"p{k}"] = np.asarray(cells.present, dtype=bool)
            expr = pl.when(pl.col(f"p{k}")).then(expr).otherwise(pl.lit(""))
        exprs.append(expr)
    return pl.DataFrame(data).select(pl.concat_str(exprs, separator=",")).to_series().to_list()


def _join_cells_python(columns: Sequence[Cells], rows: int) -> list[str]:
    texts: list[list[str]] = []
    for cells in columns:
        if isinstance(cells.values, str):
            texts.append([cells.values] * rows)
            continue
        if cells.values.dtype.kind in "OUS":
            text = [str(v) for v in cells.values.tolist()]
            if cells.present is not None:
                text = [
                    t if ok else "" for t, ok in zip(text, np.asarray(cells.present).tolist(), strict=True)
                ]
            texts.append(text)
            continue
        values = cells.values
        if values.dtype.kind == "f":
            values = np.round(values * 10**cells.decimals)
        ints = values.astype(np.int64)
        text = format_units(np.abs(ints), cells.decimals)
        text = [f"-{t}" if v < 0 else t for t, v in zip(text, ints.tolist(), strict=True)]
        if cells.present is not None:
            text = [t if ok else "" for t, ok in zip(text, np.asarray(cells.present).tolist(), strict=True)]
        texts.append(text)
    return [",".join(row) for row in zip(*texts, strict=True)] if texts else [""] * rows


def format_float(x: float | None, places: int) -> str:
    """A float rounded to ``places`` digits, trailing zeros dropped; ``None``/NaN -> empty cell."""
    if x is None or not math.isfinite(x):
        return ""
    text = f"{x:.{places}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text
