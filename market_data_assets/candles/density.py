"""The candle density policy: which instrument types get every bucket of the day, which only some.

A dense file holds every bucket of the day (5,760 at 15s), empty ones carrying the last close:
right for spot pairs, perpetuals and futures, which trade nearly every bucket anyway and whose
users want a regular grid. A sparse file holds only the buckets with ticks of any source (trades,
book updates, ticker, liquidations): right for thousands of options that trade a few times a day,
whose dense files were 4x larger than their raw ticks. Nothing is lost: an omitted bucket is by
definition empty, and ``densify.densify`` (``reader.scan_candles(..., dense=True)``) rebuilds it
exactly, book time integrals included (from the ``close_*`` end state). See docs/CANDLES.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import polars as pl

from market_data_assets.instruments.keys import TYPE_CODES

INSTRUMENT_TYPES: tuple[str, ...] = tuple(TYPE_CODES.values())
"""The TYPE field of canonical keys, as ``instruments.keys`` makes them (docs/INSTRUMENT_KEY.md)."""


class Density(StrEnum):
    DENSE = "dense"
    SPARSE = "sparse"


DEFAULT_SPARSE_TYPES: tuple[str, ...] = ("OPTION", "COMBO")


@dataclass(frozen=True)
class DensityPolicy:
    """The instrument types whose candles are sparse; every other type is dense."""

    sparse_types: frozenset[str] = frozenset(DEFAULT_SPARSE_TYPES)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.sparse_types) - set(INSTRUMENT_TYPES))
        if unknown:
            raise ValueError(
                f"unknown instrument types {unknown} in the density policy; known: {INSTRUMENT_TYPES}"
            )

    def of_type(self, instrument_type: str) -> Density:
        return Density.SPARSE if instrument_type in self.sparse_types else Density.DENSE

    def is_dense(self, instrument_type: pl.Expr) -> pl.Expr:
        return instrument_type.is_in(sorted(self.sparse_types)).not_()

    def expression(self, instrument_type: pl.Expr) -> pl.Expr:
        """``dense`` or ``sparse`` for each row's instrument type."""
        return (
            pl.when(self.is_dense(instrument_type))
            .then(pl.lit(Density.DENSE.value))
            .otherwise(pl.lit(Density.SPARSE.value))
        )


DEFAULT_POLICY = DensityPolicy()
