"""Dagster resources: the settings-driven handles every asset uses.

``MarketDataResource`` is the one resource assets ask for. It reads ``Settings`` from the
environment at run time (so a GCE VM or a test configures everything through variables) and
hands out the object store, a Tardis client and the warehouse. The API key stays inside
``Settings.tardis_api_key`` (a ``Secret``): it is never a resource config field, so it never
shows in the UI, run config or logs.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, overload

import dagster as dg

from market_data_assets.settings import Settings
from market_data_assets.storage import open_store
from market_data_assets.storage.base import ObjectStore

if TYPE_CHECKING:
    from market_data_assets.tardis.client import TardisClient


_STORES: dict[tuple[str, str | None], ObjectStore] = {}


class MarketDataResource(dg.ConfigurableResource):
    """Storage root, Tardis endpoints and warehouse, all from ``settings.py`` unless overridden."""

    root: str | None = None
    """Overrides MARKET_DATA_ROOT (tests)."""

    def settings(self) -> Settings:
        settings = Settings.from_env()
        if self.root is not None:
            from dataclasses import replace

            settings = replace(settings, root=self.root)
        return settings

    def store(self) -> ObjectStore:
        """The store of the root, one per process and root: its client, connection pool and
        request count are shared by an asset and the IO manager that writes its output."""
        root = self.settings().root
        # The emulator switch is part of the identity: tests point one root at several emulators.
        key = (root, os.environ.get("STORAGE_EMULATOR_HOST"))
        store = _STORES.get(key)
        if store is None:
            store = _STORES[key] = open_store(root)
        return store

    def tardis_client(self, **overrides: object) -> TardisClient:
        """A new client (use as ``async with``): one aiohttp session per run step."""
        from market_data_assets.tardis.client import TardisClient

        return TardisClient.from_settings(self.settings(), **overrides)

    @overload
    def exchange_details(self, exchanges: Iterable[str]) -> dict[str, dict]: ...

    @overload
    def exchange_details(
        self, exchanges: Iterable[str], on_error: Callable[[str, Exception], None]
    ) -> dict[str, dict | None]: ...

    def exchange_details(
        self, exchanges: Iterable[str], on_error: Callable[[str, Exception], None] | None = None
    ) -> dict[str, dict | None] | dict[str, dict]:
        """Each exchange's Tardis details, fetched concurrently over one client session.

        Without ``on_error`` a failure propagates; with it, the exchange maps to None after
        ``on_error(exchange, error)`` was told (a sensor tick or a report carries on without it).
        """
        from market_data_assets.tardis.errors import TardisError

        names = sorted(set(exchanges))

        async def fetch() -> list[dict | BaseException]:
            async with self.tardis_client() as client:
                return await asyncio.gather(
                    *(client.exchange_details(ex) for ex in names), return_exceptions=on_error is not None
                )

        out: dict[str, dict | None] = {}
        for exchange, result in zip(names, asyncio.run(fetch()), strict=True):
            if isinstance(result, TardisError) and on_error is not None:
                on_error(exchange, result)
                out[exchange] = None
            elif isinstance(result, BaseException):
                raise result
            else:
                out[exchange] = result
        return out
