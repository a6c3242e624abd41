"""The errors the Tardis client raises, one class per thing a caller may want to act on.

Callers branch on the class (an expired key is not retried, a missing file is recorded as a gap,
a spent quota stops the run) and show the message to a person, so every message names what was
asked for (exchange, data type, day and symbol for a dataset, the endpoint for metadata), the
HTTP status and Tardis's own message. None of them ever holds the API key: the client builds
them from plain strings it has already scrubbed, and never chains an aiohttp exception (those
carry the request headers, Authorization included) as ``__cause__`` or ``__context__``.
"""

from __future__ import annotations

from market_data_assets.errors import MarketDataError


class TardisError(MarketDataError):
    """Base class: a Tardis request failed for good (after any retries the failure allowed).

    ``status`` is the HTTP status when there was a response, ``retryable`` says whether the
    client's retry loop may try again, ``retry_after`` is the server's ``Retry-After`` in
    seconds when it sent one, and ``attempts`` is how many HTTP requests were made in all.
    """

    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retryable: bool | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        if retryable is not None:
            self.retryable = retryable
        self.retry_after = retry_after
        self.attempts = 1

    def __str__(self) -> str:
        if self.attempts > 1:
            return f"{self.message} (after {self.attempts} attempts)"
        return self.message


class TardisAuthError(TardisError):
    """401/403: no key, a wrong key, or a plan that does not cover the request. Final."""


class TardisNotFoundError(TardisError):
    """404: unknown exchange, data type or symbol. Final."""


class TardisRateLimitError(TardisError):
    """429. Retried after ``Retry-After``; final when Retry-After says the quota is spent."""

    retryable = True


class TardisServerError(TardisError):
    """5xx or a network failure (timeout, reset connection): transient, retried."""

    retryable = True


class TardisIntegrityError(TardisError):
    """The body was cut short, or is not a complete gzip stream: retried, never kept."""

    retryable = True


class TardisResponseError(TardisError):
    """The response parsed, but not into what the endpoint documents (bad JSON, wrong shape). Final."""
