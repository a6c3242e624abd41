"""Async client for Tardis.dev: metadata API and daily CSV.gz dataset downloads.

Why not the official ``tardis-dev`` package: it downloads one symbol after another (concurrency
only across the days of one symbol), lets one failed day abort the whole call, and keeps a file
without checking that its gzip stream is complete. Here every (exchange, data type, day, symbol)
file is an independent request that runs concurrently with all others, bounded by one
connection limit and one requests-per-minute budget shared by the whole client; a failed file is
a result, not an exception that stops the rest; and a file appears under its final name only
after its whole gzip stream has been decompressed to the end and its size matched.

Retries (5xx, timeouts, resets, truncated bodies, 429 after ``Retry-After``) are done by
``tenacity``; the rate budget is an ``aiolimiter`` leaky bucket. The API key lives in a
``Secret`` and in the session's default headers only: errors are built from scrubbed text and
never chain the aiohttp exceptions, whose ``request_info`` carries the Authorization header.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import logging
import os
import random
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import date
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

import aiohttp
from aiolimiter import AsyncLimiter
from isal import isal_zlib
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt
from tenacity.wait import wait_exponential_jitter

from market_data_assets.settings import Secret
from market_data_assets.tardis.errors import (
    TardisAuthError,
    TardisError,
    TardisIntegrityError,
    TardisNotFoundError,
    TardisRateLimitError,
    TardisResponseError,
    TardisServerError,
)

if TYPE_CHECKING:
    from market_data_assets.settings import Settings

__all__ = [
    "DownloadRequest",
    "DownloadResult",
    "TardisClient",
    "dataset_symbol",
    "EMPTY_GZIP",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

EMPTY_GZIP = gzip.compress(b"", mtime=0)
"""A complete gzip stream of zero bytes: what an empty day is stored as when Tardis sends no body at all."""

_CHUNK = 1 << 16
_MAX_INFLATE = 1 << 20  # bound on memory per decompress() call while verifying
_ERROR_TEXT_LIMIT = 300


def dataset_symbol(symbol: str) -> str:
    """The dataset id as Tardis spells it in a file URL: upper case, ``/`` and ``:`` become ``-``."""
    return symbol.upper().replace("/", "-").replace(":", "-")


@dataclass(frozen=True)
class DownloadRequest:
    """One daily file: ``symbol`` is the dataset id (a group id such as ``OPTIONS`` works too)."""

    exchange: str
    data_type: str
    day: date
    symbol: str

    def describe(self) -> str:
        return (
            f"dataset exchange={self.exchange} data_type={self.data_type} "
            f"day={self.day.isoformat()} symbol={self.symbol}"
        )


@dataclass(frozen=True)
class DownloadResult:
    """What became of one request: ``path`` is set on success, ``error`` on failure, never both."""

    request: DownloadRequest
    path: Path | None
    bytes: int
    empty: bool
    error: TardisError | None
    attempts: int

    @property
    def ok(self) -> bool:
        return self.error is None


class _GzipStreamCheck:
    """Decompresses a (possibly multi-member) gzip stream as it arrives, keeping only counts.

    A file is trusted only when the stream ends exactly at a member's trailer (whose CRC32 and
    length the inflater checks): a body cut anywhere, or one with bytes that are not gzip, fails
    here. ISA-L's inflate (python-isal, zlib's API) is used because verifying is the client's main
    CPU cost: it inflates about 2.5x faster than zlib.
    """

    def __init__(self, inflate: bool = True) -> None:
        self._inflater = isal_zlib.decompressobj(wbits=31) if inflate else None
        self.compressed = 0
        self.decompressed = 0

    def feed(self, data: bytes) -> None:
        self.compressed += len(data)
        if self._inflater is None:
            return
        while data:
            if self._inflater.eof:  # another gzip member follows the previous one
                self._inflater = isal_zlib.decompressobj(wbits=31)
            self.decompressed += len(self._inflater.decompress(data, _MAX_INFLATE))
            data = self._inflater.unused_data if self._inflater.eof else self._inflater.unconsumed_tail

    @property
    def complete(self) -> bool:
        return self.compressed == 0 or self._inflater is None or self._inflater.eof

    @property
    def empty(self) -> bool:
        """No data: no body, or (when inflating) a gzip of nothing."""
        return self.compressed == 0 if self._inflater is None else self.decompressed == 0


async def _save_verified(
    resp: aiohttp.ClientResponse, what: str, dest: Path, verify: bool
) -> tuple[int, bool]:
    """Stream a 200 body to a temporary file beside ``dest``, check it (Content-Length, a complete
    gzip stream, inflated when ``verify``) and rename it over ``dest``. Returns (bytes, empty?).
    Nothing is left under any name when a check or the write fails."""
    expected = resp.content_length
    check = _GzipStreamCheck(inflate=verify)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.parent / f".{dest.name}.part-{uuid.uuid4().hex}"
    try:
        with open(part, "wb") as out:
            async for chunk in resp.content.iter_chunked(_CHUNK):
                check.feed(chunk)
                out.write(chunk)
            if check.compressed == 0:
                out.write(EMPTY_GZIP)
        if expected is not None and check.compressed != expected:
            raise TardisIntegrityError(
                f"{what}: body has {check.compressed} bytes, Content-Length said {expected}"
            )
        if not check.complete:
            raise TardisIntegrityError(
                f"{what}: gzip stream ends early after {check.compressed} bytes (truncated body)"
            )
        size = part.stat().st_size
        os.replace(part, dest)
        return size, check.empty
    finally:
        with contextlib.suppress(FileNotFoundError):
            part.unlink()


class TardisClient:
    """Tardis.dev metadata and dataset client; use as ``async with TardisClient(...) as client``.

    ``concurrency`` bounds requests in flight (one aiohttp connection each) and
    ``requests_per_minute`` bounds their rate; both cover retries and metadata calls too.
    ``timeout`` is seconds of silence (connect or read) before an attempt is abandoned, not a
    cap on a whole download, so large files on slow links are not cut off. A 429 whose
    ``Retry-After`` exceeds ``max_retry_after`` (default ``max(300, backoff_max)``) means the
    quota is spent and fails at once.
    """

    def __init__(
        self,
        api_url: str,
        datasets_url: str,
        api_key: Secret | str | None = None,
        *,
        concurrency: int = 16,
        requests_per_minute: int = 2400,
        max_retries: int = 8,
        timeout: float = 300.0,
        backoff_base: float = 0.5,
        backoff_max: float = 120.0,
        max_retry_after: float | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        if requests_per_minute < 1:
            raise ValueError(f"requests_per_minute must be >= 1, got {requests_per_minute}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        self._api_url = api_url.rstrip("/")
        self._datasets_url = datasets_url.rstrip("/")
        self._key = api_key if isinstance(api_key, Secret) else Secret(api_key)
        self._concurrency = concurrency
        self._requests_per_minute = requests_per_minute
        self._max_retries = max_retries
        self._timeout = timeout
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max
        self._max_retry_after = max(300.0, backoff_max) if max_retry_after is None else max_retry_after
        self._backoff = wait_exponential_jitter(multiplier=backoff_base, max=backoff_max, jitter=backoff_base)
        self._session: aiohttp.ClientSession | None = None
        self._slots: asyncio.Semaphore | None = None
        self._limiter: AsyncLimiter | None = None

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> TardisClient:
        """A client configured from ``Settings``; keyword ``overrides`` win (e.g. ``concurrency=4``)."""
        kwargs: dict[str, Any] = {
            "api_url": settings.tardis_api_url,
            "datasets_url": settings.tardis_datasets_url,
            "api_key": settings.tardis_api_key,
            "concurrency": settings.concurrency,
            "requests_per_minute": settings.tardis_requests_per_minute,
            "max_retries": settings.tardis_max_retries,
        }
        kwargs.update(overrides)
        return cls(**kwargs)

    def __repr__(self) -> str:
        return (
            f"TardisClient(api_url={self._api_url!r}, datasets_url={self._datasets_url!r}, "
            f"api_key={self._key!r}, concurrency={self._concurrency})"
        )

    async def __aenter__(self) -> TardisClient:
        headers = {"User-Agent": "market_data_assets", "Accept-Encoding": "gzip"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key.reveal()}"
        self._session = aiohttp.ClientSession(
            headers=headers,
            connector=aiohttp.TCPConnector(limit=self._concurrency),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=self._timeout, sock_read=self._timeout),
        )
        self._slots = asyncio.Semaphore(self._concurrency)
        self._limiter = _per_minute_limiter(self._requests_per_minute)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # ------------------------------------------------------------------ metadata

    async def exchanges(self) -> list[dict]:
        """Every exchange Tardis knows (``GET /exchanges``)."""
        data = await self._get_json("/exchanges")
        return _expect_list_of_dicts(data, self._endpoint("/exchanges"))

    async def exchange_details(self, exchange: str) -> dict:
        """One exchange's channels, symbols, datasets and incidents (``GET /exchanges/{exchange}``)."""
        path = f"/exchanges/{quote(exchange, safe='')}"
        return _expect_dict(await self._get_json(path), self._endpoint(path))

    async def instruments(self, exchange: str, filter: dict | None = None) -> list[dict]:
        """Instruments metadata, optionally narrowed by Tardis's JSON ``filter`` (e.g. ``{"type": "option"}``)."""
        path = f"/instruments/{quote(exchange, safe='')}"
        params = None if filter is None else {"filter": json.dumps(filter, separators=(",", ":"))}
        return _expect_list_of_dicts(await self._get_json(path, params), self._endpoint(path))

    # ------------------------------------------------------------------ datasets

    def dataset_url(self, req: DownloadRequest) -> str:
        """``{datasets_url}/{exchange}/{data_type}/{YYYY}/{MM}/{DD}/{dataset id}.csv.gz``."""
        d = req.day
        return (
            f"{self._datasets_url}/{quote(req.exchange, safe='')}/{quote(req.data_type, safe='')}/"
            f"{d.year:04d}/{d.month:02d}/{d.day:02d}/{quote(dataset_symbol(req.symbol), safe='')}.csv.gz"
        )

    async def download(self, req: DownloadRequest, dest: Path, *, verify: bool = True) -> DownloadResult:
        """Fetch one daily file to ``dest``, atomically; raise ``TardisError`` once retries are spent.

        The body streams into ``.{name}.part-<uuid>`` beside ``dest`` while its gzip stream is
        verified, and is renamed into place only when complete; anything else deletes it, so
        ``dest`` either holds a whole file or is untouched. An empty day (no body, or a gzip of
        nothing) gives ``empty=True`` and a valid empty gzip file.

        ``verify=False`` skips inflating the body, for a consumer that reads every byte of it
        anyway and calls ``download`` again (verified) when it finds the stream broken, as the
        raw-ticks pipeline does: inflating it twice cost ~12% of a partition's CPU (2 s of 17 s in
        benchmarks/bench_partition.py). A connection
        cut short is still caught by the Content-Length check and retried; ``empty`` is then only
        true for an empty body.
        """
        dest = Path(dest)
        url = self.dataset_url(req)
        outcome, attempts = await self._with_retries(
            req.describe(), lambda: self._download_once(req, url, dest, verify)
        )
        size, empty = outcome
        return DownloadResult(request=req, path=dest, bytes=size, empty=empty, error=None, attempts=attempts)

    async def download_many(
        self,
        reqs: Iterable[DownloadRequest],
        dest_for: Callable[[DownloadRequest], Path],
        *,
        verify: bool = True,
    ) -> AsyncIterator[DownloadResult]:
        """Download every request concurrently and yield results as they complete.

        All symbols and days run at once (within ``concurrency`` and ``requests_per_minute``);
        ``reqs`` is consumed lazily, a window ahead, so millions of requests cost no more memory
        than a few dozen. A failed file is a result with ``error`` set and never stops the others.
        Closing the generator early (``contextlib.aclosing`` around a loop that breaks) cancels
        what is still running and deletes their partial files. ``verify``: see ``download``.
        """
        requests = iter(reqs)
        # Ahead of the connection limit, so files waiting out a backoff do not leave slots idle.
        window = self._concurrency * 4
        pending: set[asyncio.Task[DownloadResult]] = set()
        exhausted = False
        try:
            while True:
                while not exhausted and len(pending) < window:
                    req = next(requests, None)
                    if req is None:
                        exhausted = True
                        break
                    pending.add(asyncio.create_task(self._download_result(req, dest_for(req), verify)))
                if not pending:
                    return
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    yield task.result()
        finally:
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)

    async def _download_result(self, req: DownloadRequest, dest: Path, verify: bool) -> DownloadResult:
        try:
            return await self.download(req, dest, verify=verify)
        except TardisError as exc:
            return DownloadResult(
                request=req, path=None, bytes=0, empty=False, error=exc, attempts=exc.attempts
            )

    async def _download_once(
        self, req: DownloadRequest, url: str, dest: Path, verify: bool
    ) -> tuple[int, bool]:
        """One HTTP attempt. Returns (bytes on disk, empty?) or raises a classified ``TardisError``."""
        what = req.describe()
        async with self._slot():
            try:
                async with self._http().get(url, auto_decompress=False) as resp:
                    if resp.status != 200:
                        body = await resp.read()
                        raise self._http_error(what, resp.status, resp.reason, resp.headers, body)
                    return await _save_verified(resp, what, dest, verify)
            except TardisError:
                raise
            except (isal_zlib.error, aiohttp.ClientError, TimeoutError, ConnectionError, OSError) as exc:  # pyright: ignore[reportGeneralTypeIssues]  isal's stub types zlib.error as a value
                failure = self._download_failure(what, dest, exc)
        # Raised outside the except blocks so the aiohttp exception is neither __cause__ nor __context__.
        raise failure

    def _download_failure(self, what: str, dest: Path, exc: BaseException) -> TardisError:
        """A failed attempt's error, by the first rule that matches: a corrupt or cut body is an
        integrity error, a network failure a (retryable) server error, anything else on disk ours."""
        if isinstance(exc, isal_zlib.error):  # pyright: ignore[reportArgumentType]  isal's stub types zlib.error as a value
            return TardisIntegrityError(f"{what}: body is not a valid gzip stream ({exc})")
        if isinstance(exc, aiohttp.ClientPayloadError):
            return TardisIntegrityError(f"{what}: body cut short ({self._describe(exc)})")
        if isinstance(exc, TimeoutError | aiohttp.ClientError | ConnectionError):
            return TardisServerError(f"{what}: network error ({self._describe(exc)})")
        return TardisError(f"{what}: cannot write {dest} ({getattr(exc, 'strerror', None) or exc})")

    # ------------------------------------------------------------------ plumbing

    def _endpoint(self, path: str) -> str:
        return f"GET {self._api_url}{path}"

    async def _get_json(self, path: str, params: dict[str, str] | None = None) -> Any:
        what = self._endpoint(path)
        url = f"{self._api_url}{path}"

        async def once() -> Any:
            failure: TardisError | None = None
            async with self._slot():
                try:
                    async with self._http().get(url, params=params) as resp:
                        body = await resp.read()
                        if resp.status != 200:
                            raise self._http_error(what, resp.status, resp.reason, resp.headers, body)
                except TardisError:
                    raise
                except aiohttp.ClientPayloadError as exc:
                    failure = TardisIntegrityError(f"{what}: body cut short ({self._describe(exc)})")
                except (TimeoutError, aiohttp.ClientError, ConnectionError) as exc:
                    failure = TardisServerError(f"{what}: network error ({self._describe(exc)})")
            if failure is not None:
                raise failure
            try:
                return json.loads(body)
            except ValueError:
                failure = TardisResponseError(
                    f"{what}: response is not JSON: {self._scrub(_text(body))!r}", status=200
                )
            raise failure

        result, _ = await self._with_retries(what, once)
        return result

    async def _with_retries(self, what: str, attempt: Callable[[], Awaitable[T]]) -> tuple[T, int]:
        """Run ``attempt`` under the retry policy; return (its result, number of attempts)."""
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._max_retries + 1),
            wait=self._wait,
            retry=retry_if_exception(lambda exc: isinstance(exc, TardisError) and exc.retryable),
            before_sleep=self._log_retry,
            reraise=True,
        )
        attempts = 0
        try:
            async for try_ in retrying:
                with try_:
                    attempts = try_.retry_state.attempt_number
                    result = await attempt()
        except TardisError as exc:
            exc.attempts = attempts
            raise
        return result, attempts  # pyright: ignore[reportReturnType]  reraise=True: the loop returns or raises

    def _wait(self, state: RetryCallState) -> float:
        """Retry-After when the server gave one, else exponential backoff plus jitter."""
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, TardisError) and exc.retry_after is not None:
            return min(exc.retry_after, self._max_retry_after) + random.uniform(0, self._backoff_base)
        return self._backoff(state)

    def _log_retry(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        delay = state.next_action.sleep if state.next_action else 0.0
        log.info(
            "retrying in %.2fs (attempt %d of %d failed): %s",
            delay,
            state.attempt_number,
            self._max_retries + 1,
            exc,
        )

    @contextlib.asynccontextmanager
    async def _slot(self) -> AsyncIterator[None]:
        """One request in flight: a concurrency slot, then a token from the per-minute budget."""
        if self._slots is None or self._limiter is None:
            raise RuntimeError("TardisClient is not open: use 'async with TardisClient(...) as client'")
        async with self._slots:
            await self._limiter.acquire()
            yield

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("TardisClient is not open: use 'async with TardisClient(...) as client'")
        return self._session

    def _http_error(
        self, what: str, status: int, reason: str | None, headers: Any, body: bytes
    ) -> TardisError:
        """Classify a non-200 answer; the message carries Tardis's own ``message`` when it sent JSON."""
        detail = self._scrub(_server_message(body))
        message = f"{what}: HTTP {status} {reason or ''}".rstrip() + (f": {detail}" if detail else "")
        retry_after = _retry_after_seconds(headers.get("Retry-After"))
        if status in (401, 403):
            return TardisAuthError(message, status=status)
        if status == 404:
            return TardisNotFoundError(message, status=status)
        if status == 429:
            if retry_after is not None and retry_after > self._max_retry_after:
                return TardisRateLimitError(
                    f"{message} (Retry-After {retry_after:.0f}s: request quota spent, not retrying)",
                    status=status,
                    retryable=False,
                    retry_after=retry_after,
                )
            return TardisRateLimitError(message, status=status, retry_after=retry_after)
        if status >= 500 or status == 408:
            capped = None if retry_after is None else min(retry_after, self._backoff_max)
            return TardisServerError(message, status=status, retry_after=capped)
        return TardisError(message, status=status)

    def _scrub(self, text: str) -> str:
        """Belt and braces: the key is never put into text, but remove it if a server echoes it."""
        key = self._key.reveal()
        return text.replace(key, "***") if key else text

    def _describe(self, exc: BaseException) -> str:
        text = str(exc)
        return self._scrub(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)


def _per_minute_limiter(requests_per_minute: int) -> AsyncLimiter:
    """A leaky bucket that drains at ``requests_per_minute`` and holds ten seconds' worth.

    Tardis counts requests per minute. A bucket holding a whole minute would let a cold client
    send twice the rate within one minute (the full bucket, then a minute of draining); ten
    seconds' worth caps any minute at 7/6 of the rate (2,800 for the default 2,400, under
    Tardis's ~3,000) while a short job of a few hundred files still goes out at full speed.
    """
    capacity = max(1, requests_per_minute // 6)
    return AsyncLimiter(capacity, 60 * capacity / requests_per_minute)


def _text(body: bytes) -> str:
    text = body[:_ERROR_TEXT_LIMIT].decode("utf-8", errors="replace")
    return text + ("…" if len(body) > _ERROR_TEXT_LIMIT else "")


def _server_message(body: bytes) -> str:
    """Tardis answers errors as ``{"code": .., "message": ..}``; fall back to the (short) raw text."""
    try:
        data = json.loads(body)
    except ValueError:
        return _text(body).strip()
    if isinstance(data, dict) and data.get("message"):
        return str(data["message"])[:_ERROR_TEXT_LIMIT]
    return _text(body).strip()


def _retry_after_seconds(value: str | None) -> float | None:
    """``Retry-After`` as seconds: a number (fractions allowed) or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, IndexError):
        return None


def _expect_dict(data: Any, what: str) -> dict:
    if not isinstance(data, dict):
        raise TardisResponseError(f"{what}: expected a JSON object, got {type(data).__name__}", status=200)
    return data


def _expect_list_of_dicts(data: Any, what: str) -> list[dict]:
    if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
        raise TardisResponseError(
            f"{what}: expected a JSON array of objects, got {type(data).__name__}", status=200
        )
    return data
