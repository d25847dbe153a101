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

One core, two faces: :class:`RedisCore` does everything asynchronously; the blocking
:class:`Redis` runs the same coroutine on kvstore's loop thread (:mod:`kvstore.portal`).

Differences from a Redis server (README, "The Redis face"): transactions (MULTI/EXEC and
WATCH) cover one key each; lists are append logs (no LPUSH/RPOP/LSET ...); no scripts,
pub/sub or blocking pops; SCAN cursors live in the process that made them.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import redis
import redis.asyncio
from redis._parsers.base import BaseParser
from redis.client import EMPTY_RESPONSE, NEVER_DECODE
from redis.exceptions import (
    ConnectionError as RedisConnectionError,
)
from redis.exceptions import (
    DataError,
    LockError,
    LockNotOwnedError,
    RedisError,
    ResponseError,
    WatchError,
)

from . import errors
from .api import AsyncKVStore
from .commands import Commands, Op, Status
from .commands.reply import CommandError
from .portal import portal
from .values import DELETE, Change

Live = tuple[bytes, int, int] | None


_BOTH: dict[tuple[str, str], type[BaseException]] = {}


def _both(redis_class: type[BaseException], ours: type[BaseException]) -> type[BaseException]:
    """An exception class that is redis-py's and kvstore's at once (made once per pair)."""
    slot = (redis_class.__qualname__ + redis_class.__module__, ours.__qualname__ + ours.__module__)
    found = _BOTH.get(slot)
    if found is None:
        found = _BOTH[slot] = type(
            redis_class.__name__, (redis_class, ours), {"__module__": __name__}
        )
    return found


def _as_redis_error(exc: BaseException) -> BaseException:
    """kvstore's error as the exception redis-py would raise (and still kvstore's)."""
    if isinstance(exc, RedisError):
        return exc
    if isinstance(exc, CommandError):
        parsed = BaseParser.parse_error(str(exc))
        ours: type[BaseException] = (
            errors.WrongTypeError if exc.code == "WRONGTYPE" else errors.KVStoreError
        )
        return _both(type(parsed), ours)(*parsed.args)
    if isinstance(exc, errors.ConfigurationError):
        target: type[BaseException] = DataError
    elif isinstance(exc, errors.BackendError):
        target = RedisConnectionError
    else:
        target = ResponseError
    new = _both(target, type(exc)).__new__(_both(target, type(exc)))
    new.__dict__.update(exc.__dict__)
    new.args = exc.args
    return new


def _plain(reply: Any, decode: bool, encoding: str) -> Any:
    """A command layer reply as redis-py's parser gives it: bytes (str if decoding)."""
    if isinstance(reply, bytes):
        return reply.decode(encoding, "strict") if decode else bytes(reply)
    if isinstance(reply, list):
        return [_plain(r, decode, encoding) for r in reply]
    return reply


