"""Canonical instrument keys, per-day instrument definitions and download-target selection.

Pure functions over parsed Tardis JSON and polars frames (no Dagster): the ``defs/`` assets
call ``build_instrument_definitions`` and ``select_targets``. Key spec: docs/INSTRUMENT_KEY.md.
"""

from market_data_assets.instruments.definitions import (
    DEFINITION_COLUMNS,
    DEFINITIONS_SCHEMA,
    build_instrument_definitions,
    empty_definitions,
    key_for_dataset_symbol,
    key_for_instrument,
)
from market_data_assets.instruments.errors import (
    InstrumentError,
    InstrumentKeyError,
    InstrumentMetadataError,
    SymbolParseError,
    TargetsConfigError,
    UnsupportedInstrumentTypeError,
)
from market_data_assets.instruments.keys import TYPE_CODES, format_strike, sanitize_field
from market_data_assets.instruments.targets import (
    TARGETS_SCHEMA,
    TargetRule,
    TargetsConfig,
    empty_targets,
    load_targets_config,
    parse_targets_config,
    select_targets,
)

__all__ = [
    "DEFINITIONS_SCHEMA",
    "DEFINITION_COLUMNS",
    "TARGETS_SCHEMA",
    "TYPE_CODES",
    "InstrumentError",
    "InstrumentKeyError",
    "InstrumentMetadataError",
    "SymbolParseError",
    "TargetRule",
    "TargetsConfig",
    "TargetsConfigError",
    "UnsupportedInstrumentTypeError",
    "build_instrument_definitions",
    "empty_definitions",
    "empty_targets",
    "format_strike",
    "key_for_dataset_symbol",
    "key_for_instrument",
    "load_targets_config",
    "parse_targets_config",
    "sanitize_field",
    "select_targets",
]
