"""Reading base, quote, expiry and strike out of a dataset symbol id, for when there is no metadata.

Without a paid Tardis key the instruments metadata endpoint answers 401 (BitMEX excepted), yet
exchange details (``datasets.symbols``: id + type) are public. Each exchange spells its symbols
its own way, so this module keeps one declarative table of regexes per (exchange, type): named
groups ``base``, ``quote``, ``expiry``, ``strike``, ``cp`` and ``combo`` feed the same canonical
fields the metadata path fills. Patterns run as polars regex extractions over the whole symbol
list at once (Deribit lists 300K+ option ids). Rows record ``key_source = "symbol_parse"``.
The table and its conventions are documented in docs/INSTRUMENT_KEY.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import polars as pl

from market_data_assets.instruments._rows import OnBad, reject_rows
from market_data_assets.instruments.errors import SymbolParseError, UnsupportedInstrumentTypeError
from market_data_assets.instruments.keys import SUPPORTED_TARDIS_TYPES

QUOTE_CURRENCIES: tuple[str, ...] = (
    "USDT", "USDC", "FDUSD", "BUSD", "TUSD", "USDP", "USDS", "USDE", "DAI", "PAX", "UST", "VAI",
    "USD", "EUR", "EURI", "AEUR", "GBP", "TRY", "BRL", "AUD", "JPY", "RUB", "UAH", "NGN", "ZAR",
    "IDRT", "BIDR", "BVND", "BKRW", "PLN", "RON", "ARS", "MXN", "COP", "CZK", "KRW",
    "BTC", "ETH", "BNB", "XRP", "TRX", "DOGE", "DOT", "SOL",
)  # fmt: skip
"""Quote currencies recognized at the END of a concatenated id (``BTCUSDT``). The shortest base
that leaves a known quote wins, i.e. the longest quote: ``BTCTUSD`` is BTC/TUSD, not BTCT/USD."""

BITMEX_QUOTES: tuple[str, ...] = ("USDT", "USDC", "USD", "EUR", "XBT", "ETH")
"""BitMEX's own short list: with the general list ``XBTUSD`` would split as XB/TUSD.
Quote lists are per venue for exactly this reason."""

CURRENCY_ALIASES: dict[str, str] = {"XBT": "BTC"}
"""Tardis normalizes these in metadata; the parser does the same so both sources agree."""

_Q = "|".join(QUOTE_CURRENCIES)
_DERIBIT_PREFIX = r"^(?P<base>[A-Z0-9]+)(?:_(?P<quote>[A-Z0-9]+))?"
_DERIBIT_DATE = r"(?P<expiry>\d{1,2}[A-Z]{3}\d{2})"

Inverse = Literal["yes", "no", "if_default_quote"] | None


@dataclass(frozen=True)
class SymbolPattern:
    """How one exchange spells one instrument type (first matching pattern of a type wins)."""

    tardis_type: str
    regex: str
    default_quote: str | None = None
    """Quote when the id carries none (Deribit ``BTC-PERPETUAL`` is quoted in USD)."""
    expiry_format: str | None = None
    """chrono format of the ``expiry`` group, or ``bitmex_month`` for month codes (``Z24``)."""
    expiry_hour_utc: int = 8
    """Expiry time of day: the venue's settlement hour (Deribit/Binance 08:00, BitMEX 12:00)."""
    inverse: Inverse = None
    """Whether the instrument is inverse (quoted in USD, settled in the base coin), if the venue's
    naming tells; ``None`` leaves ``inverse``/``settlement`` null."""


def _split(tardis_type: str, quotes: tuple[str, ...] = QUOTE_CURRENCIES, **kw: object) -> SymbolPattern:
    """Concatenated ``BASEQUOTE`` ids split at one of the venue's quote currencies."""
    alternatives = "|".join(quotes)
    return SymbolPattern(tardis_type, rf"^(?P<base>[A-Z0-9]+?)(?P<quote>{alternatives})$", **kw)  # pyright: ignore[reportArgumentType]


def _pair(tardis_type: str, seps: str = "-_", **kw: object) -> SymbolPattern:
    """``BASE<sep>QUOTE`` ids."""
    return SymbolPattern(tardis_type, rf"^(?P<base>[A-Z0-9]+)[{seps}](?P<quote>[A-Z0-9]+)$", **kw)  # pyright: ignore[reportArgumentType]


