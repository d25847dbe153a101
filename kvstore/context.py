"""The store context: what every data model shares, and the one read-through path.

A data model (values, logs, artifacts, and every model after them) is a module that takes
a :class:`StoreContext` and nothing else from the store: the blob store, the cache, the
counters, the clock, the concurrency bound, the namespace's :class:`~kvstore.layout.Layout`,
and the three protocols that keep the cache coherent (docs/architecture.md, "The cache
protocol"):

* **read** - :meth:`StoreContext.read_through`: one cache lookup for all keys, one bounded
  concurrent load of the misses, verification of every cached entry (a damaged entry is a
  miss: counted, dropped and read again from the source - never an error), then a fill
  guarded against the stale-set race (or an unguarded one for immutable objects). Every
  key looked up counts once in ``cache.hits`` or ``cache.misses``.
* **write** - :meth:`StoreContext.commit`: the object store first, then the invalidation,
  whatever happened, shielded from the caller's cancellation.
* **invalidate** - :meth:`StoreContext.invalidate`.

A cache never fails an operation: its errors are counted (``cache.errors``) and the store
goes on against the object store.

State a feature keeps per store (a log's appenders, the versions an artifact name is known
to have) lives in typed objects the feature defines, one per store, from
:meth:`StoreContext.state`; background work (automatic compaction) is started with
:meth:`StoreContext.spawn` and stopped when the store closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import secrets
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, TypeVar

from . import aio
from .blob import BlobStore
from .blob.base import AmbiguousWriteError
from .cache import Cache, Fill
from .cache.base import Entry
from .errors import CorruptDataError, KVStoreError
from .layout import STORE_ID, Layout
from .stats import Stats

T = TypeVar("T")
S = TypeVar("S")

Loaded = tuple[T, bytes | None, float]
"""What loading one missed key gives: (the item, the cache entry to fill or None to cache
nothing, the entry's TTL in seconds)."""
Unpack = Callable[[Sequence[Entry | None], int], tuple[list[T | None], list[int]]]
"""(Cache entries (None = miss), where their data starts: ``Cache.entry_offset``, see
:data:`kvstore.cache.base.Entry`) -> (items, indexes of damaged entries)."""

_STOP_WAIT_S = 10.0  # how long close() waits for cancelled background tasks to unwind


def now_ms() -> int:
    """The default clock: milliseconds since the epoch."""
    return time.time_ns() // 1_000_000


def each(decode: Callable[[bytes], T]) -> Unpack[T]:
    """An :data:`Unpack` from a per-entry decoder; an entry it cannot decode (it raises
    CorruptDataError, ValueError, TypeError ...) is damaged."""

    def unpack(entries: Sequence[Entry | None], offset: int) -> tuple[list[T | None], list[int]]:
        out: list[T | None] = []
        damaged: list[int] = []
        for i, entry in enumerate(entries):
            if entry is None:
                out.append(None)
                continue
            try:
                out.append(decode(entry[offset:]))
            except Exception:
                out.append(None)
                damaged.append(i)
        return out, damaged

    return unpack


class Resources:
    """What a store and all its namespace views share; closed once, by the root store."""

    def __init__(
        self,
        blob: BlobStore,
        cache: Cache,
        *,
        stats: Stats,
        clock: Callable[[], int],
        concurrency: int,
        cache_ttl: float,
    ) -> None:
        self.blob = blob
        self.cache = cache
        self.stats = stats
        self.clock = clock
        self.concurrency = concurrency
        self.cache_ttl = cache_ttl
        blob.expect_concurrency(concurrency)
        self.cache_prefix = _prefix(blob.identity)
        # A cache shared by several machines (Redis) must never serve one store's entries
        # to another that merely has the same name (the same path on two containers with
        # the same hostname). The store's own id, kept in the store, tells them apart. A
        # per-process cache, or a backend without conditional create (two first users
        # could each write an id), keeps the name-based prefix.
        self.identified = not (cache.shared and blob.atomic_create)
        self.states: dict[type, Any] = {}
        self.background: set[asyncio.Task[Any]] = set()
        self.finishing: set[asyncio.Task[Any]] = set()  # run to their end on close
        self.sleepers: set[asyncio.Future[None]] = set()  # woken by close
        self.closing = False

    async def identify(self) -> None:
        """Learn the store's id (one GET; one conditional PUT more the first time a store
        is used with a shared cache) and derive the cache prefix from it. Once per open
        store, before its first use of the cache. Concurrent first calls may each do it:
        they agree (the conditional create lets one id win, and all read it back)."""
        store_id = await self._read_id()
        if store_id is None:
            with contextlib.suppress(AmbiguousWriteError):  # ours or another's: read it
                await self.blob.put_if_absent(STORE_ID, secrets.token_hex(16).encode())
            store_id = await self._read_id()
            if store_id is None:
                raise KVStoreError(f"{self.blob.url}/{STORE_ID} vanished as it was made")
        self.cache_prefix = _prefix(f"{self.blob.identity}#{store_id}")
        self.identified = True

    async def _read_id(self) -> str | None:
        found = await self.blob.get(STORE_ID)
        if found is None:
            return None
        text = found.data.decode("ascii", "replace")
        if len(text) != 32 or any(c not in "0123456789abcdef" for c in text):
            raise CorruptDataError(
                "the store id is damaged; delete it and every process will make a new "
                "one (the shared cache then starts empty)",
                path=f"{self.blob.url}/{STORE_ID}",
            )
        return text

    async def close(self) -> None:
        self.closing = True
        await self.stop_background()
        self.closing = False  # the store may be used again (it reconnects)
        await self.blob.close()
        await self.cache.close()

    async def stop_background(self) -> None:
        """Cancel the background tasks (automatic log compactions) and wait briefly for
        them to unwind; each must leave its data consistent when interrupted."""
        here: list[asyncio.Task[Any]] = []
        loop = asyncio.get_running_loop()
        for sleeper in list(self.sleepers):  # settles waiting for idleness: now
            if not sleeper.done() and not sleeper.get_loop().is_closed():
                sleeper.get_loop().call_soon_threadsafe(_wake, sleeper)
        finishing = [t for t in self.finishing if not t.done() and t.get_loop() is loop]
        if finishing:
            await asyncio.wait(finishing, timeout=_STOP_WAIT_S)
        for task in list(self.background):
            if task.done():
                continue
            if task.get_loop() is loop:
                task.cancel()
                here.append(task)
            elif not task.get_loop().is_closed():  # a store used from several loops
                with contextlib.suppress(RuntimeError):
                    task.get_loop().call_soon_threadsafe(task.cancel)
        if here:
            await asyncio.wait(here, timeout=_STOP_WAIT_S)


def _wake(sleeper: asyncio.Future[None]) -> None:
    if not sleeper.done():
        sleeper.set_result(None)


def _prefix(identity: str) -> str:
    return f"kvstore:{hashlib.sha256(identity.encode()).hexdigest()[:16]}:"


class StoreContext:
    """One store view's access to the shared resources. See the module docstring."""

    __slots__ = (
        "blob",
        "cache",
        "cache_ttl",
        "clock",
        "concurrency",
        "layout",
        "resources",
        "stats",
    )

    def __init__(self, resources: Resources, layout: Layout | None = None) -> None:
        self.resources = resources
        self.layout = layout or Layout()
        # Copied, not looked up through ``resources``: these are read on every request.
        self.blob = resources.blob
        self.cache = resources.cache
        self.stats = resources.stats
        self.clock = resources.clock
        self.concurrency = resources.concurrency
        self.cache_ttl = resources.cache_ttl

    def namespace(self, name: str) -> StoreContext:
        return StoreContext(self.resources, self.layout.namespace(name))

    def state(self, kind: type[S]) -> S:
        """The store's one instance of a feature's state class (made on first use, with no
        arguments), shared by every namespace view of the store."""
        found = self.resources.states.get(kind)
        if found is None:
            found = self.resources.states[kind] = kind()
        return found

    def where(self, path: str) -> str:
        """The full URL of an object, for error messages."""
        return f"{self.blob.url}/{path}"

    def check(self, *paths: str) -> None:
        """InvalidKeyError if the object store cannot hold an object named like ``paths``
        (the longest paths a key can produce; S3 and GCS allow 1024 bytes)."""
        for path in paths:
            self.blob.check_path(path)

    def spawn(self, coro: Coroutine[Any, Any, T], *, finish: bool = False) -> asyncio.Task[T]:
        """Start background work that ``close()`` cancels (it must leave data consistent
        when interrupted); its exception is retrieved, never raised. ``finish``: close()
        first wakes it from :meth:`idle` and waits for it (at most 10 s) - work worth
        finishing before the process goes (settling a log)."""
        task = aio.detach(coro)
        resources = self.resources
        resources.background.add(task)
        task.add_done_callback(resources.background.discard)
        if finish:
            resources.finishing.add(task)
            task.add_done_callback(resources.finishing.discard)
        return task

    async def idle(self, seconds: float) -> None:
        """Sleep ``seconds``, or less: the store's close() wakes every idle sleeper."""
        resources = self.resources
        if resources.closing:
            return
        loop = asyncio.get_running_loop()
        sleeper: asyncio.Future[None] = loop.create_future()
        timer = loop.call_later(seconds, _wake, sleeper)
        resources.sleepers.add(sleeper)
        try:
            await sleeper
        finally:
            timer.cancel()
            resources.sleepers.discard(sleeper)

    # -- cache plumbing: failures never reach the caller -----------------------------------

    async def cache_safely(self, action: Awaitable[T], fallback: T) -> T:
        try:
            return await action
        except asyncio.CancelledError:
            raise
        except Exception:
            self.stats.add("cache.errors")
            return fallback

    @property
    def cache_prefix(self) -> str:
        """What starts every cache key of this store (see :meth:`Resources.identify`)."""
        return self.resources.cache_prefix

    @property
    def identified(self) -> bool:
        return self.resources.identified

    async def ready(self) -> None:
        """Make sure the cache prefix is the store's own (before any use of the cache)."""
        if not self.resources.identified:
            await self.resources.identify()

    async def invalidate(self, names: Sequence[str]) -> None:
        """Drop cached entries (``names``: object paths or cache-only names)."""
        if names:
            if not self.resources.identified:
                await self.resources.identify()
            keys = [self.cache_prefix + n for n in names]
            await self.cache_safely(self.cache.invalidate(keys), None)
            self.stats.add("cache.invalidations", len(keys))

    async def commit(self, names: Sequence[str], write: Callable[[], Awaitable[T]]) -> T:
        """Run a write, then invalidate ``names`` in the cache - whatever happened.

        The invalidation runs after success, after a failure (a partial ``mset`` wrote some
        keys) and after cancellation. The write and its invalidation are shielded from the
        caller's cancellation (a deadline, Ctrl-C on the blocking face): a request already
        sent may still land, so the pair runs to its end on the loop even if the caller
        has stopped waiting.
        """

        async def write_then_invalidate() -> T:
            try:
                return await write()
            finally:
                await self.invalidate(names)

        return await aio.shielded(write_then_invalidate())

    async def put_immutable(
        self, names: Sequence[str], entries: Sequence[bytes], ttl: float
    ) -> None:
        """Cache objects that are never rewritten (no guard needed)."""
        if not self.resources.identified:
            await self.resources.identify()
        fills = [Fill(self.cache_prefix + n, e, ttl) for n, e in zip(names, entries, strict=True)]
        if fills:
            await self.cache_safely(self.cache.put_immutable(fills), None)

    # -- the read-through path ------------------------------------------------------------

    async def read_through(
        self,
        names: Sequence[str],
        unpack: Unpack[T],
        load: Callable[[list[int]], Awaitable[list[Loaded[T | None]]]],
        *,
        immutable: bool = False,
        usable: Callable[[T], bool] | None = None,
        known: Sequence[Entry | None] | None = None,
        cache_keys: Sequence[str] | None = None,
    ) -> list[T | None]:
        """Items for ``names`` (object paths or cache-only names), through the cache.
        ``cache_keys``: the names with the cache prefix, when the caller has them already
        (it must have made them after :meth:`ready`).

        1. One lookup of every key (only of those ``known`` leaves as None, when given:
           entries the caller already read, e.g. in its own thread).
        2. Cached entries are verified by ``unpack``; a damaged one counts as
           ``cache.corrupt``, is invalidated and read again like a miss. A hit that
           ``usable`` rejects (older than what this process knows) is read again too.
        3. ``load(indexes)`` gets the misses from the object store (concurrently, bounded:
           that is the loader's job) and says what to cache.
        4. The fill: guarded by the lookup's ticket (no fill if the lookup failed: without
           a ticket the stale-set race cannot be excluded), or unguarded for ``immutable``
           objects.
        """
        if cache_keys is None:
            if not self.resources.identified:  # (inline: this runs on every cached read)
                await self.resources.identify()
            prefix = self.cache_prefix
            cache_keys = [prefix + n for n in names]
        entries: list[Entry | None]
        if known is None:
            lookup = await self.cache_safely(self.cache.lookup(cache_keys), None)
            entries = list(lookup.values) if lookup is not None else [None] * len(cache_keys)
        else:
            entries = list(known)
            ask = [i for i, entry in enumerate(entries) if entry is None]
            lookup = await self.cache_safely(self.cache.lookup([cache_keys[i] for i in ask]), None)
            if lookup is not None:
                for i, entry in zip(ask, lookup.values, strict=True):
                    entries[i] = entry
        out, damaged = unpack(entries, self.cache.entry_offset)
        misses = [i for i, entry in enumerate(entries) if entry is None]
        if damaged:
            self.stats.add("cache.corrupt", len(damaged))
            await self.cache_safely(self.cache.invalidate([cache_keys[i] for i in damaged]), None)
            misses += damaged
        if usable is not None:
            for i, item in enumerate(out):
                if item is not None and not usable(item):
                    out[i] = None
                    misses.append(i)
        hits = len(cache_keys) - len(misses)
        if hits:
            self.stats.add("cache.hits", hits)
        if not misses:
            return out
        self.stats.add("cache.misses", len(misses))
        misses.sort()
        fills: list[Fill] = []
        for i, (item, entry, ttl) in zip(misses, await load(misses), strict=True):
            out[i] = item
            if entry is not None and ttl > 0:
                fills.append(Fill(cache_keys[i], entry, ttl))
        if fills:
            if immutable:
                await self.cache_safely(self.cache.put_immutable(fills), None)
            elif lookup is not None:
                await self.cache_safely(self.cache.fill(fills, lookup.ticket), None)
            else:
                return out
            self.stats.add("cache.fills", len(fills))
        return out
