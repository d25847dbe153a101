"""The cache contract: bytes by key, with TTLs and a guard against the stale-set race.

The object store is the commit point; a cache only accelerates reads (docs/architecture.md,
invariant 5).
The protocol a store follows:

* read: ``lookup(keys)`` returns the cached values and a *ticket*. For the misses the store
  reads the object store, then calls ``fill(entries, ticket)``. ``fill`` stores an entry only
  if no ``invalidate`` of that key happened after the ticket was issued, so a slow reader can
  never put an old value over a newer write.
* write: write the object store first, then ``invalidate(keys)``.
* immutable objects: ``put_immutable(entries)`` caches them with no guard at all.

Every entry carries a TTL. A cache that fails raises; the store counts the error and goes on
against the object store (see :mod:`kvstore.api`).
"""

from __future__ import annotations

import os
import threading
import weakref
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

Entry = bytes
"""A cached entry as a lookup returns it: bytes whose data starts ``cache.entry_offset``
bytes in. A cache may leave a prefix of its own in front (the Redis cache's generation)
rather than copy or view past it: a warm 1000-key ``mget`` then allocates nothing per
entry but the payload it returns (:func:`kvstore.codec.unpack_cached` reads in place).
``entry[cache.entry_offset:]`` is the data (the same object when the offset is 0)."""


@dataclass(frozen=True)
class Lookup:
    """Cached values (None = miss) in key order, and the ticket for filling the misses."""

    values: Sequence[Entry | None]
    ticket: Any


@dataclass(slots=True)  # not frozen: one is made per value filled
class Fill:
    key: str
    value: bytes
    ttl: float  # seconds, > 0


class Cache(ABC):
    """A cache in front of the object store. Implementations state their coherence scope."""

    name: str = "cache"
    #: Several machines or processes share its entries (Redis): the store then keys them by
    #: its own id (kept in the store), not only by its name.
    shared: bool = False
    #: Where an entry's data starts in what :meth:`lookup` / :meth:`lookup_now` return
    #: (:data:`Entry`); the same for every entry of this cache.
    entry_offset: int = 0
    #: :meth:`lookup_now` answers from this process's memory and never waits on I/O (the
    #: in-process cache): code running on the event loop may call it. A cache whose
    #: ``lookup_now`` makes a network round trip (Redis) is for the blocking face only -
    #: on the loop it would stall every other task for that round trip.
    in_process: bool = False

    @abstractmethod
    async def lookup(self, keys: Sequence[str]) -> Lookup: ...

    def lookup_now(self, keys: Sequence[str]) -> Sequence[Entry | None] | None:
        """Cached values (None = miss) read in the calling thread, without the event loop:
        the blocking face answers cache hits this way. None when this cache cannot answer
        so right now (no such path, an outage, a generation to check); the caller then
        uses :meth:`lookup` on the loop. Gives no ticket (a miss goes to the loop anyway)
        and never raises."""
        return None

    @abstractmethod
    async def fill(self, entries: Sequence[Fill], ticket: Any) -> None: ...

    @abstractmethod
    async def invalidate(self, keys: Sequence[str]) -> None: ...

    @abstractmethod
    async def put_immutable(self, entries: Sequence[Fill]) -> None:
        """Cache objects that are never rewritten (log chunks, artifact versions).

        No ticket and no invalidation are needed: the bytes under such a key never change.
        Each entry lives ``ttl`` seconds; implementations skip entries too big to be worth
        a cache slot.
        """

    async def close(self) -> None:
        """Release connections; the cache's contents stay."""

    async def health(self) -> dict[str, Any]:
        """Whether the cache answers, and how fast (a remote cache pings)."""
        return {"ok": True, **self.info()}

    def info(self) -> dict[str, Any]:
        """Gauges for ``store.stats()`` (entries, bytes, ...)."""
        return {}


_locks_to_renew: weakref.WeakKeyDictionary[object, list[str]] = weakref.WeakKeyDictionary()


def renew_lock_after_fork(owner: object, attribute: str) -> None:
    """Give ``owner.<attribute>`` (a ``threading.Lock``) a fresh lock in a forked child: a
    fork while another thread held it would leave it locked forever there. What the lock
    guards is consistent in the child (it changes only under the lock, in Python)."""
    _locks_to_renew.setdefault(owner, []).append(attribute)


def _renew_locks() -> None:
    for owner, attributes in list(_locks_to_renew.items()):
        for attribute in attributes:
            setattr(owner, attribute, threading.Lock())


os.register_at_fork(after_in_child=_renew_locks)