PATTERNS: dict[str, tuple[SymbolPattern, ...]] = {
    "deribit": (
        SymbolPattern("perpetual", _DERIBIT_PREFIX + r"-PERPETUAL$", "USD", inverse="if_default_quote"),
        SymbolPattern(
            "future", _DERIBIT_PREFIX + "-" + _DERIBIT_DATE + "$", "USD", "%d%b%y", 8, "if_default_quote"
        ),
        SymbolPattern(
            "option",
            _DERIBIT_PREFIX + "-" + _DERIBIT_DATE + r"-(?P<strike>\d+(?:[D.]\d+)?)-(?P<cp>[CP])$",
            "USD",
            "%d%b%y",
            8,
            "if_default_quote",
        ),
        _pair("spot", seps="_"),
        SymbolPattern("combo", _DERIBIT_PREFIX + r"-(?P<combo>.+)$", "USD", inverse="if_default_quote"),
    ),
    "binance": (_split("spot"),),
    "binance-futures": (
        _split("perpetual", inverse="no"),
        SymbolPattern(
            "future", rf"^(?P<base>[A-Z0-9]+?)(?P<quote>{_Q})_(?P<expiry>\d{{6}})$", None, "%y%m%d", 8, "no"
        ),
    ),
    "binance-delivery": (
        SymbolPattern("perpetual", r"^(?P<base>[A-Z0-9]+?)(?P<quote>USD)_PERP$", inverse="yes"),
        SymbolPattern(
            "future", r"^(?P<base>[A-Z0-9]+?)(?P<quote>USD)_(?P<expiry>\d{6})$", None, "%y%m%d", 8, "yes"
        ),
    ),
    "bitmex": (
        _split("perpetual", BITMEX_QUOTES),
        SymbolPattern(
            "future",
            rf"^(?P<base>[A-Z0-9]+?)(?P<quote>{'|'.join(BITMEX_QUOTES)})?(?P<expiry>[FGHJKMNQUVXZ]\d{{2}})$",
            "USD",
            "bitmex_month",
            12,
        ),
        _pair("spot", seps="_"),
    ),
    "coinbase": (_pair("spot", seps="-"),),
}
"""Per-exchange spellings. Exchanges not listed use ``GENERIC_PATTERNS``."""

GENERIC_PATTERNS: tuple[SymbolPattern, ...] = (
    _pair("spot"),
    _split("spot"),
    _pair("perpetual"),
    _split("perpetual"),
)
"""Best effort for other venues: ``BASE-QUOTE``/``BASE_QUOTE`` or ``BASEQUOTE``. Futures and
options of unlisted venues cannot be keyed without metadata (their expiry is not derivable)."""

_MONTH_CODES = "FGHJKMNQUVXZ"

PARSED_SCHEMA: dict[str, pl.DataType] = {
    "base": pl.String(),
    "quote": pl.String(),
    "expiry": pl.Datetime("us", "UTC"),
    "strike": pl.Float64(),
    "option_type": pl.String(),
    "combo_id": pl.String(),
    "inverse": pl.Boolean(),
    "settlement": pl.String(),
}


def patterns_for(exchange: str) -> tuple[SymbolPattern, ...]:
    return PATTERNS.get(exchange, GENERIC_PATTERNS)


def _expiry(pattern: SymbolPattern, text: pl.Expr) -> pl.Expr:
    if pattern.expiry_format is None:
        return pl.lit(None, dtype=pl.Datetime("us", "UTC"))
    if pattern.expiry_format == "bitmex_month":
        # BitMEX quarterlies expire on the last Friday of the month, 12:00 UTC.
        month = pl.lit(1) + _month_index(text.str.slice(0, 1))
        year = pl.lit(2000) + text.str.slice(1, 2).cast(pl.Int32, strict=False)
        month_end = pl.date(year, month, 1).dt.month_end()
        day = month_end - pl.duration(days=(month_end.dt.weekday().cast(pl.Int32) - 5) % 7)
    else:
        day = text.str.to_date(pattern.expiry_format, strict=False)
    return (day.cast(pl.Datetime("us")) + pl.duration(hours=pattern.expiry_hour_utc)).dt.replace_time_zone(
        "UTC"
    )


