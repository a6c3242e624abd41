"""``MarketDataError``: the root of every error this project raises on purpose.

Each package keeps its own classes (``SettingsError``, ``TardisError``, ``TickFileError``,
``StoreError``, ...), named for what went wrong and carrying a message that names the file, line or
variable; all of them derive from this root as well as from the built-in class they always had
(``ValueError``, ``RuntimeError``), so ``except MarketDataError`` tells a refusal of ours from a bug,
and older ``except ValueError`` code keeps working.
"""

from __future__ import annotations


class MarketDataError(Exception):
    """A condition the project detected and explained (bad input, setting, file, response, state)."""
