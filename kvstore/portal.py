"""The event loop behind the blocking face: one daemon thread per process.

``KVStore`` runs ``AsyncKVStore`` coroutines here (httpx-style "one core, two faces",
but without generating a second copy of the code). A child process after ``fork`` gets a
loop of its own on first use, and a store opened before the fork reconnects there (its
object-store and Redis clients are rebuilt for the new loop).
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


class Portal:
    """A private event loop running in a daemon thread."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="kvstore-loop", daemon=True
        )
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the loop and wait for its result (or exception).

        The hand-off is one ``call_soon_threadsafe`` and one lock: about half the cost of
        ``run_coroutine_threadsafe`` and its ``concurrent.futures.Future``, and it is paid
        on every blocking call.
        """
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError(
                "a blocking KVStore method was called from kvstore's own event loop; "
                "use AsyncKVStore there"
            )
        done = threading.Lock()
        done.acquire()
        state: dict[str, Any] = {}

        def start() -> None:
            if state.get("abandoned"):
                coro.close()
                done.release()
                return
            task = self._loop.create_task(coro)
            state["task"] = task
            task.add_done_callback(lambda _: done.release())

        self._loop.call_soon_threadsafe(start)
        try:
            done.acquire()
        except BaseException:  # e.g. KeyboardInterrupt: do not leave the request running
            self._loop.call_soon_threadsafe(self._abandon, state)
            raise
        task: asyncio.Task[T] = state["task"]
        return task.result()

    async def arun(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the loop, awaited from another event loop (a framework's
        async method called on the blocking face: the store's clients live on this
        loop). Cancelling the caller cancels the coroutine."""
        if asyncio.get_running_loop() is self._loop:
            return await coro
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self._loop))

    @staticmethod
    def _abandon(state: dict[str, Any]) -> None:
        state["abandoned"] = True
        task = state.get("task")
        if task is not None:
            task.cancel()

    def iterate(self, agen: AsyncIterator[T]) -> Iterator[T]:
        """A blocking iterator over an async iterator, one item per round trip."""
        sentinel: Any = object()

        async def step() -> T:
            return await anext(agen, sentinel)

        while True:
            item = self.run(step())
            if item is sentinel:
                return
            yield item


_portal: Portal | None = None
_pid = 0
_lock = threading.Lock()


def portal() -> Portal:
    """The process's portal, started on first use (and again in a forked child)."""
    global _portal, _pid
    if _portal is not None and _pid == os.getpid():
        return _portal  # the fast path: no lock
    with _lock:
        if _portal is None or _pid != os.getpid():
            _portal, _pid = Portal(), os.getpid()
        return _portal
