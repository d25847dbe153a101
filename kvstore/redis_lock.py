"""Locks of the Redis faces (``kvstore.Redis.lock``): redis-py's ``Lock`` interface on
kvstore's key space. Acquired by SET NX PX - a conditional create, so one holder across
processes and machines; released and extended by a compare-and-swap on the holder's token,
so a lock that expired and was taken by another is never released or extended by the old
holder (LockNotOwnedError)."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

from redis.exceptions import LockError, LockNotOwnedError

from .redis_core import Live, RedisCore
from .values import DELETE, Change


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


__all__ = ["AsyncLock", "Lock"]
