"""EncryptingCache: a shared cache (Redis) in front of an encrypted store holds sealed
entries only - the same key ring, bound to each entry's cache key - so whoever can read
the Redis server reads no plaintext. An entry that does not open (changed, another key's,
under a key the ring lacks) is a miss, as any damaged entry is: the store reads the object
and fills the entry again."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..cache.base import Cache, Entry, Fill, Lookup
from ..errors import KVStoreError
from .keyring import KeyRing
from .sealing import CACHE, seal, unseal


class EncryptingCache(Cache):
    """Seals what it puts in ``inner``, opens what it gets back (see the module docstring)."""

    entry_offset = 0

    def __init__(self, inner: Cache, ring: KeyRing) -> None:
        self.inner = inner
        self.ring = ring
        self.name = inner.name
        self.shared = inner.shared

    def __repr__(self) -> str:
        return f"<EncryptingCache around {self.inner!r}>"

    def _open(self, key: str, entry: Entry | None) -> Entry | None:
        if entry is None:
            return None
        try:
            return unseal(self.ring, entry[self.inner.entry_offset :], CACHE + key.encode(), key)
        except KVStoreError:
            return None  # a damaged entry is a miss (the fill replaces it)

    def _seal(self, entries: Sequence[Fill]) -> list[Fill]:
        return [
            Fill(e.key, seal(self.ring, e.value, CACHE + e.key.encode()), e.ttl) for e in entries
        ]

    async def lookup(self, keys: Sequence[str]) -> Lookup:
        found = await self.inner.lookup(keys)
        opened = [self._open(k, v) for k, v in zip(keys, found.values, strict=True)]
        return Lookup(opened, found.ticket)

    def lookup_now(self, keys: Sequence[str]) -> Sequence[Entry | None] | None:
        found = self.inner.lookup_now(keys)
        if found is None:
            return None
        return [self._open(k, v) for k, v in zip(keys, found, strict=True)]

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
        return {**self.inner.info(), "encrypted": True}
