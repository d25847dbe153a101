"""Run a coroutine at once, in the caller, until it first has to wait.

Most commands a server answers never wait: a cache hit, PING, a MULTI being queued. For
those a task per command (a future, a trip through the event loop) costs more than the
command. :func:`start` runs the coroutine in the caller; when it finished without waiting
the result is there, otherwise the returned :class:`Rest` is an awaitable that finishes
it - await it in a task (``asyncio.ensure_future(rest.run())``): the task waits for what
the coroutine was waiting for, then resumes it where it stopped. Python 3.12's eager task
factory does the same for every task; this is the same idea for one call site, on 3.11.

What the coroutine sees is what it sees in a task: its ``await`` of a future returns the
future's result, a cancellation of the task is raised inside it at its ``await``.
"""

from __future__ import annotations

from collections.abc import Coroutine, Generator
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Rest(Generic[T]):
    """A coroutine that started and is waiting for ``pending`` (what it yielded)."""

    __slots__ = ("coro", "pending")

    def __init__(self, coro: Coroutine[Any, Any, T], pending: Any) -> None:
        self.coro, self.pending = coro, pending

    def __await__(self) -> Generator[Any, Any, T]:
        coro, pending = self.coro, self.pending
        while True:
            try:
                yield pending  # the task running us waits for it, then resumes us
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # a cancellation: raised where the coroutine waits
                try:
                    pending = coro.throw(exc)
                except StopIteration as stop:
                    return stop.value  # type: ignore[no-any-return]
                continue
            try:
                pending = coro.send(None)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]

    async def run(self) -> T:
        return await self


def start(coro: Coroutine[Any, Any, T]) -> tuple[bool, T | Rest[T]]:
    """``(True, result)`` if ``coro`` finished without waiting (or its exception raised);
    ``(False, rest)`` if it waits: await ``rest`` (in a task) for its result."""
    try:
        pending = coro.send(None)
    except StopIteration as stop:
        return True, stop.value
    return False, Rest(coro, pending)
