"""TardisClient dataset downloads over real HTTP against the running sandbox, faults injected by it.

The expected content of every file comes from the sandbox's pure ``generate_csv`` (no HTTP, no
client code): a downloaded file is right when it gunzips (stdlib ``gzip``) to exactly those bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
from datetime import date
from pathlib import Path

import pytest

from market_data_assets.sandbox import RunningSandbox, generate_csv
from market_data_assets.settings import Secret, Settings
from market_data_assets.tardis.client import DownloadRequest, DownloadResult, TardisClient
from market_data_assets.tardis.errors import TardisIntegrityError, TardisServerError


def _client(sandbox: RunningSandbox, **kw: object) -> TardisClient:
    """Tiny backoff so retries cost milliseconds; everything else as in production."""
    kw.setdefault("backoff_base", 0.001)
    kw.setdefault("backoff_max", 0.02)
    kw.setdefault("api_key", sandbox.api_key)
    return TardisClient(sandbox.api_url, sandbox.datasets_url, **kw)  # type: ignore[arg-type]


def _download(
    sandbox: RunningSandbox, req: DownloadRequest, dest: Path, *, verify: bool = True, **kw: object
) -> DownloadResult:
    async def go() -> DownloadResult:
        async with _client(sandbox, **kw) as client:
            return await client.download(req, dest, verify=verify)

    return asyncio.run(go())


def _download_many(
    sandbox: RunningSandbox, reqs: list[DownloadRequest], folder: Path, **kw: object
) -> list[DownloadResult]:
    async def go() -> list[DownloadResult]:
        async with _client(sandbox, **kw) as client:
            return [r async for r in client.download_many(reqs, lambda r: _dest(folder, r))]

    return asyncio.run(go())


def _dest(folder: Path, req: DownloadRequest) -> Path:
    return folder / req.exchange / req.data_type / f"{req.day.isoformat()}_{req.symbol}.csv.gz"


def _url_path(req: DownloadRequest) -> str:
    d = req.day
    return f"/v1/{req.exchange}/{req.data_type}/{d:%Y/%m/%d}/{req.symbol}.csv.gz"


def _expected(sandbox: RunningSandbox, req: DownloadRequest) -> bytes:
    return generate_csv(sandbox.config, req.exchange, req.data_type, req.day, req.symbol)


def _leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if ".part-" in p.name]


@pytest.mark.parametrize("kind", ["429", "500", "503", "reset", "truncate", "short_gzip"])
def test_each_fault_is_retried_until_the_file_arrives_intact(
    sandbox: RunningSandbox, tmp_path: Path, kind: str
) -> None:
    req = DownloadRequest("binance", "trades", date(2024, 3, 5), "BTCUSDT")
    sandbox.add_fault(path_glob=_url_path(req), kind=kind, times=2, retry_after=0.01)
    dest = tmp_path / "out" / "file.csv.gz"

    result = _download(sandbox, req, dest)

    expected = _expected(sandbox, req)
    assert len(expected) > 10_000  # a real file, not an empty day
    assert result.error is None and result.path == dest and not result.empty
    assert gzip.decompress(dest.read_bytes()) == expected
    assert result.bytes == dest.stat().st_size
    assert result.attempts == 3
    seen = [r for r in sandbox.requests if r.path == _url_path(req)][-3:]
    assert [r.fault for r in seen] == [kind, kind, None]
    assert all(r.had_auth for r in seen)
    assert _leftovers(tmp_path) == []


def test_without_verify_a_cut_connection_is_still_retried_but_a_cut_gzip_is_left_to_the_reader(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    """``verify=False`` (the raw-ticks pipeline, which inflates every file while converting it)."""
    req = DownloadRequest("binance", "trades", date(2024, 3, 9), "BTCUSDT")
    whole = gzip.compress(_expected(sandbox, req))
    sandbox.add_fault(path_glob=_url_path(req), kind="truncate", times=1)
    result = _download(sandbox, req, tmp_path / "a.csv.gz", verify=False)
    assert result.attempts == 2 and gzip.decompress(result.path.read_bytes()) == _expected(sandbox, req)

    sandbox.add_fault(path_glob=_url_path(req), kind="short_gzip", times=1)
    result = _download(sandbox, req, tmp_path / "b.csv.gz", verify=False)
    assert result.attempts == 1 and result.error is None and not result.empty
    body = result.path.read_bytes()
    assert 0 < len(body) < len(whole) * 0.6
    with pytest.raises(EOFError):
        gzip.decompress(body)
    assert _leftovers(tmp_path) == []


def test_a_body_slower_than_the_timeout_is_abandoned_and_retried(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    req = DownloadRequest("bitmex", "trades", date(2024, 3, 6), "XBTUSD")
    # The body arrives in ten pieces 0.6 s apart: longer than the 0.3 s of silence the client allows.
    sandbox.add_fault(path_glob=_url_path(req), kind="slow", times=1, delay=6.0)
    dest = tmp_path / "x.csv.gz"

    result = _download(sandbox, req, dest, timeout=0.3)

    assert result.attempts == 2
    assert gzip.decompress(dest.read_bytes()) == _expected(sandbox, req)
    assert _leftovers(tmp_path) == []


def test_download_many_delivers_every_file_intact_through_mixed_faults(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    days = [date(2024, 3, d) for d in (4, 5, 6, 7)]
    symbols = [("binance", "BTCUSDT"), ("binance", "ETHUSDT"), ("bitmex", "XBTUSD"), ("coinbase", "SPOT")]
    reqs = [DownloadRequest(ex, "trades", d, sym) for ex, sym in symbols for d in days]
    sandbox.add_fault(path_glob="*/2024/03/05/*", kind="500", times=3)
    sandbox.add_fault(path_glob="*/ETHUSDT.csv.gz", kind="truncate", times=3)
    sandbox.add_fault(path_glob="*/bitmex/*", kind="429", times=3, retry_after=0.01)
    sandbox.add_fault(path_glob="*/2024/03/07/*", kind="reset", times=2)
    sandbox.add_fault(path_glob="*/coinbase/*", kind="503", times=2)

    results = _download_many(sandbox, reqs, tmp_path, max_retries=12)

    assert len(results) == len(reqs) and {r.request for r in results} == set(reqs)
    assert [r.error for r in results if r.error] == []
    for r in results:
        assert r.path == _dest(tmp_path, r.request)
        assert gzip.decompress(r.path.read_bytes()) == _expected(sandbox, r.request), r.request
    assert sum(r.attempts for r in results) == len(reqs) + 3 + 3 + 3 + 2 + 2  # every injected fault was hit
    assert _leftovers(tmp_path) == []


def test_download_many_yields_as_files_complete_with_all_requests_in_flight(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    """Symbols and days go out together: the first file ends only after all six were requested."""
    reqs = [
        DownloadRequest("binance", "trades", date(2024, 4, d), sym)
        for sym in ("BTCUSDT", "ETHUSDT")
        for d in (2, 3, 4)
    ]
    sandbox.add_fault(path_glob="*/2024/04/0[234]/*", kind="slow", times=6, delay=1.0)
    paths = {_url_path(r) for r in reqs}

    async def go() -> tuple[int, list[DownloadResult]]:
        async with _client(sandbox, concurrency=8) as client:
            results: list[DownloadResult] = []
            requested_at_first = -1
            async for r in client.download_many(reqs, lambda r: _dest(tmp_path, r)):
                if not results:
                    requested_at_first = len({rec.path for rec in sandbox.requests if rec.path in paths})
                results.append(r)
            return requested_at_first, results

    requested_at_first, results = asyncio.run(go())
    assert requested_at_first == 6
    assert all(r.ok for r in results) and len(results) == 6


def test_closing_download_many_early_cancels_the_rest_and_leaves_no_partial_files(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    fast = DownloadRequest("binance", "trades", date(2024, 4, 9), "BTCUSDT")
    slow = [
        DownloadRequest("binance", "trades", date(2024, 4, 9), s) for s in ("ETHUSDT", "SOLUSDT", "WIFUSDT")
    ]
    for req in slow:  # bodies in ten pieces 0.5 s apart: the fast file ends long before them
        sandbox.add_fault(path_glob=_url_path(req), kind="slow", times=1, delay=5.0)

    async def go() -> DownloadResult:
        async with (
            _client(sandbox) as client,
            contextlib.aclosing(client.download_many([*slow, fast], lambda r: _dest(tmp_path, r))) as results,
        ):
            async for result in results:
                return result
        raise AssertionError("no result")

    first = asyncio.run(go())

    assert first.request == fast and first.ok
    assert [p.name for p in tmp_path.rglob("*.gz")] == [_dest(tmp_path, fast).name]
    assert _leftovers(tmp_path) == []


def test_empty_day_is_a_valid_empty_gzip_flagged_empty(sandbox: RunningSandbox, tmp_path: Path) -> None:
    # WIFUSDT lists on 2024-03-05 in the sandbox: an earlier day is HTTP 200 with an empty gzip body.
    req = DownloadRequest("binance", "trades", date(2024, 2, 20), "WIFUSDT")
    assert _expected(sandbox, req) == b""
    dest = tmp_path / "empty.csv.gz"

    result = _download(sandbox, req, dest)

    assert result.empty is True and result.error is None
    assert gzip.decompress(dest.read_bytes()) == b""
    assert result.bytes == dest.stat().st_size > 0


def test_first_of_month_downloads_without_a_key(sandbox: RunningSandbox, tmp_path: Path) -> None:
    req = DownloadRequest("binance", "trades", date(2024, 3, 1), "BTCUSDT")
    dest = tmp_path / "free.csv.gz"

    result = _download(sandbox, req, dest, api_key=None)

    assert gzip.decompress(dest.read_bytes()) == _expected(sandbox, req)
    assert result.attempts == 1
    assert [r.had_auth for r in sandbox.requests if r.path == _url_path(req)][-1] is False


def test_grouped_symbol_and_lowercase_dataset_id(sandbox: RunningSandbox, tmp_path: Path) -> None:
    """Group ids download like any symbol; a lower-case id is normalized to the dataset id."""
    group = DownloadRequest("deribit", "trades", date(2024, 3, 5), "PERPETUALS")
    lower = DownloadRequest("deribit", "trades", date(2024, 3, 5), "btc-perpetual")
    results = _download_many(sandbox, [group, lower], tmp_path)

    by_symbol = {r.request.symbol: r for r in results}
    assert gzip.decompress(by_symbol["PERPETUALS"].path.read_bytes()) == _expected(sandbox, group)  # type: ignore[union-attr]
    expected_lower = generate_csv(sandbox.config, "deribit", "trades", date(2024, 3, 5), "BTC-PERPETUAL")
    assert gzip.decompress(by_symbol["btc-perpetual"].path.read_bytes()) == expected_lower  # type: ignore[union-attr]


def test_exhausted_retries_leave_the_previous_file_untouched(sandbox: RunningSandbox, tmp_path: Path) -> None:
    req = DownloadRequest("binance", "trades", date(2024, 3, 8), "BTCUSDT")
    sandbox.add_fault(path_glob=_url_path(req), kind="truncate", times=10)
    dest = tmp_path / "keep.csv.gz"
    dest.write_bytes(b"previous complete file")

    with pytest.raises(TardisIntegrityError) as info:
        _download(sandbox, req, dest, max_retries=2)

    assert info.value.attempts == 3
    assert "after 3 attempts" in str(info.value)
    assert dest.read_bytes() == b"previous complete file"
    assert _leftovers(tmp_path) == []


def test_download_many_reports_a_file_whose_retries_ran_out_and_keeps_the_rest(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    good = [DownloadRequest("binance", "trades", date(2024, 3, d), "ETHUSDT") for d in (11, 12)]
    bad = DownloadRequest("binance", "trades", date(2024, 3, 13), "ETHUSDT")
    sandbox.add_fault(path_glob=_url_path(bad), kind="500", times=10)

    results = _download_many(sandbox, [*good, bad], tmp_path, max_retries=1)

    failed = [r for r in results if r.error]
    assert [r.request for r in failed] == [bad]
    assert isinstance(failed[0].error, TardisServerError)
    assert failed[0].attempts == 2 and failed[0].path is None
    assert not _dest(tmp_path, bad).exists()
    for r in results:
        if r.ok:
            assert gzip.decompress(r.path.read_bytes()) == _expected(sandbox, r.request)  # type: ignore[union-attr]
    assert _leftovers(tmp_path) == []


def test_dataset_url_spells_the_dataset_id() -> None:
    client = TardisClient("http://h/v1", "http://d/v1/")
    req = DownloadRequest("deribit", "options_chain", date(2024, 1, 2), "btc/usd:x")
    assert client.dataset_url(req) == "http://d/v1/deribit/options_chain/2024/01/02/BTC-USD-X.csv.gz"
    spaced = DownloadRequest("x", "trades", date(2024, 12, 31), "A B")
    assert client.dataset_url(spaced) == "http://d/v1/x/trades/2024/12/31/A%20B.csv.gz"


def test_from_settings_uses_the_configured_endpoints_and_hides_the_key() -> None:
    settings = Settings(
        tardis_api_key=Secret("settings-key-123"),
        tardis_api_url="http://api.example/v1",
        tardis_datasets_url="http://data.example/v1",
        concurrency=3,
    )
    client = TardisClient.from_settings(settings, max_retries=0)
    req = DownloadRequest("bitmex", "trades", date(2024, 5, 6), "XBTUSD")
    assert client.dataset_url(req) == "http://data.example/v1/bitmex/trades/2024/05/06/XBTUSD.csv.gz"
    assert "settings-key-123" not in repr(client) and "concurrency=3" in repr(client)
