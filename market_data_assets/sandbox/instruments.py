"""Instruments of the sandbox: the ``Instrument`` record, grouped symbols, and the fixed listings.

Shape of the fixed listings (Deribit's dated futures and options are generated in ``deribit.py``):
- binance (spot): btcusdt, ethusdt, solusdt, wifusdt (listed 2024-03-05 12:00),
  maticusdt (delisted 2024-09-10 04:00), polusdt (listed 2024-09-13 10:00).
- binance-futures (USDT perpetuals): btcusdt (priceIncrement 0.01 -> 0.1 on 2022-03-01),
  ethusdt, solusdt, wifusdt (listed 2024-03-05 08:00), maticusdt (delisted 2024-09-10 09:00).
- deribit: BTC/ETH-PERPETUAL (ETH contractMultiplier 10 -> 1 on 2024-06-01 08:00).
- bitmex: XBTUSD (inverse; priceIncrement 0.5 -> 0.1 on 2024-07-31 04:00, the real history)
  and ETHUSD (quanto). Instruments metadata is free on bitmex, as on Tardis.
- coinbase (spot): BTC-USD, ETH-USD, SOL-USD (listed 2021-06-17 16:00).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

from market_data_assets.days import day_start
from market_data_assets.sandbox.exchanges import exchange_info, iso, utc

GROUP_BY_TYPE: dict[str, str] = {
    "spot": "SPOT",
    "perpetual": "PERPETUALS",
    "future": "FUTURES",
    "option": "OPTIONS",
}


def _js_number(value: object) -> object:
    """Integral floats as ints (``0`` not ``0.0``), as Tardis's JavaScript API prints them."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


@dataclass(slots=True, eq=False)
class Instrument:
    """One tradable instrument as the sandbox knows it (metadata + what drives its prices).

    Treat as immutable. Not ``frozen``: frozen dataclasses assign fields through
    ``object.__setattr__``, which doubles the time to build the ~300K-option large universe.
    """

    exchange: str
    id: str
    dataset_id: str
    type: str
    base: str
    quote: str
    underlying: str
    listing: datetime
    available_to: datetime | None
    price_increment: float
    amount_increment: float
    min_trade_amount: float
    maker_fee: float
    taker_fee: float
    data_types: tuple[str, ...]
    settlement: str | None = None
    expiry: datetime | None = None
    inverse: bool | None = None
    contract_type: str | None = None
    contract_multiplier: float | None = None
    underlying_index: str | None = None
    strike: float | None = None
    option_type: str | None = None
    changes: tuple[dict[str, object], ...] = ()
    show_listing: bool = True

    @property
    def available_since(self) -> date:
        return self.listing.date()

    def alive_between(self, start: datetime, end: datetime) -> bool:
        """Whether the instrument traded at some moment of ``[start, end)``."""
        return self.listing < end and (self.available_to is None or self.available_to > start)

    def metadata(self, exported_until: date) -> dict[str, object]:
        """The Tardis instruments-API object for this instrument (field names as Tardis spells them)."""
        out: dict[str, object] = {
            "id": self.id,
            "datasetId": self.dataset_id,
            "exchange": self.exchange,
            "baseCurrency": self.base,
            "quoteCurrency": self.quote,
        }
        if self.settlement is not None:
            out["settlementCurrency"] = self.settlement
        out["type"] = self.type
        out["active"] = self.available_to is None or self.available_to > day_start(exported_until)
        out["availableSince"] = iso(self.available_since)
        if self.available_to is not None:
            out["availableTo"] = iso(self.available_to)
        if self.show_listing:
            out["listing"] = iso(self.listing)
        if self.expiry is not None:
            out["expiry"] = iso(self.expiry)
        out.update(
            priceIncrement=_js_number(self.price_increment),
            amountIncrement=_js_number(self.amount_increment),
            minTradeAmount=_js_number(self.min_trade_amount),
            makerFee=_js_number(self.maker_fee),
            takerFee=_js_number(self.taker_fee),
        )
        for key, value in (
            ("inverse", self.inverse),
            ("contractType", self.contract_type),
            ("contractMultiplier", self.contract_multiplier),
            ("underlyingIndex", self.underlying_index),
            ("strikePrice", self.strike),
            ("optionType", self.option_type),
        ):
            if value is not None:
                out[key] = _js_number(value)
        if self.changes:
            out["changes"] = [{k: _js_number(v) for k, v in c.items()} for c in self.changes]
        return out

    def symbol_entry(self) -> dict[str, object]:
        """This instrument's ``datasets.symbols[]`` entry in the exchange details."""
        out: dict[str, object] = {
            "id": self.dataset_id,
            "type": self.type,
            "availableSince": iso(self.available_since),
        }
        if self.available_to is not None:
            out["availableTo"] = iso(self.available_to)
        out["dataTypes"] = list(self.data_types)
        return out


