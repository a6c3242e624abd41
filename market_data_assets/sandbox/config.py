"""The sandbox's configuration: one frozen value that fully determines every byte it serves.

Everything the sandbox generates (universe, prices, CSV files) is a pure function of this config
plus the request, so two sandboxes started with the same config answer identically and a test can
regenerate the expected content without going through HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

DEFAULT_SANDBOX_EXCHANGES: tuple[str, ...] = ("binance", "binance-futures", "deribit", "bitmex", "coinbase")


@dataclass(frozen=True)
class SandboxConfig:
    """How the sandbox market looks.

    ``exported_until`` is fixed by default (not the wall clock) so runs are reproducible; a
    running sandbox can move it with ``RunningSandbox.set_exported_until`` (sensor tests do).
    """

    seed: int = 42
    trades_per_day: int = 2000
    """Trades per full instrument-day for spot/perpetual/future instruments: the size knob.
    Other data types scale from it (see ``market.rows_per_day``)."""
    api_key: str | None = "sandbox-key"
    """The only key the sandbox accepts; ``None`` makes every route free."""
    large_deribit: bool = False
    """Deribit-sized option universe (~300K symbols across history) instead of a few thousand."""
    exported_until: date = date(2024, 12, 31)
    """Exports reach up to, not including, this UTC day."""
    exchanges: tuple[str, ...] = DEFAULT_SANDBOX_EXCHANGES

    def __post_init__(self) -> None:
        if self.trades_per_day < 1:
            raise ValueError(f"SandboxConfig.trades_per_day must be >= 1, got {self.trades_per_day}")
        unknown = [e for e in self.exchanges if e not in DEFAULT_SANDBOX_EXCHANGES]
        if unknown:
            raise ValueError(
                f"SandboxConfig.exchanges: unknown sandbox exchange(s) {unknown}; "
                f"known: {', '.join(DEFAULT_SANDBOX_EXCHANGES)}"
            )

    def __repr__(self) -> str:  # never show the key
        key = "***" if self.api_key else None
        return (
            f"SandboxConfig(seed={self.seed}, trades_per_day={self.trades_per_day}, api_key={key}, "
            f"large_deribit={self.large_deribit}, exported_until={self.exported_until}, "
            f"exchanges={self.exchanges})"
        )
