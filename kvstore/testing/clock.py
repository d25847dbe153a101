"""A clock the test moves: kvstore reads time through ``clock()`` (ms since the epoch)."""

from __future__ import annotations

import time


class FakeClock:
    """Milliseconds since the epoch, moved only by the test. Starts at a whole second.

    Pass it as ``clock=`` to :class:`kvstore.AsyncKVStore`; expiry and log chunk ages are
    then decided by ``advance`` (or by setting ``now``), never by the wall clock.
    """

    def __init__(self, now: int | None = None) -> None:
        self.now = (time.time_ns() // 10**9) * 1000 if now is None else now

    def __call__(self) -> int:
        return self.now

    def advance(self, ms: int) -> None:
        """Move the clock forward by ``ms`` milliseconds."""
        self.now += ms
