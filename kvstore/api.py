"""AsyncKVStore: the one implementation of the value API; KVStore is its blocking face.

Guarantees of every method (per backend details in the README's guarantees table):

* **Durable on return.** A write returns only after the object store acknowledged it; the
  cache is touched afterwards, and only to invalidate (DESIGN invariants 1 and 5).
* **Atomic single-key writes.** ``set`` replaces an object in one PUT. ``set(nx=True)`` is
  a conditional create, atomic across processes and machines. ``xx``, ``keepttl``,
  ``expire``, ``pexpire`` and ``persist`` read the object, then write it back with a
  compare-and-swap on the version they read (S3 If-Match, GCS generation, local flock),
  retrying on conflict, so they never undo a concurrent write.
* **Expiry is exact.** An expired value is invisible at once (it is stored with its absolute
  expiry and checked on every read); ``purge_expired()`` deletes expired objects for good.
* **Verified reads.** Every object is checksummed; a bad one raises CorruptDataError.
* **Multi-key calls** (``mset``, ``mget``, ``delete``, ``exists``) run their per-key requests
  concurrently (bounded) and are not atomic as a whole.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import random
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from . import codec
from .artifacts import AsyncArtifacts
from .blob import BlobStore
from .blob.base import AmbiguousWriteError, Blob
from .cache import Cache, Fill
from .errors import ConfigurationError, CorruptDataError, KVStoreError
from .keys import decode_name, encode_name, encode_prefix, key_str
from .logs import Logs
from .stats import Stats
from .values import duration_ms, expiry_from_args, to_bytes

T = TypeVar("T")
Result = bytes | str

_TOMBSTONE = b""  # cached "no such key"; never a valid envelope
_MAX_SWAP_ROUNDS = 64
DEFAULT_CACHE_TTL = 60.0
_PLANS_KEPT = 4096
_Plan = tuple[list[str], list[str], list[str]]  # names, object paths, cache keys


def _default_concurrency() -> int:
    """Requests one multi-key call keeps in flight: fsspec's own rule (an eighth of the
    open-file limit, as ``FSMap.getitems`` uses), at least 32 and at most 1024."""
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (ImportError, OSError, ValueError):
        return 128
    if soft == resource.RLIM_INFINITY:
        return 1024
    return max(32, min(1024, soft // 8))


DEFAULT_CONCURRENCY = _default_concurrency()


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class _Resources:
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
        digest = hashlib.sha256(blob.identity.encode()).hexdigest()[:16]
        self.cache_prefix = f"kvstore:{digest}:"
        self.writers: dict[tuple[int, str], Any] = {}  # log appenders, see logs.Logs
        self.artifact_known: OrderedDict[str, tuple[int, int]] = OrderedDict()  # artifacts
        self.background: set[asyncio.Task[Any]] = set()  # automatic log compactions


class AsyncKVStore:
    """The value API over one object store, with a cache in front. Use ``kvstore.open_async``.

    ``async with`` closes it. All methods are coroutines; see the module docstring for the
    guarantees they keep.
    """

    def __init__(
        self,
        blob: BlobStore,
        cache: Cache,
        *,
        decode_responses: bool = False,
        stats: Stats | None = None,
        clock: Callable[[], int] | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
        cache_ttl: float = DEFAULT_CACHE_TTL,
        _resources: _Resources | None = None,
        _base: str = "",
        _namespace: tuple[str, ...] = (),
    ) -> None:
        if not isinstance(concurrency, int) or concurrency < 1:
            raise ConfigurationError(f"concurrency must be an int >= 1, not {concurrency!r}")
        if not isinstance(cache_ttl, (int, float)) or cache_ttl <= 0:
            raise ConfigurationError(f"cache_ttl must be seconds > 0, not {cache_ttl!r}")
        self._r = _resources or _Resources(
            blob,
            cache,
            stats=stats or blob.stats,
            clock=clock or _now_ms,
            concurrency=concurrency,
            cache_ttl=float(cache_ttl),
        )
        self._base = _base
        self._plans: dict[str, tuple[str, str]] = {}  # key -> (path, cache key): _plan
        self._owner = _resources is None
        self.decode_responses = decode_responses
        self.namespace_path = _namespace
        self._logs = Logs(self)
        self.artifacts = AsyncArtifacts(self)
        """Versioned artifacts: ``save``, ``load``, ``open``, ``versions``, ``list``, ``delete``."""

    # -- construction, lifetime ------------------------------------------------------------

    @property
    def url(self) -> str:
        """The root URL of the object store."""
        return self._r.blob.url

    def namespace(self, name: str) -> AsyncKVStore:
        """A view of the same store confined to ``name``: its keys live apart from the
        parent's and from every other namespace's, under ``{root}/ns/{enc(name)}/``."""
        encoded = encode_name(name, "namespace")
        return AsyncKVStore(
            self._r.blob,
            self._r.cache,
            decode_responses=self.decode_responses,
            _resources=self._r,
            _base=f"{self._base}ns/{encoded}/",
            _namespace=(*self.namespace_path, key_str(name, "namespace")),
        )

    async def close(self) -> None:
        """Release connections (a namespace view leaves its parent's open). Automatic log
        compactions still running are cancelled first (an interrupted one leaves the log
        consistent; the next one finishes its work)."""
        if self._owner:
            await self._logs.stop_background()
            await self._r.blob.close()
            await self._r.cache.close()

    async def __aenter__(self) -> AsyncKVStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def stats(self) -> dict[str, Any]:
        """Counters: object-store requests by kind, retries, errors, bytes, cache hits..."""
        counts: dict[str, Any] = dict(self._r.stats.snapshot())
        counts["cache"] = {"kind": self._r.cache.name, **self._r.cache.info()}
        return counts

    async def health(self, timeout: float = 5.0) -> dict[str, Any]:
        """Is the object store reachable (one GET of an absent probe object) and the cache?

        Never raises for an unreachable backend: reports ``ok: False`` and the error, within
        ``timeout`` seconds.
        """
        started = time.perf_counter()
        try:
            await asyncio.wait_for(self._r.blob.get(".kvstore/health-probe"), timeout)
            store: dict[str, Any] = {"ok": True}
        except KVStoreError as exc:
            store = {"ok": False, "error": str(exc)}
        except asyncio.TimeoutError:
            store = {"ok": False, "error": f"no answer within {timeout} s"}
        store["url"] = self.url
        store["latency_ms"] = round((time.perf_counter() - started) * 1000, 3)
        cache = await self._cache_safely(
            self._r.cache.health(), {"ok": False, "error": "cache health check failed"}
        )
        return {
            "ok": store["ok"] and cache["ok"],
            "store": store,
            "cache": {"kind": self._r.cache.name, **cache},
        }

    def __repr__(self) -> str:
        ns = f" namespace={'/'.join(self.namespace_path)!r}" if self.namespace_path else ""
        return f"<{type(self).__name__} {self.url}{ns} cache={self._r.cache.name}>"

    # -- paths and results -----------------------------------------------------------------

    def _path(self, key: object) -> str:
        path = f"{self._base}kv/{encode_name(key)}"
        self._r.blob.check_path(path)
        return path

    def _where(self, path: str) -> str:
        """The full URL of an object, for error messages."""
        return f"{self._r.blob.url}/{path}"

    def _result(self, payload: bytes) -> Result:
        return payload.decode("utf-8") if self.decode_responses else payload

    # -- cache plumbing: failures never reach the caller -----------------------------------

    async def _cache_safely(self, action: Awaitable[T], fallback: T) -> T:
        try:
            return await action
        except asyncio.CancelledError:
            raise
        except Exception:
            self._r.stats.add("cache.errors")
            return fallback

    async def _commit(self, paths: Sequence[str], write: Callable[[], Awaitable[T]]) -> T:
        """Run a write, then invalidate ``paths`` in the cache - whatever happened.

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
                await self._invalidate(paths)

        task = asyncio.ensure_future(write_then_invalidate())
        task.add_done_callback(_consume_result)
        return await asyncio.shield(task)

    async def _invalidate(self, paths: Sequence[str]) -> None:
        if paths:
            keys = [self._r.cache_prefix + p for p in paths]
            await self._cache_safely(self._r.cache.invalidate(keys), None)
            self._r.stats.add("cache.invalidations", len(keys))

    def _cache_ttl(self, expires_at_ms: int, now: int) -> float:
        if expires_at_ms == 0:
            return self._r.cache_ttl
        return min(self._r.cache_ttl, (expires_at_ms - now) / 1000)

    def _plan(self, keys: Iterable[Any]) -> _Plan:
        """The names, object paths and cache keys of the values a read needs (validated).

        Plans of str keys are remembered per store (at most ``_PLANS_KEPT``): hot keys are
        planned on every read, and a warm ``mget`` should not re-encode 1000 names."""
        names: list[str] = []
        paths: list[str] = []
        cache_keys: list[str] = []
        known = self._plans
        for key in keys:
            plan = known.get(key) if type(key) is str else None
            if plan is None:
                key = key_str(key)
                path = self._path(key)
                plan = (path, self._r.cache_prefix + path)
                if len(known) >= _PLANS_KEPT:
                    known.clear()
                known[key] = plan
            names.append(key)
            paths.append(plan[0])
            cache_keys.append(plan[1])
        return names, paths, cache_keys

    def _live(self, values: list[codec.Live | None]) -> list[codec.Live | None]:
        now = self._r.clock()
        return [v if v is not None and not codec.expired(v[1], now) else None for v in values]

    def _load_now(
        self, plan: _Plan
    ) -> tuple[list[codec.Live | None] | None, list[bytes | None] | None]:
        """Like :meth:`_load`, from the cache alone and in the calling thread - no event
        loop, no await: how the blocking face answers a read whose every key is a cache
        hit. Returns (values, None) then; otherwise (None, the entries it did find) for
        :meth:`_load` to complete on the loop without asking for them again, or (None,
        None) if the cache could not answer here (or an entry is damaged: the loop drops
        it)."""
        cached = self._r.cache.lookup_now(plan[2])
        if cached is None:
            return None, None
        if None in cached:
            return None, cached
        values, damaged = codec.unpack_cached(cached)
        if damaged:
            return None, None
        self._r.stats.add_threadsafe("cache.hits", len(values))
        self._r.stats.add_threadsafe("cache.hits_in_caller", len(values))
        return self._live(values), None

    async def _load(
        self, plan: _Plan, known: list[bytes | None] | None = None
    ) -> list[codec.Live | None]:
        """Live values (payload, expiry) of a plan's keys, through the cache; None for
        missing or expired. ``known``: cache entries already read for some keys (None for
        the others), by :meth:`_load_now` - only the others are looked up."""
        keys, paths, cache_keys = plan
        cached: list[bytes | None]
        if known is None:
            lookup = await self._cache_safely(self._r.cache.lookup(cache_keys), None)
            cached = lookup.values if lookup is not None else [None] * len(paths)
        else:
            cached = list(known)
            ask = [i for i, entry in enumerate(cached) if entry is None]
            lookup = await self._cache_safely(
                self._r.cache.lookup([cache_keys[i] for i in ask]), None
            )
            if lookup is not None:
                for i, entry in zip(ask, lookup.values, strict=True):
                    cached[i] = entry
        misses = [i for i, v in enumerate(cached) if v is None]
        hits = len(paths) - len(misses)
        if hits:
            self._r.stats.add("cache.hits", hits)
        out, damaged = codec.unpack_cached(cached)
        for i in damaged:  # a damaged cache entry: drop it, ask the source
            self._r.stats.add("cache.corrupt")
            await self._invalidate([paths[i]])
            misses.append(i)
        if misses:
            self._r.stats.add("cache.misses", len(misses))
            blobs = await self._r.blob.get_many([paths[i] for i in misses], self._r.concurrency)
            now = self._r.clock()
            fills = []
            for i, found in zip(misses, blobs, strict=True):
                entry = _TOMBSTONE
                expires = 0
                if found is not None:
                    env = codec.decode(found.data, key=keys[i], path=self._where(paths[i]))
                    expires = env.expires_at_ms
                    out[i] = (env.payload, expires)
                    entry = codec.pack_cached(env.payload, expires)
                ttl = self._cache_ttl(expires, now)
                if ttl > 0:
                    fills.append(Fill(cache_keys[i], entry, ttl))
            if lookup is not None and fills:
                await self._cache_safely(self._r.cache.fill(fills, lookup.ticket), None)
                self._r.stats.add("cache.fills", len(fills))
        return self._live(out)

    # -- results of cached reads: shared by both faces (see kvstore.sync) -------------------

    def _value_of(self, values: list[codec.Live | None]) -> Result | None:
        (value,) = values
        return None if value is None else self._result(value[0])

    def _values_of(self, values: list[codec.Live | None]) -> list[Result | None]:
        if self.decode_responses:
            return [None if v is None else v[0].decode("utf-8") for v in values]
        return [None if v is None else v[0] for v in values]

    def _pttl_of(self, values: list[codec.Live | None]) -> int:
        (value,) = values
        if value is None:
            return -2
        if value[1] == 0:
            return -1
        return max(0, value[1] - self._r.clock())

    def _ttl_of(self, values: list[codec.Live | None]) -> int:
        ms = self._pttl_of(values)
        return ms if ms < 0 else (ms + 500) // 1000

    # -- read-modify-write with compare-and-swap -------------------------------------------

    async def _read_current(self, key: str, path: str) -> tuple[Blob | None, codec.Envelope | None]:
        """The stored object and its live envelope (None if missing or expired)."""
        found = await self._r.blob.get(path)
        if found is None:
            return None, None
        env = codec.decode(found.data, key=key, path=self._where(path))
        return found, (None if env.expired(self._r.clock()) else env)

    async def _read_expiry(self, key: str, path: str) -> tuple[Blob | None, bool]:
        """(the object's header and tag, whether it holds a live value) from one ranged read
        of the verified 32-byte header - no download of the value."""
        found = await self._r.blob.get_head(path, codec.HEADER_SIZE)
        if found is None:
            return None, False
        expires = codec.peek_expiry(found.data, key=key, path=self._where(path))
        return found, expires == 0 or expires > self._r.clock()

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
        """
        for attempt in range(_MAX_SWAP_ROUNDS):
            stored, live = await self._read_current(key, path)
            result, new = decide(stored, live)
            if new is None:
                return result
            try:
                if new == b"":
                    assert stored is not None
                    ok = await self._r.blob.delete_if_match(path, stored.tag)
                elif stored is None:
                    ok = await self._r.blob.put_if_absent(path, new) is not None
                else:
                    ok = await self._r.blob.put_if_match(path, new, stored.tag) is not None
            except AmbiguousWriteError:
                # A retried conditional write met a conflict: our first attempt may have
                # applied. A swap or delete of the version we read is then either ours or
                # superseded by a concurrent write - success both ways (re-applying could
                # undo that newer write). A create is ours only if the bytes are (nonce).
                if stored is None:
                    check = await self._r.blob.get(path)
                    ok = check is not None and check.data == new
                else:
                    ok = True
            if ok:
                return result
            self._r.stats.add("swap_conflicts")
            await asyncio.sleep(random.uniform(0, 0.002 * (attempt + 1)))
        raise KVStoreError(
            f"gave up on key {key!r} after {_MAX_SWAP_ROUNDS} conflicting concurrent writes"
        )

    # -- values ----------------------------------------------------------------------------

    async def get(self, key: str) -> Result | None:
        """The value of ``key``, or None if it is missing or expired. Cached."""
        return self._value_of(await self._load(self._plan([key])))

    async def mget(self, keys: Iterable[str], *args: str) -> list[Result | None]:
        """Values in key order (None where missing). One cache lookup, then one concurrent
        batch of object reads for the misses."""
        return self._values_of(await self._load(self._plan(_flatten(keys, args))))

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
    ) -> bool | None:
        """Store ``value``; True, or None when the ``nx``/``xx`` condition was not met.

        ``ex``/``px``: TTL in seconds/milliseconds (int, float or timedelta); ``exat``/
        ``pxat``: absolute Unix time; ``nx``: only if missing (atomic conditional create);
        ``xx``: only if present; ``keepttl``: keep the current TTL.
        """
        name = key_str(key)
        payload = to_bytes(value)
        if nx and xx:
            raise ConfigurationError("nx and xx are mutually exclusive")
        expiry_given = any(v is not None for v in (ex, px, exat, pxat))
        if keepttl and expiry_given:
            raise ConfigurationError("keepttl cannot be combined with ex, px, exat or pxat")
        expires = expiry_from_args(self._r.clock(), ex, px, exat, pxat)
        path = self._path(name)
        data = codec.encode(payload, expires_at_ms=expires)
        if not (nx or xx or keepttl):
            await self._commit([path], lambda: self._r.blob.put(path, data))
            return True

        def decide(
            stored: Blob | None, live: codec.Envelope | None
        ) -> tuple[bool | None, bytes | None]:
            if stored is not None and stored.data == data:
                return True, None  # our own write, applied by an ambiguous retry
            if (nx and live is not None) or (xx and live is None):
                return None, None
            if keepttl and live is not None:
                return True, codec.with_expiry(data, live.expires_at_ms)
            return True, data

        async def conditional() -> bool | None:
            if nx:
                try:
                    if await self._r.blob.put_if_absent(path, data) is not None:
                        return True
                except AmbiguousWriteError:
                    pass  # decide() below recognises our own bytes
            return await self._swap(name, path, decide)

        return await self._commit([path], conditional)

    async def mset(self, mapping: Mapping[str, Any]) -> bool:
        """Store several values; each write is atomic, the batch as a whole is not."""
        if not isinstance(mapping, Mapping):
            raise ConfigurationError("mset takes a mapping of keys to values")
        items = [(self._path(key_str(k)), codec.encode(to_bytes(v))) for k, v in mapping.items()]

        async def put_all() -> bool:
            await _bounded(
                [self._r.blob.put(path, data) for path, data in items], self._r.concurrency
            )
            return True

        return await self._commit([path for path, _ in items], put_all)

    async def delete(self, *keys: str) -> int:
        """Remove keys; returns how many of them held a live value."""
        names = list(dict.fromkeys(key_str(k) for k in _flatten((), keys)))
        paths = [self._path(n) for n in names]

        async def remove_value(name: str, path: str) -> bool:
            try:
                present = (await self._read_expiry(name, path))[1]
            except CorruptDataError:  # unreadable but there: deleting it is the repair
                present = True
            await self._r.blob.delete(path)
            return present

        async def remove(name: str, path: str) -> bool:
            value, log = await asyncio.gather(remove_value(name, path), self._logs.delete(name))
            return value or log

        async def remove_all() -> int:
            removed = await _bounded(
                [remove(n, p) for n, p in zip(names, paths, strict=True)], self._r.concurrency
            )
            return sum(removed)

        return await self._commit(paths, remove_all)

    async def exists(self, *keys: str) -> int:
        """How many of ``keys`` hold a live value (a key named twice counts twice). Cached."""
        plan = self._plan(_flatten((), keys))
        names = plan[0]
        envs = await self._load(plan)
        missing = list(dict.fromkeys(n for n, env in zip(names, envs, strict=True) if env is None))
        lengths = await _bounded([self._logs.length(n) for n in missing], self._r.concurrency)
        logs = {n for n, length in zip(missing, lengths, strict=True) if length > 0}
        return sum(env is not None or name in logs for name, env in zip(names, envs, strict=True))

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
        """Set a TTL in milliseconds; <= 0 deletes the key. False if the key is missing or
        a condition (nx: no TTL yet, xx: has a TTL, gt/lt: longer/shorter) is not met."""
        if (nx and (xx or gt or lt)) or (gt and lt):
            raise ConfigurationError(
                "nx, xx, gt and lt are mutually exclusive (xx may join gt or lt)"
            )
        name = key_str(key)
        delta = duration_ms(ms, 1, "time")
        path = self._path(name)

        def decide(stored: Blob | None, live: codec.Envelope | None) -> tuple[bool, bytes | None]:
            if stored is None or live is None:
                return False, None
            new_at = self._r.clock() + delta
            current = live.expires_at_ms or None
            if (nx and current is not None) or (xx and current is None):
                return False, None
            if gt and (current is None or new_at <= current):
                return False, None
            if lt and current is not None and new_at >= current:
                return False, None
            if delta <= 0:
                return True, b""
            return True, codec.with_expiry(stored.data, new_at, key=name, path=self._where(path))

        return await self._commit([path], lambda: self._swap(name, path, decide))

    async def expire(
        self,
        key: str,
        seconds: Any,
        nx: bool = False,
        xx: bool = False,
        gt: bool = False,
        lt: bool = False,
    ) -> bool:
        """Set a TTL in seconds (int, float or timedelta); see :meth:`pexpire`."""
        return await self.pexpire(
            key, duration_ms(seconds, 1000, "time"), nx=nx, xx=xx, gt=gt, lt=lt
        )

    async def persist(self, key: str) -> bool:
        """Remove the TTL; False if the key is missing or has none."""
        name = key_str(key)
        path = self._path(name)

        def decide(stored: Blob | None, live: codec.Envelope | None) -> tuple[bool, bytes | None]:
            if stored is None or live is None or live.expires_at_ms == 0:
                return False, None
            return True, codec.with_expiry(stored.data, 0, key=name, path=self._where(path))

        return await self._commit([path], lambda: self._swap(name, path, decide))

    async def pttl(self, key: str) -> int:
        """Remaining TTL in ms; -2 if the key is missing, -1 if it has no TTL. Cached."""
        return self._pttl_of(await self._load(self._plan([key])))

    async def ttl(self, key: str) -> int:
        """Remaining TTL in whole seconds (rounded, like Redis); -2 missing, -1 none."""
        return self._ttl_of(await self._load(self._plan([key])))

    # -- logs (session histories) -------------------------------------------------------------

    async def append(self, key: str, *values: Any) -> int:
        """Append records to the log ``key``; returns its new length (Redis RPUSH).

        Durable on return (one object PUT; concurrent appends from this process share it).
        Safe with any number of writers in any number of processes: no record is lost or
        doubled, and each writer's records keep their order.
        """
        return await self._logs.append(key_str(key), values)

    async def range(self, key: str, start: int = 0, end: int = -1) -> list[Result]:
        """Records ``start..end`` of the log, inclusive, negative from the end, clamped
        (Redis LRANGE). Reads only the objects that hold them, concurrently."""
        records = await self._logs.range(key_str(key), start, end)
        return [self._result(r) for r in records]

    async def length(self, key: str) -> int:
        """The number of records in the log (Redis LLEN); 0 if there is none."""
        return await self._logs.length(key_str(key))

    async def trim(self, key: str, start: int) -> int:
        """Drop the log's records before index ``start`` (negative: keep the last
        ``-start``), like LTRIM key start -1; returns the new length."""
        return await self._logs.trim(key_str(key), start)

    async def compact(self, key: str) -> int:
        """Merge the log's old small chunks into segments; returns objects removed."""
        return await self._logs.compact(key_str(key))

    # -- listing ---------------------------------------------------------------------------

    async def _scan_pages(self, prefix: str) -> AsyncIterator[list[str]]:
        area = f"{self._base}kv/"
        async for page in self._r.blob.list_pages(area + encode_prefix(prefix)):
            keys = []
            for path in page:
                try:
                    keys.append(decode_name(path[len(area) :]))
                except ValueError:
                    self._r.stats.add("foreign_objects")
            if keys:
                yield keys

    async def scan_iter(self, prefix: str = "") -> AsyncIterator[str]:
        """Every stored key starting with ``prefix``: values page by page (one LIST per
        1000), then logs that hold records (one listing of the log area).

        Like the object store's listing, it includes keys whose TTL has passed but that
        ``purge_expired()`` has not removed yet. A key that is both a value and a log is
        listed twice.
        """
        async for page in self._all_pages(prefix):
            for key in page:
                yield key

    async def _all_pages(self, prefix: str) -> AsyncIterator[list[str]]:
        async for page in self._scan_pages(prefix):
            yield page
        logs = await self._logs.live_keys(prefix)
        if logs:
            yield logs

    async def keys(self, prefix: str = "") -> list[str]:
        """All stored keys starting with ``prefix``, sorted; see :meth:`scan_iter`."""
        return sorted({key async for key in self.scan_iter(prefix)})

    async def purge_expired(self, prefix: str = "") -> int:
        """Delete expired values for good; returns how many were removed.

        Each delete is conditional on the version that was found expired, so a value
        written meanwhile survives.
        """
        removed = 0

        async def purge(key: str, path: str) -> bool:
            found, live = await self._read_expiry(key, path)
            if found is None or live:
                return False
            return await self._r.blob.delete_if_match(path, found.tag)

        async for page in self._scan_pages(prefix):
            paths = [self._path(k) for k in page]
            tasks = [purge(k, p) for k, p in zip(page, paths, strict=True)]
            done = await self._commit(
                paths, functools.partial(_bounded, tasks, self._r.concurrency)
            )
            removed += sum(done)
        return removed


def _flatten(first: Iterable[Any] | str | bytes, rest: Sequence[Any]) -> list[Any]:
    """redis-py accepts mget(["a", "b"]) and mget("a", "b"); so do we."""
    if isinstance(first, (str, bytes, bytearray, memoryview)):
        return [first, *rest]
    try:
        out: list[Any] = list(first)
    except TypeError:  # not a list of keys: one (invalid) key, rejected by key_str
        return [first, *rest]
    for item in rest:
        if isinstance(item, (list, tuple)):
            out.extend(item)
        else:
            out.append(item)
    return out


async def _bounded(tasks: Sequence[Awaitable[T]], limit: int) -> list[T]:
    """Await all, at most ``limit`` at a time, results in order.

    Every task is settled before an error is raised (the first one), so nothing is still
    writing when the caller invalidates the cache or reports the failure.
    """
    gate = asyncio.Semaphore(limit)

    async def run(task: Awaitable[T]) -> T:
        async with gate:
            return await task

    results = await asyncio.gather(*(run(t) for t in tasks), return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results  # type: ignore[return-value]


def _consume_result(task: asyncio.Future[Any]) -> None:
    """Retrieve a shielded write's exception when its caller has stopped waiting for it."""
    if not task.cancelled():
        task.exception()
