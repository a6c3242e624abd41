"""Tardis instruments metadata (parsed JSON) -> one typed polars frame, leniently but never silently.

Tardis sends numbers as JSON numbers or as strings, adds fields over time and omits optional
ones. The fast path hands the list to polars with an explicit schema (unknown fields are
ignored, missing ones become null, numeric strings are converted); only if that fails does a
lenient path read every known field as text and convert it column by column, so a value that
really is unusable (``"abc"`` as a tick size, an object where a number belongs) is reported with
the exchange, the instrument id and the field instead of surfacing as a bare ``KeyError``.

``changes`` (the history of non-identity fields, see TARDIS.md) is read into its own long
frame (:func:`changes_frame`) and applied per day by :func:`apply_changes` as one join.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import polars as pl

from market_data_assets.days import TARDIS_TIME_POLARS_FORMAT, day_start
from market_data_assets.instruments._rows import OnBad, reject_rows
from market_data_assets.instruments.errors import InstrumentMetadataError, describe_symbols

UTC_US = pl.Datetime("us", "UTC")

TEXT_FIELDS: dict[str, str] = {
    "id": "exchange_symbol",
    "datasetId": "dataset_id",
    "exchange": "metadata_exchange",
    "baseCurrency": "base",
    "quoteCurrency": "tardis_quote_currency",
    "type": "tardis_type",
    "settlementCurrency": "settlement_currency",
    "optionType": "option_type",
    "underlyingIndex": "underlying_index",
    "contractType": "contract_type",
}
TIME_FIELDS: dict[str, str] = {
    "availableSince": "available_since",
    "availableTo": "available_to",
    "listing": "listing",
    "expiry": "expiry",
}
NUMBER_FIELDS: dict[str, str] = {
    "priceIncrement": "tick_size",
    "amountIncrement": "lot_size",
    "minTradeAmount": "min_trade_amount",
    "makerFee": "maker_fee",
    "takerFee": "taker_fee",
    "contractMultiplier": "contract_multiplier",
    "strikePrice": "strike",
}
BOOL_FIELDS: dict[str, str] = {"inverse": "inverse"}
"""``active`` is not read: it describes the export date, not the day being built."""

CHANGEABLE_FIELDS: tuple[str, ...] = (
    "priceIncrement",
    "amountIncrement",
    "minTradeAmount",
    "makerFee",
    "takerFee",
    "contractMultiplier",
)
"""Fields whose ``changes`` history is applied per day. Identity fields (id, type, currencies,
expiry, strike) are always the current values, so an instrument's key never changes over time."""

REQUIRED_FIELDS: tuple[str, ...] = ("id", "type", "baseCurrency", "quoteCurrency", "availableSince")

_ALL_FIELDS = {**TEXT_FIELDS, **TIME_FIELDS, **NUMBER_FIELDS, **BOOL_FIELDS}


def _typed_schema() -> dict[str, pl.DataType]:
    schema: dict[str, pl.DataType] = {f: pl.String() for f in (*TEXT_FIELDS, *TIME_FIELDS)}
    schema |= {f: pl.Float64() for f in NUMBER_FIELDS}
    schema |= {f: pl.Boolean() for f in BOOL_FIELDS}
    return schema


def _text_schema() -> dict[str, pl.DataType]:
    schema: dict[str, pl.DataType] = {f: pl.String() for f in _ALL_FIELDS}
    return schema


def _locate_unusable(exchange: str, instruments: list[Any]) -> InstrumentMetadataError | None:
    """Find the first value polars refused, to name it (only runs on the failure path)."""
    for i, item in enumerate(instruments):
        if not isinstance(item, dict):
            return InstrumentMetadataError(f"{exchange}: instruments[{i}] is not a JSON object: {item!r:.80}")
        ident = item.get("id", f"instruments[{i}]")
        for field in _ALL_FIELDS:
            value = item.get(field)
            if value is not None and not isinstance(value, str | int | float | bool):
                return InstrumentMetadataError(
                    f"{exchange}: instrument {ident!r}: field {field!r} has an unusable value {value!r:.80}"
                )
    return None


