"""The :class:`RedisCache` itself: the cache protocol over Redis, its fault handling and its
coherence (the generation, undelivered invalidations). The protocol and its guarantees are
in the docstring of :mod:`kvstore.cache.redis`; the key layout and scripts are in
:mod:`.scripts`, the breaker in :mod:`.breaker`, the connections in :mod:`.connections`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from ...aio import within
from ...errors import ConfigurationError
from ..base import Cache, Entry, Fill, Lookup
from .breaker import CircuitBreaker
from .connections import RedisConnections, _client_url
from .scripts import (
    _ADOPT_GENERATION,
    _FILL,
    _GEN_LEN,
    _INVALIDATE,
    _RUN_ID_LEN,
    GENERATION_KEY,
    _data_key,
    _entries_of,
    _version_key,
)

log = logging.getLogger("kvstore.cache")

T = TypeVar("T")

VERSION_TTL_MS = 3_600_000
"""How long a key's invalidation counter outlives its last write. A reader whose object-store
read takes longer than this could refill an old value; reads that slow are refused below."""
_MAX_FILL_AGE = VERSION_TTL_MS / 1000 / 2
FORCED_INVALIDATION_TIMEOUT = 0.05
"""The longest a write waits for its invalidation while the breaker is open (seconds), by
default (``RedisCache(invalidation_wait=...)``; README, "Redis down, hung...": the trade-off)."""
_MAX_UNDELIVERED = 100_000  # beyond this, only the generation bump repairs (it always does)


class RedisCache(RedisConnections, Cache):
    """A coherent, outage-proof cache in Redis or Redis Cluster. See :mod:`kvstore.cache.redis`.

    ``url``: ``redis://``, ``rediss://``, ``unix://`` (redis-py URL options apply), or
    ``redis+cluster://host:port`` / ``rediss+cluster://`` for Redis Cluster (any node).
    """

    name = "redis"
    shared = True
    entry_offset = _GEN_LEN  # entries keep the generation they were filled under in front

    def __init__(
        self,
        url: str,
        *,
        socket_timeout: float = 0.25,
        connect_timeout: float = 0.25,
        breaker_interval: float = 1.0,
        max_entry_bytes: int = 1 << 20,
        max_connections: int = 64,
        invalidation_wait: float = FORCED_INVALIDATION_TIMEOUT,
    ) -> None:
        import redis.asyncio  # noqa: F401 - fail at open time if the extra is missing

        self.url, self.cluster = _client_url(url)
        for name, value in (
            ("socket_timeout", socket_timeout),
            ("connect_timeout", connect_timeout),
            ("breaker_interval", breaker_interval),
        ):
            if not isinstance(value, (int, float)) or value <= 0:
                raise ConfigurationError(f"{name} must be seconds > 0, not {value!r}")
        if not isinstance(invalidation_wait, (int, float)) or not invalidation_wait >= 0:
            raise ConfigurationError(
                f"invalidation_wait must be seconds >= 0, not {invalidation_wait!r}"
            )
        self.socket_timeout = float(socket_timeout)
        self.connect_timeout = float(connect_timeout)
        self.invalidation_wait = float(invalidation_wait)
        """How long a write waits for its invalidation past an open breaker: what a write
        costs while Redis hangs, and the hangs after which no reader can be served what
        the write replaced (those that end within it)."""
        self.max_entry_bytes = max_entry_bytes
        self.max_connections = max_connections
        self.breaker = CircuitBreaker(breaker_interval)
        self.dirty = False
        self.counters: dict[str, int] = defaultdict(int)
        self._generation: bytes | None = None
        self._undelivered: set[str] = set()
        self._flusher: asyncio.Future[None] | None = None
        self._blocking_paused_until = 0.0  # lookup_now stands aside until then
        self._init_connections()
        self._validate_url()

    async def close(self) -> None:
        """Close the connections. A client still dirty (an invalidation it could not
        deliver) first tries, within one timeout, to replace the generation - so leaving
        the process does not leave stale entries behind for everyone else."""
        if self._flusher is not None:
            self._flusher.cancel()
        if self._client is not None and self._loop is asyncio.get_running_loop() and self.dirty:
            with contextlib.suppress(Exception):
                await self._new_generation()
        await self._disconnect()

    # -- fault handling --------------------------------------------------------------------

    async def _guarded(self, operation: str, action: Callable[[], Awaitable[T]]) -> T | None:
        """Run a Redis call under the breaker; None (and the cache marked dirty) on failure.

        An open breaker skips reads and fills, but never an invalidation: a write's
        invalidation is always attempted (within ``invalidation_wait``; a refused
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
            bound = min(self.socket_timeout, self.invalidation_wait)

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

    async def _lookup(self, keys: Sequence[str]) -> tuple[list[Entry | None], Any]:
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

    def lookup_now(self, keys: Sequence[str]) -> list[Entry | None] | None:
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
