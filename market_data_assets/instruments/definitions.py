"""One exchange's instrument definitions for one day: the ``instrument_definitions`` asset's core.

``build_instrument_definitions`` joins the two Tardis sources into one row per instrument listed that day:
instruments metadata (paid key; free on BitMEX) when available, else the public exchange details
read through the per-exchange symbol parser. Every row carries its canonical key, what
downloading needs (dataset symbol, data types, grouped files) and what users need (tick and lot
size, multiplier, expiry, strike, ...), with the ``changes`` history applied so the row shows
the values of THAT day. Everything is vectorized polars: a 300K-option Deribit universe builds
in well under two seconds (benchmarks/bench_instruments.py).
"""

from __future__ import annotations

from datetime import date
from typing import Any

import polars as pl

from market_data_assets.days import day_bounds
from market_data_assets.instruments._rows import OnBad
from market_data_assets.instruments.dataset_symbols import (
    available_on,
    dataset_symbols_frame,
    with_data_types,
)
from market_data_assets.instruments.errors import InstrumentError
from market_data_assets.instruments.keys import add_keys, resolve_collisions
from market_data_assets.instruments.metadata import apply_changes, changes_frame, metadata_frame
from market_data_assets.instruments.symbols import CURRENCY_ALIASES, parse_dataset_symbols
from market_data_assets.storage.layout import check_exchange

UTC_US = pl.Datetime("us", "UTC")

DEFINITION_COLUMNS: tuple[tuple[str, pl.DataType, str], ...] = (
    (
        "instrument_key",
        pl.String(),
        "canonical VENUE:TYPE:SYMBOL key (docs/INSTRUMENT_KEY.md); file names use it",
    ),
    ("exchange", pl.String(), "Tardis exchange id (binance-futures)"),
    ("venue", pl.String(), "exchange id upper-cased, the key's VENUE"),
    ("instrument_type", pl.String(), "SPOT_PAIR, PERP, FUTURE, OPTION or COMBO"),
    ("tardis_type", pl.String(), "Tardis type: spot, perpetual, future, option, combo"),
    ("exchange_symbol", pl.String(), "exchange-native id (metadata id; the dataset id without metadata)"),
    ("dataset_symbol", pl.String(), "symbol of the instrument's own CSV download URL (dataset id)"),
    (
        "symbol_in_csv",
        pl.String(),
        "value of the CSV `symbol` column for this instrument (native id upper-cased)",
    ),
    ("base", pl.String(), "base currency (XBT normalized to BTC)"),
    ("quote", pl.String(), "currency prices and strikes are quoted in (the key's QUOTE)"),
    (
        "tardis_quote_currency",
        pl.String(),
        "quoteCurrency as in Tardis metadata (BTC for inverse BTC options)",
    ),
    ("settlement", pl.String(), "settlement currency (null for spot or when unknown)"),
    ("inverse", pl.Boolean(), "inverse contract (quoted in USD, margined/settled in the base coin)"),
    ("contract_multiplier", pl.Float64(), "contract multiplier"),
    ("tick_size", pl.Float64(), "price increment"),
    ("lot_size", pl.Float64(), "amount increment"),
    ("min_trade_amount", pl.Float64(), "minimum order amount"),
    ("maker_fee", pl.Float64(), "maker fee rate"),
    ("taker_fee", pl.Float64(), "taker fee rate"),
    ("expiry", UTC_US, "expiry time (null for spot and perpetuals)"),
    ("strike", pl.Float64(), "option strike in the quote currency"),
    ("option_type", pl.String(), "call or put"),
    ("underlying_index", pl.String(), "underlying index name from metadata"),
    ("contract_type", pl.String(), "Tardis contractType (inverse_perpetual, put_option, ...)"),
    ("listing", UTC_US, "exchange listing time"),
    ("available_since", UTC_US, "Tardis data available since"),
    ("available_to", UTC_US, "Tardis data available until (exclusive); null while live"),
    ("data_types", pl.List(pl.String()), "data types of the instrument's own dataset on this day"),
    ("grouped_symbols", pl.List(pl.String()), "grouped dataset ids (OPTIONS, ...) carrying it on this day"),
    ("key_source", pl.String(), "metadata or symbol_parse: where base/quote/expiry/strike came from"),
    (
        "collision_of",
        pl.String(),
        "the contested natural key when several instruments produced it, else null",
    ),
    ("as_of_day", pl.Date(), "the day these values describe"),
)
"""Column name, type and meaning of a definitions file, in order: the schema as data."""

DEFINITIONS_SCHEMA = pl.Schema({name: dtype for name, dtype, _ in DEFINITION_COLUMNS})

KEY_SOURCE_METADATA = "metadata"
KEY_SOURCE_SYMBOL_PARSE = "symbol_parse"