def _raw_frame(exchange: str, instruments: list[Any]) -> pl.DataFrame:
    if not isinstance(instruments, list):
        raise InstrumentMetadataError(
            f"{exchange}: instruments metadata must be a JSON list, got {type(instruments).__name__}"
        )
    try:
        return pl.from_dicts(instruments, schema=_typed_schema(), strict=True)
    except Exception:  # noqa: BLE001 - any refusal sends us down the lenient path below
        pass
    try:
        return pl.from_dicts(instruments, schema=_text_schema(), strict=False)
    except Exception as exc:  # noqa: BLE001
        located = _locate_unusable(exchange, instruments)
        raise (
            located or InstrumentMetadataError(f"{exchange}: unreadable instruments metadata: {exc}")
        ) from exc


def _converted(
    frame: pl.DataFrame, column: str, target: pl.Expr, exchange: str, what: str, field: str
) -> pl.DataFrame:
    """Convert ``column`` with ``target``; a non-null input that converts to null is an error."""
    frame = frame.with_columns(target.alias("_converted"))
    failed = frame.filter(pl.col(column).is_not_null() & pl.col("_converted").is_null())
    if failed.height:
        examples = [f"{s!r}: {v!r}" for s, v in failed.select("id", column).head(5).iter_rows()]
        raise InstrumentMetadataError(
            f"{exchange}: field {field!r} of instrument(s) {', '.join(examples)} is not a valid {what}"
        )
    return frame.with_columns(pl.col("_converted").alias(column)).drop("_converted")


def _to_float(frame: pl.DataFrame, column: str, exchange: str, field: str) -> pl.DataFrame:
    if frame.schema[column] == pl.Float64:
        return frame
    return _converted(
        frame,
        column,
        pl.col(column).str.strip_chars().cast(pl.Float64, strict=False),
        exchange,
        "number",
        field,
    )


def _to_bool(frame: pl.DataFrame, column: str, exchange: str, field: str) -> pl.DataFrame:
    if frame.schema[column] == pl.Boolean:
        return frame
    mapping = {"true": True, "false": False, "1": True, "0": False, "1.0": True, "0.0": False}
    expr = pl.col(column).str.strip_chars().str.to_lowercase().replace_strict(mapping, default=None)
    return _converted(frame, column, expr.cast(pl.Boolean), exchange, "boolean", field)


def parse_timestamps(
    frame: pl.DataFrame, column: str, exchange: str, field: str, symbol_column: str = "id"
) -> pl.DataFrame:
    """ISO-8601 UTC text (``2025-01-31T00:00:00.000Z``, fraction optional) -> ``timestamp[us, UTC]``."""
    frame = frame.with_columns(
        pl.col(column)
        .str.to_datetime(TARDIS_TIME_POLARS_FORMAT, time_unit="us", time_zone="UTC", strict=False)
        .alias("_ts")
    )
    if frame.filter(pl.col(column).is_not_null() & pl.col("_ts").is_null()).height:
        # Rare spellings (no Z, an offset): let polars infer, only when the fast format missed.
        fallback = pl.col(column).str.to_datetime(time_unit="us", time_zone="UTC", strict=False)
        frame = frame.with_columns(pl.coalesce("_ts", fallback).alias("_ts"))
    failed = frame.filter(pl.col(column).is_not_null() & pl.col("_ts").is_null())
    if failed.height:
        examples = [f"{s!r}: {v!r}" for s, v in failed.select(symbol_column, column).head(5).iter_rows()]
        raise InstrumentMetadataError(
            f"{exchange}: field {field!r} of instrument(s) {', '.join(examples)} is not an ISO-8601 timestamp"
        )
    return frame.with_columns(pl.col("_ts").alias(column)).drop("_ts")


