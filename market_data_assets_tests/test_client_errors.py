"""TardisClient errors and metadata over real HTTP: classes, messages, and that the key never leaks."""

from __future__ import annotations

import asyncio
import functools
import gzip
import http.server
import logging
import socket
import threading
import traceback
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from market_data_assets.sandbox import RunningSandbox, SandboxConfig
from market_data_assets.tardis.client import DownloadRequest, DownloadResult, TardisClient
from market_data_assets.tardis.errors import (
    TardisAuthError,
    TardisError,
    TardisIntegrityError,
    TardisNotFoundError,
    TardisRateLimitError,
    TardisResponseError,
    TardisServerError,
)

FAST = {"backoff_base": 0.001, "backoff_max": 0.02}


def _client(sandbox: RunningSandbox, **kw: object) -> TardisClient:
    kw = {**FAST, "api_key": sandbox.api_key, **kw}
    return TardisClient(sandbox.api_url, sandbox.datasets_url, **kw)  # type: ignore[arg-type]


def _run(sandbox: RunningSandbox, call, **kw: object):
    async def go():
        async with _client(sandbox, **kw) as client:
            return await call(client)

    return asyncio.run(go())


def _leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if ".part-" in p.name]


# ------------------------------------------------------------------------------ datasets


def test_missing_key_on_a_paid_day_is_a_final_auth_error_naming_the_file(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    req = DownloadRequest("binance", "trades", date(2024, 3, 5), "BTCUSDT")
    dest = tmp_path / "f.csv.gz"

    with pytest.raises(TardisAuthError) as info:
        _run(sandbox, lambda c: c.download(req, dest), api_key=None)

    err = info.value
    assert err.status == 401 and err.attempts == 1
    for part in ("exchange=binance", "data_type=trades", "day=2024-03-05", "symbol=BTCUSDT", "HTTP 401"):
        assert part in str(err)
    assert "only the first day of each month is free" in str(err)  # Tardis's own message
    assert not dest.exists() and _leftovers(tmp_path) == []


def test_unknown_symbol_is_a_final_not_found_error_naming_the_file(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    req = DownloadRequest("deribit", "quotes", date(2024, 3, 5), "NO-SUCH-THING")

    with pytest.raises(TardisNotFoundError) as info:
        _run(sandbox, lambda c: c.download(req, tmp_path / "f.csv.gz"))

    err = info.value
    assert err.status == 404 and err.attempts == 1
    for part in (
        "exchange=deribit",
        "data_type=quotes",
        "day=2024-03-05",
        "symbol=NO-SUCH-THING",
        "HTTP 404",
    ):
        assert part in str(err)
    assert "is not a deribit dataset symbol" in str(err)
    assert list(tmp_path.iterdir()) == []


def test_download_many_with_bad_requests_still_delivers_the_rest(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    good = [DownloadRequest("bitmex", "trades", date(2024, 3, d), "XBTUSD") for d in (4, 5, 6)]
    unknown = DownloadRequest("bitmex", "trades", date(2024, 3, 5), "NOPE")
    not_exported = DownloadRequest("bitmex", "trades", date(2030, 1, 2), "XBTUSD")
    reqs = [good[0], unknown, good[1], not_exported, good[2]]

    async def go() -> list[DownloadResult]:
        async with _client(sandbox) as client:
            return [
                r async for r in client.download_many(reqs, lambda r: tmp_path / f"{r.symbol}-{r.day}.gz")
            ]

    results = {r.request: r for r in asyncio.run(go())}

    assert set(results) == set(reqs)
    for req in good:
        assert results[req].ok and results[req].path is not None and results[req].path.is_file()
    for req in (unknown, not_exported):
        err = results[req].error
        assert isinstance(err, TardisNotFoundError) and results[req].path is None
        assert f"day={req.day.isoformat()}" in str(err) and f"symbol={req.symbol}" in str(err)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"XBTUSD-{r.day}.gz" for r in good)


def test_a_spent_quota_fails_at_once_with_a_rate_limit_error(sandbox: RunningSandbox, tmp_path: Path) -> None:
    req = DownloadRequest("binance", "trades", date(2024, 3, 5), "ETHUSDT")
    sandbox.add_fault(path_glob="*/ETHUSDT.csv.gz", kind="429", times=1, retry_after=3600)

    with pytest.raises(TardisRateLimitError) as info:
        _run(sandbox, lambda c: c.download(req, tmp_path / "f.csv.gz"))

    assert info.value.attempts == 1 and info.value.status == 429
    assert "quota spent" in str(info.value) and "3600" in str(info.value)
    assert "symbol=ETHUSDT" in str(info.value)


def test_repeated_429s_are_waited_out_and_then_reported(sandbox: RunningSandbox, tmp_path: Path) -> None:
    req = DownloadRequest("binance", "trades", date(2024, 3, 5), "SOLUSDT")
    sandbox.add_fault(path_glob="*/SOLUSDT.csv.gz", kind="429", times=5, retry_after=0.01)

    with pytest.raises(TardisRateLimitError) as info:
        _run(sandbox, lambda c: c.download(req, tmp_path / "f.csv.gz"), max_retries=2)

    assert info.value.attempts == 3 and info.value.retryable
    assert not (tmp_path / "f.csv.gz").exists()


# ------------------------------------------------------------------------------ metadata


def test_metadata_endpoints_return_tardis_shapes(sandbox: RunningSandbox) -> None:
    async def calls(client: TardisClient):
        return (
            await client.exchanges(),
            await client.exchange_details("deribit"),
            await client.instruments("deribit"),
            await client.instruments("deribit", {"type": "future", "active": True}),
        )

    exchanges, details, everything, futures = _run(sandbox, calls)

    assert [e["id"] for e in exchanges] == list(sandbox.config.exchanges)
    assert details["id"] == "deribit"
    assert details["datasets"]["exportedUntil"].startswith(sandbox.exported_until.isoformat())
    assert {"OPTIONS", "BTC-PERPETUAL"} <= {s["id"] for s in details["datasets"]["symbols"]}
    expected_futures = [i for i in everything if i["type"] == "future" and i["active"] is True]
    assert futures == expected_futures and len(futures) > 0


def test_metadata_errors_name_the_endpoint(sandbox: RunningSandbox) -> None:
    with pytest.raises(TardisNotFoundError) as missing:
        _run(sandbox, lambda c: c.exchange_details("no-such-exchange"))
    assert f"GET {sandbox.api_url}/exchanges/no-such-exchange" in str(missing.value)
    assert "HTTP 404" in str(missing.value) and "Invalid 'exchange' param" in str(missing.value)

    with pytest.raises(TardisAuthError) as keyless:
        _run(sandbox, lambda c: c.instruments("deribit"), api_key=None)
    assert f"GET {sandbox.api_url}/instruments/deribit" in str(keyless.value)
    assert "HTTP 401" in str(keyless.value)


def test_metadata_retries_transient_failures(sandbox: RunningSandbox) -> None:
    sandbox.add_fault(path_glob="/v1/exchanges/bitmex", kind="503", times=1)
    sandbox.add_fault(path_glob="/v1/exchanges/bitmex", kind="truncate", times=1)
    details = _run(sandbox, lambda c: c.exchange_details("bitmex"))
    assert details["id"] == "bitmex"
    faults = [r.fault for r in sandbox.requests if r.path == "/v1/exchanges/bitmex"][-3:]
    assert faults == ["503", "truncate", None]


CSV = (
    b"exchange,symbol,timestamp,local_timestamp,id,side,price,amount\n"
    + b"binance,BTCUSDT,1,2,7,buy,1.5,2\n" * 500
)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # no access lines on stderr
        pass


@pytest.fixture
def static_server(tmp_path: Path) -> Iterator[str]:
    """A plain stdlib file server: an HTTP endpoint that answers with whatever files we put there."""
    root = tmp_path / "www"
    (root / "v1" / "instruments").mkdir(parents=True)
    (root / "v1" / "exchanges").write_text('{"id": "not-a-list"}')
    (root / "v1" / "instruments" / "deribit").write_text("<html>maintenance</html>")
    day = root / "v1" / "binance" / "trades" / "2024" / "03" / "05"
    day.mkdir(parents=True)
    whole = gzip.compress(CSV, mtime=0)
    (day / "CUT.csv.gz").write_bytes(whole[: len(whole) - 9])  # a stored object cut short: no trailer
    (day / "GARBAGE.csv.gz").write_bytes(b"<html>not a gzip file</html>")
    (day / "TWOMEMBERS.csv.gz").write_bytes(
        gzip.compress(CSV[:40], mtime=0) + gzip.compress(CSV[40:], mtime=0)
    )
    (day / "NOBODY.csv.gz").write_bytes(b"")
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _static_download(url: str, symbol: str, dest: Path) -> DownloadResult:
    async def go() -> DownloadResult:
        async with TardisClient(url, url, max_retries=1, **FAST) as client:
            return await client.download(DownloadRequest("binance", "trades", date(2024, 3, 5), symbol), dest)

    return asyncio.run(go())


@pytest.mark.parametrize("symbol", ["CUT", "GARBAGE"])
def test_a_complete_body_that_is_not_a_complete_gzip_stream_is_never_kept(
    static_server: str, tmp_path: Path, symbol: str
) -> None:
    """Content-Length matches here (the stored object itself is bad): only the gzip check catches it."""
    dest = tmp_path / "out" / "f.csv.gz"
    with pytest.raises(TardisIntegrityError) as info:
        _static_download(static_server, symbol, dest)
    assert info.value.attempts == 2 and f"symbol={symbol}" in str(info.value)
    assert not dest.exists() and _leftovers(tmp_path / "out") == []


def test_multi_member_gzip_and_an_empty_body_are_accepted(static_server: str, tmp_path: Path) -> None:
    two = _static_download(static_server, "TWOMEMBERS", tmp_path / "two.csv.gz")
    assert gzip.decompress((tmp_path / "two.csv.gz").read_bytes()) == CSV and not two.empty
    nobody = _static_download(static_server, "NOBODY", tmp_path / "none.csv.gz")
    assert nobody.empty and gzip.decompress((tmp_path / "none.csv.gz").read_bytes()) == b""


def test_malformed_metadata_is_a_response_error(static_server: str) -> None:
    async def go(call):
        async with TardisClient(static_server, static_server, **FAST) as client:
            return await call(client)

    with pytest.raises(TardisResponseError) as shape:
        asyncio.run(go(lambda c: c.exchanges()))
    assert "expected a JSON array" in str(shape.value) and f"{static_server}/exchanges" in str(shape.value)

    with pytest.raises(TardisResponseError) as not_json:
        asyncio.run(go(lambda c: c.instruments("deribit")))
    assert "not JSON" in str(not_json.value) and "maintenance" in str(not_json.value)


# ------------------------------------------------------------------------------ the key never leaks

LEAK_KEY = "LEAKCHECK-7f3e9a1c52d8b406"
WRONG_KEY = "WRONGKEY-c0ffee5ca1ab1e99"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _texts(err: BaseException) -> list[str]:
    """Everything an exception shows: str, repr, the formatted traceback, and its whole chain."""
    out = [str(err), repr(err), "".join(traceback.format_exception(err))]
    seen: set[int] = set()
    node: BaseException | None = err
    while node is not None and id(node) not in seen:
        seen.add(id(node))
        out += [str(node), repr(node), repr(vars(node))]
        node = node.__cause__ or node.__context__
    return out


def test_the_api_key_never_appears_in_logs_or_errors(
    make_sandbox, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sb: RunningSandbox = make_sandbox(SandboxConfig(api_key=LEAK_KEY, trades_per_day=200))
    caplog.set_level(logging.DEBUG)
    for name in ("aiohttp", "aiohttp.client", "aiohttp.internal", "aiohttp.server", "market_data_assets"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    days = [date(2024, 3, d) for d in (4, 5, 6, 7, 8)]
    reqs = [DownloadRequest("binance", "trades", d, "BTCUSDT") for d in days]
    reqs.append(DownloadRequest("binance", "trades", date(2024, 3, 5), "UNKNOWN"))
    sb.add_fault(path_glob="*/03/04/*", kind="429", times=1, retry_after=0.01)
    sb.add_fault(path_glob="*/03/05/*", kind="500", times=1)
    sb.add_fault(path_glob="*/03/06/*", kind="reset", times=1)
    sb.add_fault(path_glob="*/03/07/*", kind="truncate", times=1)
    sb.add_fault(path_glob="*/03/08/*", kind="503", times=5)
    errors: list[BaseException] = []

    async def go() -> None:
        async with TardisClient(sb.api_url, sb.datasets_url, LEAK_KEY, max_retries=2, **FAST) as client:
            assert LEAK_KEY not in repr(client) and LEAK_KEY not in str(client)
            async for r in client.download_many(reqs, lambda r: tmp_path / f"{r.day}-{r.symbol}.gz"):
                if r.error:
                    errors.append(r.error)
            await client.instruments("binance")
            for call in (
                lambda: client.exchange_details("nope-too"),
                lambda: client.exchange_details("nope"),
            ):
                try:
                    await call()
                except TardisError as exc:
                    errors.append(exc)
        async with TardisClient(sb.api_url, sb.datasets_url, WRONG_KEY, **FAST) as client:
            try:
                await client.download(reqs[0], tmp_path / "wrong.gz")
            except TardisError as exc:
                errors.append(exc)
        dead = f"http://127.0.0.1:{_free_port()}/v1"
        async with TardisClient(dead, dead, LEAK_KEY, max_retries=1, **FAST) as client:
            try:
                await client.exchanges()
            except TardisError as exc:
                errors.append(exc)

    asyncio.run(go())

    kinds = sorted(type(e).__name__ for e in errors)
    assert kinds == sorted(
        ["TardisServerError", "TardisNotFoundError", "TardisNotFoundError", "TardisNotFoundError"]
        + ["TardisAuthError", "TardisServerError"]
    ), kinds
    retry_lines = [r for r in caplog.records if r.name == "market_data_assets.tardis.client"]
    assert len(retry_lines) >= 6  # the faults were really retried (and logged) with the key in use
    assert all(r.had_auth for r in sb.requests)
    for key in (LEAK_KEY, WRONG_KEY):
        assert key not in caplog.text
        for record in caplog.records:
            assert key not in record.getMessage() and key not in repr(record.__dict__)
        for err in errors:
            for text in _texts(err):
                assert key not in text
    assert isinstance(errors[-1], TardisServerError) and "network error" in str(errors[-1])