def _normalized_dataset_id(expr: pl.Expr) -> pl.Expr:
    """Tardis's dataset-id rule: upper-case, ``/`` and ``:`` replaced by ``-``."""
    return (
        expr.str.to_uppercase()
        .str.replace_all("/", "-", literal=True)
        .str.replace_all(":", "-", literal=True)
    )


def _canonical_from_metadata(meta: pl.DataFrame) -> pl.DataFrame:
    base = pl.col("base").str.strip_chars().str.to_uppercase().replace(CURRENCY_ALIASES)
    tardis_quote = (
        pl.col("tardis_quote_currency").str.strip_chars().str.to_uppercase().replace(CURRENCY_ALIASES)
    )
    is_spot = pl.col("tardis_type") == "spot"
    return meta.with_columns(
        _normalized_dataset_id(pl.coalesce("dataset_id", "exchange_symbol")).alias("dataset_symbol"),
        pl.col("exchange_symbol").str.to_uppercase().alias("symbol_in_csv"),
        base.alias("base"),
        # Inverse derivatives quoted in their own base coin (Deribit BTC options: premium in BTC)
        # have strikes and underlying prices in USD: the key's QUOTE says USD.
        pl.when(~is_spot & (tardis_quote == base)).then(pl.lit("USD")).otherwise(tardis_quote).alias("quote"),
        tardis_quote.alias("tardis_quote_currency"),
        pl.coalesce(
            pl.col("settlement_currency").str.to_uppercase().replace(CURRENCY_ALIASES),
            pl.when(~is_spot & pl.col("inverse")).then(base),
            pl.when(~is_spot & ~pl.col("inverse")).then(tardis_quote),
        ).alias("settlement"),
        pl.when(pl.col("tardis_type") == "combo").then(pl.col("exchange_symbol")).alias("combo_id"),
        pl.lit(KEY_SOURCE_METADATA).alias("key_source"),
    )


def _canonical_from_symbols(exchange: str, symbols: pl.DataFrame, on_bad: OnBad) -> pl.DataFrame:
    parsed = parse_dataset_symbols(
        exchange,
        symbols.select("dataset_symbol", "tardis_type", "available_since", "available_to"),
        on_bad=on_bad,
    )
    return parsed.with_columns(
        pl.col("dataset_symbol").alias("exchange_symbol"),
        pl.col("dataset_symbol").alias("symbol_in_csv"),
        pl.lit(KEY_SOURCE_SYMBOL_PARSE).alias("key_source"),
    )


def _listed_on(day: date) -> pl.Expr:
    """Availability window overlaps the day, not expired before it, not listed after it."""
    start, end = day_bounds(day)
    return (
        available_on(day)
        & (pl.col("expiry").is_null() | (pl.col("expiry") > start))
        & (pl.col("listing").is_null() | (pl.col("listing") < end))
    )


_IDENTITY = ("tardis_type", "_expiry_day", "strike", "option_type")


def _collision_candidates(frame: pl.DataFrame, day: date) -> pl.DataFrame:
    """The day's instruments plus every instrument that could share a key with one of them.

    Two instruments can only produce the same key if they agree on type, expiry day, strike and
    option type (all spelled in the key); base and quote are left out on purpose, because
    ``A-B`` + ``C`` and ``A`` + ``B-C`` spell the same SYMBOL. Keying this subset instead of
    all 300K Deribit options gives exactly the keys a whole-universe pass gives the day's rows.
    """
    for column in ("expiry", "listing", "strike", "option_type"):
        if column not in frame.columns:
            dtype = (
                UTC_US
                if column in ("expiry", "listing")
                else (pl.Float64 if column == "strike" else pl.String)
            )
            frame = frame.with_columns(pl.lit(None, dtype=dtype).alias(column))
    frame = frame.with_columns(pl.col("expiry").dt.date().alias("_expiry_day"))
    listed = frame.filter(_listed_on(day)).select(_IDENTITY).unique()
    return frame.join(listed, on=list(_IDENTITY), how="semi", nulls_equal=True).drop("_expiry_day")


def _keyed_candidates(
    exchange: str, day: date, datasets: pl.DataFrame, instruments: list[dict[str, Any]] | None, on_bad: OnBad
) -> pl.DataFrame:
    """The instruments that matter for ``day`` (see ``_collision_candidates``), keyed, collisions
    resolved by the whole-universe rule, so each instrument keeps its key on every day."""
    singles = datasets.filter(pl.col("group_type").is_null())
    parts: list[pl.DataFrame] = []
    if instruments is not None:
        meta = metadata_frame(exchange, instruments, on_bad=on_bad)
        candidates = _canonical_from_metadata(_collision_candidates(meta, day))
        parts.append(add_keys(candidates, exchange, on_bad=on_bad))
        # Dataset ids without metadata (rare) are still described, from their symbol; the
        # metadata is authoritative, so ids no parser reads are skipped with a warning.
        covered = meta.select(
            _normalized_dataset_id(pl.coalesce("dataset_id", "exchange_symbol"))
        ).to_series()
        extra = singles.filter(~pl.col("dataset_symbol").is_in(covered.implode()))
        if extra.height:
            parsed = _collision_candidates(_canonical_from_symbols(exchange, extra, "skip"), day)
            parts.append(add_keys(parsed, exchange, on_bad="skip"))
    else:
        parsed = _collision_candidates(_canonical_from_symbols(exchange, singles, on_bad), day)
        parts.append(add_keys(parsed, exchange, on_bad=on_bad))
    universe = pl.concat(parts, how="diagonal_relaxed") if len(parts) > 1 else parts[0]
    return resolve_collisions(universe)


