"""``cache="local"``: an in-process LRU bounded in bytes.

Coherence: exact within the process - every store of the process that uses the same
:class:`LocalCache` sees every write made through any of them on its next read (writes
invalidate; fills are refused for keys written after the reader's lookup). Across processes
an in-process cache cannot hear other writers: an entry is served for at most ``ttl``
seconds (default 1 s) after it was filled, so another process's write becomes visible within
that time. Use a Redis cache for coherence across processes.

Thread-safe (one lock); shared by every store in the process that asks for ``"local"``.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from ..errors import ConfigurationError
from .base import Cache, Fill, Lookup, renew_lock_after_fork

DEFAULT_MAX_BYTES = 64 * 2**20
DEFAULT_TTL = 1.0
_ENTRY_OVERHEAD = 100  # bytes of bookkeeping counted per entry
_MAX_WRITE_MARKS = 100_000


class LocalCache(Cache):
    """An LRU of at most ``max_bytes`` (values + keys + overhead), entries live ``ttl`` s."""

    name = "local"
    in_process = True

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES, ttl: float = DEFAULT_TTL) -> None:
        if not isinstance(max_bytes, int) or max_bytes < 0:
            raise ConfigurationError(f"max_bytes must be an int >= 0, not {max_bytes!r}")
        if not isinstance(ttl, (int, float)) or ttl <= 0:
            raise ConfigurationError(f"ttl must be a number of seconds > 0, not {ttl!r}")
        self.max_bytes = max_bytes
        self.ttl = float(ttl)
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, tuple[bytes, float]] = OrderedDict()
        self._bytes = 0
        # Stale-fill guard: the sequence number of each key's latest invalidation. Bounded;
        # forgotten marks are summarised by the highest one forgotten (conservative).
        self._seq = itertools.count(1)
        self._now_seq = 0
        self._write_marks: OrderedDict[str, int] = OrderedDict()
        self._forgotten_mark = 0
        renew_lock_after_fork(self, "_lock")

    @staticmethod
    def _size(key: str, value: bytes) -> int:
        return len(key) + len(value) + _ENTRY_OVERHEAD

    def _drop(self, key: str) -> None:
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= self._size(key, old[0])

    def _look(self, keys: Sequence[str]) -> tuple[list[bytes | None], int]:
        now = time.monotonic()
        values: list[bytes | None] = []
        with self._lock:
            for key in keys:
                entry = self._entries.get(key)
                if entry is None:
                    values.append(None)
                elif entry[1] <= now:
                    self._drop(key)
                    values.append(None)
                else:
                    self._entries.move_to_end(key)
                    values.append(entry[0])
            return values, self._now_seq

    async def lookup(self, keys: Sequence[str]) -> Lookup:
        values, ticket = self._look(keys)
        return Lookup(values, ticket)

    def lookup_now(self, keys: Sequence[str]) -> list[bytes | None]:
        """The same lookup: it never waits for anything but the lock."""
        return self._look(keys)[0]

    async def fill(self, entries: Sequence[Fill], ticket: Any) -> None:
        now = time.monotonic()
        with self._lock:
            for entry in entries:
                last_write = self._write_marks.get(entry.key, self._forgotten_mark)
                if last_write > ticket:
                    continue  # written after this reader looked: its value may be stale
                self._insert(entry.key, entry.value, now + min(entry.ttl, self.ttl))
            self._evict()

    async def put_immutable(self, entries: Sequence[Fill]) -> None:
        """Immutable objects keep their own TTL (other processes cannot change them), and
        none may take more than a quarter of the cache."""
        now = time.monotonic()
        with self._lock:
            for entry in entries:
                if self._size(entry.key, entry.value) <= self.max_bytes // 4:
                    self._insert(entry.key, entry.value, now + entry.ttl)
            self._evict()

    def _insert(self, key: str, value: bytes, expires: float) -> None:
        size = self._size(key, value)
        if size > self.max_bytes:
            return
        self._drop(key)
        self._entries[key] = (value, expires)
        self._bytes += size

    def _evict(self) -> None:
        while self._bytes > self.max_bytes:
            key, (value, _) = self._entries.popitem(last=False)
            self._bytes -= self._size(key, value)

    async def invalidate(self, keys: Sequence[str]) -> None:
        with self._lock:
            for key in keys:
                self._drop(key)
                mark = next(self._seq)
                self._now_seq = mark
                self._write_marks.pop(key, None)
                self._write_marks[key] = mark
            while len(self._write_marks) > _MAX_WRITE_MARKS:
                _, mark = self._write_marks.popitem(last=False)
                self._forgotten_mark = max(self._forgotten_mark, mark)

    def info(self) -> dict[str, Any]:
        with self._lock:
            return {
                "entries": len(self._entries),
                "bytes": self._bytes,
                "max_bytes": self.max_bytes,
            }


_shared: LocalCache | None = None
_shared_lock = threading.Lock()


def shared_local_cache() -> LocalCache:
    """The process-wide LocalCache that ``cache="local"`` means."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = LocalCache()
        return _shared
