"""The bundled Tardis sandbox, exercised over real HTTP."""

from __future__ import annotations

import gzip
import urllib.error
import urllib.request

from market_data_assets.tardis.sandbox import RunningSandbox


def _get(sandbox: RunningSandbox, path: str, key: str | None = None) -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    request = urllib.request.Request(sandbox.url + path, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_free_first_of_month_trades_file_has_the_tardis_header(sandbox: RunningSandbox) -> None:
    status, body = _get(sandbox, "/v1/bitmex/trades/2024/03/01/XBTUSD.csv.gz")
    assert status == 200
    lines = gzip.decompress(body).decode().splitlines()
    assert lines[0] == "exchange,symbol,timestamp,local_timestamp,id,side,price,amount"
    assert len(lines) > 100
