"""``cache="redis://…"``: Redis (or Redis Cluster) in front of the object store.

Redis is an accelerator that may vanish, hang, or come back with old data at any moment;
the object store stays the commit point. This cache never raises: a failing Redis turns into
cache misses (reads go to the object store) and is counted.

Layout in Redis, for a store cache key ``K`` (already prefixed per store and namespace)::

    {K}:d   the cached object, prefixed by the generation it was filled under; PX = TTL
    {K}:v   the key's invalidation token (a new random one on every write); lives VERSION_TTL
    kvstore:generation   the cache generation: the server's run_id prefix + a random token

The hash tag ``{K}`` keeps ``d`` and ``v`` in one cluster slot, so each fill is one atomic
Lua script. How staleness is prevented:

* **Stale-set race.** ``lookup`` reads ``{K}:v`` with the data (one MGET). ``fill`` runs a
  script that writes ``{K}:d`` only if ``{K}:v`` is unchanged - a reader that read the object
  store before a concurrent write cannot put its old value over the write's invalidation.
* **Redis restarted** - empty, or from a snapshot (RDB/AOF) with old entries. Every new
  connection learns the server's ``run_id``; a generation that does not start with it was
  made by an earlier server process, so the client atomically replaces it before using the
  cache. Entries filled under any older generation are ignored. (Redis Cluster: restarts
  come back empty unless persistence is on; the run_id check covers standalone Redis.)
* **Undelivered invalidations** (Redis down, hung, partitioned, or returning with its old
  contents). A client whose Redis call fails marks the cache *dirty* and stops using it (the
  circuit breaker opens, reads go to the object store). When Redis answers again, the
  client's first act is to replace the generation: every entry filled before is ignored by
  every client from then on. An outage therefore costs one cache flush, never a stale read
  from the client that saw it. Residual window, stated honestly: a *different* client that
  never noticed the outage can read an entry older than the missed invalidation between the
  moment Redis returns and the first recovery probe of a client that noticed (at most
  ``breaker_interval``), and if every client that noticed dies first, until the entry's TTL.

A dead or hung Redis costs reads at most one timeout (``socket_timeout``) per
``breaker_interval`` per process; writes still attempt their invalidation through an open
breaker (at most ``FORCED_INVALIDATION_TIMEOUT`` each, so a client that noticed an outage
cannot leave a stale entry behind once Redis answers again). One warning per outage.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import threading
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from ..aio import within
from ..errors import ConfigurationError
from .base import Cache, Fill, Lookup, renew_lock_after_fork

log = logging.getLogger("kvstore.cache")


T = TypeVar("T")

GENERATION_KEY = "kvstore:generation"
_RUN_ID_LEN = 16
_GEN_LEN = 32  # run_id prefix + 16 random hex digits
VERSION_TTL_MS = 3_600_000
"""How long a key's invalidation counter outlives its last write. A reader whose object-store
read takes longer than this could refill an old value; reads that slow are refused below."""
_MAX_FILL_AGE = VERSION_TTL_MS / 1000 / 2
FORCED_INVALIDATION_TIMEOUT = 0.05
"""The longest a write waits for its invalidation while the breaker is open (seconds)."""

_FILL = """
for i = 1, #KEYS, 2 do
  local j = (i + 1) / 2
  local seen = redis.call('GET', KEYS[i + 1]) or ''
  if seen == ARGV[3 * j - 2] then
    redis.call('SET', KEYS[i], ARGV[3 * j - 1], 'PX', ARGV[3 * j])
  end
end
return 1
"""

_INVALIDATE = """
for i = 1, #KEYS, 2 do
  redis.call('DEL', KEYS[i])
  redis.call('SET', KEYS[i + 1], ARGV[(i + 1) / 2 + 1], 'PX', ARGV[1])
