"""Counters shared by the layers of one store (object-store requests, cache, bytes)."""

from __future__ import annotations

import threading
from collections import Counter


class Stats:
    """Monotonic counters; ``snapshot()`` returns a plain dict for ``store.stats()``.

    Names are dotted: ``requests.get``, ``requests.put_if_absent``, ``cache.hits``,
    ``bytes_read`` ... ``add`` is for the event loop (no lock: it runs per request);
    ``add_threadsafe`` for the callers' threads (cache hits answered without the loop).
    """

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()
        self._from_threads: Counter[str] = Counter()
        self._lock = threading.Lock()

    def add(self, name: str, n: int = 1) -> None:
        self._counts[name] += n

    def add_threadsafe(self, name: str, n: int = 1, also: str | None = None) -> None:
        """``add`` from any thread; ``also``: a second counter to add ``n`` to, under the
        same lock (a cache hit counts twice)."""
        with self._lock:
            self._from_threads[name] += n
            if also is not None:
                self._from_threads[also] += n

    def get(self, name: str) -> int:
        with self._lock:
            return self._counts.get(name, 0) + self._from_threads.get(name, 0)

    def snapshot(self) -> dict[str, int]:
        merged = dict(self._counts)  # one C-level copy: safe while the loop adds
        with self._lock:
            for name, n in self._from_threads.items():
                merged[name] = merged.get(name, 0) + n
        counts = dict(sorted(merged.items()))
        counts["requests"] = sum(v for k, v in counts.items() if k.startswith("requests."))
        return counts

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()
            self._from_threads.clear()
