"""How readers reach a ``gs://`` lake: ``storage_options`` that let polars scan Parquet straight from
it, and a pyarrow filesystem for DuckDB (both readers, hence the name).

polars reads ``gs://`` through the Rust ``object_store`` crate, which speaks GCS's *XML* API
(``GET /bucket?list-type=2`` to list, ranged ``GET /bucket/object`` to read). That is what gives
lazy scans with predicate and projection pushdown: only the footers and the row groups whose
statistics can match are fetched.

Real GCS needs no options: polars finds application default credentials itself, so the result
is an empty dict. For an emulator ``object_store`` has no endpoint option, but its service
account key accepts two testing fields, ``gcs_base_url`` and ``disable_oauth``: a key with the
emulator's URL and no OAuth sends every request there unsigned. The emulator must answer the
XML API on that address: fake-gcs-server does when started with ``-public-host HOST:PORT``
equal to the address clients use (the test fixture does this); without it, listing returns 404.

DuckDB cannot read ``gs://`` itself here (its httpfs extension is not installable offline for the
duckdb in the project venv), so ``pyarrow_filesystem_for`` gives the other route: a pyarrow
``GcsFileSystem`` whose datasets DuckDB can query (``con.register``) and polars can scan
(``pl.scan_pyarrow_dataset``), both with filter pushdown into the Parquet row groups.
"""

from __future__ import annotations

import json

import pyarrow.fs as pafs

from market_data_assets.storage.gcs import arrow_filesystem, gcs_emulator_host, parse_gs_uri


def storage_options_for(root: str, *, emulator_host: str | None = None) -> dict[str, str] | None:
    """Options for ``pl.scan_parquet(uri, storage_options=...)`` under ``root``; None for a local root.

    ``emulator_host`` defaults to ``STORAGE_EMULATOR_HOST`` (the same switch the storage client uses).
    """
    if not root.startswith("gs://"):
        return None
    parse_gs_uri(root)  # a malformed root fails here, naming itself, not deep inside polars
    emulator = emulator_host or gcs_emulator_host()
    if not emulator:
        return {}
    if "://" not in emulator:
        emulator = f"http://{emulator}"
    key = {
        "gcs_base_url": emulator.rstrip("/"),
        "disable_oauth": True,
        "client_email": "",
        "private_key": "",
        "private_key_id": "",
    }
    return {"google_service_account_key": json.dumps(key)}


def pyarrow_filesystem_for(uri: str, *, emulator_host: str | None = None) -> tuple[pafs.FileSystem, str]:
    """A pyarrow filesystem and the path inside it for ``uri`` (a ``gs://`` URI or a local path)."""
    if not uri.startswith("gs://"):
        return pafs.LocalFileSystem(), uri
    path = uri.removeprefix("gs://")
    parse_gs_uri(f"gs://{path.split('/', 1)[0]}")  # the bucket; the rest may hold globs
    return arrow_filesystem(emulator_host), path
