"""AsyncKVStore: the native async face; KVStore (kvstore.sync) is its blocking twin.

The façade owns no behaviour of its own beyond argument shapes (redis-py's) and results
(bytes or str): each method hands over to a data model - :class:`~kvstore.values.Values`,
:class:`~kvstore.logs.Logs`, :class:`~kvstore.artifacts.AsyncArtifacts` - built on one
:class:`~kvstore.context.StoreContext`. The guarantees are stated where they are kept, in
those modules' docstrings; docs/architecture.md maps them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from . import aio, codec
from .api_operations import StoreOperations
from .artifacts import AsyncArtifacts
from .blob import BlobStore
from .cache import Cache
from .context import Resources, StoreContext, now_ms
from .convert import duration_ms, flatten
from .errors import (
    ConfigurationError,
    CorruptDataError,
    ResponseDecodeError,
    WrongTypeError,
)
from .keys import key_str
from .logs import Logs
from .records import AsyncRecords
from .sessions import AsyncSessions
from .stats import Stats
from .values import Values

Result = bytes | str


class KeyInfo(NamedTuple):
    """A key as :meth:`AsyncKVStore.key_info` describes it: ``type`` (Redis TYPE's name:
    string, hash, set, zset, list), ``pttl`` (ms left, -1: no expiry) and ``size``: the
    bytes of its value (a hash, set or zset: packed; a list: its head - records are a log)."""

    type: str
    pttl: int
    size: int


class Versioned(NamedTuple):
    """A value and the version it was read at (:meth:`AsyncKVStore.get_versioned`)."""

    value: Result
    version: str


DEFAULT_CACHE_TTL = 60.0


MAX_DEFAULT_CONCURRENCY = 256


def _default_concurrency() -> int:
    """Requests one multi-key call keeps in flight: an eighth of the open-file limit (as
    fsspec's ``FSMap.getitems``), at least 32 and at most 256.

    Why 256: a cold S3 GET costs the client ~3 ms of CPU (signing, HTTP, parsing), and the
    requests of a wave start in one pass of the event loop, so the loop stalls for about
    (requests in flight) x 3 ms. At 1024 that was ~4 s on a loaded 2-core client - near
    botocore's 5 s connect timeout, past which every waiting connect is retried (276 extra
    requests for a 1000-key mget were reported). At 256 it is ~1.4 s, and wall time on a
    real S3 server was the same from 16 to 1024 (BENCHMARKS.md, "Concurrency probe");
    256 still covers latency / CPU per request for real S3 with room for tail latency.
    """
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (ImportError, OSError, ValueError):
        return 128
    if soft == resource.RLIM_INFINITY:
        return MAX_DEFAULT_CONCURRENCY
    return max(32, min(MAX_DEFAULT_CONCURRENCY, soft // 8))


DEFAULT_CONCURRENCY = _default_concurrency()


class AsyncKVStore(StoreOperations):
    """The key-value API over one object store, with a cache in front. Use
    ``kvstore.open_async``; ``async with`` closes it. All methods are coroutines."""

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
        _context: StoreContext | None = None,
        _namespace: tuple[str, ...] = (),
    ) -> None:
        if _context is None:
            if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
                raise ConfigurationError(f"concurrency must be an int >= 1, not {concurrency!r}")
            if not isinstance(cache_ttl, (int, float)) or not 0 < cache_ttl < float("inf"):
                raise ConfigurationError(
                    f"cache_ttl must be a finite number of seconds > 0, not {cache_ttl!r}"
                )
            resources = Resources(
                blob,
                cache,
                stats=stats or blob.stats,
                clock=clock or now_ms,
                concurrency=concurrency,
                cache_ttl=float(cache_ttl),
            )
            _context = StoreContext(resources)
        self._ctx = _context
        self._owner = not _namespace
        self.decode_responses = decode_responses
        self.namespace_path = _namespace
        self._values = Values(_context)
        self._logs = Logs(_context)
        self.artifacts = AsyncArtifacts(_context)
        """Versioned artifacts: ``save``, ``load``, ``open``, ``info``, ``versions``,
        ``versions_info``, ``list``, ``delete``."""
        self.sessions = AsyncSessions(_context)
        """Agent sessions: ``create``, ``get``, ``list``, ``append_event``, ``update_state``,
        ``delete`` (and ``delete_user``, ``delete_app``)."""

    # -- construction, lifetime ------------------------------------------------------------

    @property
    def url(self) -> str:
        """The root URL of the object store."""
        return self._ctx.blob.url

    def namespace(self, name: str) -> AsyncKVStore:
        """A view of the same store confined to ``name``: its keys live apart from the
        parent's and from every other namespace's, under ``{root}/ns/{enc(name)}/``."""
        return AsyncKVStore(
            self._ctx.blob,
            self._ctx.cache,
            decode_responses=self.decode_responses,
            _context=self._ctx.namespace(name),
            _namespace=(*self.namespace_path, key_str(name, "namespace")),
        )

    def records(self, name: str, partition: str = "day") -> AsyncRecords:
        """The collection of time-stamped records ``name``, partitioned by ``partition``
        ("hour", "day" or "month", fixed by its first append): see :mod:`kvstore.records`.
        No request here."""
        return AsyncRecords(self._ctx, name, partition)

    async def namespaces(self) -> list[str]:
        """The names of the namespaces directly inside this view that hold objects, sorted.
        Skips through the listing of ``{base}ns/``: one LIST of one path per namespace
        (S3/GCS start after the previous one; local disk skips its directories), plus one."""
        layout, found = self._ctx.layout, list[str]()
        start: str | None = None
        while True:
            pages = self._ctx.blob.list_pages(layout.namespace_area, start, 1)
            path = await anext(aiter(pages), None)
            await pages.aclose()  # type: ignore[attr-defined]
            if path is None:
                return sorted(set(found))
            child = layout.split_namespace_path(path[0])
            if child is not None:
                found.append(child[0])
            start = path[0] if child is None or child[1] <= path[0] else child[1]

    async def close(self) -> None:
        """Release connections (a namespace view leaves its parent's open). Automatic log
        compactions still running are cancelled first (an interrupted one leaves the log
        consistent; the next one finishes its work)."""
        if self._owner:
            await self._ctx.resources.close()

    async def __aenter__(self) -> AsyncKVStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        ns = f" namespace={'/'.join(self.namespace_path)!r}" if self.namespace_path else ""
        return f"<{type(self).__name__} {self.url}{ns} cache={self._ctx.cache.name}>"

    # -- results of cached reads: shared by both faces (see kvstore.sync) -------------------

    def _result(self, payload: bytes) -> Result:
        if not self.decode_responses:
            return payload
        try:
            return payload.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _not_text(exc) from None

    def _value_of(self, values: list[codec.Live | None]) -> Result | None:
        (value,) = values
        if value is None:
            return None
        if value[2] != codec.STRING:
            raise WrongTypeError()
        return self._result(value[0])

    def _values_of(self, values: list[codec.Live | None]) -> list[Result | None]:
        """Strings in order; None for a missing key or one of another type (Redis MGET)."""
        string = codec.STRING
        if self.decode_responses:
            try:
                return [
                    None if v is None or v[2] != string else v[0].decode("utf-8") for v in values
                ]
            except UnicodeDecodeError as exc:
                raise _not_text(exc) from None
        return [None if v is None or v[2] != string else v[0] for v in values]

    # -- values ----------------------------------------------------------------------------

    async def get(self, key: str) -> Result | None:
        """The value of ``key``, or None if it is missing or expired. Cached."""
        return self._value_of(await self._values.load(self._values.plan([key])))

    async def mget(self, keys: Iterable[str], *args: str) -> list[Result | None]:
        """Values in key order (None where missing). One cache lookup, then one concurrent
        batch of object reads for the misses."""
        plan = self._values.plan(flatten(keys, args))
        return self._values_of(await self._values.load(plan))

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
        """Store ``value``; True, or None when a condition (``nx``, ``xx``, ``if_version``)
        was not met.

        ``ex``/``px``: TTL in seconds/milliseconds (int, float or timedelta); ``exat``/
        ``pxat``: absolute Unix time; ``nx``: only if missing (atomic conditional create);
        ``xx``: only if present; ``keepttl``: keep the current TTL; ``if_version``: only
        if the key is still at the version :meth:`get_versioned` returned - a
        compare-and-swap, atomic across processes (one conditional PUT).
        """
        return await self._values.set(
            key, value, ex, px, nx, xx, keepttl, exat, pxat, if_version=if_version
        )

    async def get_versioned(self, key: str) -> Versioned | None:
        """The value of ``key`` and its version, for a compare-and-swap with
        ``set(key, new, if_version=version)``; None if the key is missing or expired.

        One GET from the object store, never the cache: a version must be current. The
        version is an opaque string that changes with every write of the key::

            while True:
                found = await store.get_versioned("counter")
                n = int(found.value) + 1 if found else 0
                if found is None:
                    if await store.set("counter", n, nx=True):
                        break
                elif await store.set("counter", n, if_version=found.version):
                    break
        """
        found = await self._values.get_versioned(key)
        if found is None:
            return None
        return Versioned(self._result(found[0]), found[1])

    async def mset(self, mapping: Mapping[str, Any]) -> bool:
        """Store several values; each write is atomic, the batch as a whole is not."""
        return await self._values.mset(mapping)

    async def delete(self, *keys: str) -> int:
        """Remove keys (values and logs); returns how many of them held a live value or a
        log with records."""
        return await self._values.delete(flatten((), keys), also=self._logs.delete)

    async def discard(self, *keys: str) -> None:
        """Remove the values of ``keys`` without finding out whether they existed (a
        delete that does not count): no reads, one bulk request per 1000 keys on S3 (a
        DELETE per key on GCS and local disk). Logs of those keys are left alone: use
        :meth:`delete` (or :meth:`delete_prefix`) for them."""
        await self._values.discard(flatten((), keys))

    async def delete_prefix(self, prefix: str) -> int:
        """Remove every value and every log whose key starts with ``prefix`` (everything
        of this view for ""); returns how many were removed (values listed, logs that held
        records). Values: a LIST and a bulk delete per 1000; logs: as :meth:`delete` does
        each (a mark, so a concurrent writer starts afresh; their old objects go by
        :meth:`purge`). Not atomic as a whole: a key written meanwhile may survive."""
        if prefix not in ("", b""):
            key_str(prefix, "prefix")
        values, logs = await asyncio.gather(
            self._values.delete_prefix(prefix), self._logs.delete_prefix(prefix)
        )
        return values + logs

    async def exists(self, *keys: str) -> int:
        """How many of ``keys`` hold a live value or a log with records (a key named twice
        counts twice). Values are cached; a key with no value costs a log lookup."""
        plan = self._values.plan(flatten((), keys))
        names = plan[0]
        values = await self._values.load(plan)
        missing = list(dict.fromkeys(n for n, v in zip(names, values, strict=True) if v is None))

        async def log_length(name: str) -> int:
            try:
                return await self._logs.length(name)
            except CorruptDataError:  # a damaged log still exists (its reads say what broke)
                return 1

        lengths = await aio.bounded([log_length(n) for n in missing], self._ctx.concurrency)
        logs = {n for n, length in zip(missing, lengths, strict=True) if length > 0}
        return sum(v is not None or n in logs for n, v in zip(names, values, strict=True))

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
        return await self._values.pexpire(key, ms, nx=nx, xx=xx, gt=gt, lt=lt)

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
        ms = duration_ms(seconds, 1000, "time")
        return await self._values.pexpire(key, ms, nx=nx, xx=xx, gt=gt, lt=lt)

    async def persist(self, key: str) -> bool:
        """Remove the TTL; False if the key is missing or has none."""
        return await self._values.persist(key)

    async def key_info(self, keys: Iterable[str]) -> list[KeyInfo | None]:
        """Type, TTL and size of each key, in key order (None where missing or expired):
        one cache lookup, then one concurrent batch of reads for the misses (as mget)."""
        found = await self._values.load(self._values.plan(list(keys)))
        pttl = self._values.pttl_of
        return [
            None if v is None else KeyInfo(codec.KIND_NAMES[v[2]], pttl([v]), len(v[0]))
            for v in found
        ]

    async def pttl(self, key: str) -> int:
        """Remaining TTL in ms; -2 if the key is missing, -1 if it has no TTL. Cached."""
        return self._values.pttl_of(await self._values.load(self._values.plan([key])))

    async def ttl(self, key: str) -> int:
        """Remaining TTL in whole seconds (rounded, like Redis); -2 missing, -1 none."""
        return self._values.ttl_of(await self._values.load(self._values.plan([key])))

    # -- logs (session histories) -----------------------------------------------------------

    async def append(self, key: str, *values: Any, expect_next: int | None = None) -> int:
        """Append records to the log ``key``; returns its new length (Redis RPUSH).

        Durable on return (one object PUT; concurrent appends from this process share it).
        Safe with any number of writers in any number of processes: no record is lost or
        doubled, and each writer's records keep their order.

        ``expect_next``: a conditional append - only if the first record gets exactly this
        sequence number (the log's :meth:`next_seq`; for a log never trimmed, its length),
        else :class:`~kvstore.errors.ConflictError` and nothing is written. Of writers
        racing with the same ``expect_next``, exactly one wins. One request when this
        process knows the log's tail (it appended or read the log in the last minute),
        else a LIST first.
        """
        return await self._logs.append(key_str(key), values, expect_next)

    async def extend(
        self, key: str, values: Sequence[Any], *, expect_next: int | None = None
    ) -> range:
        """Append ``values`` (a sequence) like :meth:`append`, and return the sequence
        numbers they got, as a ``range``. Sequence numbers are absolute: they never change
        and are never reused, whatever is trimmed or appended later."""
        if isinstance(values, (str, bytes, bytearray, memoryview)) or not isinstance(
            values, Sequence
        ):
            raise ConfigurationError("extend takes a list of values")
        return await self._logs.extend(key_str(key), values, expect_next)

    async def range_from(
        self, key: str, seq: int = 0, count: int | None = None
    ) -> list[tuple[int, Result]]:
        """``(sequence number, record)`` pairs of the log from sequence number ``seq`` on
        (from the first live record if ``seq`` was trimmed), at most ``count``. Reads only
        the objects that hold them; cached like :meth:`range`."""
        first, records = await self._logs.read_from(key_str(key), seq, count)
        return [(first + i, self._result(r)) for i, r in enumerate(records)]

    async def next_seq(self, key: str) -> int:
        """The sequence number the log's next record will get (0 for a new log): what a
        conditional append passes as ``expect_next``. From the cached plan."""
        return (await self._logs.bounds(key_str(key)))[1]

    async def settle(self, key: str) -> int:
        """Cover the log's young chunks with segments now (writers do it by themselves
        when idle; see README "Logs"), so a cold read costs a LIST and a GET per 1024
        records; returns the segments written. Deletes nothing young."""
        return await self._logs.settle(key_str(key))

    async def range(self, key: str, start: int = 0, end: int = -1) -> list[Result]:
        """Records ``start..end`` of the log, inclusive, negative from the end, clamped
        (Redis LRANGE). Reads only the objects that hold them, concurrently."""
        records = await self._logs.range(key_str(key), start, end)
        return [self._result(r) for r in records]

    async def range_at(self, key: str, start: int = 0, end: int = -1) -> tuple[int, list[Result]]:
        """:meth:`range`, and the sequence number of the first record it returns (of the
        log's first live record when it returns none): ``(first, records)``."""
        first, records = await self._logs.read(key_str(key), start, end)
        return first, [self._result(r) for r in records]

    async def log_keys(self, prefix: str = "") -> list[str]:
        """The keys of the logs that hold records, starting with ``prefix``, sorted (one
        listing of the log area; the logs are what :meth:`scan_iter` lists last)."""
        return sorted(await self._logs.live_keys(prefix))

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

    async def scan_iter(self, prefix: str = "") -> AsyncIterator[str]:
        """Every stored key starting with ``prefix``: values page by page (one LIST per
        1000), then logs that hold records (one listing of the log area).

        Like the object store's listing, it includes keys whose TTL has passed but that
        ``purge_expired()`` has not removed yet. A key that is both a value and a log is
        listed twice.
        """
        async for page in self.key_pages(prefix):
            for key in page:
                yield key

    async def key_pages(
        self,
        prefix: str = "",
        *,
        logs: bool = True,
        after: str | None = None,
        page_size: int | None = None,
    ) -> AsyncIterator[list[str]]:
        """:meth:`scan_iter`'s keys a page at a time, as they are listed: value keys in
        listing order, one page per LIST (``page_size`` keys, at most 1000), then - unless
        ``logs=False`` - the logs that hold records, one page from one listing of the log
        area. ``logs=False`` lists values only (one request fewer); ``after`` (values only:
        give ``logs=False``) starts after that key - a cursor, the last key of a page."""
        check_key_pages(logs, after, page_size)
        async for page in self._values.scan_pages(prefix, after, page_size):
            yield page
        if logs:
            live = await self._logs.live_keys(prefix)
            if live:
                yield live

    def check_keys(self, keys: Iterable[str]) -> None:
        """Raise :class:`~kvstore.errors.InvalidKeyError` for the first of ``keys`` this
        store view cannot hold (not valid Unicode, over 1024 bytes with the namespace, an
        object name too long for the backend) - no request: for callers that must refuse a
        batch before writing any of it."""
        self._values.plan(keys)

    @property
    def concurrency(self) -> int:
        """Requests one call keeps in flight at most (``open(concurrency=...)``); the bound
        a caller fanning out its own requests on this store should keep too."""
        return self._ctx.concurrency

    async def keys(self, prefix: str = "") -> list[str]:
        """All stored keys starting with ``prefix``, sorted; see :meth:`scan_iter`."""
        return sorted({key async for key in self.scan_iter(prefix)})


def check_key_pages(logs: bool, after: str | None, page_size: int | None) -> None:
    """ConfigurationError for :meth:`AsyncKVStore.key_pages` arguments that do not go
    together (every face of it checks them the same way)."""
    if after is not None and logs:
        raise ConfigurationError("after= pages through values only: give logs=False too")
    if page_size is not None and (
        isinstance(page_size, bool) or not isinstance(page_size, int) or page_size < 1
    ):
        raise ConfigurationError(f"page_size must be an int >= 1, not {page_size!r}")


def _not_text(exc: UnicodeDecodeError) -> ResponseDecodeError:
    return ResponseDecodeError(
        f"a stored value is not UTF-8 text ({exc.reason} at byte {exc.start}) and the store "
        "was opened with decode_responses=True; read it with decode_responses=False"
    )