@dataclass(frozen=True)
class SymbolGroup:
    """A grouped dataset symbol (OPTIONS, PERPETUALS, ...): one mixed file per day and data type."""

    exchange: str
    id: str
    type: str
    data_types: tuple[str, ...]
    available_since: date
    members: tuple[Instrument, ...] = field(repr=False)

    def members_alive(self, start: datetime, end: datetime) -> list[Instrument]:
        return [m for m in self.members if m.alive_between(start, end)]

    def symbol_entry(self) -> dict[str, object]:
        return {
            "id": self.id,
            "type": self.type,
            "availableSince": iso(self.available_since),
            "dataTypes": list(self.data_types),
        }


# ----------------------------------------------------------------------------------------------
# instrument builders


def _spot(
    exchange: str,
    native: str,
    dataset: str,
    base: str,
    quote: str,
    listing: datetime,
    price_inc: float,
    amount_inc: float,
    *,
    until: datetime | None = None,
    changes: tuple[dict[str, object], ...] = (),
) -> Instrument:
    fee = 0.001 if exchange == "binance" else 0.004
    return Instrument(
        exchange=exchange,
        id=native,
        dataset_id=dataset,
        type="spot",
        base=base,
        quote=quote,
        underlying=base,
        listing=listing,
        available_to=until,
        price_increment=price_inc,
        amount_increment=amount_inc,
        min_trade_amount=amount_inc,
        maker_fee=fee / 2 if exchange == "coinbase" else fee,
        taker_fee=fee,
        data_types=exchange_info(exchange).types["spot"],
        changes=changes,
    )


def _binance_perp(
    native: str,
    base: str,
    listing: datetime,
    price_inc: float,
    amount_inc: float,
    *,
    until: datetime | None = None,
    changes: tuple[dict[str, object], ...] = (),
) -> Instrument:
    return Instrument(
        exchange="binance-futures",
        id=native,
        dataset_id=native.upper(),
        type="perpetual",
        base=base,
        quote="USDT",
        underlying=base,
        listing=listing,
        available_to=until,
        price_increment=price_inc,
        amount_increment=amount_inc,
        min_trade_amount=amount_inc,
        maker_fee=0.0002,
        taker_fee=0.0005,
        data_types=exchange_info("binance-futures").types["perpetual"],
        settlement="USDT",
        inverse=False,
        contract_type="linear_perpetual",
        contract_multiplier=1,
        changes=changes,
    )


def _exchange_start(exchange: str) -> datetime:
    return day_start(exchange_info(exchange).available_since)


