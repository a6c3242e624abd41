"""Refusing bad rows in bulk: raise a named error, or drop them and log, as the caller chose.

Instruments are processed as whole polars frames, so validation finds every offending row at
once; this helper turns that set into one error message (naming the exchange and a few
symbols) or, in ``skip`` mode, into a warning plus the frame without those rows.
"""

from __future__ import annotations

import logging
from typing import Literal

import polars as pl

from market_data_assets.instruments.errors import InstrumentError, describe_symbols

OnBad = Literal["raise", "skip"]
log = logging.getLogger(__name__)


def reject_rows(
    frame: pl.DataFrame,
    bad: pl.Expr,
    *,
    exchange: str,
    reason: str,
    error: type[InstrumentError],
    on_bad: OnBad,
    symbol_column: str = "exchange_symbol",
) -> pl.DataFrame:
    """Rows where ``bad`` is true are refused: ``error`` is raised, or (skip) they are dropped."""
    flagged = frame.select(bad.fill_null(False).alias("_bad")).to_series()
    if not flagged.any():
        return frame
    symbols = frame.filter(flagged)[symbol_column].cast(pl.String).fill_null("<no id>").to_list()
    message = f"{exchange}: {reason}: {describe_symbols(symbols)}"
    if on_bad == "raise":
        raise error(message)
    log.warning("skipping %d instrument(s) of %s", len(symbols), message)
    return frame.filter(~flagged)
