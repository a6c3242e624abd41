"""Errors a Tardis CSV.gz file can raise while being converted.

Every message names the source file and, where there is one, the line of the CSV (line 1 is the
header, so the first data row is line 2): a user must be able to open the file and look.
"""

from __future__ import annotations

from pathlib import Path

from market_data_assets.errors import MarketDataError


class TickFileError(MarketDataError, ValueError):
    """A CSV.gz tick file that cannot be converted; ``source`` and ``line`` say where."""

    def __init__(self, source: Path | str, message: str, *, line: int | None = None) -> None:
        self.source = str(source)
        self.line = line
        where = f"{self.source}, line {line}" if line is not None else self.source
        super().__init__(f"{where}: {message}")


class HeaderError(TickFileError):
    """The header is not the Tardis header of the data type (wrong file or a format change)."""


class CorruptGzipError(TickFileError):
    """Truncated or corrupt gzip stream: the download is incomplete or damaged."""


class BadValueError(TickFileError):
    """A cell that does not parse as its column's type (e.g. a non-numeric price), a missing
    value in a column that must always have one, or a value the spec refuses (NaN, inf, a negative
    price or amount, a side outside the column's vocabulary: see ``tardis.formats``)."""


class TimestampWindowError(TickFileError):
    """A timestamp outside the partition's day window (see ``convert.TimestampWindow``)."""


class WrongSymbolError(TickFileError):
    """The file has rows, but none for a requested symbol: a wrong symbol mapping, never an empty day."""
