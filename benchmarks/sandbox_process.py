"""Servers in child processes, for benchmarks: their CPU must not count against the client.

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
from market_data_assets.sandbox import SandboxConfig, start_sandbox
sb = start_sandbox(SandboxConfig(**json.loads(sys.argv[1])))
print(json.dumps({"api_url": sb.api_url, "datasets_url": sb.datasets_url}), flush=True)
sys.stdin.read()  # the parent closes stdin to stop us
sb.stop()
"""


@contextmanager
def sandbox_process(**config: object) -> Iterator[dict[str, str]]:
    """Start ``SandboxConfig(**config)`` in a child process; yield its URLs once it listens."""
    with child_server(_RUNNER, json.dumps(config)) as urls:
        yield urls


@contextmanager
def child_server(script: str, *args: str) -> Iterator[dict[str, str]]:
    """Run ``python -c script *args`` in a child process; yield the JSON object of its first line
    (its URLs, printed once it listens). Closing its stdin tells it to stop."""
    proc = subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        if not line:
            raise SystemExit(f"server process exited with {proc.poll()} before listening")
        yield json.loads(line)
    finally:
        if proc.stdin:
            proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.terminate()
            proc.wait(timeout=10)
