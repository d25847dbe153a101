"""kvstore.Redis and kvstore.AsyncRedis: redis-py's interface over a kvstore.

Both classes *are* redis-py clients (subclasses of ``redis.Redis`` and
``redis.asyncio.Redis``): every command method, argument check and reply conversion is
redis-py's own. Only the transport differs: where redis-py would send a command to a
server, these hand its wire arguments to kvstore's command layer (:mod:`kvstore.commands`,
the same one the RESP server dispatches to) and convert the reply with redis-py's
response callbacks, as if it had come over the wire. So ``hgetall`` gives a dict,
``zrange(withscores=True)`` a list of ``(member, score)`` pairs, and a Redis error is
raised as redis-py would raise it - a ``redis.exceptions.ResponseError`` (or
``ExecAbortError``, ``WatchError``...) that is also a :class:`kvstore.KVStoreError`.

One core, two faces: :class:`~kvstore.redis_core.RedisCore` does everything
asynchronously; the blocking :class:`Redis` runs the same coroutine on kvstore's loop
thread (:mod:`kvstore.portal`).

Differences from a Redis server (README, "The Redis face"): transactions (MULTI/EXEC and
WATCH) cover one key each; lists are append logs (no LPUSH/RPOP/LSET ...); no scripts,
pub/sub or blocking pops; SCAN cursors live in the process that made them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from typing import Any

import redis
import redis.asyncio
from redis.exceptions import RedisError

from . import errors
from .api import AsyncKVStore
from .commands import Status
from .portal import portal
from .redis_core import Live, RedisCore
from .redis_lock import AsyncLock, Lock


def _open_async(url: Any, kwargs: dict[str, Any]) -> AsyncKVStore:
    from . import open_async

    return open_async(url, **kwargs)


class _Face:
    """What both face classes add to redis-py's: construction from a URL or a store."""

    _kv: RedisCore

    @property
    def store(self) -> AsyncKVStore:
        """The kvstore underneath (its async face)."""
        return self._kv.store


class AsyncRedis(_Face, redis.asyncio.Redis):
    """redis-py's asyncio client over a kvstore: ``AsyncRedis("s3://bucket/prefix",
    cache="local")``, or ``AsyncRedis(store=an_async_kvstore)``. Other keyword arguments
    go to :func:`kvstore.open_async`. Construction performs no I/O."""

    def __init__(
        self,
        url: Any = None,
        *,
        store: AsyncKVStore | None = None,
        decode_responses: bool = False,
        encoding: str = "utf-8",
        **open_kwargs: Any,
    ) -> None:
        super().__init__(decode_responses=decode_responses, encoding=encoding, protocol=2)
        owned = store is None
        if store is None:
            store = _open_async(url, open_kwargs)
        elif url is not None or open_kwargs:
            raise errors.ConfigurationError("give either a url (and open arguments) or a store")
        self._kv = RedisCore(store, owned)

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> AsyncRedis:
        return cls(url, **kwargs)

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        return await self._kv.call(self, args, options)

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> AsyncPipeline:
        return AsyncPipeline(self, transaction)

    def lock(
        self,
        name: Any,
        timeout: float | None = None,
        sleep: float = 0.1,
        blocking: bool = True,
        blocking_timeout: float | None = None,
        **_: Any,
    ) -> AsyncLock:
        return AsyncLock(self, name, timeout, sleep, blocking, blocking_timeout)

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await self._kv.close()

    async def close(self, close_connection_pool: bool | None = None) -> None:
        await self.aclose()

    async def __aenter__(self) -> AsyncRedis:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<kvstore.AsyncRedis {self._kv.store.url}>"


class Redis(_Face, redis.Redis):
    """redis-py's blocking client over a kvstore: ``Redis("s3://bucket/prefix")``, or
    ``Redis(store=a_kvstore)``. Each command runs :class:`RedisCore`'s coroutine on
    kvstore's loop thread. Other keyword arguments go to :func:`kvstore.open`."""

    def __init__(
        self,
        url: Any = None,
        *,
        store: Any = None,
        decode_responses: bool = False,
        encoding: str = "utf-8",
        **open_kwargs: Any,
    ) -> None:
        super().__init__(decode_responses=decode_responses, encoding=encoding, protocol=2)
        owned = store is None
        if store is None:
            core = _open_async(url, open_kwargs)
        elif url is not None or open_kwargs:
            raise errors.ConfigurationError("give either a url (and open arguments) or a store")
        else:
            core = store.aio if hasattr(store, "aio") else store
        self._kv = RedisCore(core, owned)

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> Redis:
        return cls(url, **kwargs)

    def _run(self, coro: Awaitable[Any]) -> Any:
        return portal().run(coro)  # type: ignore[arg-type]

    def execute_command(self, *args: Any, **options: Any) -> Any:
        return self._run(self._kv.call(self, args, options))

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> Pipeline:
        return Pipeline(self, transaction)

    def lock(
        self,
        name: Any,
        timeout: float | None = None,
        sleep: float = 0.1,
        blocking: bool = True,
        blocking_timeout: float | None = None,
        **_: Any,
    ) -> Lock:
        return Lock(AsyncLock(self, name, timeout, sleep, blocking, blocking_timeout), self._run)

    def close(self) -> None:
        self._run(self._kv.close())

    def __del__(self) -> None:
        pass

    def __repr__(self) -> str:
        return f"<kvstore.Redis {self._kv.store.url}>"


