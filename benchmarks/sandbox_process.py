"""The Tardis sandbox in a child process, for benchmarks: its CPU must not count against the client.

with sandbox_process(trades_per_day=20_000, api_key="k") as urls:
    urls["api_url"], urls["datasets_url"]
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

_RUNNER = """
import json, sys
from market_data_assets.tardis.sandbox import SandboxConfig, start_sandbox
sb = start_sandbox(SandboxConfig(**json.loads(sys.argv[1])))
print(json.dumps({"api_url": sb.api_url, "datasets_url": sb.datasets_url}), flush=True)
sys.stdin.read()  # the parent closes stdin to stop us
sb.stop()
"""


@contextmanager
def sandbox_process(**config: object) -> Iterator[dict[str, str]]:
    """Start ``SandboxConfig(**config)`` in a child process; yield its URLs once it listens."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _RUNNER, json.dumps(config)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        if not line:
            raise SystemExit(f"sandbox process exited with {proc.poll()} before listening")
        yield json.loads(line)
    finally:
        if proc.stdin:
            proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.terminate()
            proc.wait(timeout=10)
