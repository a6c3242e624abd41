"""The sandbox speaks real Tardis: the official ``tardis-dev`` client and the CLI work against it."""

from __future__ import annotations

import gzip
import json
import os
import selectors
import signal
import subprocess
import sys
import time
import urllib.request
from datetime import date
from pathlib import Path

import pytest
import tardis_dev

from market_data_assets.sandbox import RunningSandbox, SandboxConfig, list_dataset_symbols

pytestmark = pytest.mark.servers


KEY = "sandbox-key"


def _direct(sandbox: RunningSandbox, exchange: str, data_type: str, day: date, symbol: str) -> bytes:
    request = urllib.request.Request(
        f"{sandbox.datasets_url}/{exchange}/{data_type}/{day:%Y/%m/%d}/{symbol}.csv.gz",
        headers={"Authorization": f"Bearer {KEY}"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.read()


def test_official_client_downloads_from_the_sandbox(sandbox_fresh: RunningSandbox, tmp_path: Path) -> None:
    sb = sandbox_fresh
    # one 429 with a whole-second Retry-After of 0: the official client must retry, not fail
    sb.add_fault(path_glob="*/binance-futures/quotes/*", kind="429", times=1, retry_after=0)
    tardis_dev.download_datasets(
        exchange="binance-futures",
        data_types=["trades", "quotes"],
        symbols=["btcusdt"],  # the client upper-cases symbols into dataset ids
        from_date="2024-06-01",
        to_date="2024-06-04",
        api_key=KEY,
        download_dir=str(tmp_path),
        endpoint=sb.datasets_url,
        concurrency=2,
    )
    quotes = [r for r in sb.requests if "/quotes/" in r.path]
    assert [r.status for r in quotes].count(429) == 1 and len(quotes) == 4
    assert any(r.query == "retryAttempt=1" and r.status == 200 for r in quotes)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == sorted(
        f"binance-futures_{t}_2024-06-0{d}_BTCUSDT.csv.gz" for t in ("trades", "quotes") for d in (1, 2, 3)
    )
    for name in files:
        data_type, day, _ = name.removeprefix("binance-futures_").split("_", 2)
        written = (tmp_path / name).read_bytes()
        assert written == _direct(sb, "binance-futures", data_type, date.fromisoformat(day), "BTCUSDT")
        assert gzip.decompress(written).startswith(b"exchange,symbol,timestamp,local_timestamp,")


def test_official_client_reads_exchange_details_and_instruments(sandbox: RunningSandbox) -> None:
    details = tardis_dev.get_exchange_details("deribit", endpoint=sandbox.api_url)
    assert details["datasets"]["exportedUntil"] == "2024-12-31T00:00:00.000Z"
    assert [s["id"] for s in details["datasets"]["symbols"][:3]] == ["PERPETUALS", "FUTURES", "OPTIONS"]
    options = tardis_dev.get_instrument_info(
        "deribit", filter={"type": "option", "baseCurrency": "BTC"}, api_key=KEY, endpoint=sandbox.api_url
    )
    assert options and all(o["type"] == "option" and o["baseCurrency"] == "BTC" for o in options)
    xbt = tardis_dev.get_instrument_info("bitmex", symbol="XBTUSD", endpoint=sandbox.api_url)
    assert xbt["inverse"] is True and xbt["changes"]


def test_large_deribit_universe_has_about_300k_option_symbols() -> None:
    symbols = list_dataset_symbols(SandboxConfig(large_deribit=True), "deribit")
    options = [s for s in symbols if s["type"] == "option" and s["id"] != "OPTIONS"]
    assert 250_000 <= len(options) <= 350_000
    assert len({s["id"] for s in options}) == len(options)


def _read_until(proc: subprocess.Popen[bytes], marker: str, deadline: float) -> str:
    """The process's output up to ``marker`` (or whatever came before the deadline/exit)."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    selector = selectors.DefaultSelector()
    selector.register(fd, selectors.EVENT_READ)
    text = ""
    while marker not in text and time.monotonic() < deadline:
        if selector.select(timeout=0.5):
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            text += chunk.decode()
    selector.close()
    return text


def test_cli_serves_until_sigterm(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TARDIS_")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "market_data_assets.cli",
            "sandbox",
            "--port",
            "0",
            "--no-auth",
            "--trades-per-day",
            "10",
            "--exported-until",
            "2024-07-01",
        ],  # fmt: skip
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:
        output = _read_until(proc, "Ctrl-C", deadline=time.monotonic() + 60)
        api_url = next(
            (
                line.split("=", 1)[1].strip()
                for line in output.splitlines()
                if "export TARDIS_API_URL=" in line
            ),
            None,
        )
        assert api_url, output
        assert "unset TARDIS_API_KEY" in output
        with urllib.request.urlopen(f"{api_url}/exchanges/bitmex", timeout=30) as response:
            assert json.load(response)["datasets"]["exportedUntil"] == "2024-07-01T00:00:00.000Z"
        with urllib.request.urlopen(
            f"{api_url}/bitmex/trades/2024/06/05/XBTUSD.csv.gz", timeout=30
        ) as response:
            assert response.status == 200  # --no-auth: a non-first day without a key
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()
