"""Canonical instrument keys ``VENUE:TYPE:SYMBOL`` (spec: docs/INSTRUMENT_KEY.md).

Keys are built as polars expressions over a frame of canonical fields (base, quote, expiry,
strike, ...) so a Deribit-sized universe (300K+ options) is keyed in one vectorized pass. Both
sources, instruments metadata and the symbol parser, fill the same canonical fields, so one key
builder serves both and they cannot drift apart.

Keys are file names in the lake, GCS object names and BigQuery values, so every field is
restricted to ``[A-Z0-9._-]`` and may never be empty or only dots (``..`` would be a path).
"""

from __future__ import annotations

from decimal import Decimal

import polars as pl

from market_data_assets.instruments._rows import OnBad, reject_rows
from market_data_assets.instruments.errors import InstrumentKeyError, UnsupportedInstrumentTypeError
from market_data_assets.storage.layout import (
    INSTRUMENT_KEY_REGEX,
    KEY_FIELD_CHARS,
    MAX_INSTRUMENT_KEY_LENGTH,
    check_exchange,
)

TYPE_CODES: dict[str, str] = {
    "spot": "SPOT_PAIR",
    "perpetual": "PERP",
    "future": "FUTURE",
    "option": "OPTION",
    "combo": "COMBO",
}
"""Tardis ``type`` -> key TYPE. ``prediction`` (and any type Tardis adds later) has no mapping:
such instruments are refused rather than guessed at (see docs/INSTRUMENT_KEY.md)."""

SUPPORTED_TARDIS_TYPES: tuple[str, ...] = tuple(TYPE_CODES)

OPTION_SUFFIX = {"call": "CALL", "put": "PUT"}

_UNSAFE = rf"[^{KEY_FIELD_CHARS}]"

COLLISION_SEPARATOR = "."


def sanitize_field(value: str) -> str:
    """Upper-case and map every character outside ``[A-Z0-9._-]`` to ``-`` (``XBT/USD`` -> ``XBT-USD``)."""
    return "".join(c if (c.isascii() and (c.isalnum() or c in "._-")) else "-" for c in value.upper())


def sanitize_expr(expr: pl.Expr) -> pl.Expr:
    """The vectorized twin of :func:`sanitize_field`."""
    return expr.str.to_uppercase().str.replace_all(_UNSAFE, "-")


def is_unsafe_field(expr: pl.Expr) -> pl.Expr:
    """True for a sanitized field that is empty or only dots, i.e. unusable in a path."""
    return expr.is_null() | expr.str.contains(r"^\.*$")


