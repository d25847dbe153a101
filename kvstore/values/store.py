"""Values: the store of one view's values (see :mod:`kvstore.values` for the guarantees)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from .. import aio, codec
from ..blob.base import AmbiguousWriteError, Blob
from ..context import Loaded, StoreContext
from ..convert import duration_ms, expiry_from_args, to_bytes
from ..errors import ConfigurationError, CorruptDataError, KVStoreError, WrongTypeError
from ..keys import key_str
from .known import UNKNOWN, Change, KnownVersions, _Delete, _Unknown

T = TypeVar("T")

TOMBSTONE = b""  # cached "no such key"; never a valid envelope
MAX_SWAP_ROUNDS = 64
MAX_BACKOFF_S = 0.25  # the longest pause between two rounds of a contended swap
PLANS_KEPT = 4096
Plan = tuple[list[str], list[str], list[str]]  # names, object paths, cache keys


class Values:
    """The value commands of one store view (the root or a namespace)."""

    def __init__(self, ctx: StoreContext) -> None:
        self.ctx = ctx
        self._plans: dict[str, tuple[str, str]] = {}  # key -> (path, cache key): plan()
        self._plans_prefix = ctx.cache_prefix  # the prefix of the cache keys in _plans

    # -- reading: shared by both faces (see kvstore.sync) -----------------------------------

    def path(self, key: str) -> str:
        path = self.ctx.layout.value(key)
        self.ctx.blob.check_path(path)
        return path

    def plan(self, keys: Iterable[Any]) -> Plan:
        """The names, object paths and cache keys of the values a read needs (validated).

        Plans of str keys are remembered per store view (at most ``PLANS_KEPT``): hot keys
        are planned on every read, and a warm ``mget`` should not re-encode 1000 names."""
        names: list[str] = []
        paths: list[str] = []
        cache_keys: list[str] = []
        known = self._plans
        prefix = self.ctx.cache_prefix
        if prefix is not self._plans_prefix:  # the store learnt its id (shared cache)
            known.clear()
            self._plans_prefix = prefix
        for key in keys:
            plan = known.get(key) if type(key) is str else None
            if plan is None:
                key = key_str(key)
                path = self.path(key)
                plan = (path, prefix + path)
                if len(known) >= PLANS_KEPT:
                    known.clear()
                known[key] = plan
            names.append(key)
            paths.append(plan[0])
            cache_keys.append(plan[1])
        return names, paths, cache_keys

    def _live(self, values: list[codec.Live | None]) -> list[codec.Live | None]:
        if all(v is None or not v[1] for v in values):
            return values  # nothing with an expiry: no clock needed
        now = self.ctx.clock()
        return [v if v is not None and not codec.expired(v[1], now) else None for v in values]

    def load_now(
        self, plan: Plan, *, on_loop: bool = False
    ) -> tuple[list[codec.Live | None] | None, Sequence[bytes | None] | None]:
        """Like :meth:`load`, from the cache alone and in the calling thread - no event
        loop, no await: how the blocking face answers a read whose every key is a cache
        hit. Returns (values, None) then; otherwise (None, the entries it did find) for
        :meth:`load` to complete on the loop without asking for them again, or (None,
        None) if the cache could not answer here (or an entry is damaged: the loop drops
        it). ``on_loop``: the caller runs on the event loop, so only a cache that answers
        from this process's memory is asked (``Cache.in_process``; Redis would block the
        loop for a round trip)."""
        if not self.ctx.identified or (on_loop and not self.ctx.cache.in_process):
            return None, None  # (the loop learns the store's id first)
        cached = self.ctx.cache.lookup_now(plan[2])
        if cached is None:
            return None, None
        if not all(cached) and any(entry is None for entry in cached):
            # (`None in cached` compares each view with None: 0.3 ms for 1000; all() is
            # a truth test, and only a cached "missing" - b"" - is falsy besides None)
            return None, cached
        values, damaged = codec.unpack_cached(cached, self.ctx.cache.entry_offset)
        if damaged:
            return None, None
        self.ctx.stats.add_threadsafe("cache.hits", len(values), "cache.hits_in_caller")
        return self._live(values), None

    async def load(
        self, plan: Plan, known: Sequence[bytes | None] | None = None
    ) -> list[codec.Live | None]:
        """Live values (payload, expiry) of a plan's keys, through the cache; None for
        missing or expired. ``known``: cache entries already read for some keys (None for
        the others), by :meth:`load_now` - only the others are looked up."""
        ctx = self.ctx
        if not ctx.identified:  # the plan's cache keys were made with the name's prefix
            await ctx.ready()
            plan, known = self.plan_at(plan[0], plan[1]), None
        keys, paths, cache_keys = plan

        async def fetch(misses: list[int]) -> list[Loaded[codec.Live | None]]:
            blobs = await ctx.blob.get_many([paths[i] for i in misses], ctx.concurrency)
            now = ctx.clock()
            loaded: list[Loaded[codec.Live | None]] = []
            for i, found in zip(misses, blobs, strict=True):
                if found is None:
                    loaded.append((None, TOMBSTONE, ctx.cache_ttl))
                    continue
                path = paths[i]
                where = ctx.where(path)
                env = codec.decode(found.data, key=keys[i], path=where, bound=path)
                kind = codec.kind_of(env, key=keys[i], path=where)
                expires = env.expires_at_ms
                ttl = ctx.cache_ttl if expires == 0 else min(ctx.cache_ttl, (expires - now) / 1000)
                entry = codec.pack_cached(env.payload, expires, kind)
                loaded.append(((env.payload, expires, kind), entry, ttl))
            return loaded

        values = await ctx.read_through(
            paths, codec.unpack_cached, fetch, known=known, cache_keys=cache_keys
        )
        return self._live(values)

    # -- read-modify-write with compare-and-swap -------------------------------------------

    async def _read_current(self, key: str, path: str) -> tuple[Blob | None, codec.Envelope | None]:
        """The stored object and its live envelope (None if missing or expired)."""
        found = await self.ctx.blob.get(path)
        if found is None:
            return None, None
        env = codec.decode(found.data, key=key, path=self.ctx.where(path), bound=path)
        return found, (None if env.expired(self.ctx.clock()) else env)

    def _live_envelope(self, key: str, path: str, stored: Blob) -> codec.Envelope | None:
        env = codec.decode(stored.data, key=key, path=self.ctx.where(path), bound=path)
        return None if env.expired(self.ctx.clock()) else env

    async def read_expiry(self, key: str, path: str) -> tuple[Blob | None, bool]:
        """(the object's header and tag, whether it holds a live value) from one ranged read
        of the verified 32-byte header - no download of the value."""
        found = await self.ctx.blob.get_head(path, codec.HEADER_SIZE)
        if found is None:
            return None, False
        expires = codec.peek_expiry(found.data, key=key, path=self.ctx.where(path))
        return found, expires == 0 or expires > self.ctx.clock()

    async def _swap(
        self,
        key: str,
        path: str,
        decide: Callable[[Blob | None, codec.Envelope | None], tuple[T, bytes | None]],
    ) -> T:
        """Atomically replace the object at ``path`` with what ``decide`` returns.

        ``decide(stored, live)`` returns (result, new object bytes, or None to leave it,
        or b"" to delete it). The write is a conditional create when nothing is stored and
        a compare-and-swap on the tag read otherwise; on conflict the read is repeated.

        A conflict may be our own write: when its response is lost, the client library
        (botocore, gcsfs) retries by itself, and the retry meets the write it repeats. So
        the re-read first checks for it - the bytes we wrote (unique: every envelope has a
        nonce), or for a delete, no object - and then reports what our write did. (A
        conditional delete that lost against another client's delete is counted as ours:
        the key is gone either way.)
        """
        blob = self.ctx.blob
        known = self.ctx.state(KnownVersions)
        ours: tuple[T, bytes] | None = None  # the result and bytes of a "conflicting" write
        trust = True  # may the first round use the remembered version?
        for attempt in range(MAX_SWAP_ROUNDS):
            remembered = known.get(path) if trust else UNKNOWN
            trust = False
            if isinstance(remembered, _Unknown):
                fresh = True
                stored, live = await self._read_current(key, path)
                known.remember(path, stored)
            else:
                fresh = False
                stored = remembered
                live = None if stored is None else self._live_envelope(key, path, stored)
            if ours is not None and (
                (stored is None and ours[1] == b"")
                or (stored is not None and stored.data == ours[1])
            ):
                self.ctx.stats.add("lost_responses")
                return ours[0]
            try:
                result, new = decide(stored, live)
            except Exception:
                if not fresh:  # an error (WRONGTYPE, not an integer, a WATCH that failed)
                    continue  # is only true of the current version, like "nothing to do"
                raise
            if new is None:
                if not fresh:  # "nothing to do" is only true of the current version:
                    continue  # a remembered one may be stale (a write proves it is not)
                return result
            try:
                if new == b"":
                    assert stored is not None
                    ok = await blob.delete_if_match(path, stored.tag)
                    known.remember(path, None if ok else UNKNOWN)
                else:
                    if stored is None:
                        tag = await blob.put_if_absent(path, new)
                    else:
                        tag = await blob.put_if_match(path, new, stored.tag)
                    ok = tag is not None
                    known.remember(path, Blob(new, tag) if tag is not None else UNKNOWN)
            except AmbiguousWriteError:
                known.remember(path, UNKNOWN)
                # A retried conditional write met a conflict: our first attempt may have
                # applied. A swap or delete of the version we read is then either ours or
                # superseded by a concurrent write - success both ways (re-applying could
                # undo that newer write). A create is ours only if the bytes are (nonce).
                if stored is None:
                    check = await blob.get(path)
                    ok = check is not None and check.data == new
                else:
                    ok = True
            if ok:
                if attempt:  # contended: the next swap reads first rather than trust
                    known.remember(path, UNKNOWN)  # a version others will have replaced
                return result
            ours = (result, new)
            self.ctx.stats.add("swap_conflicts")
            # Exponential backoff with full jitter (capped): with a few processes on one key
            # and slow requests, a fixed few-ms pause let one process lose 64 rounds.
            await asyncio.sleep(random.uniform(0, min(MAX_BACKOFF_S, 0.002 * 2**attempt)))
        raise KVStoreError(
            f"gave up on key {key!r} after {MAX_SWAP_ROUNDS} conflicting concurrent writes"
        )

    async def update(self, key: str, change: Callable[[codec.Live | None], tuple[T, Change]]) -> T:
        """Atomically read-modify-write one key of any type: the primitive of every typed
        command (INCR, HSET, SADD, ZADD, ...).

        ``change(current)`` gets the live value as ``(payload, expires_at_ms, kind)``, or
        None if the key is missing or expired, and returns ``(result, new)``: ``new`` is
        None to leave the key as it is, :data:`DELETE` to remove it, or ``(payload,
        expires_at_ms, kind)`` to write. The write is a conditional create or a
        compare-and-swap on the version read, repeated on conflict, so ``change`` may run
        more than once and must not have side effects. Costs one GET and one conditional
        PUT; one conditional PUT when this process made the current version
        (:class:`KnownVersions`). Durable on return; the cache entry is invalidated.
        """
        name = key_str(key)
        return await self.update_at(name, self.path(name), change)

    async def update_at(
        self, name: str, path: str, change: Callable[[codec.Live | None], tuple[T, Change]]
    ) -> T:
        """:meth:`update` of the object at ``path`` (a model's own object, e.g. a session's
        head, made by :mod:`kvstore.layout`); ``name`` is what errors call it."""
        where = self.ctx.where(path)

        def decide(stored: Blob | None, live: codec.Envelope | None) -> tuple[T, bytes | None]:
            current = None
            if live is not None:
                current = (
                    live.payload,
                    live.expires_at_ms,
                    codec.kind_of(live, key=name, path=where),
                )
            result, new = change(current)
            if new is None:
                return result, None
            if isinstance(new, _Delete):
                return result, (None if stored is None else b"")
            payload, expires, kind = new
            data = codec.encode(
                payload, expires_at_ms=expires, meta=codec.kind_meta(kind), bind=path
            )
            return result, data

        async def swap() -> T:
            async with self.ctx.state(KnownVersions).turn(path):
                return await self._swap(name, path, decide)

        return await self.ctx.commit([path], swap)

    async def get_versioned(self, key: str) -> tuple[bytes, str] | None:
        """(the string value of ``key``, its version) from the object store itself: one
        GET, never the cache (a version is only useful if it is current). None if the key
        is missing or expired; WrongTypeError on another type. The version is remembered,
        so a ``set(..., if_version=)`` right after it is one conditional PUT."""
        name = key_str(key)
        path = self.path(name)
        stored, live = await self._read_current(name, path)
        self.ctx.state(KnownVersions).remember(path, stored)
        if stored is None or live is None:
            return None
        if codec.kind_of(live, key=name, path=self.ctx.where(path)) != codec.STRING:
            raise WrongTypeError()
        return live.payload, stored.tag

    def remembered_at(self, name: str, path: str) -> bytes | None:
        """The live payload of the object at ``path`` as this process last read or wrote
        it in a swap (:class:`KnownVersions`), or None if it remembers none: no request,
        and possibly stale - for a guess that a compare-and-swap will check."""
        found = self.ctx.state(KnownVersions).get(path)
        if not isinstance(found, Blob):
            return None
        live = self._live_envelope(name, path, found)
        return None if live is None else live.payload

    async def read_at(self, name: str, path: str) -> bytes | None:
        """The live payload of the object at ``path`` from the object store itself (one
        GET, no cache); ``name`` is what errors call it."""
        _, live = await self._read_current(name, path)
        return None if live is None else live.payload

    def plan_at(self, names: Sequence[str], paths: Sequence[str]) -> Plan:
        """A read plan for objects at given paths (a model's own), for :meth:`load`."""
        prefix = self.ctx.cache_prefix
        return list(names), list(paths), [prefix + p for p in paths]

    async def read_fresh(self, key: str) -> codec.Live | None:
        """The live value of ``key`` from the object store itself (one GET; no cache, no
        remembered version): what a write must decide on when the cache is not shared
        between processes."""
        name = key_str(key)
        path = self.path(name)
        _, live = await self._read_current(name, path)
        if live is None:
            return None
        return (
            live.payload,
            live.expires_at_ms,
            codec.kind_of(live, key=name, path=self.ctx.where(path)),
        )

    # -- writing ---------------------------------------------------------------------------

    async def set(
        self,
        key: str,
        value: Any,
        ex: Any = None,
        px: Any = None,
        nx: bool = False,
        xx: bool = False,
        keepttl: bool = False,
        exat: Any = None,
        pxat: Any = None,
        if_version: str | None = None,
    ) -> bool | None:
        name = key_str(key)
        payload = to_bytes(value)
        if nx and xx:
            raise ConfigurationError("nx and xx are mutually exclusive")
        if if_version is not None:
            if not isinstance(if_version, str) or not if_version:
                raise ConfigurationError(
                    f"if_version must be a version string from get_versioned, not {if_version!r}"
                )
            if nx:
                raise ConfigurationError(
                    "if_version and nx are mutually exclusive (nx: only if missing)"
                )
        expiry_given = any(v is not None for v in (ex, px, exat, pxat))
        if keepttl and expiry_given:
            raise ConfigurationError("keepttl cannot be combined with ex, px, exat or pxat")
        expires = expiry_from_args(self.ctx.clock(), ex, px, exat, pxat)
        path = self.path(name)
        data = codec.encode(payload, expires_at_ms=expires, bind=path)
        blob = self.ctx.blob
        if not (nx or xx or keepttl or if_version):
            known = self.ctx.state(KnownVersions)

            async def put() -> None:
                known.remember(path, UNKNOWN)
                known.remember(path, Blob(data, await blob.put(path, data)))

            await self.ctx.commit([path], put)
            return True

        def decide(
            stored: Blob | None, live: codec.Envelope | None
        ) -> tuple[bool | None, bytes | None]:
            if stored is not None and stored.data == data:
                return True, None  # our own write, applied by an ambiguous retry
            if (nx and live is not None) or (xx and live is None):
                return None, None
            if if_version is not None and (
                live is None or stored is None or stored.tag != if_version
            ):
                return None, None
            if keepttl and live is not None:
                return True, codec.with_expiry(data, live.expires_at_ms)
            return True, data

        async def conditional() -> bool | None:
            if nx:
                try:
                    if await blob.put_if_absent(path, data) is not None:
                        return True
                except AmbiguousWriteError:
                    pass  # decide() below recognises our own bytes
            return await self._swap(name, path, decide)

        return await self.ctx.commit([path], conditional)

    async def mset(self, mapping: Mapping[str, Any]) -> bool:
        if not isinstance(mapping, Mapping):
            raise ConfigurationError("mset takes a mapping of keys to values")
        items = []
        for k, v in mapping.items():
            path = self.path(key_str(k))
            items.append((path, codec.encode(to_bytes(v), bind=path)))
        blob = self.ctx.blob

        async def put_all() -> bool:
            await aio.bounded([blob.put(path, data) for path, data in items], self.ctx.concurrency)
            return True

        return await self.ctx.commit([path for path, _ in items], put_all)

    async def delete(
        self, keys: Sequence[str], also: Callable[[str], Awaitable[bool]] | None = None
    ) -> int:
        """Remove values; returns how many keys held a live value (or, with ``also``, for
        which ``also(key)`` - run concurrently with the key's removal - returned True)."""
        names = list(dict.fromkeys(key_str(k) for k in keys))
        paths = [self.path(n) for n in names]
        blob = self.ctx.blob

        async def remove_value(name: str, path: str) -> bool:
            try:
                present = (await self.read_expiry(name, path))[1]
            except CorruptDataError:  # unreadable but there: deleting it is the repair
                present = True
            await blob.delete(path)
            return present

        async def remove(name: str, path: str) -> bool:
            if also is None:
                return await remove_value(name, path)
            value, other = await asyncio.gather(remove_value(name, path), also(name))
            return value or other

        async def remove_all() -> int:
            self.ctx.state(KnownVersions).forget(paths)
            pairs = zip(names, paths, strict=True)
            return sum(await aio.bounded([remove(n, p) for n, p in pairs], self.ctx.concurrency))

        return await self.ctx.commit(paths, remove_all)

    async def discard(self, keys: Sequence[str]) -> None:
        """Remove values without reading them: one bulk request per 1000 keys on S3 (a
        DELETE each on GCS). A missing key is no error."""
        paths = list(dict.fromkeys(self.path(key_str(k)) for k in keys))

        async def remove() -> None:
            self.ctx.state(KnownVersions).forget(paths)
            await self.ctx.blob.delete_many(paths)

        await self.ctx.commit(paths, remove)

    async def delete_prefix(self, prefix: str) -> int:
        """Remove every value whose key starts with ``prefix``, page by page (a LIST and a
        bulk delete per 1000); the number of objects removed (expired ones included)."""
        removed = 0
        area = self.ctx.layout.value_prefix(prefix)
        async for page in self.ctx.blob.list_pages(area):
            paths = []
            for path in page:
                try:
                    self.ctx.layout.value_key(path)
                except ValueError:
                    continue  # not ours
                paths.append(path)

            async def remove(paths: list[str] = paths) -> None:
                self.ctx.state(KnownVersions).forget(paths)
                await self.ctx.blob.delete_many(paths)

            await self.ctx.commit(paths, remove)
            removed += len(paths)
        return removed

    # -- expiry ----------------------------------------------------------------------------

    async def pexpire(
        self,
        key: str,
        ms: Any,
        nx: bool = False,
        xx: bool = False,
        gt: bool = False,
        lt: bool = False,
    ) -> bool:
        if (nx and (xx or gt or lt)) or (gt and lt):
            raise ConfigurationError(
                "nx, xx, gt and lt are mutually exclusive (xx may join gt or lt)"
            )
        name = key_str(key)
        delta = duration_ms(ms, 1, "time")
        path = self.path(name)
        ctx = self.ctx

        def decide(stored: Blob | None, live: codec.Envelope | None) -> tuple[bool, bytes | None]:
            if stored is None or live is None:
                return False, None
            new_at = ctx.clock() + delta
            current = live.expires_at_ms or None
            if (nx and current is not None) or (xx and current is None):
                return False, None
            if gt and (current is None or new_at <= current):
                return False, None
            if lt and current is not None and new_at >= current:
                return False, None
            if delta <= 0:
                return True, b""
            return True, codec.with_expiry(stored.data, new_at, key=name, path=ctx.where(path))

        return await ctx.commit([path], lambda: self._swap(name, path, decide))

    async def persist(self, key: str) -> bool:
        name = key_str(key)
        path = self.path(name)
        ctx = self.ctx

        def decide(stored: Blob | None, live: codec.Envelope | None) -> tuple[bool, bytes | None]:
            if stored is None or live is None or live.expires_at_ms == 0:
                return False, None
            return True, codec.with_expiry(stored.data, 0, key=name, path=ctx.where(path))

        return await ctx.commit([path], lambda: self._swap(name, path, decide))

    def pttl_of(self, values: list[codec.Live | None]) -> int:
        (value,) = values
        if value is None:
            return -2
        if value[1] == 0:
            return -1
        return max(0, value[1] - self.ctx.clock())

    def ttl_of(self, values: list[codec.Live | None]) -> int:
        ms = self.pttl_of(values)
        return ms if ms < 0 else (ms + 500) // 1000

    # -- listing ---------------------------------------------------------------------------

    async def scan_pages(
        self, prefix: str, after: str | None = None, page_size: int | None = None
    ) -> AsyncIterator[list[str]]:
        """Pages of stored value keys starting with ``prefix`` (one LIST per page), in
        listing order; ``after``: only those listed after that key."""
        layout = self.ctx.layout
        start = None if after is None else layout.value(key_str(after))
        pages = self.ctx.blob.list_pages(layout.value_prefix(prefix), start, page_size)
        async for page in pages:
            keys = []
            for path in page:
                try:
                    keys.append(layout.value_key(path))
                except ValueError:
                    self.ctx.stats.add("foreign_objects")
            if keys:
                yield keys

    async def purge_expired(self, prefix: str = "") -> int:
        removed = 0
        blob = self.ctx.blob

        async def purge(key: str, path: str) -> bool:
            found, live = await self.read_expiry(key, path)
            if found is None or live:
                return False
            if await blob.delete_if_match(path, found.tag):
                return True
            # Changed meanwhile - or deleted by us, the response lost and the library's
            # retry refused: gone means deleted (perhaps by another purge at once).
            return await blob.get_head(path, codec.HEADER_SIZE) is None

        async for page in self.scan_pages(prefix):
            paths = [self.path(k) for k in page]
            tasks = [purge(k, p) for k, p in zip(page, paths, strict=True)]

            async def purge_page(tasks: Sequence[Awaitable[bool]] = tasks) -> list[bool]:
                return await aio.bounded(tasks, self.ctx.concurrency)

            removed += sum(await self.ctx.commit(paths, purge_page))
        return removed
