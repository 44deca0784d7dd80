"""A tab's bookkeeping of its signal connections, so that closing the widget drops them all."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class Subscriptions:
    """A tab's connections to session signals, dropped all at once when the widget closes."""

    def __init__(self) -> None:
        self._pairs: list[tuple[Any, Callable]] = []

    def connect(self, signal, slot: Callable) -> None:
        """Connect ``slot`` to ``signal`` and remember the pair."""
        signal.connect(slot)
        self._pairs.append((signal, slot))

    def disconnect_all(self) -> None:
        """Disconnect every remembered pair."""
        for signal, slot in self._pairs:
            signal.disconnect(slot)
        self._pairs = []
