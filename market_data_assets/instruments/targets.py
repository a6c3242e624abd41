"""Which (instrument, data type) pairs to download for one exchange and day, and from which file.

The selection lives in a checked-in YAML (``market_data_assets/download_targets.yaml``, or the
file named by ``MARKET_DATA_TARGETS_FILE``): per exchange, a list of rules, each selecting
instruments by Tardis type, base, quote and/or explicit symbols, and naming the data types to
fetch. Conditions inside a rule all apply (AND), values inside a condition are alternatives
(OR), and rules add up (union). A rule with no condition selects every instrument.

``select_targets`` turns a day's definitions into one row per (instrument, data type) and
decides the URL symbol: the instrument's own dataset id, or a grouped id (``OPTIONS``,
``PERPETUALS``, ...) when that group offers the data type on that day and at least
``grouped_min_instruments`` selected instruments share it (or the instrument has no file of
its own for that type). One grouped request then serves thousands of options, while two
perpetuals do not pull the whole exchange's perpetuals file.

A typo must not pass as a quiet day: an exchange id that is neither a partition exchange nor a
Tardis exchange is an error when the file is loaded (``check_exchanges``); a rule (or a symbol)
that matches no instrument of a day is reported by ``unmatched_rules``; and an exchange-day whose
targets select nothing fails the ``raw_ticks_complete`` check unless the file says
``allow_empty: true``.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from market_data_assets.instruments.dataset_symbols import (
    GROUP_TYPES,
    available_on,
    dataset_symbols_frame,
    with_data_types,
)
from market_data_assets.instruments.errors import TargetsConfigError
from market_data_assets.instruments.keys import SUPPORTED_TARDIS_TYPES
from market_data_assets.storage.layout import LayoutError, check_exchange, check_instrument_key
from market_data_assets.tardis.formats import DATA_TYPE_NAMES

TARGETS_SCHEMA = pl.Schema(
    {
        "exchange": pl.String(),
        "data_type": pl.String(),
        "instrument_key": pl.String(),
        "symbol_in_csv": pl.String(),
        "dataset_symbol": pl.String(),
        "grouped": pl.Boolean(),
    }
)
"""One row per (instrument, data type). ``dataset_symbol`` is the URL symbol to download;
rows sharing (data_type, dataset_symbol) are one download, split by ``symbol_in_csv``."""

RULE_KEYS = ("types", "base", "quote", "symbols", "data_types")
TOP_LEVEL_KEYS = ("exchanges", "grouped_min_instruments", "allow_empty")
DEFAULT_GROUPED_MIN_INSTRUMENTS = 20


@dataclass(frozen=True)
class TargetRule:
    """One selection rule; ``None`` for a condition means "any"."""

    data_types: tuple[str, ...]
    types: tuple[str, ...] | None = None
    base: tuple[str, ...] | None = None
    quote: tuple[str, ...] | None = None
    symbols: tuple[str, ...] | None = None
    where: str = ""
    """``file: exchanges.deribit[1]``, for messages."""

    def selects(self) -> pl.Expr:
        """Polars predicate over a definitions frame."""
        condition = pl.lit(True)
        if self.types is not None:
            condition &= pl.col("tardis_type").is_in(self.types)
        if self.base is not None:
            condition &= pl.col("base").is_in(self.base)
        if self.quote is not None:
            condition &= pl.col("quote").is_in(self.quote)
        if self.symbols is not None:
            keys = [s for s in self.symbols if ":" in s]
            ids = [s for s in self.symbols if ":" not in s]
            condition &= (
                pl.col("instrument_key").is_in(keys)
                | pl.col("dataset_symbol").is_in(ids)
                | pl.col("symbol_in_csv").is_in(ids)
            )
        return condition


@dataclass(frozen=True)
class TargetsConfig:
    """The parsed targets file: rules per Tardis exchange id."""

    exchanges: Mapping[str, tuple[TargetRule, ...]]
    source: str = "<memory>"
    grouped_min_instruments: int = DEFAULT_GROUPED_MIN_INSTRUMENTS
    data_types_by_exchange: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    allow_empty: bool = False
    """Whether an exchange-day whose targets select nothing may pass ``raw_ticks_complete``."""

    def rules_for(self, exchange: str) -> tuple[TargetRule, ...]:
        return self.exchanges.get(exchange, ())


def load_targets_config(path: str | Path, known_exchanges: Iterable[str] | None = None) -> TargetsConfig:
    """Read and validate a targets YAML; every problem is a ``TargetsConfigError`` naming the file.

    With ``known_exchanges`` (the partition exchanges plus Tardis's exchange list), an exchange id
    outside it is refused (``check_exchanges``)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TargetsConfigError(f"{path}: cannot read the download targets file: {exc}") from exc
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise TargetsConfigError(f"{path}: not valid YAML: {exc}") from exc
    config = parse_targets_config(document, source=str(path))
    if known_exchanges is not None:
        check_exchanges(config, known_exchanges)
    return config


def check_exchanges(config: TargetsConfig, known_exchanges: Iterable[str]) -> None:
    """Refuse exchange ids that no one knows (``bitmx``), suggesting the closest known id."""
    known = sorted(set(known_exchanges))
    for exchange in config.exchanges:
        if exchange in known:
            continue
        close = difflib.get_close_matches(exchange, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise TargetsConfigError(
            f"{config.source}: exchanges.{exchange}: unknown exchange {exchange!r} (neither in "
            f"MARKET_DATA_EXCHANGES nor in Tardis's exchange list){hint}"
        )


def _string_list(value: Any, where: str, what: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise TargetsConfigError(f"{where}: {what!r} must be a non-empty list, got {value!r}")
    bad = [v for v in value if not isinstance(v, str) or not v.strip()]
    if bad:
        raise TargetsConfigError(f"{where}: {what!r} must list non-empty strings, got {bad!r}")
    return tuple(dict.fromkeys(v.strip() for v in value))


def _parse_rule(exchange: str, entry: Any, where: str) -> TargetRule:
    if not isinstance(entry, dict):
        raise TargetsConfigError(f"{where}: a rule must be a mapping with keys {RULE_KEYS}, got {entry!r}")
    unknown = [k for k in entry if k not in RULE_KEYS]
    if unknown:
        raise TargetsConfigError(f"{where}: unknown key(s) {unknown}; allowed: {', '.join(RULE_KEYS)}")
    if "data_types" not in entry:
        raise TargetsConfigError(f"{where}: 'data_types' is required")
    data_types = _string_list(entry["data_types"], where, "data_types")
    unknown_types = [d for d in data_types if d not in DATA_TYPE_NAMES]
    if unknown_types:
        raise TargetsConfigError(
            f"{where}: unknown data type(s) {unknown_types}; known: {', '.join(DATA_TYPE_NAMES)}"
        )
    types = _string_list(entry["types"], where, "types") if "types" in entry else None
    if types is not None:
        bad = [t for t in types if t not in SUPPORTED_TARDIS_TYPES]
        if bad:
            raise TargetsConfigError(
                f"{where}: unknown instrument type(s) {bad}; known: {', '.join(SUPPORTED_TARDIS_TYPES)}"
            )
    base = tuple(b.upper() for b in _string_list(entry["base"], where, "base")) if "base" in entry else None
    quote = (
        tuple(q.upper() for q in _string_list(entry["quote"], where, "quote")) if "quote" in entry else None
    )
    symbols = None
    if "symbols" in entry:
        symbols = tuple(
            _normalized_symbol(exchange, s, where) for s in _string_list(entry["symbols"], where, "symbols")
        )
    return TargetRule(data_types, types, base, quote, symbols, where)


def _normalized_symbol(exchange: str, symbol: str, where: str) -> str:
    """Dataset ids are compared in Tardis's dataset-id form; keys must be valid keys of this venue."""
    if ":" not in symbol:
        return symbol.upper().replace("/", "-")
    try:
        key = check_instrument_key(symbol)
    except LayoutError as exc:
        raise TargetsConfigError(f"{where}: {exc}") from None
    if key.split(":", 1)[0] != exchange.upper():
        raise TargetsConfigError(f"{where}: instrument key {symbol!r} is not a key of exchange {exchange!r}")
    return key


def parse_targets_config(document: Any, source: str = "<memory>") -> TargetsConfig:
    """Validate an already-loaded YAML document (see ``load_targets_config``)."""
    if not isinstance(document, dict):
        raise TargetsConfigError(
            f"{source}: expected a mapping with an 'exchanges' key, got {document!r:.80}"
        )
    unknown = [k for k in document if k not in TOP_LEVEL_KEYS]
    if unknown:
        raise TargetsConfigError(
            f"{source}: unknown top-level key(s) {unknown}; allowed: {', '.join(TOP_LEVEL_KEYS)}"
        )
    exchanges = document.get("exchanges")
    if not isinstance(exchanges, dict):
        raise TargetsConfigError(f"{source}: 'exchanges' must map Tardis exchange ids to lists of rules")
    threshold = document.get("grouped_min_instruments", DEFAULT_GROUPED_MIN_INSTRUMENTS)
    if not isinstance(threshold, int) or isinstance(threshold, bool) or threshold < 1:
        raise TargetsConfigError(
            f"{source}: 'grouped_min_instruments' must be an integer >= 1, got {threshold!r}"
        )
    allow_empty = document.get("allow_empty", False)
    if not isinstance(allow_empty, bool):
        raise TargetsConfigError(f"{source}: 'allow_empty' must be true or false, got {allow_empty!r}")
    rules: dict[str, tuple[TargetRule, ...]] = {}
    for exchange, entries in exchanges.items():
        where = f"{source}: exchanges.{exchange}"
        try:
            check_exchange(exchange)
        except LayoutError as exc:
            raise TargetsConfigError(f"{where}: {exc}") from None
        if entries is None:
            entries = []
        if not isinstance(entries, list):
            raise TargetsConfigError(f"{where}: expected a list of rules, got {entries!r:.80}")
        rules[exchange] = tuple(_parse_rule(exchange, e, f"{where}[{i}]") for i, e in enumerate(entries))
    data_types = {ex: tuple(dict.fromkeys(d for r in rs for d in r.data_types)) for ex, rs in rules.items()}
    return TargetsConfig(rules, source, threshold, data_types, allow_empty)


def unmatched_rules(definitions: pl.DataFrame, config: TargetsConfig, exchange: str) -> list[str]:
    """The rules of ``exchange`` that select no instrument of the day, and the listed symbols that
    match none, as ``file: exchanges.EX[i]: ...`` lines. Empty when the exchange lists nothing that
    day (no instruments: nothing could match)."""
    defs = definitions.filter(pl.col("exchange") == exchange)
    if defs.height == 0:
        return []
    out: list[str] = []
    for rule in config.rules_for(exchange):
        if defs.filter(rule.selects()).height == 0:
            out.append(f"{rule.where}: selects no instrument")
        elif rule.symbols is not None:
            known = set(defs["instrument_key"]) | set(defs["dataset_symbol"]) | set(defs["symbol_in_csv"])
            out.extend(
                f"{rule.where}: symbol {s!r} matches no instrument" for s in rule.symbols if s not in known
            )
    return out


def empty_targets() -> pl.DataFrame:
    return pl.DataFrame(schema=TARGETS_SCHEMA)


def _group_offers(exchange: str, exchange_details: dict[str, Any], day: date) -> pl.DataFrame:
    """(tardis_type, data_type) -> grouped dataset id, for groups available on ``day``."""
    datasets = exchange_details.get("datasets") if isinstance(exchange_details, dict) else None
    symbols = datasets.get("symbols") if isinstance(datasets, dict) else None
    if isinstance(symbols, list):  # only the few group entries matter here, not 300K options
        entries = [s for s in symbols if isinstance(s, dict) and str(s.get("id", "")).upper() in GROUP_TYPES]
        exchange_details = {"datasets": {"symbols": entries}}
    groups = dataset_symbols_frame(exchange, exchange_details).filter(
        pl.col("group_type").is_not_null() & available_on(day)
    )
    return (
        with_data_types(exchange, exchange_details, groups)
        .select(
            pl.col("group_type").alias("tardis_type"),
            pl.col("dataset_symbol").alias("group_symbol"),
            pl.col("data_types").alias("data_type"),
        )
        .explode("data_type")
        .drop_nulls("data_type")
        .unique(subset=["tardis_type", "data_type"], keep="first", maintain_order=True)
    )


def select_targets(
    definitions: pl.DataFrame,
    exchange_details: dict[str, Any],
    config: TargetsConfig,
    exchange: str,
    day: date,
) -> pl.DataFrame:
    """Download targets of ``exchange`` on ``day`` (schema ``TARGETS_SCHEMA``), sorted.

    Only data types an instrument offers are selected: those of its own dataset entry, plus
    those of a grouped file carrying its type that day (Deribit's ``options_chain`` exists only
    as the ``OPTIONS`` group).
    """
    check_exchange(exchange)
    rules = config.rules_for(exchange)
    defs = definitions.filter(pl.col("exchange") == exchange)
    if not rules or defs.height == 0:
        return empty_targets()
    columns = ["instrument_key", "symbol_in_csv", "dataset_symbol", "tardis_type", "data_types"]
    wanted = pl.concat(
        [
            defs.filter(rule.selects())
            .select(columns)
            .with_columns(pl.lit(list(rule.data_types), dtype=pl.List(pl.String)).alias("data_type"))
            .explode("data_type")
            for rule in rules
        ]
    ).unique(subset=["instrument_key", "data_type"], keep="first")
    offers = _group_offers(exchange, exchange_details, day)
    wanted = wanted.join(offers, on=["tardis_type", "data_type"], how="left").with_columns(
        pl.col("data_types").list.contains(pl.col("data_type")).alias("own_file")
    )
    wanted = wanted.filter(pl.col("own_file") | pl.col("group_symbol").is_not_null())
    sharing = pl.len().over(["data_type", "group_symbol"])
    use_group = pl.col("group_symbol").is_not_null() & (
        ~pl.col("own_file") | (sharing >= config.grouped_min_instruments)
    )
    targets = wanted.with_columns(use_group.alias("grouped")).select(
        pl.lit(exchange).alias("exchange"),
        "data_type",
        "instrument_key",
        "symbol_in_csv",
        pl.when("grouped")
        .then(pl.col("group_symbol"))
        .otherwise(pl.col("dataset_symbol"))
        .alias("dataset_symbol"),
        "grouped",
    )
    return targets.cast(TARGETS_SCHEMA).sort("data_type", "dataset_symbol", "instrument_key")
