"""The sandbox's instrument universe as Tardis shows it at a given ``exportedUntil``.

Everything here is a pure, cached function of (seed, large_deribit, exported_until). Instruments
listed on or after ``exported_until`` are not visible yet, exactly like symbols Tardis has not
seen; moving ``exported_until`` forward (a sensor test does) reveals them. Every exchange gets
grouped symbols (SPOT, PERPETUALS, FUTURES, OPTIONS) for the instrument types it lists.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache

from market_data_assets.days import day_start
from market_data_assets.sandbox.config import SandboxConfig
from market_data_assets.sandbox.deribit import deribit_derivatives
from market_data_assets.sandbox.exchanges import EXCHANGES
from market_data_assets.sandbox.instruments import (
    GROUP_BY_TYPE,
    Instrument,
    SymbolGroup,
    static_instruments,
)
from market_data_assets.tardis.formats import get_spec


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while building hundreds of thousands of acyclic objects.

    Without this, CPython's generational GC rescans the growing heap again and again and the
    large Deribit universe takes 3-4x longer to build.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def horizon_for(exported_until: date) -> date:
    return date(exported_until.year + 2, 1, 1)


@lru_cache(maxsize=8)
def all_instruments(seed: int, large: bool, exchange: str, horizon: date) -> tuple[Instrument, ...]:
    with gc_paused():
        return _build_instruments(seed, large, exchange, horizon)


def _build_instruments(seed: int, large: bool, exchange: str, horizon: date) -> tuple[Instrument, ...]:
    items = static_instruments(exchange)
    if exchange == "deribit":
        items += deribit_derivatives(seed, large, horizon)
    return tuple(items)


def known_exchange(config: SandboxConfig, exchange: str) -> bool:
    return exchange in config.exchanges and exchange in EXCHANGES


@dataclass(frozen=True)
class ExchangeUniverse:
    """What one exchange offers as of ``exported_until``: instruments, groups and lookups."""

    exchange: str
    exported_until: date
    instruments: tuple[Instrument, ...]
    groups: tuple[SymbolGroup, ...]
    by_dataset_id: dict[str, Instrument | SymbolGroup] = field(repr=False)
    by_id: dict[str, Instrument] = field(repr=False)


@lru_cache(maxsize=16)  # a large Deribit universe holds ~50 MB of lookups
def exchange_universe(seed: int, large: bool, exchange: str, exported_until: date) -> ExchangeUniverse:
    """The instruments of ``exchange`` visible at ``exported_until`` (cached: built once per value)."""
    with gc_paused():
        return _build_universe(seed, large, exchange, exported_until)


def _build_universe(seed: int, large: bool, exchange: str, exported_until: date) -> ExchangeUniverse:
    horizon = horizon_for(exported_until)
    cutoff = day_start(exported_until)  # listed before the cutoff <=> listed on a day before it
    instruments = tuple(i for i in all_instruments(seed, large, exchange, horizon) if i.listing < cutoff)
    groups: list[SymbolGroup] = []
    for itype, group_id in GROUP_BY_TYPE.items():
        members = tuple(i for i in instruments if i.type == itype)
        if not members:
            continue
        offered = {t for types in {m.data_types for m in members} for t in types if get_spec(t).groupable}
        if itype == "option":
            offered.add("options_chain")
        data_types = tuple(t for t in _GROUP_TYPE_ORDER if t in offered)
        since = min(m.available_since for m in members)
        groups.append(SymbolGroup(exchange, group_id, itype, data_types, since, members))
    by_dataset: dict[str, Instrument | SymbolGroup] = {g.id: g for g in groups}
    by_dataset.update({i.dataset_id: i for i in instruments})
    return ExchangeUniverse(
        exchange=exchange,
        exported_until=exported_until,
        instruments=instruments,
        groups=tuple(groups),
        by_dataset_id=by_dataset,
        by_id={i.id: i for i in instruments},
    )


_GROUP_TYPE_ORDER = ("trades", "quotes", "book_ticker", "derivative_ticker", "liquidations", "options_chain")


def _universe(config: SandboxConfig, exchange: str, exported_until: date | None) -> ExchangeUniverse:
    if not known_exchange(config, exchange):
        raise KeyError(
            f"sandbox does not serve exchange {exchange!r}; it serves {', '.join(config.exchanges)}"
        )
    return exchange_universe(
        config.seed, config.large_deribit, exchange, exported_until or config.exported_until
    )


def list_instruments(
    config: SandboxConfig, exchange: str, exported_until: date | None = None
) -> list[dict[str, object]]:
    """Instruments-API objects of ``exchange`` (what ``GET /v1/instruments/{exchange}`` returns).

    ``exported_until`` defaults to the config's; instruments listed on or after it are hidden.
    """
    uni = _universe(config, exchange, exported_until)
    with gc_paused():
        return [i.metadata(uni.exported_until) for i in uni.instruments]


def list_dataset_symbols(
    config: SandboxConfig, exchange: str, exported_until: date | None = None
) -> list[dict[str, object]]:
    """``datasets.symbols`` of the exchange details: grouped symbols first, then every instrument.

    Each entry is ``{id, type, availableSince, availableTo?, dataTypes}``; ``id`` is the dataset id
    to put in a datasets URL.
    """
    uni = _universe(config, exchange, exported_until)
    with gc_paused():
        return [g.symbol_entry() for g in uni.groups] + [i.symbol_entry() for i in uni.instruments]