def build_instrument_definitions(
    exchange: str,
    day: date,
    exchange_details: dict[str, Any],
    instruments: list[dict[str, Any]] | None,
    *,
    on_bad: OnBad = "raise",
) -> pl.DataFrame:
    """The instruments of ``exchange`` listed on ``day``, one row each, schema ``DEFINITIONS_SCHEMA``.

    ``instruments`` is the parsed instruments-metadata list, or ``None`` when there is no key
    (then rows come from ``exchange_details['datasets']['symbols']`` and the symbol parser, and
    fields only metadata knows are null). Bad input raises an ``InstrumentError`` subclass naming
    the exchange and symbol; ``on_bad="skip"`` drops such instruments with a logged warning
    instead (malformed JSON shapes always raise). Rows are sorted by ``instrument_key``.
    """
    check_exchange(exchange)
    if not isinstance(day, date):
        raise InstrumentError(f"{exchange}: day must be a date, got {day!r}")
    datasets = dataset_symbols_frame(exchange, exchange_details)
    listed = _keyed_candidates(exchange, day, datasets, instruments, on_bad).filter(_listed_on(day))
    if instruments is not None:
        listed = apply_changes(listed, changes_frame(exchange, instruments), day)

    on_day = with_data_types(exchange, exchange_details, datasets.filter(available_on(day)))
    own_types = on_day.filter(pl.col("group_type").is_null()).select("dataset_symbol", "data_types")
    groups = (
        on_day.filter(pl.col("group_type").is_not_null())
        .group_by("group_type")
        .agg(pl.col("dataset_symbol").sort().alias("grouped_symbols"))
        .rename({"group_type": "tardis_type"})
    )
    listed = (
        listed.drop("data_types", strict=False)
        .join(own_types, on="dataset_symbol", how="left")
        .join(groups, on="tardis_type", how="left")
        .with_columns(
            pl.col("data_types").fill_null(pl.lit([], dtype=pl.List(pl.String))),
            pl.col("grouped_symbols").fill_null(pl.lit([], dtype=pl.List(pl.String))),
            pl.lit(exchange).alias("exchange"),
            pl.lit(day).alias("as_of_day"),
        )
    )
    return conform(listed).sort("instrument_key")


def conform(frame: pl.DataFrame) -> pl.DataFrame:
    """Exactly ``DEFINITIONS_SCHEMA``: missing columns become typed nulls, extras are dropped."""
    return frame.select(
        (pl.col(name) if name in frame.columns else pl.lit(None)).cast(dtype).alias(name)
        for name, dtype in DEFINITIONS_SCHEMA.items()
    )


def empty_definitions() -> pl.DataFrame:
    """A typed, zero-row definitions frame (a day with nothing listed still has its columns)."""
    return pl.DataFrame(schema=DEFINITIONS_SCHEMA)


def key_for_instrument(instrument: dict[str, Any], exchange: str | None = None) -> str:
    """Canonical key of one metadata record (same code path as ``build_instrument_definitions``)."""
    if exchange is None and isinstance(instrument, dict):
        exchange = instrument.get("exchange")
    if not isinstance(exchange, str):
        raise InstrumentError(f"no exchange given for instrument {instrument!r:.80}")
    # availableSince is required in a universe (it orders collisions) but not for one key.
    record = {"availableSince": "1970-01-01T00:00:00.000Z", **instrument}
    meta = _canonical_from_metadata(metadata_frame(exchange, [record]))
    return add_keys(meta, exchange)["instrument_key"][0]


def key_for_dataset_symbol(exchange: str, dataset_symbol: str, tardis_type: str) -> str:
    """Canonical key of one dataset symbol id read without metadata (``key_source=symbol_parse``)."""
    frame = pl.DataFrame(
        {
            "dataset_symbol": [_normalized_dataset_symbol(dataset_symbol)],
            "tardis_type": [tardis_type],
            "available_since": [None],
            "available_to": [None],
        },
        schema={
            "dataset_symbol": pl.String,
            "tardis_type": pl.String,
            "available_since": UTC_US,
            "available_to": UTC_US,
        },
    )
    return add_keys(_canonical_from_symbols(exchange, frame, "raise"), exchange)["instrument_key"][0]


def _normalized_dataset_symbol(symbol: str) -> str:
    return symbol.upper().replace("/", "-").replace(":", "-")
