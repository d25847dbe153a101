"""The asyncio helpers every layer uses: bounded gather, detached tasks, deadlines.

One implementation of each, so that the rules they keep hold everywhere:

* :func:`bounded` settles *every* awaitable before it raises, so nothing is still writing
  when a caller invalidates the cache or reports a failure.
* :func:`detach` starts a task nobody awaits (a write-behind, a prefetch, a cleanup) and
  retrieves its exception, so a failure never surfaces as "Task exception was never
  retrieved" noise.
* :func:`shielded` runs a write to its end even if the caller stops waiting (a deadline,
  Ctrl-C on the blocking face): a request already sent may still land.
* :func:`within` bounds a call in time without wrapping it in a second task.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Coroutine, Sequence
from typing import Any, TypeVar

T = TypeVar("T")


async def bounded(tasks: Sequence[Awaitable[T]], limit: int) -> list[T]:
    """Await all of ``tasks``, at most ``limit`` at a time; results in order.

    Every task is settled before an error is raised (the first one in order). Awaitables
    that fit in one wave are gathered directly; more run on ``limit`` workers that each
    take the next awaitable when one finishes - not behind a semaphore, whose release
    rescans its waiters on Python 3.11 (a read of 5,000 chunks spent ~60 ms of CPU there).
    """
    if not tasks:
        return []
    if len(tasks) <= limit:
        results: list[Any] = await asyncio.gather(*tasks, return_exceptions=True)
    else:
        results = [None] * len(tasks)
        queue = iter(enumerate(tasks))

        async def worker() -> None:
            for i, task in queue:
                try:
                    results[i] = await task
                except Exception as exc:  # settle the rest first; raised below
                    results[i] = exc

        try:
            await asyncio.gather(*(worker() for _ in range(max(1, limit))))
        finally:
            for _, task in queue:  # never started (the caller was cancelled)
                if asyncio.iscoroutine(task):
                    task.close()
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results


def consume(task: asyncio.Future[Any]) -> None:
    """Done-callback: retrieve a task's exception when nobody else will."""
    if not task.cancelled():
        task.exception()


def detach(coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
    """Start ``coro`` as a task that nobody needs to await (its exception is retrieved)."""
    task = asyncio.ensure_future(coro)
    task.add_done_callback(consume)
    return task


async def shielded(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to its end even if the caller is cancelled; the caller still gets its
    result (or its exception) when it waits to the end."""
    return await asyncio.shield(detach(coro))


async def within(call: Awaitable[T], seconds: float) -> T:
    """Await ``call`` for at most ``seconds`` (TimeoutError after). Unlike ``wait_for`` on
    Python < 3.12, no extra task is created on 3.11+ (a task costs ~10 us per call)."""
    if sys.version_info >= (3, 11):
        async with asyncio.timeout(seconds):
            return await call
    return await asyncio.wait_for(call, seconds)  # pragma: no cover - Python 3.10
