"""Dagster resources: the settings-driven handles every asset uses.

``MarketDataResource`` is the one resource assets ask for. It holds the validated ``Settings``
that ``build_definitions`` read once (a GCE VM or a test configures everything through
variables; a step process builds the same Definitions from the same environment) and hands out
the object store, a Tardis client and the warehouse. The Google clients come from dagster-gcp's
``GCSResource`` and ``BigQueryResource`` (resources ``gcs`` and ``bigquery``: shown in the UI,
configurable in the launchpad). The API key stays inside ``Settings.tardis_api_key`` (a
``Secret``): it is never a config field, so it never shows in the UI, run config or logs.

No ``from __future__ import annotations``: Dagster reads the resource fields' annotations at class
creation, and a postponed ``ResourceDependency[...]`` is not recognised as one.
"""

import asyncio
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, overload

import dagster as dg
import dagster_gcp

from market_data_assets.settings import Settings
from market_data_assets.storage import open_store
from market_data_assets.storage.base import ObjectStore
from market_data_assets.warehouse.factory import bigquery_target, open_warehouse

if TYPE_CHECKING:
    from google.cloud import bigquery

    from market_data_assets.tardis.client import TardisClient
    from market_data_assets.warehouse.base import Warehouse


_STORES: dict[tuple[str, str | None, str | None], ObjectStore] = {}


class BigQueryResource(dagster_gcp.BigQueryResource):
    """dagster-gcp's BigQuery resource; with ``BIGQUERY_EMULATOR_HOST`` set (tests, local-bigquery) the
    client is anonymous, since an emulator takes no credentials and there are none to find."""

    @contextmanager
    def get_client(self) -> Iterator["bigquery.Client"]:
        from market_data_assets.warehouse.bigquery_warehouse import bigquery_client, emulator_host

        if emulator_host():
            yield bigquery_client(self.project or "emulator-project", self.location)
        else:
            with super().get_client() as client:
                yield client


def google_resources(settings: Settings) -> tuple[dagster_gcp.GCSResource, BigQueryResource]:
    """The ``gcs`` and ``bigquery`` resources (the launchpad can override both): BigQuery's project is
    the warehouse URI's; GCS's the environment's (``GOOGLE_CLOUD_PROJECT`` or the credentials'), as
    the store's client always took it."""
    project = bigquery_target(settings.warehouse)[0] if settings.warehouse_kind == "bigquery" else None
    return dagster_gcp.GCSResource(), BigQueryResource(project=project)


class MarketDataResource(dg.ConfigurableResource):
    """Storage root, Tardis endpoints and warehouse, from the ``Settings`` the Definitions were built with."""

    settings: dg.ResourceDependency[Settings]
    """The validated settings (``Settings.from_env()`` once, in ``build_definitions``)."""
    gcs: dg.ResourceDependency[dagster_gcp.GCSResource]
    bigquery: dg.ResourceDependency[BigQueryResource]

    @classmethod
    def of(cls, settings: Settings) -> "MarketDataResource":
        """The resource for ``settings`` with default Google resources (tests, scripts)."""
        gcs, bigquery = google_resources(settings)
        return cls(settings=settings, gcs=gcs, bigquery=bigquery)

    def store(self) -> ObjectStore:
        """The store of the root, one per process and root: its client, connection pool and
        request count are shared by an asset and the IO manager that writes its output."""
        root = self.settings.root
        # The emulator switch is part of the identity: tests point one root at several emulators.
        key = (root, os.environ.get("STORAGE_EMULATOR_HOST"), self.gcs.project)
        store = _STORES.get(key)
        if store is None:
            client = self.gcs.get_client() if root.startswith("gs://") else None
            store = _STORES[key] = open_store(root, gcs_client=client)
        return store

    def warehouse(self) -> "Warehouse":
        """The warehouse ``MARKET_DATA_WAREHOUSE`` names (close it when done)."""
        if self.settings.warehouse_kind != "bigquery":
            return open_warehouse(self.settings, self.store())
        with self.bigquery.get_client() as client:
            return open_warehouse(
                self.settings, self.store(), bigquery_client=client, location=self.bigquery.location
            )

    def tardis_client(self, **overrides: object) -> "TardisClient":
        """A new client (use as ``async with``): one aiohttp session per run step."""
        from market_data_assets.tardis.client import TardisClient

        return TardisClient.from_settings(self.settings, **overrides)

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
