"""Small builders of Tardis API JSON for tests (shapes as in /v1/exchanges/{exchange})."""

from __future__ import annotations


def dataset_symbol_entry(
    symbol: str,
    tardis_type: str,
    types: tuple[str, ...] = ("trades",),
    since: str = "2019-01-01",
    to: str | None = None,
) -> dict:
    """One ``datasets.symbols[]`` entry; ``since``/``to`` are days (YYYY-MM-DD)."""
    entry = {
        "id": symbol,
        "type": tardis_type,
        "availableSince": f"{since}T00:00:00.000Z",
        "dataTypes": list(types),
    }
    if to:
        entry["availableTo"] = f"{to}T00:00:00.000Z"
    return entry