class RedisCore:
    """What both faces share: the store, its command layer, and how a command call
    becomes a reply in redis-py's shapes."""

    def __init__(self, store: AsyncKVStore, owned: bool) -> None:
        self.store = store
        self.owned = owned
        self.commands = Commands(store._ctx)

    @staticmethod
    def wire(args: Sequence[Any], encoder: Any) -> list[bytes]:
        """redis-py's encoding of a command's arguments (its first may be two words)."""
        name, *rest = args
        head = name.split() if isinstance(name, str) else [name]
        return [encoder.encode(a) for a in (*head, *rest)]

    def finish(self, name: str, reply: Any, options: dict[str, Any], client: Any) -> Any:
        """The reply as redis-py returns it: decoded, then through its response callback."""
        encoder = client.get_encoder()
        decode = encoder.decode_responses and NEVER_DECODE not in options
        options.pop(NEVER_DECODE, None)
        if isinstance(reply, CommandError):
            if EMPTY_RESPONSE in options:  # redis-py's default for an empty call (mget([]))
                return options[EMPTY_RESPONSE]
            return _as_redis_error(reply)
        options.pop(EMPTY_RESPONSE, None)
        options.pop("keys", None)
        reply = _plain(reply, decode, encoder.encoding)
        callback = client.response_callbacks.get(name)
        return reply if callback is None else callback(reply, **options)

    async def call(self, client: Any, args: Sequence[Any], options: dict[str, Any]) -> Any:
        name = args[0]
        try:
            reply = await self.commands.execute(self.wire(args, client.get_encoder()))
        except CommandError as exc:
            if EMPTY_RESPONSE in options:
                return options[EMPTY_RESPONSE]
            raise _as_redis_error(exc) from None
        except errors.KVStoreError as exc:
            raise _as_redis_error(exc) from exc
        return self.finish(name, reply, dict(options), client)

    async def run_pipeline(
        self,
        client: Any,
        stack: Sequence[tuple[Sequence[Any], dict[str, Any]]],
        transaction: bool,
        watched: dict[str, Live] | None,
        raise_on_error: bool,
    ) -> list[Any]:
        """Run queued commands: a transaction as one compare-and-swap of its key (the
        watched values checked inside it), otherwise each command on its own - commands
        on distinct keys concurrently, in order where they share one."""
        encoder = client.get_encoder()
        wires = [self.wire(args, encoder) for args, _ in stack]
        if transaction:  # a command Redis refuses while queueing aborts the transaction
            for i, (wire, (args, options)) in enumerate(zip(wires, stack, strict=True)):
                try:
                    self.commands.parse(wire)
                except CommandError as exc:
                    if EMPTY_RESPONSE in options:
                        continue
                    error = _as_redis_error(exc)
                    _annotate(error, i + 1, args)
                    raise error from None
        try:
            if transaction:
                replies = await self.transaction(wires, watched)
            else:
                replies = await self.batch(wires)
        except CommandError as exc:
            raise _as_redis_error(exc) from None
        except errors.KVStoreError as exc:
            raise _as_redis_error(exc) from exc
        out = []
        for (args, options), reply in zip(stack, replies, strict=True):
            out.append(self.finish(args[0], reply, dict(options), client))
        if raise_on_error:
            for i, reply in enumerate(out):
                if isinstance(reply, BaseException):
                    _annotate(reply, i + 1, stack[i][0])
                    raise reply
        return out

    async def batch(self, wires: list[list[bytes]]) -> list[Any]:
        parsed: list[Op | CommandError] = []
        for wire in wires:
            try:
                parsed.append(self.commands.parse(wire)[1])
            except CommandError as exc:
                parsed.append(exc)
        keys = [getattr(op, "key", None) for op in parsed]

        async def one(op: Any) -> Any:
            if isinstance(op, CommandError):
                return op
            try:
                return await self.commands.run_op(op)
            except CommandError as exc:
                return exc

        if None not in keys and len(set(keys)) == len(keys):
            return await self.commands.bounded([one(op) for op in parsed])
        return [await one(op) for op in parsed]

    async def transaction(
        self, wires: list[list[bytes]], watched: dict[str, Live] | None
    ) -> list[Any]:
        commands = self.commands
        if not watched:
            return await commands.transaction(wires)
        if len(watched) > 1:
            raise CommandError(
                "CROSSSLOT WATCH of several keys cannot be checked atomically (each key is "
                "one object); watch the one key the transaction changes"
            )
        ((key, seen),) = watched.items()
        if not wires:
            (now,) = await commands.values.load(commands.values.plan([key]))
            if now != seen:
                raise WatchError("Watched variable changed.")
            return []
        ops = [commands.parse(w)[1] for w in wires]
        if any(op.key != key for op in ops):
            raise CommandError(
                "CROSSSLOT a watched transaction must change the key it watches (each key is "
                "one object; kvstore cannot make several atomic together)"
            )

        def check(current: Live) -> tuple[None, Change]:
            if current != seen:
                raise _Changed()
            return None, None

        try:
            return await commands.transaction(wires, precondition=check)
        except _Changed:
            raise WatchError("Watched variable changed.") from None

    async def watch_value(self, key: Any, encoder: Any) -> tuple[str, Live]:
        from .commands.core import key_of

        name = key_of(encoder.encode(key))
        (current,) = await self.commands.values.load(self.commands.values.plan([name]))
        return name, current

    async def close(self) -> None:
        if self.owned:
            await self.store.close()


def _annotate(error: BaseException, number: int, args: Sequence[Any]) -> None:
    """Say which queued command failed, in redis-py's words."""
    redis.client.Pipeline.annotate_exception(None, error, number, args)  # type: ignore[arg-type]


class _Changed(Exception):
    """A watched key changed before EXEC."""


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


# -- locks --------------------------------------------------------------------------------


