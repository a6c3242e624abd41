"""``market-data``: the console command.

Each subcommand lives in the module that owns its behaviour and exposes
``add_arguments(parser)`` and ``run(args) -> int``; this file only dispatches.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> (module, help)
COMMANDS: dict[str, tuple[str, str]] = {
    "sandbox": ("market_data_assets.sandbox.cli", "serve the bundled Tardis-compatible sandbox"),
    "missing": ("market_data_assets.quality.cli", "report missing data over any date range"),
    "clean-staging": (
        "market_data_assets.storage.staging",
        "remove partial downloads and work folders that dead runs left in the staging folder",
    ),
    "demo": ("market_data_assets.demo", "run the whole graph end to end on the embedded default"),
    "dev": ("market_data_assets.devserver", "start the sandbox and the Dagster UI"),
    "live": ("market_data_assets.live.cli", "stream live candles from tardis-machine into the warehouse"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="market-data", description=(__doc__ or "").partition("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text)
        p.set_defaults(_module=module_name)
        try:
            importlib.import_module(module_name).add_arguments(p)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
    args = parser.parse_args(argv)
    return int(importlib.import_module(args._module).run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
