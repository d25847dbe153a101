"""The contract every :class:`kvstore.cache.Cache` keeps, as tests a cache inherits.

A cache gets the whole suite by subclassing and providing one fixture::

    class TestMyCache(CacheContract):
        @pytest.fixture
        def open_cache(self):
            return lambda: MyCache(ttl=5)

``open_cache`` returns a callable that makes a cache; it is called inside the event loop
that uses it, and the cache is closed at the end of the test. Caches may be shared between
tests (a Redis server): each test uses keys of its own.

What is checked is the protocol :mod:`kvstore.cache.base` states: ``lookup`` gives values in
key order and a ticket; ``fill`` with that ticket stores the misses unless the key was
invalidated after the ticket was issued (the stale-set race); ``invalidate`` removes;
``put_immutable`` stores without a ticket; every entry expires after its TTL; and a cache
returns the bytes exactly as filled. Whether those bytes are *right* is not the cache's
business: the store verifies every byte it reads (the envelope's checksum, DESIGN
invariant 6) and repairs a damaged entry by invalidating it.

A cache that never stores anything (``NoCache``) declares ``stores_entries = False``: the
tests that need a hit are skipped with that reason, and one test checks it never hits.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence

import pytest

from ..cache.base import Cache, Fill

CacheBody = Callable[[Cache, Callable[[str], str]], Awaitable[None]]


class CacheContract:
    """Tests every Cache must pass. Subclass it (name the subclass ``Test...``) and
    override the :meth:`open_cache` fixture."""

    #: False for a cache that never stores (every lookup misses).
    stores_entries: bool = True
    #: The short TTL the expiry tests use (seconds), and how long they wait at most.
    short_ttl: float = 0.2
    expiry_wait: float = 3.0

    @pytest.fixture
    def open_cache(self) -> Callable[[], Cache]:
        """Override: a callable that makes the Cache under test."""
        raise NotImplementedError("a CacheContract subclass provides open_cache")

    def run(self, open_cache: Callable[[], Cache], body: CacheBody) -> None:
        """Run ``body(cache, key)`` on a fresh loop; ``key(name)`` makes a key unique to
        this test. The cache is closed after."""
        unique = uuid.uuid4().hex[:12]

        async def main() -> None:
            cache = open_cache()
            try:
                await asyncio.wait_for(body(cache, lambda name: f"kit:{unique}:{name}"), 60)
            finally:
                await cache.close()

        asyncio.run(main())

    def _need_storage(self) -> None:
        if not self.stores_entries:
            pytest.skip(f"{type(self).__name__} declares stores_entries = False")

    @staticmethod
    def data(cache: Cache, entries: Sequence[bytes | None]) -> list[bytes | None]:
        """The data of looked-up entries (``Cache.entry_offset`` bytes in; None = miss)."""
        offset = cache.entry_offset
        return [None if e is None else e[offset:] for e in entries]

    @classmethod
    async def read(cls, cache: Cache, keys: Sequence[str]) -> list[bytes | None]:
        """The data ``cache.lookup(keys)`` finds (None = miss)."""
        return cls.data(cache, (await cache.lookup(keys)).values)

    @staticmethod
    async def fill_misses(cache: Cache, entries: dict[str, bytes], ttl: float = 30.0) -> None:
        """The read path of a store: look the keys up, then fill the misses."""
        keys = list(entries)
        found = await cache.lookup(keys)
        misses = [
            Fill(k, entries[k], ttl) for k, v in zip(keys, found.values, strict=True) if v is None
        ]
        await cache.fill(misses, found.ticket)

    # -- the read path ---------------------------------------------------------------------

    def test_a_filled_miss_is_a_hit(self, open_cache: Callable[[], Cache]) -> None:
        self._need_storage()

        async def body(cache: Cache, key: Callable[[str], str]) -> None:
            found = await cache.lookup([key("a")])
            assert found.values == [None]
            await cache.fill([Fill(key("a"), b"value", 30.0)], found.ticket)
            assert await self.read(cache, [key("a")]) == [b"value"]

        self.run(open_cache, body)

    def test_bytes_come_back_exactly_as_filled(self, open_cache: Callable[[], Cache]) -> None:
        self._need_storage()
        values = {
            "empty": b"",
            "every-byte": bytes(range(256)) * 3,
            "random": os.urandom(64 * 1024),
            "looks-like-text": b"OK\r\n$-1\r\n\x00nil",
        }

        async def body(cache: Cache, key: Callable[[str], str]) -> None:
            await self.fill_misses(cache, {key(k): v for k, v in values.items()})
            found = await cache.lookup([key(k) for k in values])
            # bytes, their data from cache.entry_offset on (kvstore.cache.base.Entry)
            assert [type(v) for v in found.values] == [bytes] * len(values)
            assert self.data(cache, found.values) == list(values.values())

        self.run(open_cache, body)

    def test_many_keys_in_one_lookup_keep_their_order(
        self, open_cache: Callable[[], Cache]
    ) -> None:
        self._need_storage()

        async def body(cache: Cache, key: Callable[[str], str]) -> None:
            filled = {key(f"k{i}"): f"value {i}".encode() for i in range(0, 60, 2)}
            await self.fill_misses(cache, filled)
            asked = [key(f"k{i}") for i in reversed(range(60))]  # hits and misses interleaved
            found = await cache.lookup(asked)
            assert self.data(cache, found.values) == [filled.get(k) for k in asked]

        self.run(open_cache, body)

    def test_lookup_now_agrees_with_lookup(self, open_cache: Callable[[], Cache]) -> None:
        """The blocking face's fast path may decline (None) but never disagrees."""

        async def body(cache: Cache, key: Callable[[str], str]) -> None:
            await self.fill_misses(cache, {key("a"): b"1"})
            keys = [key("a"), key("missing")]
            expected = await self.read(cache, keys)
            now = await asyncio.to_thread(cache.lookup_now, keys)
            assert now is None or self.data(cache, now) == expected

        self.run(open_cache, body)

    # -- coherence -------------------------------------------------------------------------

    def test_invalidate_removes_the_entry(self, open_cache: Callable[[], Cache]) -> None:
        self._need_storage()

        async def body(cache: Cache, key: Callable[[str], str]) -> None:
            await self.fill_misses(cache, {key("a"): b"old", key("b"): b"other"})
            await cache.invalidate([key("a")])
            assert await self.read(cache, [key("a"), key("b")]) == [None, b"other"]

        self.run(open_cache, body)

    def test_invalidate_of_a_missing_key_is_fine(self, open_cache: Callable[[], Cache]) -> None:
        async def body(cache: Cache, key: Callable[[str], str]) -> None:
            await cache.invalidate([key("never-filled")])
            await cache.invalidate([])
            assert await self.read(cache, [key("never-filled")]) == [None]
            await self.fill_misses(cache, {key("never-filled"): b"now"})
            expected = [b"now"] if self.stores_entries else [None]
            assert await self.read(cache, [key("never-filled")]) == expected

        self.run(open_cache, body)

    def test_stale_fill_after_an_invalidation_is_refused(
        self, open_cache: Callable[[], Cache]
    ) -> None:
        """The stale-set race: a reader looks up (miss) and reads the old object; a writer
        writes the object store and invalidates; the reader's late fill must not store
        its old value. Keys not invalidated since the ticket fill as usual."""

        async def body(cache: Cache, key: Callable[[str], str]) -> None:
            reader = await cache.lookup([key("a"), key("b")])
            assert reader.values == [None, None]
            await cache.invalidate([key("a")])  # the writer, between read and fill
            await cache.fill(
                [Fill(key("a"), b"old", 30.0), Fill(key("b"), b"b", 30.0)], reader.ticket
            )
            found = await cache.lookup([key("a"), key("b")])
            got = self.data(cache, found.values)
            assert got[0] is None, "a stale value was stored over a newer write"
            assert got[1] == (b"b" if self.stores_entries else None)
            await self.fill_misses(cache, {key("a"): b"new"})  # a fresh ticket fills
            expected = [b"new"] if self.stores_entries else [None]
            assert await self.read(cache, [key("a")]) == expected

        self.run(open_cache, body)

    def test_put_immutable_needs_no_ticket(self, open_cache: Callable[[], Cache]) -> None:
        self._need_storage()

        async def body(cache: Cache, key: Callable[[str], str]) -> None:
            await cache.put_immutable([Fill(key("chunk"), b"records", 30.0)])
            assert await self.read(cache, [key("chunk")]) == [b"records"]

        self.run(open_cache, body)

    def test_a_cache_that_does_not_store_never_hits(self, open_cache: Callable[[], Cache]) -> None:
        if self.stores_entries:
            pytest.skip(f"{type(self).__name__} stores entries")

        async def body(cache: Cache, key: Callable[[str], str]) -> None:
            await self.fill_misses(cache, {key("a"): b"1"})
            await cache.put_immutable([Fill(key("b"), b"2", 30.0)])
            assert await self.read(cache, [key("a"), key("b")]) == [None, None]
            now = await asyncio.to_thread(cache.lookup_now, [key("a")])
            assert now in (None, [None])

        self.run(open_cache, body)

    # -- expiry ----------------------------------------------------------------------------

    def test_entries_expire_after_their_ttl(self, open_cache: Callable[[], Cache]) -> None:
        self._need_storage()
        ttl = self.short_ttl

        async def body(cache: Cache, key: Callable[[str], str]) -> None:
            await self.fill_misses(cache, {key("filled"): b"1"}, ttl=ttl)
            await cache.put_immutable([Fill(key("immutable"), b"2", ttl)])
            await self.fill_misses(cache, {key("long"): b"3"}, ttl=30.0)
            keys = [key("filled"), key("immutable"), key("long")]
            assert await self.read(cache, keys) == [b"1", b"2", b"3"]
            started = time.monotonic()
            while await self.read(cache, keys[:2]) != [None, None]:
                assert time.monotonic() - started < self.expiry_wait, "entries outlived TTL"
                await asyncio.sleep(ttl / 4)
            assert await self.read(cache, keys[2:]) == [b"3"]

        self.run(open_cache, body)