def _month_index(code: pl.Expr) -> pl.Expr:
    return code.replace_strict(
        {c: i for i, c in enumerate(_MONTH_CODES)}, default=None, return_dtype=pl.Int32
    )


def _alias_currency(expr: pl.Expr) -> pl.Expr:
    return expr.replace(CURRENCY_ALIASES)


def _fields(pattern: SymbolPattern) -> dict[str, pl.Expr]:
    """Canonical fields from the ``_g`` struct column that ``pattern``'s regex extracted."""
    names = set(re.compile(pattern.regex).groupindex)

    def group(name: str) -> pl.Expr:
        return pl.col("_g").struct.field(name) if name in names else pl.lit(None, dtype=pl.String)

    quote_given = group("quote")
    quote = _alias_currency(quote_given.fill_null(pl.lit(pattern.default_quote, dtype=pl.String)))
    base = _alias_currency(group("base"))
    if pattern.inverse == "yes":
        inverse = pl.lit(True)
    elif pattern.inverse == "no":
        inverse = pl.lit(False)
    elif pattern.inverse == "if_default_quote":
        inverse = quote_given.is_null()
    else:
        inverse = pl.lit(None, dtype=pl.Boolean)
    fields = {
        "base": base,
        "quote": quote,
        "expiry": _expiry(pattern, group("expiry")),
        "strike": group("strike").str.replace("D", ".", literal=True).cast(pl.Float64, strict=False),
        "option_type": group("cp").replace_strict({"C": "call", "P": "put"}, default=None),
        "combo_id": pl.col("dataset_symbol") if "combo" in names else pl.lit(None, dtype=pl.String),
        "inverse": inverse,
        "settlement": pl.when(inverse).then(base).when(~inverse).then(quote),
    }
    return {k: v.cast(PARSED_SCHEMA[k]).alias(k) for k, v in fields.items()}


def _read_with(pattern: SymbolPattern, frame: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(rows ``pattern`` reads, with canonical fields; rows it does not read)."""
    extracted = frame.with_columns(pl.col("dataset_symbol").str.extract_groups(pattern.regex).alias("_g"))
    hit = pl.col("_g").struct.field("base").is_not_null()
    read = extracted.filter(hit).with_columns(**_fields(pattern)).drop("_g")
    return read, extracted.filter(~hit).drop("_g")


def parse_dataset_symbols(exchange: str, symbols: pl.DataFrame, *, on_bad: OnBad = "raise") -> pl.DataFrame:
    """Add the canonical fields (``PARSED_SCHEMA``) to a frame of ``dataset_symbol, tardis_type``.

    Each type's rows go through that type's patterns in order (first match wins), so a regex
    only ever runs over the ids it is meant for. An id no pattern reads is refused as
    ``on_bad`` says, with a ``SymbolParseError`` naming the exchange and the ids. Row order is
    not preserved.
    """
    symbols = reject_rows(
        symbols,
        ~pl.col("tardis_type").is_in(SUPPORTED_TARDIS_TYPES),
        exchange=exchange,
        reason=f"instrument type not in {', '.join(SUPPORTED_TARDIS_TYPES)} (no canonical key type)",
        error=UnsupportedInstrumentTypeError,
        on_bad=on_bad,
        symbol_column="dataset_symbol",
    )
    patterns = patterns_for(exchange)
    nulls = [pl.lit(None, dtype=t).alias(n) for n, t in PARSED_SCHEMA.items()]
    parts: list[pl.DataFrame] = []
    for (tardis_type,), rows in symbols.partition_by("tardis_type", as_dict=True).items():
        remaining = rows
        for pattern in (p for p in patterns if p.tardis_type == tardis_type):
            read, remaining = _read_with(pattern, remaining)
            parts.append(read)
        parts.append(remaining.with_columns(nulls))
    if not parts:
        return symbols.with_columns(nulls)
    out = pl.concat(parts, how="vertical_relaxed")
    return reject_rows(
        out,
        pl.col("base").is_null()
        | (pl.col("tardis_type").is_in(["future", "option"]) & pl.col("expiry").is_null()),
        exchange=exchange,
        reason="dataset symbol(s) not readable without instruments metadata (no matching pattern for their type)",
        error=SymbolParseError,
        on_bad=on_bad,
        symbol_column="dataset_symbol",
    )
