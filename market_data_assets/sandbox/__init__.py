"""A Tardis-compatible HTTP sandbox with a deterministic synthetic market.

It answers the real URL scheme (``/v1/exchanges``, ``/v1/instruments/...``,
``/v1/{exchange}/{data_type}/{YYYY}/{MM}/{DD}/{symbol}.csv.gz``) with Tardis's JSON shapes, auth
rule (first day of a month free, otherwise ``Authorization: Bearer KEY``; instruments metadata
keyed except on bitmex), empty-gzip days, grouped symbols, and faults on demand. Every byte is a
pure function of ``SandboxConfig`` and the request, so tests can regenerate expected content with
the pure generators exported here without HTTP.

    sandbox = start_sandbox(SandboxConfig(trades_per_day=100))
    os.environ["TARDIS_API_URL"] = sandbox.api_url
    ...
    sandbox.stop()

Pure generators (no server needed; the server serves exactly these):
- ``generate_csv(config, exchange, data_type, day, symbol) -> bytes``: one daily file, uncompressed
  (``b""`` for a day without data); ``symbol`` is a dataset id or a group (``OPTIONS``, ...).
- ``list_instruments(config, exchange, exported_until=None)``: instruments-API objects.
- ``list_dataset_symbols(config, exchange, exported_until=None)``: ``datasets.symbols`` entries.
- ``incidents(exchange)``: the exchange's incident windows.
See README.md next to this file for the universe, the size knob, and fault injection.
"""

from market_data_assets.sandbox.config import DEFAULT_SANDBOX_EXCHANGES, SandboxConfig
from market_data_assets.sandbox.exchanges import incidents
from market_data_assets.sandbox.fault_rules import FAULT_KINDS, FaultRule, RequestRecord
from market_data_assets.sandbox.instruments import GROUP_BY_TYPE
from market_data_assets.sandbox.market import SandboxNotFound, generate_csv
from market_data_assets.sandbox.server import RunningSandbox, start_sandbox
from market_data_assets.sandbox.state import EMPTY_GZIP
from market_data_assets.sandbox.universe import list_dataset_symbols, list_instruments

__all__ = [
    "DEFAULT_SANDBOX_EXCHANGES",
    "EMPTY_GZIP",
    "FAULT_KINDS",
    "GROUP_BY_TYPE",
    "FaultRule",
    "RequestRecord",
    "RunningSandbox",
    "SandboxConfig",
    "SandboxNotFound",
    "generate_csv",
    "incidents",
    "list_dataset_symbols",
    "list_instruments",
    "start_sandbox",
]
