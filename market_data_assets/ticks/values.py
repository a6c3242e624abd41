"""Value rules of the data-type specs (``tardis.formats``), applied to converted rows.

Types alone let bad data through: ``NaN``, ``inf`` and ``-5`` all parse as float64, and a ``NaN``
price turns the close, VWAP, notional and realized variance of its candle (and of every coarser
timeframe) into NaN. So every conversion checks what the spec says each column accepts:

- ``float`` columns: finite numbers only; ``price`` and ``non_negative`` domains also refuse
  negatives (``price`` allows them on COMBO instruments: spreads trade below zero);
- ``category`` columns with a ``vocabulary``: only those values.

The streaming route checks each row batch (``first_bad_value``: the first offending row, column
and value, so the error names the CSV line). The polars sink route cannot stop mid-stream, so it
turns every NaN into ``-inf`` on the way out (``nan_to_neg_inf``; a good file has no NaN, so its
bytes do not change) and then reads the footer statistics (``footer_values_ok``): Parquet
statistics skip NaN, but a ``-inf`` minimum or a negative one is plain to see. Anything off sends
the file down the streaming route, which names the line.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import polars as pl

from market_data_assets.instruments.keys import TYPE_CODES
from market_data_assets.tardis.formats import Column, DataTypeSpec

COMBO_TYPE = TYPE_CODES["combo"]


def is_combo_key(key: str) -> bool:
    """Whether a canonical key (``VENUE:TYPE:SYMBOL``) names a combo (negative prices allowed)."""
    parts = key.split(":")
    return len(parts) == 3 and parts[1] == COMBO_TYPE


def combo_symbols(key_for_symbol: Mapping[str, str]) -> frozenset[str]:
    """CSV symbols of the combos among the requested instruments."""
    return frozenset(sym for sym, key in key_for_symbol.items() if is_combo_key(key))


def _refuses_negative(col: Column) -> bool:
    return col.domain in ("price", "non_negative")


def _float_problem(value: float) -> str:
    if value != value:
        return "is NaN; Tardis writes an empty cell for a missing value"
    if value in (float("inf"), float("-inf")):
        return "is not a finite number"
    return "is negative"


def first_bad_value(
    batch: pl.DataFrame, spec: DataTypeSpec, combos: Iterable[str] = ()
) -> tuple[int, str] | None:
    """(row index in ``batch``, description) of the first value the spec refuses, or None.

    The description names the column (as in the CSV header) and the value. Cheap on good data:
    one vectorized test per checked column, the search for the row only on failure.
    """
    found: list[tuple[int, str]] = []
    combos = frozenset(combos)
    for col in spec.float_columns:
        series = batch.get_column(col.csv_name)
        bad = ~series.is_finite()
        if _refuses_negative(col):
            negative = series < 0
            if col.domain == "price" and combos:
                negative &= ~batch.get_column("symbol").cast(pl.String).is_in(list(combos))
            bad |= negative
        if bad.any():
            idx = int(bad.arg_true()[0])
            value = series[idx]
            found.append((idx, f"column {col.csv_name!r}: value {value!r} {_float_problem(value)}"))
    for col in spec.vocabulary_columns:
        series = batch.get_column(col.csv_name)
        seen = series.unique().drop_nulls().cast(pl.String).to_list()
        if all(v in col.vocabulary for v in seen):
            continue
        idx = int((~series.cast(pl.String).is_in(list(col.vocabulary or ()))).arg_true()[0])
        found.append(
            (
                idx,
                f"column {col.csv_name!r}: value {series[idx]!r} is not one of "
                f"{', '.join(col.vocabulary or ())}",
            )
        )
    return min(found) if found else None


def nan_to_neg_inf(col: Column, expr: pl.Expr) -> pl.Expr:
    """The polars sink route's stand-in for a NaN check (see the module docstring)."""
    if col.kind != "float":
        return expr
    return expr.fill_nan(float("-inf"))


def footer_values_ok(col: Column, lo: float, hi: float, key: str) -> bool:
    """Whether a float column's footer min/max (NaN already made ``-inf``) satisfy its rule."""
    if lo == float("-inf") or hi == float("inf"):
        return False
    if _refuses_negative(col) and lo < 0:
        return col.domain == "price" and is_combo_key(key)
    return True
