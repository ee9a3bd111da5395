"""Back-pressure: what a component holds in memory, and waiters for room."""

from __future__ import annotations

from collections import deque

from twisted.internet import defer


class Pressure:
    """Units (items, bytes) held in memory, with FIFO waiters for room below ``limit``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0
        self._waiters: deque[defer.Deferred[None]] = deque()

    @property
    def full(self) -> bool:
        return self.held >= self.limit

    def add(self, units: int) -> None:
        self.held += units

    def release(self, units: int) -> None:
        self.held -= units
        while self._waiters and not self.full:
            self._waiters.popleft().callback(None)

    def wait(self) -> defer.Deferred[None]:
        """Fires when there is room (in arrival order)."""
        d: defer.Deferred[None] = defer.Deferred()
        if self.full:
            self._waiters.append(d)
        else:
            d.callback(None)
        return d

    def release_all(self) -> None:
        while self._waiters:
            self._waiters.popleft().callback(None)