def format_strike(strike: float) -> str:
    """``50000.0`` -> ``50000``; ``0.625`` -> ``0.625``; ``1e-05`` -> ``0.00001`` (never exponents)."""
    if strike == int(strike):
        return str(int(strike))
    text = format(Decimal(repr(strike)), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _strike_text(strikes: pl.Series) -> pl.Expr:
    """Strikes formatted in Python once per distinct value (a few thousand), mapped back vectorized."""
    distinct = strikes.drop_nulls().unique().to_list()
    mapping = {s: format_strike(s) for s in distinct}
    if not mapping:
        return pl.lit(None, dtype=pl.String)
    return pl.col("strike").replace_strict(mapping, default=None, return_dtype=pl.String)


def add_keys(frame: pl.DataFrame, exchange: str, *, on_bad: OnBad = "raise") -> pl.DataFrame:
    """Add ``venue``, ``instrument_type`` and ``instrument_key`` to a frame of canonical fields.

    Input columns: exchange_symbol, tardis_type, base, quote, expiry (datetime UTC), strike,
    option_type (call/put), combo_id (the native id of a combo, sanitized into its SYMBOL).
    Rows that cannot be keyed (unsupported type, missing expiry/strike, unusable base/quote)
    are refused as ``on_bad`` says.
    """
    venue = check_exchange(exchange).upper()
    frame = reject_rows(
        frame,
        ~pl.col("tardis_type").is_in(SUPPORTED_TARDIS_TYPES),
        exchange=exchange,
        reason=f"instrument type not in {', '.join(SUPPORTED_TARDIS_TYPES)} (no canonical key type)",
        error=UnsupportedInstrumentTypeError,
        on_bad=on_bad,
    )
    frame = frame.with_columns(
        sanitize_expr(pl.col("base")).alias("_base"),
        sanitize_expr(pl.col("quote")).alias("_quote"),
    )
    checks = (
        (is_unsafe_field(pl.col("_base")), "base currency missing, empty or only dots"),
        (is_unsafe_field(pl.col("_quote")), "quote currency missing, empty or only dots"),
        (
            pl.col("tardis_type").is_in(["future", "option"]) & pl.col("expiry").is_null(),
            "future/option without an expiry",
        ),
        (
            (pl.col("tardis_type") == "option")
            & (pl.col("strike").is_null() | ~pl.col("option_type").is_in(list(OPTION_SUFFIX))),
            "option without a strike or a call/put option type",
        ),
    )
    for bad, reason in checks:
        frame = reject_rows(
            frame, bad, exchange=exchange, reason=reason, error=InstrumentKeyError, on_bad=on_bad
        )

    pair = pl.concat_str(pl.col("_base"), pl.lit("-"), pl.col("_quote"))
    yymmdd = pl.col("expiry").dt.convert_time_zone("UTC").dt.strftime("%y%m%d")
    combo_id = sanitize_expr(pl.col("combo_id"))
    combo_tail = combo_id.str.strip_prefix(pl.concat_str(pair, pl.lit("-"))).str.strip_prefix(
        pl.concat_str(pl.col("_base"), pl.lit("-"))
    )
    option_suffix = pl.col("option_type").replace_strict(OPTION_SUFFIX, default=None, return_dtype=pl.String)
    symbol = (
        pl.when(pl.col("tardis_type") == "future")
        .then(pl.concat_str(pair, pl.lit("-"), yymmdd))
        .when(pl.col("tardis_type") == "option")
        .then(
            pl.concat_str(pair, pl.lit("-"), _strike_text(frame["strike"]), pl.lit("-"), yymmdd, pl.lit("-"))
            + option_suffix
        )
        .when(pl.col("tardis_type") == "combo")
        .then(
            pl.when(combo_tail.is_null() | (combo_tail == "") | combo_tail.str.contains(r"^\.*$"))
            .then(pair)
            .otherwise(pl.concat_str(pair, pl.lit("-"), combo_tail))
        )
        .otherwise(pair)
    )
    code = pl.col("tardis_type").replace_strict(TYPE_CODES, default=None, return_dtype=pl.String)
    frame = frame.with_columns(pl.lit(venue).alias("venue"), code.alias("instrument_type")).with_columns(
        pl.concat_str(pl.col("venue"), pl.lit(":"), pl.col("instrument_type"), pl.lit(":"), symbol).alias(
            "instrument_key"
        )
    )
    frame = reject_rows(
        frame,
        ~pl.col("instrument_key").str.contains(INSTRUMENT_KEY_REGEX),
        exchange=exchange,
        reason="could not build a path-safe instrument key",
        error=InstrumentKeyError,
        on_bad=on_bad,
    )
    frame = reject_rows(
        frame,
        pl.col("instrument_key").str.len_chars() > MAX_INSTRUMENT_KEY_LENGTH,
        exchange=exchange,
        reason=f"instrument key longer than {MAX_INSTRUMENT_KEY_LENGTH} characters (no room for a file name)",
        error=InstrumentKeyError,
        on_bad=on_bad,
    )
    return frame.drop("_base", "_quote")


def resolve_collisions(frame: pl.DataFrame, *, max_rounds: int = 3) -> pl.DataFrame:
    """Make ``instrument_key`` unique: the rule of docs/INSTRUMENT_KEY.md, never an overwrite.

    Instruments sharing a key are ordered by (available_since, exchange_symbol, dataset_symbol),
    nulls last; the first keeps the key, the n-th gets ``.n`` appended to its SYMBOL field
    (``.2``, ``.3``, ...). Every member of a colliding group records the contested key in
    ``collision_of`` (null for uncontested keys). The rule only depends on the instruments'
    own fields, so the result does not depend on input order; applied to an exchange's whole
    universe (all days), it also keeps a key stable from one day to the next.
    """
    order = ["instrument_key", "available_since", "exchange_symbol", "dataset_symbol", "available_to"]
    if "collision_of" not in frame.columns:
        frame = frame.with_columns(pl.lit(None, dtype=pl.String).alias("collision_of"))
    for _ in range(max_rounds):
        if frame["instrument_key"].n_unique() == frame.height:
            return frame
        frame = frame.sort(order, nulls_last=True, maintain_order=True)
        rank = pl.int_range(pl.len()).over("instrument_key")
        contested = pl.len().over("instrument_key") > 1
        frame = frame.with_columns(
            pl.when(contested)
            .then(pl.coalesce("collision_of", "instrument_key"))
            .otherwise(pl.col("collision_of"))
            .alias("collision_of"),
            pl.when(rank > 0)
            .then(
                pl.concat_str(
                    pl.col("instrument_key"), pl.lit(COLLISION_SEPARATOR), (rank + 1).cast(pl.String)
                )
            )
            .otherwise(pl.col("instrument_key"))
            .alias("instrument_key"),
        )
    if frame["instrument_key"].n_unique() != frame.height:
        dupes = frame.filter(pl.col("instrument_key").is_duplicated())["instrument_key"].unique().to_list()
        raise InstrumentKeyError(f"instrument keys still not unique after collision resolution: {dupes[:5]}")
    return frame
