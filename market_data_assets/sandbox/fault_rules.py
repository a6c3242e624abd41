"""Fault injection and the request log of the sandbox.

A fault rule matches request paths by glob (``fnmatch``) and fires either for the first ``times``
matching requests (deterministic, for tests) or with a ``probability`` decided by a hash of
(seed, rule, path, occurrence) so soak runs are reproducible even with concurrent clients, or on
every match when neither is given. The first rule that
fires wins. Rules and the log are shared between the server thread and the test thread, so every
access holds a lock.
"""

from __future__ import annotations

import fnmatch
import hashlib
import threading
from dataclasses import asdict, dataclass, field

FAULT_KINDS = ("429", "500", "503", "reset", "truncate", "short_gzip", "slow")


@dataclass
class FaultRule:
    """One fault: what it does and which requests it hits."""

    kind: str
    path_glob: str = "*"
    times: int | None = None
    """Fire for the first N matching requests, then retire."""
    probability: float | None = None
    """Fire on each matching request with this probability (seeded)."""
    retry_after: float = 0.1
    """Seconds announced in ``Retry-After`` on a 429."""
    status: int | None = None
    """Override the HTTP status of error kinds (e.g. 502 with kind "500")."""
    delay: float = 0.0
    """Seconds a "slow" body takes in total (sent in pieces)."""
    fired: int = 0
    serial: int = field(default=-1, init=False, repr=False)
    """Position among the rules added since the last clear (keys the probability draws)."""

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; known: {', '.join(FAULT_KINDS)}")
        if self.times is not None and self.times < 0:
            raise ValueError(f"fault times must be >= 0, got {self.times}")
        if self.probability is not None and not 0.0 <= self.probability <= 1.0:
            raise ValueError(f"fault probability must be in [0, 1], got {self.probability}")

    @property
    def http_status(self) -> int:
        if self.status is not None:
            return self.status
        return {"429": 429, "500": 500, "503": 503}.get(self.kind, 200)


@dataclass(frozen=True)
class RequestRecord:
    """One request the sandbox saw. The API key itself is never stored, only whether one was sent."""

    method: str
    path: str
    status: int
    """HTTP status sent; 0 when the connection was reset (kind "reset")."""
    had_auth: bool
    query: str = ""
    fault: str | None = None

    def as_json(self) -> dict[str, object]:
        return asdict(self)


@dataclass
class FaultInjector:
    """Thread-safe fault rules + request log."""

    seed: int = 0
    rules: list[FaultRule] = field(default_factory=list)
    requests: list[RequestRecord] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: dict[tuple[int, str], int] = {}
        self._added = 0

    def add(self, rule: FaultRule) -> None:
        with self._lock:
            self.rules.append(rule)
            rule.serial = self._added
            self._added += 1

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()
            self._seen.clear()
            self._added = 0

    def _draw(self, rule: FaultRule, path: str) -> float:
        """Uniform [0, 1) from (seed, rule, path, how often this rule saw this path).

        Not one shared random stream: with concurrent clients the arrival order varies, yet the
        n-th request for a given URL meets the same fate on every run.
        """
        key = (rule.serial, path)
        nth = self._seen.get(key, 0)
        self._seen[key] = nth + 1
        digest = hashlib.blake2b(f"{self.seed}|{key[0]}|{path}|{nth}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") / 2**64

    def pick(self, path: str) -> FaultRule | None:
        """The rule that fires for this request, if any (consumes one of its ``times``)."""
        with self._lock:
            for rule in self.rules:
                if not fnmatch.fnmatchcase(path, rule.path_glob):
                    continue
                if rule.times is not None:
                    if rule.fired >= rule.times:
                        continue
                elif rule.probability is not None and self._draw(rule, path) >= rule.probability:
                    continue
                rule.fired += 1
                return rule
        return None

    def record(self, record: RequestRecord) -> None:
        with self._lock:
            self.requests.append(record)

    def clear_requests(self) -> None:
        with self._lock:
            self.requests.clear()

    def snapshot(self) -> list[RequestRecord]:
        with self._lock:
            return list(self.requests)
