"""``memory://``: objects in this process's memory, shared by every store of the process.

Atomicity comes from one lock held for each check-and-write (docs/architecture.md,
invariant 3: "memory: a lock"). Nothing is durable and nothing is shared with other processes.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import os
import socket
import threading
import time
from collections.abc import AsyncIterator, Sequence

from ..stats import Stats
from .base import Blob, BlobStore, DatedPage, RetryPolicy

PAGE = 1000


class _Space:
    """The process-wide object space: path -> (bytes, tag), kept sorted for listing, and
    when each object was written (ms, this process's clock: memory's "server" clock)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.objects: dict[str, tuple[bytes, str]] = {}
        self.written: dict[str, int] = {}
        self.names: list[str] = []
        self.counter = itertools.count(1)

    def store(self, path: str, data: bytes) -> str:
        tag = str(next(self.counter))
        if path not in self.objects:
            bisect.insort(self.names, path)
        self.objects[path] = (data, tag)
        self.written[path] = _now_ms()
        return tag

    def remove(self, path: str) -> None:
        if self.objects.pop(path, None) is not None:
            del self.written[path]
            del self.names[bisect.bisect_left(self.names, path)]


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


_SPACE = _Space()


class MemoryBlobStore(BlobStore):
    """Objects in process memory below ``memory://{root}``."""

    dated_listing = True
    delete_batch = PAGE  # one lock, no request: a batch is one "request"

    def __init__(self, root: str, *, retry: RetryPolicy | None = None, stats: Stats) -> None:
        self.root = root.strip("/")
        super().__init__(f"memory://{self.root}", retry=retry, stats=stats)
        self._space = _SPACE

    @property
    def identity(self) -> str:
        # memory:// is private to its process: two processes never share its data.
        return f"{socket.gethostname()}:{os.getpid()}:{self.url}"

    def _full(self, path: str) -> str:
        return f"{self.root}/{path}" if self.root else path

    async def _get(self, path: str, head: int | None = None) -> Blob | None:
        with self._space.lock:
            found = self._space.objects.get(self._full(path))
        if found is None:
            return None
        data, tag = found
        return Blob(data if head is None else data[:head], tag)

    async def _get_range(self, path: str, start: int, size: int) -> Blob | None:
        with self._space.lock:
            found = self._space.objects.get(self._full(path))
        if found is None:
            return None
        data, tag = found
        return Blob(data[start : start + size], tag)

    async def _put(self, path: str, data: bytes) -> str:
        with self._space.lock:
            return self._space.store(self._full(path), bytes(data))

    async def _put_if_absent(self, path: str, data: bytes) -> str | None:
        full = self._full(path)
        with self._space.lock:
            if full in self._space.objects:
                return None
            return self._space.store(full, bytes(data))

    async def _put_if_match(self, path: str, data: bytes, tag: str) -> str | None:
        full = self._full(path)
        with self._space.lock:
            current = self._space.objects.get(full)
            if current is None or current[1] != tag:
                return None
            return self._space.store(full, bytes(data))

    async def _delete(self, path: str) -> None:
        with self._space.lock:
            self._space.remove(self._full(path))

    async def _delete_if_match(self, path: str, tag: str) -> bool:
        full = self._full(path)
        with self._space.lock:
            current = self._space.objects.get(full)
            if current is None or current[1] != tag:
                return False
            self._space.remove(full)
            return True

    async def _delete_many(self, paths: Sequence[str]) -> None:
        with self._space.lock:
            for path in paths:
                self._space.remove(self._full(path))

    async def _list(self, prefix: str) -> AsyncIterator[list[str]]:
        async for entries, _ in self._pages(prefix):
            yield [path for path, _ in entries]

    async def _list_after(
        self, prefix: str, start_after: str | None, page_size: int | None
    ) -> AsyncIterator[list[str]]:
        async for entries, _ in self._pages(prefix, start_after, page_size or PAGE):
            yield [path for path, _ in entries]

    async def _list_dated(self, prefix: str) -> AsyncIterator[DatedPage]:
        async for page in self._pages(prefix):
            yield page

    async def _list_sized(self, prefix: str) -> AsyncIterator[list[tuple[str, int]]]:
        async for entries, _ in self._pages(prefix):
            with self._space.lock:
                objects = self._space.objects
                found = [(p, objects.get(self._full(p))) for p, _ in entries]
            yield [(p, len(o[0])) for p, o in found if o is not None]  # None: deleted since

    async def _pages(
        self, prefix: str, start_after: str | None = None, size: int = PAGE
    ) -> AsyncIterator[DatedPage]:
        start = self._full(prefix)
        cut = len(self._full(""))
        after = None if start_after is None else self._full(start_after)
        while True:
            page = await self._call(
                "list", prefix, functools.partial(self._page, start, after, size)
            )
            if page:
                yield [(name[cut:], when) for name, when in page], _now_ms()
            if len(page) < size:  # a short page is the last: no request for an empty one
                return
            after = page[-1][0]

    async def _page(self, start: str, after: str | None, size: int) -> list[tuple[str, int]]:
        with self._space.lock:
            names = self._space.names
            i = bisect.bisect_left(names, start)
            if after is not None:  # past the position, never before the prefix's first
                i = max(i, bisect.bisect_right(names, after))
            page = list(itertools.islice(names, i, i + size))
            written = self._space.written
            return [(n, written[n]) for n in page if n.startswith(start)]