# -- pipelines ----------------------------------------------------------------------------


class _PipelineState:
    """Queued commands, MULTI and WATCH state: shared by both pipeline faces."""

    def __init__(self, transaction: bool) -> None:
        self.transaction = transaction
        self.stack: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
        self.watched: dict[str, Live] = {}
        self.watching = False
        self.explicit_multi = False

    def reset(self) -> None:
        self.stack.clear()
        self.watched.clear()
        self.watching = False
        self.explicit_multi = False

    def multi(self) -> None:
        if self.explicit_multi:
            raise RedisError("Cannot issue nested calls to MULTI")
        if self.stack:
            raise RedisError("Commands without an initial WATCH have already been issued")
        self.explicit_multi = True

    def immediate(self) -> bool:
        return self.watching and not self.explicit_multi

    def transactional(self) -> bool:
        return self.transaction or self.explicit_multi


class _Queue:
    """What both pipeline faces share, I/O aside: the queue and its state, and the two
    coroutines (WATCH, EXEC) that the async face awaits and the blocking one runs."""

    _kv: RedisCore
    _state: _PipelineState

    def _start(self, client: Any, transaction: bool) -> None:
        self._kv = client._kv
        self._state = _PipelineState(transaction)

    def __len__(self) -> int:
        return len(self._state.stack)

    def __bool__(self) -> bool:
        return True

    @property
    def watching(self) -> bool:
        return self._state.watching

    def multi(self) -> None:
        self._state.multi()

    def _queued(self, args: tuple[Any, ...], options: dict[str, Any]) -> bool:
        """Queue a command, unless WATCH made the pipeline run commands at once."""
        if self._state.immediate():
            return False
        self._state.stack.append((args, options))
        return True

    def _unwatched(self) -> bool:
        self._state.watched.clear()
        self._state.watching = False
        return True

    async def _watch(self, names: Sequence[Any]) -> bool:
        if self._state.explicit_multi:
            raise RedisError("Cannot issue a WATCH after a MULTI")
        for name in names:
            key, value = await self._kv.watch_value(name, self.get_encoder())  # type: ignore[attr-defined]
            self._state.watched[key] = value
        self._state.watching = True
        return True

    async def _execute(self, raise_on_error: bool) -> list[Any]:
        state = self._state
        stack = list(state.stack)
        try:
            if not stack and not state.watched:
                return []
            return await self._kv.run_pipeline(
                self, stack, state.transactional(), dict(state.watched), raise_on_error
            )
        finally:
            state.reset()


def _client_options(client: Any) -> dict[str, Any]:
    encoder = client.get_encoder()
    return {"decode_responses": encoder.decode_responses, "encoding": encoder.encoding}


class AsyncPipeline(_Queue, AsyncRedis):
    """``AsyncRedis.pipeline()``: queue commands, ``await execute()``. With
    ``transaction=True`` the queue runs as MULTI/EXEC: one compare-and-swap of the one
    key it touches (several keys: CROSSSLOT). ``watch(key)`` then ``multi()`` as in
    redis-py; a change to the watched key before ``execute()`` raises WatchError."""

    def __init__(self, client: AsyncRedis, transaction: bool) -> None:
        redis.asyncio.Redis.__init__(self, protocol=2, **_client_options(client))
        self._start(client, transaction)

    async def __aenter__(self) -> AsyncPipeline:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.reset()

    def __await__(self) -> Any:
        return self._self().__await__()

    async def _self(self) -> AsyncPipeline:
        return self

    def execute_command(self, *args: Any, **options: Any) -> Any:
        if self._queued(args, options):
            return self
        return self._kv.call(self, args, options)

    async def watch(self, *names: Any) -> bool:
        return await self._watch(names)

    async def unwatch(self) -> bool:
        return self._unwatched()

    async def discard(self) -> None:
        self._queued(("DISCARD",), {})

    async def reset(self) -> None:
        self._state.reset()

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await self.reset()

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        return await self._execute(raise_on_error)


class Pipeline(_Queue, Redis):
    """``Redis.pipeline()``: the blocking twin of :class:`AsyncPipeline` (same state, same
    coroutines; each runs on kvstore's loop thread)."""

    def __init__(self, client: Redis, transaction: bool) -> None:
        redis.Redis.__init__(self, protocol=2, **_client_options(client))
        self._start(client, transaction)

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.reset()

    def execute_command(self, *args: Any, **options: Any) -> Any:
        if self._queued(args, options):
            return self
        return self._run(self._kv.call(self, args, options))

    def watch(self, *names: Any) -> bool:
        return bool(self._run(self._watch(names)))

    def unwatch(self) -> bool:
        return self._unwatched()

    def discard(self) -> None:
        self._queued(("DISCARD",), {})

    def reset(self) -> None:
        self._state.reset()

    def close(self) -> None:
        self.reset()

    def execute(self, raise_on_error: bool = True) -> list[Any]:
        return list(self._run(self._execute(raise_on_error)))


__all__ = ["AsyncLock", "AsyncPipeline", "AsyncRedis", "Lock", "Pipeline", "Redis", "Status"]
