"""Counters shared by the layers of one store (object-store requests, cache, bytes)."""

from __future__ import annotations

from collections import Counter


class Stats:
    """Monotonic counters; ``snapshot()`` returns a plain dict for ``store.stats()``.

    Names are dotted: ``requests.get``, ``requests.put_if_absent``, ``cache.hits``,
    ``bytes_read`` ... Updated from the event loop only, so no lock is needed.
    """

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()

    def add(self, name: str, n: int = 1) -> None:
        self._counts[name] += n

    def get(self, name: str) -> int:
        return self._counts[name]

    def snapshot(self) -> dict[str, int]:
        counts = dict(sorted(self._counts.items()))
        counts["requests"] = sum(v for k, v in counts.items() if k.startswith("requests."))
        return counts

    def reset(self) -> None:
        self._counts.clear()
