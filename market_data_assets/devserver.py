"""``market-data dev`` (``make dev``): the Dagster UI on the demo's instance, with the sandbox behind it.

Unless TARDIS_API_URL is already set (a real Tardis or a sandbox of your own), it starts the
bundled sandbox so that materializing from the UI works offline, then runs ``dagster dev`` with
the repo's workspace.yaml on ``<root>/dagster_home`` — the instance ``make demo`` wrote to.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from market_data_assets.demo import REPO_ROOT, prepare_instance, sandbox_environment


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=3000, help="UI port (default 3000)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--root", default=None, help="storage root (default: MARKET_DATA_ROOT or ./data)")


def run(args: argparse.Namespace) -> int:
    from market_data_assets.settings import Settings

    root = Path(args.root or Settings.from_env().root).expanduser().resolve()
    env = dict(os.environ)
    env["DAGSTER_HOME"] = str(prepare_instance(root))
    sandbox = None
    if "TARDIS_API_URL" not in os.environ:
        from market_data_assets.sandbox import SandboxConfig, start_sandbox

        sandbox = start_sandbox(SandboxConfig())
        env.update(sandbox_environment(sandbox, root))
        print(f"Tardis sandbox on {sandbox.url}")
    else:
        env["MARKET_DATA_ROOT"] = str(root)
    command = [
        str(Path(sys.executable).with_name("dagster")),
        "dev",
        "-w",
        str(REPO_ROOT / "workspace.yaml"),
        "-h",
        args.host,
        "-p",
        str(args.port),
    ]
    print(f"Dagster UI on http://{args.host}:{args.port} (instance {env['DAGSTER_HOME']})")
    try:
        return subprocess.call(command, env=env, cwd=REPO_ROOT)
    except KeyboardInterrupt:
        return 0
    finally:
        if sandbox is not None:
            sandbox.stop()
