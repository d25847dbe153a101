"""The circuit breaker that keeps a dead or hung Redis from costing every call a timeout."""

from __future__ import annotations

import time


class CircuitBreaker:
    """Closed: use Redis. Open: skip it until ``interval`` has passed, then let one call
    through as a probe; its success closes the breaker, its failure re-opens it."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.open_since: float | None = None
        self._probing = False

    @property
    def state(self) -> str:
        if self.open_since is None:
            return "closed"
        return "half-open" if self._probing else "open"

    def allow(self) -> bool:
        if self.open_since is None:
            return True
        if self._probing or time.monotonic() - self.open_since < self.interval:
            return False
        self._probing = True
        return True

    def abandon_probe(self) -> None:
        """A probe that ended without an answer (cancelled): the next call may probe."""
        self._probing = False

    def succeeded(self) -> bool:
        """Record a success; True if this closed an open breaker (a recovery)."""
        recovered = self.open_since is not None
        self.open_since, self._probing = None, False
        return recovered

    def failed(self) -> bool:
        """Record a failure; True if this opened a closed breaker (a new outage)."""
        new = self.open_since is None
        self.open_since, self._probing = time.monotonic(), False
        return new