class AsyncLock:
    """A lock on one key, as redis-py's ``Lock``: acquired by SET NX PX (a conditional
    create: one holder across processes), released and extended by compare-and-swap on
    the holder's token (never another holder's lock)."""

    def __init__(
        self,
        client: Any,
        name: Any,
        timeout: float | None,
        sleep: float,
        blocking: bool,
        blocking_timeout: float | None,
    ) -> None:
        self.client = client
        self.kv: RedisCore = client._kv
        self.name = name
        self.timeout = timeout
        self.sleep = sleep
        self.blocking = blocking
        self.blocking_timeout = blocking_timeout
        self.token: bytes | None = None
        if timeout is not None and sleep > timeout:
            raise LockError("'sleep' must be less than 'timeout'")

    def _key(self) -> str:
        from .commands.core import key_of

        return key_of(self.client.get_encoder().encode(self.name))

    async def acquire(
        self,
        blocking: bool | None = None,
        blocking_timeout: float | None = None,
        token: Any = None,
    ) -> bool:
        blocking = self.blocking if blocking is None else blocking
        wait = self.blocking_timeout if blocking_timeout is None else blocking_timeout
        mine = (
            secrets.token_hex(16).encode()
            if token is None
            else self.client.get_encoder().encode(token)
        )
        args: list[Any] = ["SET", self.name, mine, "NX"]
        if self.timeout is not None:
            args += ["PX", int(self.timeout * 1000)]
        stop = None if wait is None else time.monotonic() + wait
        while True:
            if await self.kv.commands.execute(self.kv.wire(args, self.client.get_encoder())):
                self.token = mine
                return True
            if not blocking or (stop is not None and time.monotonic() >= stop):
                return False
            await asyncio.sleep(self.sleep)

    async def locked(self) -> bool:
        (current,) = await self._live()
        return current is not None

    async def owned(self) -> bool:
        (current,) = await self._live()
        return current is not None and self.token is not None and current[0] == self.token

    async def _live(self) -> list[Live]:
        values = self.kv.commands.values
        return await values.load(values.plan([self._key()]))

    async def release(self) -> None:
        if self.token is None:
            raise LockError("Cannot release an unlocked lock", lock_name=self.name)
        token, self.token = self.token, None

        def release(current: Live) -> tuple[bool, Change]:
            if current is None or current[0] != token:
                return False, None
            return True, DELETE

        if not await self.kv.commands.values.update(self._key(), release):
            raise LockNotOwnedError(
                "Cannot release a lock that's no longer owned", lock_name=self.name
            )

    async def extend(self, additional_time: float, replace_ttl: bool = False) -> bool:
        if self.token is None:
            raise LockError("Cannot extend an unlocked lock", lock_name=self.name)
        if self.timeout is None and not replace_ttl:
            raise LockError("Cannot extend a lock with no timeout", lock_name=self.name)
        token = self.token
        clock = self.kv.commands.ctx.clock
        extra = int(additional_time * 1000)

        def extend(current: Live) -> tuple[bool, Change]:
            if current is None or current[0] != token:
                return False, None
            base = clock() if replace_ttl or current[1] == 0 else current[1]
            return True, (current[0], base + extra, current[2])

        if not await self.kv.commands.values.update(self._key(), extend):
            raise LockNotOwnedError(
                "Cannot extend a lock that's no longer owned", lock_name=self.name
            )
        return True

    async def reacquire(self) -> bool:
        if self.timeout is None:
            raise LockError("Cannot reacquire a lock with no timeout", lock_name=self.name)
        return await self.extend(self.timeout, replace_ttl=True)

    async def __aenter__(self) -> AsyncLock:
        if await self.acquire():
            return self
        raise LockError("Unable to acquire lock within the time specified", lock_name=self.name)

    async def __aexit__(self, *exc: object) -> None:
        await self.release()


class Lock:
    """The blocking twin of :class:`AsyncLock` (each method runs its coroutine)."""

    def __init__(self, core: AsyncLock, run: Callable[[Awaitable[Any]], Any]) -> None:
        self._core = core
        self._run = run

    @property
    def name(self) -> Any:
        return self._core.name

    @property
    def token(self) -> bytes | None:
        return self._core.token

    def acquire(self, *args: Any, **kwargs: Any) -> bool:
        return bool(self._run(self._core.acquire(*args, **kwargs)))

    def release(self) -> None:
        self._run(self._core.release())

    def extend(self, additional_time: float, replace_ttl: bool = False) -> bool:
        return bool(self._run(self._core.extend(additional_time, replace_ttl)))

    def reacquire(self) -> bool:
        return bool(self._run(self._core.reacquire()))

    def locked(self) -> bool:
        return bool(self._run(self._core.locked()))

    def owned(self) -> bool:
        return bool(self._run(self._core.owned()))

    def __enter__(self) -> Lock:
        if self.acquire():
            return self
        raise LockError("Unable to acquire lock within the time specified", lock_name=self.name)

    def __exit__(self, *exc: object) -> None:
        self.release()


__all__ = ["AsyncLock", "AsyncPipeline", "AsyncRedis", "Lock", "Pipeline", "Redis", "Status"]
