"""The lake's storage: ``open_store`` picks the object store a root names.

``base`` (the interface, ``ObjectStore``), ``local`` and ``gcs`` (its two implementations),
``layout`` (every path), ``slices`` (one file per instrument), ``parallel`` (the bounded I/O pool),
``frames`` (multi-file reads), ``staging`` (work folders). The import goes one way: the
implementations import ``base``, and only ``open_store`` knows them both.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from google.cloud import storage

    from market_data_assets.storage.base import ObjectStore


def open_store(root: str, *, gcs_client: storage.Client | None = None) -> ObjectStore:
    """The store for a ``MARKET_DATA_ROOT`` value: a folder, or ``gs://bucket/prefix`` (through
    ``gcs_client`` when given: Dagster's ``gcs`` resource hands its client here)."""
    if root.startswith("gs://"):
        from market_data_assets.storage.gcs import GcsStore

        return GcsStore.from_uri(root, gcs_client)
    from market_data_assets.storage.local import LocalStore

    return LocalStore(root)