end
return 1
"""

_ADOPT_GENERATION = """
local current = redis.call('GET', KEYS[1])
if current and string.sub(current, 1, #ARGV[1]) == ARGV[1] then return current end
redis.call('SET', KEYS[1], ARGV[2])
return ARGV[2]
"""

_RESERVED = 2  # connections left outside the gate: health checks, late invalidations
_MAX_UNDELIVERED = 100_000  # beyond this, only the generation bump repairs (it always does)

_CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}


def _run_id_of(info: Any, default: bytes) -> bytes:
    """The run_id prefix in an ``INFO server`` reply (``default`` if there is none)."""
    text = info.decode() if isinstance(info, bytes) else str(info)
    for line in text.splitlines():
        if line.startswith("run_id:"):
            return line.split(":", 1)[1].strip()[:_RUN_ID_LEN].encode()
    return default


def _entries_of(values: Sequence[bytes | None], generation: bytes) -> list[bytes | None]:
    """The entries filled under ``generation`` (without it); None for the rest."""
    return [
        data[_GEN_LEN:] if data is not None and data.startswith(generation) else None
        for data in values
    ]


def _on_blocking_connect(connection: Any) -> None:
    """Every new blocking connection: the usual handshake, then note on the connection the
    run_id of the server it reached (per connection: after a restart, old and new
    connections may briefly coexist)."""
    connection.on_connect()
    connection.send_command("INFO", "server")
    try:
        info = connection.read_response()
    except Exception:  # INFO disabled (some managed Redis): no restart detection
        info = None
    connection.kvstore_run_id = _run_id_of(info, b"0" * _RUN_ID_LEN)


@functools.lru_cache(maxsize=8192)  # hot keys are looked up on every read
def _data_key(key: str) -> str:
    return f"{{{key}}}:d"


def _version_key(key: str) -> str:
    return f"{{{key}}}:v"


class CircuitBreaker:
    """Closed: use Redis. Open: skip it until ``interval`` has passed, then let one call
    through as a probe; its success closes the breaker, its failure re-opens it."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.open_since: float | None = None
        self._probing = False

    @property
    def state(self) -> str:
        if self.open_since is None:
            return "closed"
        return "half-open" if self._probing else "open"

    def allow(self) -> bool:
        if self.open_since is None:
            return True
        if self._probing or time.monotonic() - self.open_since < self.interval:
            return False
        self._probing = True
        return True

    def abandon_probe(self) -> None:
        """A probe that ended without an answer (cancelled): the next call may probe."""
        self._probing = False

    def succeeded(self) -> bool:
        """Record a success; True if this closed an open breaker (a recovery)."""
        recovered = self.open_since is not None
        self.open_since, self._probing = None, False
        return recovered

    def failed(self) -> bool:
        """Record a failure; True if this opened a closed breaker (a new outage)."""
        new = self.open_since is None
        self.open_since, self._probing = time.monotonic(), False
        return new


class RedisCache(Cache):
    """A coherent, outage-proof cache in Redis or Redis Cluster. See the module docstring.

    ``url``: ``redis://``, ``rediss://``, ``unix://`` (redis-py URL options apply), or
    ``redis+cluster://host:port`` / ``rediss+cluster://`` for Redis Cluster (any node).
    """

    name = "redis"

    def __init__(
        self,
        url: str,
        *,
        socket_timeout: float = 0.25,
        connect_timeout: float = 0.25,
        breaker_interval: float = 1.0,
        max_entry_bytes: int = 1 << 20,
        max_connections: int = 64,
    ) -> None:
        import redis.asyncio  # noqa: F401 - fail at open time if the extra is missing

        scheme = url.partition("://")[0].lower()
        self.cluster = scheme in _CLUSTER_SCHEMES
        if self.cluster:
            url = _CLUSTER_SCHEMES[scheme] + url[len(scheme) :]
        elif scheme not in ("redis", "rediss", "unix"):
            raise ConfigurationError(f"not a Redis URL: {url!r}")
        for name, value in (
            ("socket_timeout", socket_timeout),
            ("connect_timeout", connect_timeout),
            ("breaker_interval", breaker_interval),
        ):
            if not isinstance(value, (int, float)) or value <= 0:
                raise ConfigurationError(f"{name} must be seconds > 0, not {value!r}")
        self.url = url
        self.socket_timeout = float(socket_timeout)
        self.connect_timeout = float(connect_timeout)
        self.max_entry_bytes = max_entry_bytes
        self.max_connections = max_connections
        self.breaker = CircuitBreaker(breaker_interval)
        self.dirty = False
        self.counters: dict[str, int] = defaultdict(int)
        self._client: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._generation: bytes | None = None
        self._run_id = b"0" * _RUN_ID_LEN  # learnt on connect (standalone Redis only)
        self._run_id_asked = float("-inf")  # when the INFO that gave _run_id was sent
        self._init_lock = asyncio.Lock()
        # More guarded calls in flight than pooled connections queue here rather than
        # fail with "Too many connections" (which would open the breaker of a healthy
        # Redis under a burst). redis-py's blocking pool would do the same at ~35 us more
        # per call; a Semaphore's uncontended acquire costs ~1 us.
        self._gate = asyncio.Semaphore(max(1, max_connections - _RESERVED))
        self._init_loop: asyncio.AbstractEventLoop | None = None
        self._undelivered: set[str] = set()
        self._flusher: asyncio.Future[None] | None = None
        # The blocking connection pool of lookup_now (callers' threads; one per process).
        self._blocking: Any = None
        self._blocking_pid = 0
        self._blocking_lock = threading.Lock()
        self._blocking_paused_until = 0.0
        renew_lock_after_fork(self, "_blocking_lock")
        self._validate_url()

    def _validate_url(self) -> None:
        """Build (without connecting) what a connection would be built from, so a typo in a
        URL option fails here rather than at the first call."""
        try:
            client = self._make_client()
            if not self.cluster:
                pool = client.connection_pool
                pool.connection_class(**pool.connection_kwargs)
        except (ValueError, TypeError) as exc:
            raise ConfigurationError(f"bad Redis URL {self.url!r}: {exc}") from exc

    # -- connection ------------------------------------------------------------------------

    def _make_client(self) -> Any:
        from redis.asyncio import Redis
        from redis.asyncio.cluster import RedisCluster
        from redis.asyncio.retry import Retry  # redis.retry.Retry cannot await
        from redis.backoff import NoBackoff
        from redis.exceptions import ConnectionError as RedisConnectionError

        options: dict[str, Any] = {
            "socket_timeout": self.socket_timeout,
            "socket_connect_timeout": self.connect_timeout,
            # One immediate retry for a broken pooled connection (Redis restarted); none
            # for timeouts: a hung Redis must cost one timeout, then the breaker decides.
            "retry": Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        }
        if self.cluster:
            return RedisCluster.from_url(self.url, **options)
        return Redis.from_url(
            self.url,
            max_connections=self.max_connections,
            redis_connect_func=self._on_connect,
            **options,
        )

    async def _connected(self) -> Any:
        """The client for the running loop; a cluster client maps its slots first (redis-py
        fails concurrent first commands on an uninitialised cluster client)."""
        loop = asyncio.get_running_loop()
        if self._client is not None and self._loop is loop:
            return self._client
        if self._init_loop is not loop:
            self._init_lock, self._init_loop = asyncio.Lock(), loop
        async with self._init_lock:
            if self._client is None or self._loop is not loop:
                client = self._make_client()
                if self.cluster:
                    await client.initialize()
                self._gate = asyncio.Semaphore(max(1, self.max_connections - _RESERVED))
                self._client, self._loop = client, loop
        return self._client

    async def _on_connect(self, connection: Any) -> None:
        """Every new connection: the usual handshake, then note the server's run_id.

        The answer to the most recently *asked* INFO wins: a connection whose INFO reached
        the server before a restart may finish its handshake after one that reached the
        restarted server, and must not put the old run_id back."""
        await connection.on_connect()
        asked = time.monotonic()
        await connection.send_command("INFO", "server")
        try:
            info = await connection.read_response()
        except Exception:  # INFO disabled (some managed Redis): no restart detection
            return
        if asked >= self._run_id_asked:
            self._run_id, self._run_id_asked = _run_id_of(info, self._run_id), asked

    def _blocking_pool(self) -> Any:
        """The blocking redis-py connection pool of :meth:`lookup_now`, one per process (a
        forked child builds its own): same URL and timeouts as the asyncio client, at most
        ``max_connections``. Each connection notes the run_id of the server it reached."""
        if self._blocking is not None and self._blocking_pid == os.getpid():
            return self._blocking
        with self._blocking_lock:
            if self._blocking is None or self._blocking_pid != os.getpid():
                from redis import ConnectionPool

                self._blocking = ConnectionPool.from_url(
                    self.url,
                    socket_timeout=self.socket_timeout,
                    socket_connect_timeout=self.connect_timeout,
                    max_connections=self.max_connections,
                    redis_connect_func=_on_blocking_connect,
                )
                self._blocking_pid = os.getpid()
        return self._blocking

    async def close(self) -> None:
        """Close the connections. A client still dirty (an invalidation it could not
        deliver) first tries, within one timeout, to replace the generation - so leaving
        the process does not leave stale entries behind for everyone else."""
        if self._flusher is not None:
            self._flusher.cancel()
        if self._client is not None and self._loop is asyncio.get_running_loop():
            if self.dirty:
                with contextlib.suppress(Exception):
                    await self._new_generation()
            client, self._client = self._client, None
            with contextlib.suppress(Exception):  # closing a dead connection is no error
                await client.aclose()
        self._client = None
        blocking, self._blocking = self._blocking, None
        if blocking is not None and self._blocking_pid == os.getpid():
            with contextlib.suppress(Exception):
                blocking.disconnect()

    # -- fault handling --------------------------------------------------------------------

    async def _guarded(self, operation: str, action: Callable[[], Awaitable[T]]) -> T | None:
        """Run a Redis call under the breaker; None (and the cache marked dirty) on failure.

        An open breaker skips reads and fills, but never an invalidation: a write's
        invalidation is always attempted (within ``FORCED_INVALIDATION_TIMEOUT``; a refused
        connection fails at once, a hung Redis costs each write that much). Otherwise,
        between Redis's return and this client's next probe, another client that already
        recovered could serve an entry this write has made stale. If the attempt succeeds
        it acts as the recovery probe (the generation is replaced first when this client is
        dirty)."""
        bound = self.socket_timeout * 4
        if not self.breaker.allow():
            if operation != "invalidate":
                self.counters["bypasses"] += 1
                return None
            self.counters["invalidations_past_open_breaker"] += 1
            bound = min(self.socket_timeout, FORCED_INVALIDATION_TIMEOUT)

        async def attempt() -> T:
            await self._connected()
            async with self._gate:  # one pooled connection at a time per guarded call
                if self.dirty:
                    await self._new_generation()
                return await action()

        try:
            result = await within(attempt(), bound)
        except asyncio.CancelledError:
            # Cancelled mid-call (a caller's deadline, Ctrl-C): an invalidation may not have
            # arrived, so distrust the cache; a probe decided nothing, so allow another.
            if operation == "invalidate":
                self.dirty = True
                self.counters["undelivered_invalidations"] += 1
            self.breaker.abandon_probe()
            raise
        except Exception as exc:
            self._failed(operation, exc)
            return None
        if self.breaker.succeeded():
            log.warning("Redis cache %s is back; cache generation replaced", self.url)
        return result

    def _failed(self, operation: str, exc: BaseException) -> None:
        """A Redis call failed: distrust the cache (dirty) and open the breaker. Runs on
        the loop (a caller-thread lookup reports here through ``call_soon_threadsafe``)."""
        self.counters["errors"] += 1
        self.dirty = True
        if self.breaker.failed():
            self.counters["outages"] += 1
            log.warning(
                "Redis cache %s unreachable during %s (%s: %s); "
                "using the object store only, retrying every %.1fs",
                self.url,
                operation,
                type(exc).__name__,
                exc,
                self.breaker.interval,
            )

    def _fresh_generation(self) -> bytes:
        return self._run_id + os.urandom((_GEN_LEN - _RUN_ID_LEN) // 2).hex().encode()

    async def _new_generation(self) -> None:
        """Replace the generation: every entry filled before is ignored from now on."""
        client = await self._connected()
        token = self._fresh_generation()
        await within(client.set(GENERATION_KEY, token), self.socket_timeout * 4)
        self._generation, self.dirty = token, False
        self._undelivered.clear()  # the new generation supersedes them
        self.counters["generation_bumps"] += 1

    async def _current_generation(self, seen: bytes | None) -> bytes:
        if seen is not None and seen[:_RUN_ID_LEN] == self._run_id:
            self._generation = seen
            return seen
        # Missing (Redis new or restarted empty) or made by an earlier server process
        # (restored from a snapshot): replace it - atomically, so concurrent clients agree.
        client = await self._connected()
        adopted = await client.eval(
            _ADOPT_GENERATION, 1, GENERATION_KEY, self._run_id, self._fresh_generation()
        )
        if seen is not None:
            self.counters["generation_bumps"] += 1
        self._generation = bytes(adopted)
        return self._generation

    # -- the cache protocol ----------------------------------------------------------------

    async def _lookup(self, keys: Sequence[str]) -> tuple[list[bytes | None], Any]:
        """One MGET of the generation and the entries; for the misses only, a second MGET
        of their invalidation tokens (the ticket). A token is read before the caller reads
        the object store, which is all the stale-fill guard needs, and a full hit sends and
        parses half as many elements."""
        client = await self._connected()
        data_keys = [_data_key(key) for key in keys]
        if self.cluster:
            seen_gen, values = await asyncio.gather(
                client.get(GENERATION_KEY), client.mget_nonatomic(data_keys)
            )
        else:
            seen_gen, *values = await client.mget([GENERATION_KEY, *data_keys])
        generation = await self._current_generation(seen_gen)
        found = _entries_of(values, generation)
        misses = [key for key, data in zip(keys, found, strict=True) if data is None]
        versions: dict[str, bytes] = {}
        if misses:
            version_keys = [_version_key(key) for key in misses]
            tokens = await (
                client.mget_nonatomic(version_keys) if self.cluster else client.mget(version_keys)
            )
            versions = {key: token or b"" for key, token in zip(misses, tokens, strict=True)}
        return found, (generation, versions, time.monotonic())

    def lookup_now(self, keys: Sequence[str]) -> list[bytes | None] | None:
        """The hit path of :meth:`lookup` on a blocking connection in the caller's thread:
        one MGET of the generation and the entries, about what a redis-py ``MGET`` costs.

        It answers only when everything is known to be in order - standalone Redis, the
        breaker closed, the client not dirty, and the generation read equal to the one the
        loop's client adopted, under the run_id of the server *this connection* reached.
        Anything else (a first call, a restart, another client's generation bump, every
        connection busy) returns None and the caller takes the loop's :meth:`lookup`,
        which probes, repairs and decides. A broken pooled connection (Redis restarted) is
        retried once on a fresh one; any other failure is reported to the loop as an
        outage (the breaker opens before the caller's fallback runs, so a dead or hung
        Redis costs one timeout, not two) and pauses this path for ``breaker_interval``.
        """
        generation = self._generation
        if (
            generation is None
            or self.cluster
            or self.dirty
            or self.breaker.open_since is not None
            or time.monotonic() < self._blocking_paused_until
        ):
            return None
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import MaxConnectionsError

        command = [GENERATION_KEY, *[_data_key(key) for key in keys]]
        pool = self._blocking_pool()
        for retry in (True, False):
            try:
                connection = pool.get_connection()
            except MaxConnectionsError:
                return None  # every blocking connection is busy: the loop answers
            except Exception as exc:
                self._blocking_failed(exc)
                return None
            try:
                connection.send_command("MGET", *command)
                seen, *values = connection.read_response()
                run_id = getattr(connection, "kvstore_run_id", None)
            except RedisConnectionError as exc:
                connection.disconnect()
                if retry:
                    continue
                self._blocking_failed(exc)
                return None
            except Exception as exc:
                connection.disconnect()
                self._blocking_failed(exc)
                return None
            finally:
                pool.release(connection)
            break
        if (
            seen != generation
            or generation[:_RUN_ID_LEN] != run_id
            or self.dirty
            or self.breaker.open_since is not None
        ):
            return None
        return _entries_of(values, generation)

    def _blocking_failed(self, exc: BaseException) -> None:
        self._blocking_paused_until = time.monotonic() + self.breaker.interval
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # that loop is closed: nothing to tell
                loop.call_soon_threadsafe(self._failed, "lookup", exc)

    async def lookup(self, keys: Sequence[str]) -> Lookup:
        result = await self._guarded("lookup", lambda: self._lookup(keys))
        if result is None:
            return Lookup([None] * len(keys), None)
        values, ticket = result
        return Lookup(values, ticket)

    def _slots(self, keys: Sequence[str]) -> list[list[int]]:
        """Indexes of ``keys`` grouped so that each group is one cluster slot (or all)."""
        if not self.cluster:
            return [list(range(len(keys)))]
        from redis.crc import key_slot

        groups: dict[int, list[int]] = defaultdict(list)
        for i, key in enumerate(keys):
            groups[key_slot(_data_key(key).encode())].append(i)
        return list(groups.values())

    async def _run_script(self, script: str, keys: list[str], args: list[Any]) -> None:
        await (await self._connected()).eval(script, len(keys), *keys, *args)

    async def _fill(self, entries: Sequence[Fill], ticket: Any) -> None:
        generation, versions, _started = ticket
        calls = []
        for group in self._slots([e.key for e in entries]):
            keys: list[str] = []
            args: list[Any] = []
            for i in group:
                entry = entries[i]
                keys += [_data_key(entry.key), _version_key(entry.key)]
                args += [versions[entry.key], generation + entry.value, int(entry.ttl * 1000)]
            calls.append(self._run_script(_FILL, keys, args))
        await asyncio.gather(*calls)

    async def fill(self, entries: Sequence[Fill], ticket: Any) -> None:
        if ticket is None:
            return  # the lookup bypassed Redis: its versions are unknown
        if time.monotonic() - ticket[2] > _MAX_FILL_AGE:
            return
        versions = ticket[1]
        wanted = [
            e
            for e in entries
            if e.key in versions and len(e.value) <= self.max_entry_bytes and e.ttl >= 0.001
        ]
        if wanted:
            await self._guarded("fill", lambda: self._fill(wanted, ticket))

    async def _invalidate(self, keys: Sequence[str]) -> bool:
        calls = []
        for group in self._slots(keys):
            pairs = [k for i in group for k in (_data_key(keys[i]), _version_key(keys[i]))]
            # A fresh random token per write: unlike a counter, it cannot come back to a
            # value a slow reader saw before the counter expired or was evicted.
            tokens = [os.urandom(8).hex() for _ in group]
            calls.append(self._run_script(_INVALIDATE, pairs, [VERSION_TTL_MS, *tokens]))
        await asyncio.gather(*calls)
        return True

    async def invalidate(self, keys: Sequence[str]) -> None:
        if not keys:
            return
        done = await self._guarded("invalidate", lambda: self._invalidate(keys))
        if done is None:
            # Not delivered: the cache may now hold entries older than this write. The
            # client is marked dirty (on recovery the generation is replaced first), and
            # the keys are queued for a background delivery that does not wait for the
            # breaker: Redis may be fine and only this client's breaker open.
            self.dirty = True
            self.counters["undelivered_invalidations"] += len(keys)
            self._queue_invalidations(keys)

    def _queue_invalidations(self, keys: Sequence[str]) -> None:
        if len(self._undelivered) < _MAX_UNDELIVERED:
            self._undelivered.update(keys)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.ensure_future(self._deliver_undelivered())

    async def _deliver_undelivered(self) -> None:
        """Retry queued invalidations until they arrive (or a generation bump makes them
        moot), one attempt per ``breaker_interval``; never raises."""
        while self._undelivered and self.dirty:
            keys = list(self._undelivered)
            try:
                await within(self._invalidate(keys), self.socket_timeout * 4)
            except asyncio.CancelledError:
                raise
            except Exception:
                await asyncio.sleep(self.breaker.interval)
                continue
            self._undelivered.difference_update(keys)
            self.counters["late_invalidations"] += len(keys)

    async def _put_immutable(self, entries: Sequence[Fill]) -> bool:
        generation = self._generation
        if generation is None:
            generation = await self._current_generation(
                await (await self._connected()).get(GENERATION_KEY)
            )
        async with (await self._connected()).pipeline(transaction=False) as pipe:
            for e in entries:
                pipe.set(_data_key(e.key), generation + e.value, px=int(e.ttl * 1000))
            await pipe.execute()
        return True

    async def put_immutable(self, entries: Sequence[Fill]) -> None:
        wanted = [e for e in entries if len(e.value) <= self.max_entry_bytes and e.ttl >= 0.001]
        if wanted:
            await self._guarded("put_immutable", lambda: self._put_immutable(wanted))

    async def health(self) -> dict[str, Any]:
        started = time.perf_counter()
        try:
            await within((await self._connected()).ping(), self.socket_timeout * 4)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}", **self.info()}
        return {"ok": True, "latency_ms": (time.perf_counter() - started) * 1000, **self.info()}

    def info(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "cluster": self.cluster,
            "breaker": self.breaker.state,
            "dirty": self.dirty,
            **dict(self.counters),
        }