def static_instruments(exchange: str) -> list[Instrument]:
    start = _exchange_start(exchange)
    if exchange == "binance":
        return [
            _spot("binance", "btcusdt", "BTCUSDT", "BTC", "USDT", start, 0.01, 0.00001),
            _spot("binance", "ethusdt", "ETHUSDT", "ETH", "USDT", start, 0.01, 0.0001),
            _spot("binance", "solusdt", "SOLUSDT", "SOL", "USDT", utc(2020, 8, 11, 6), 0.01, 0.001),
            _spot("binance", "wifusdt", "WIFUSDT", "WIF", "USDT", utc(2024, 3, 5, 12), 0.0001, 0.01),
            _spot(
                "binance",
                "maticusdt",
                "MATICUSDT",
                "MATIC",
                "USDT",
                start,
                0.0001,
                0.1,
                until=utc(2024, 9, 10, 4),
            ),
            _spot("binance", "polusdt", "POLUSDT", "POL", "USDT", utc(2024, 9, 13, 10), 0.0001, 0.1),
        ]
    if exchange == "binance-futures":
        return [
            _binance_perp(
                "btcusdt",
                "BTC",
                start,
                0.1,
                0.001,
                changes=({"until": "2022-03-01T00:00:00.000Z", "priceIncrement": 0.01},),
            ),
            _binance_perp("ethusdt", "ETH", utc(2019, 11, 27, 8), 0.01, 0.001),
            _binance_perp("solusdt", "SOL", utc(2020, 9, 14, 8), 0.01, 1),
            _binance_perp("wifusdt", "WIF", utc(2024, 3, 5, 8), 0.0001, 1),
            _binance_perp("maticusdt", "MATIC", start, 0.0001, 1, until=utc(2024, 9, 10, 9)),
        ]
    if exchange == "coinbase":
        return [
            _spot("coinbase", "BTC-USD", "BTC-USD", "BTC", "USD", start, 0.01, 0.00000001),
            _spot("coinbase", "ETH-USD", "ETH-USD", "ETH", "USD", start, 0.01, 0.00000001),
            _spot("coinbase", "SOL-USD", "SOL-USD", "SOL", "USD", utc(2021, 6, 17, 16), 0.01, 0.001),
        ]
    if exchange == "bitmex":
        perp = exchange_info("bitmex").types["perpetual"]
        return [
            Instrument(
                exchange="bitmex",
                id="XBTUSD",
                dataset_id="XBTUSD",
                type="perpetual",
                base="BTC",
                quote="USD",
                underlying="BTC",
                listing=start,
                available_to=None,
                price_increment=0.1,
                amount_increment=100,
                min_trade_amount=100,
                maker_fee=-0.0001,
                taker_fee=0.00075,
                data_types=perp,
                settlement="BTC",
                inverse=True,
                contract_type="inverse_perpetual",
                contract_multiplier=1,
                underlying_index=".BXBT",
                changes=(
                    {"until": "2021-06-08T04:30:00.000Z", "amountIncrement": 1, "minTradeAmount": 1},
                    {"until": "2024-07-31T04:00:00.000Z", "priceIncrement": 0.5},
                    {"until": "2024-10-22T00:00:00.000Z", "makerFee": 0.0002, "takerFee": 0.00075},
                ),
                show_listing=False,
            ),
            Instrument(
                exchange="bitmex",
                id="ETHUSD",
                dataset_id="ETHUSD",
                type="perpetual",
                base="ETH",
                quote="USD",
                underlying="ETH",
                listing=start,
                available_to=None,
                price_increment=0.05,
                amount_increment=1,
                min_trade_amount=1,
                maker_fee=-0.0001,
                taker_fee=0.00075,
                data_types=perp,
                settlement="BTC",
                inverse=False,
                contract_type="quanto_perpetual",
                contract_multiplier=0.000001,
                underlying_index=".BETH",
                show_listing=False,
            ),
        ]
    if exchange == "deribit":
        perp = exchange_info("deribit").types["perpetual"]
        return [
            Instrument(
                exchange="deribit",
                id="BTC-PERPETUAL",
                dataset_id="BTC-PERPETUAL",
                type="perpetual",
                base="BTC",
                quote="USD",
                underlying="BTC",
                listing=start,
                available_to=None,
                price_increment=0.5,
                amount_increment=10,
                min_trade_amount=10,
                maker_fee=0.0,
                taker_fee=0.0005,
                data_types=perp,
                settlement="BTC",
                inverse=True,
                contract_type="inverse_perpetual",
                contract_multiplier=10,
                underlying_index="btc_usd",
            ),
            Instrument(
                exchange="deribit",
                id="ETH-PERPETUAL",
                dataset_id="ETH-PERPETUAL",
                type="perpetual",
                base="ETH",
                quote="USD",
                underlying="ETH",
                listing=start,
                available_to=None,
                price_increment=0.05,
                amount_increment=1,
                min_trade_amount=1,
                maker_fee=0.0,
                taker_fee=0.0005,
                data_types=perp,
                settlement="ETH",
                inverse=True,
                contract_type="inverse_perpetual",
                contract_multiplier=1,
                underlying_index="eth_usd",
                changes=(
                    {
                        "until": "2024-06-01T08:00:00.000Z",
                        "amountIncrement": 10,
                        "minTradeAmount": 10,
                        "contractMultiplier": 10,
                    },
                ),
            ),
        ]
    raise KeyError(exchange)
