"""Errors raised while turning Tardis instrument data into definitions and targets.

Every message names the exchange and the symbol (or the config file and entry) at fault, so a
failed materialization says what to fix without a debugger. They subclass ``ValueError`` because
they are all "bad input" errors: callers that only care about that can catch one type.
"""

from __future__ import annotations

from market_data_assets.errors import MarketDataError


class InstrumentError(MarketDataError, ValueError):
    """Base class: an instrument that cannot be described or keyed."""


class InstrumentMetadataError(InstrumentError):
    """Instruments metadata (or exchange details) with a missing, mistyped or unparseable field."""


class UnsupportedInstrumentTypeError(InstrumentError):
    """A Tardis instrument ``type`` with no canonical key type (``prediction`` or a new one)."""


class SymbolParseError(InstrumentError):
    """A dataset symbol id the per-exchange parser cannot read (only used without metadata)."""


class InstrumentKeyError(InstrumentError):
    """A key that would be empty, unsafe as a path, or not unique after collision resolution."""


class TargetsConfigError(MarketDataError, ValueError):
    """A download-targets YAML that is malformed; the message names the file and the entry."""


def describe_symbols(symbols: list[str], limit: int = 5) -> str:
    """``'A', 'B', 'C' and 7 more``: error messages name offenders without dumping 300K ids."""
    shown = ", ".join(repr(s) for s in symbols[:limit])
    rest = len(symbols) - limit
    return f"{shown} and {rest} more" if rest > 0 else shown
