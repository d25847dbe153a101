"""EncryptingCache: a shared cache (Redis) in front of an encrypted store holds sealed
entries only - the same key ring, bound to each entry's cache key - so whoever can read
the Redis server reads no plaintext. An entry that does not open (changed, another key's,
under a key the ring lacks) is a miss, as any damaged entry is, and is invalidated: the
store reads the object, and the next read fills the entry again. (Left in place, it would
stay a miss until it expired: a cache guards its fills by what the lookup found missing.)"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

from ..cache.base import Cache, Entry, Fill, Lookup
from ..errors import KVStoreError
from .keyring import KeyRing
from .sealing import CACHE, seal, sealed_overhead, unseal


class EncryptingCache(Cache):
    """Seals what it puts in ``inner``, opens what it gets back (see the module docstring)."""

    entry_offset = 0

    def __init__(self, inner: Cache, ring: KeyRing) -> None:
        self.inner = inner
        self.in_process = inner.in_process
        self.ring = ring
        self.name = inner.name
        self.shared = inner.shared
        self.unopened = 0  # entries that did not open: damaged, foreign, another key's

    def __repr__(self) -> str:
        return f"<EncryptingCache around {self.inner!r}>"

    def _open(self, key: str, entry: Entry | None) -> Entry | None:
        if entry is None:
            return None
        try:
            return unseal(self.ring, entry[self.inner.entry_offset :], CACHE + key.encode(), key)
        except KVStoreError:
            return None  # a damaged entry is a miss (lookup invalidates it)

    def _open_all(
        self, keys: Sequence[str], entries: Sequence[Entry | None]
    ) -> tuple[list[Entry | None], list[str]]:
        """The entries opened, and the keys of those that did not open."""
        opened = [self._open(k, v) for k, v in zip(keys, entries, strict=True)]
        bad = [
            k for k, v, o in zip(keys, entries, opened, strict=True) if o is None and v is not None
        ]
        return opened, bad

    def _seal(self, entries: Sequence[Fill]) -> list[Fill]:
        # Not what the cache would drop anyway once sealed (the Redis cache's
        # max_entry_bytes: an artifact's 8 MiB parts), which would cost a seal for nothing.
        limit = getattr(self.inner, "max_entry_bytes", None)
        if isinstance(limit, int):
            room = limit - sealed_overhead(self.ring.primary)
            entries = [e for e in entries if len(e.value) <= room]
        return [
            Fill(e.key, seal(self.ring, e.value, CACHE + e.key.encode()), e.ttl) for e in entries
        ]

    async def lookup(self, keys: Sequence[str]) -> Lookup:
        found = await self.inner.lookup(keys)
        opened, bad = self._open_all(keys, found.values)
        if bad:
            self.unopened += len(bad)
            with contextlib.suppress(Exception):  # a miss either way; a cache that fails
                await self.inner.invalidate(bad)  # here is the store's to notice, not ours
        return Lookup(opened, found.ticket)

    def lookup_now(self, keys: Sequence[str]) -> Sequence[Entry | None] | None:
        found = self.inner.lookup_now(keys)
        if found is None:
            return None
        opened, bad = self._open_all(keys, found)
        # An entry that did not open: the loop's lookup answers (and invalidates it).
        return None if bad else opened

    async def fill(self, entries: Sequence[Fill], ticket: Any) -> None:
        await self.inner.fill(self._seal(entries), ticket)

    async def invalidate(self, keys: Sequence[str]) -> None:
        await self.inner.invalidate(keys)

    async def put_immutable(self, entries: Sequence[Fill]) -> None:
        await self.inner.put_immutable(self._seal(entries))

    async def close(self) -> None:
        await self.inner.close()

    async def health(self) -> dict[str, Any]:
        return await self.inner.health()

    def info(self) -> dict[str, Any]:
        return {**self.inner.info(), "encrypted": True, "unopened": self.unopened}