def metadata_frame(
    exchange: str, instruments: list[dict[str, Any]], *, on_bad: OnBad = "raise"
) -> pl.DataFrame:
    """Typed frame of the known metadata fields, columns renamed to definition names.

    Missing required fields (``REQUIRED_FIELDS``) are refused as ``on_bad`` says, naming the
    exchange and instrument. ``_row`` is the record's position in ``instruments``: it links a
    row to its ``changes`` (see :func:`changes_frame`).
    """
    raw = _raw_frame(exchange, instruments).with_row_index("_row")
    for field in NUMBER_FIELDS:
        raw = _to_float(raw, field, exchange, field)
    for field in BOOL_FIELDS:
        raw = _to_bool(raw, field, exchange, field)
    for field in TIME_FIELDS:
        raw = parse_timestamps(raw, field, exchange, field)
    missing = pl.any_horizontal(
        pl.col(f).is_null() | (pl.col(f).cast(pl.String).str.strip_chars() == "") for f in REQUIRED_FIELDS
    )
    has_gaps = raw.select(missing.any()).item()
    for field in REQUIRED_FIELDS if has_gaps else ():  # one pass when all is well, named errors if not
        raw = reject_rows(
            raw,
            pl.col(field).is_null() | (pl.col(field).cast(pl.String).str.strip_chars() == ""),
            exchange=exchange,
            reason=f"instrument(s) missing required metadata field {field!r}",
            error=InstrumentMetadataError,
            on_bad=on_bad,
            symbol_column="id",
        )
    frame = raw.rename(_ALL_FIELDS)
    return frame.with_columns(
        pl.col("tardis_type").str.strip_chars().str.to_lowercase(),
        pl.col("option_type").str.strip_chars().str.to_lowercase(),
    )


def changes_frame(exchange: str, instruments: list[dict[str, Any]]) -> pl.DataFrame:
    """All ``changes`` entries, one row each: _row, id, until (UTC), and the changeable fields.

    Only instruments that carry a history are visited in Python (a handful, typically); a polars
    list-of-struct column over all 300K records would cost seconds for nothing.
    """
    rows: dict[str, list[Any]] = {"_row": [], "id": [], "until": [], **{f: [] for f in CHANGEABLE_FIELDS}}
    for index, item in enumerate(instruments):
        changes = item.get("changes") if isinstance(item, dict) else None
        if not changes:
            continue
        ident = item.get("id")
        if not isinstance(changes, list) or not all(isinstance(c, dict) for c in changes):
            raise InstrumentMetadataError(
                f"{exchange}: instrument {ident!r}: 'changes' must be a list of objects, got {changes!r:.80}"
            )
        for change in changes:
            rows["_row"].append(index)
            rows["id"].append(None if ident is None else str(ident))
            for field in ("until", *CHANGEABLE_FIELDS):
                value = change.get(field)
                if value is not None and (
                    isinstance(value, bool) or not isinstance(value, str | int | float)
                ):
                    raise InstrumentMetadataError(
                        f"{exchange}: instrument {ident!r}: changes field {field!r} has an unusable value "
                        f"{value!r:.80}"
                    )
                rows[field].append(None if value is None else str(value))
    frame = pl.DataFrame(rows, schema={"_row": pl.UInt32, **{k: pl.String for k in rows if k != "_row"}})
    for field in CHANGEABLE_FIELDS:
        frame = _to_float(frame, field, exchange, f"changes.{field}")
    frame = parse_timestamps(frame, "until", exchange, "changes.until")
    missing_until = frame.filter(pl.col("until").is_null())
    if missing_until.height:
        raise InstrumentMetadataError(
            f"{exchange}: 'changes' entries without 'until' in instrument(s) "
            f"{describe_symbols(missing_until['id'].unique().sort().to_list())}"
        )
    return frame


def apply_changes(frame: pl.DataFrame, changes: pl.DataFrame, day: date) -> pl.DataFrame:
    """Show each changeable field as it was at the start of ``day`` (00:00 UTC).

    ``changes`` entries hold the values valid BEFORE their ``until``. For each field, the value
    on ``day`` is the one from the earliest change with ``until > day start`` that carries the
    field, else the current top-level value. Fields are resolved independently, because an entry
    only lists the fields that changed at that moment. Rows are linked by ``_row``.
    """
    if changes.height == 0:
        return frame
    as_of = (
        changes.filter(pl.col("until") > day_start(day))
        .sort("_row", "until")
        .group_by("_row")
        .agg(pl.col(f).drop_nulls().first().alias(f"_was_{f}") for f in CHANGEABLE_FIELDS)
    )
    frame = frame.join(as_of, on="_row", how="left")
    return frame.with_columns(
        pl.coalesce(f"_was_{f}", NUMBER_FIELDS[f]).alias(NUMBER_FIELDS[f]) for f in CHANGEABLE_FIELDS
    ).drop([f"_was_{f}" for f in CHANGEABLE_FIELDS])
