"""The latency model: in-memory object stores that charge a fixed delay per request.

Two faces of the same model, so kvstore and its baselines pay the same price per request:

* :class:`LatencyBlobStore` - a :class:`kvstore.blob.WrapperBlobStore` in front of
  kvstore's own ``memory://`` backend (:class:`kvstore.blob.memory.MemoryBlobStore`)
  whose primitives first ``await asyncio.sleep(latency)``. kvstore runs on it with its
  full feature set (conditional create, compare-and-swap), which fsspec's generic
  filesystems cannot offer.
* :class:`LatencyMemoryFS` - fsspec's ``MemoryFileSystem`` behind an fsspec
  ``AsyncFileSystem`` whose coroutines sleep the same ``latency`` first. The baselines
  (a sequential ``cat_file`` loop, ``FSMap.getitems``, ``fs.cat`` of many objects) run on it.

Both count requests by kind in ``.counts`` (a Counter), independently of kvstore's own
``store.stats()``, so the two can be cross-checked. The delay is a pure wait on the event
loop (no CPU), so any number of requests in flight overlap, as on a real object store with
enough connections; CPU time spent by the client is real and measured.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

from fsspec.asyn import AsyncFileSystem
from fsspec.implementations.memory import MemoryFileSystem

import kvstore
from kvstore.blob import Blob, RetryPolicy, WrapperBlobStore
from kvstore.blob.base import DatedPage
from kvstore.blob.memory import PAGE as MEMORY_PAGE
from kvstore.blob.memory import MemoryBlobStore
from kvstore.cache import Cache, NoCache
from kvstore.stats import Stats
from kvstore.testing.clock import ClockedBlobStore

try:  # a private helper of the memory backend: one object space per benchmark store
    from kvstore.blob.memory import _Space as _MemorySpace
except ImportError:  # pragma: no cover - the backend changed; share the global space
    _MemorySpace = None  # type: ignore[assignment,misc]


class Space:
    """A private object space for :class:`LatencyBlobStore` (several stores may share it)."""

    def __init__(self) -> None:
        self.inner: Any = _MemorySpace() if _MemorySpace is not None else None

    def sizes(self, prefix: str = "") -> dict[str, int]:
        """Object path -> stored size in bytes, for the objects below ``prefix``."""
        if self.inner is None:
            raise RuntimeError("kvstore.blob.memory._Space is gone: cannot size objects")
        with self.inner.lock:
            return {
                p: len(d) for p, (d, _tag) in self.inner.objects.items() if p.startswith(prefix)
            }


class LatencyBlobStore(WrapperBlobStore):
    """kvstore's memory backend with ``latency`` seconds added to every request: each
    primitive, and each page of a listing (one LIST request per page of up to 1000 names).
    Requests are counted once, in the shared ``stats``, as on any backend."""

    def __init__(
        self,
        root: str,
        latency: float,
        *,
        stats: Stats,
        space: Space | None = None,
        clock: Callable[[], int] | None = None,
    ):
        memory = MemoryBlobStore(root, stats=stats, retry=RetryPolicy(attempts=1))
        self.space = space or Space()
        if self.space.inner is not None:
            memory._space = self.space.inner
        # With a test clock, the store's own clock (what dates chunks for compaction) is it.
        super().__init__(memory if clock is None else ClockedBlobStore(memory, clock))
        self.latency = latency
        self.counts: Counter[str] = Counter()

    async def _wait(self, kind: str) -> None:
        self.counts[kind] += 1
        if self.latency > 0:
            await asyncio.sleep(self.latency)

    async def _get(self, path: str, head: int | None = None) -> Blob | None:
        await self._wait("get" if head is None else "get_head")
        return await self.inner._get(path, head)

    async def _put(self, path: str, data: bytes) -> str:
        await self._wait("put")
        return await self.inner._put(path, data)

    async def _put_if_absent(self, path: str, data: bytes) -> str | None:
        await self._wait("put_if_absent")
        return await self.inner._put_if_absent(path, data)

    async def _put_if_match(self, path: str, data: bytes, tag: str) -> str | None:
        await self._wait("put_if_match")
        return await self.inner._put_if_match(path, data, tag)

    async def _delete(self, path: str) -> None:
        await self._wait("delete")
        await self.inner._delete(path)

    async def _delete_if_match(self, path: str, tag: str) -> bool:
        await self._wait("delete_if_match")
        return await self.inner._delete_if_match(path, tag)

    async def _list(self, prefix: str) -> AsyncIterator[list[str]]:
        # One LIST request per page, counted in ``stats`` by the memory store itself. It
        # asks once, then again after each full page (never yielding an empty one), so
        # the waits go exactly there.
        await self._wait("list")
        async for page in self.inner._list(prefix):
            yield page
            if len(page) >= MEMORY_PAGE:
                await self._wait("list")

    async def _list_dated(self, prefix: str) -> AsyncIterator[DatedPage]:
        await self._wait("list")  # as _list: the same requests, with dates
        async for page in self.inner._list_dated(prefix):
            yield page
            if len(page[0]) >= MEMORY_PAGE:
                await self._wait("list")


def latency_store(
    root: str,
    latency: float,
    cache: Cache | None = None,
    *,
    space: Space | None = None,
    **kwargs: Any,
) -> kvstore.AsyncKVStore:
    """An AsyncKVStore on a :class:`LatencyBlobStore`, assembled as ``kvstore.open_async``
    does (blob + cache + shared Stats). ``kwargs`` go to AsyncKVStore (clock, concurrency);
    a ``clock`` is the object store's clock too."""
    stats = Stats()
    blob = LatencyBlobStore(root, latency, stats=stats, space=space, clock=kwargs.get("clock"))
    return kvstore.AsyncKVStore(blob, cache or NoCache(), stats=stats, **kwargs)


def blob_of(store: kvstore.AsyncKVStore | kvstore.KVStore) -> LatencyBlobStore:
    core = store.aio if isinstance(store, kvstore.KVStore) else store
    blob = core._ctx.blob
    assert isinstance(blob, LatencyBlobStore)
    return blob


class LatencyMemoryFS(AsyncFileSystem):
    """fsspec's MemoryFileSystem (a private, independent store) behind an async layer that
    sleeps ``latency`` seconds per request. Sync methods (``cat_file``, ``cat``, an FSMap)
    run on fsspec's IO loop thread, as with s3fs or gcsfs."""

    protocol = "latencymemory"
    cachable = False

    def __init__(self, latency: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.latency = latency
        self.counts: Counter[str] = Counter()
        self.mem = MemoryFileSystem(global_store=False, skip_instance_cache=True)

    async def _wait(self, kind: str) -> None:
        self.counts[kind] += 1
        if self.latency > 0:
            await asyncio.sleep(self.latency)

    @classmethod
    def _strip_protocol(cls, path: Any) -> Any:
        if isinstance(path, list):
            return [cls._strip_protocol(p) for p in path]
        path = str(path)
        if path.startswith(cls.protocol + "://"):
            path = path[len(cls.protocol) + 3 :]
        return path.rstrip("/") or "/"

    def load(self, path: str, data: bytes) -> None:
        """Put an object without a request (set-up of baselines, not measured)."""
        self.mem.pipe_file(path, data)

    async def _cat_file(
        self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any
    ) -> bytes:
        await self._wait("get")
        return bytes(self.mem.cat_file(path, start=start, end=end))

    async def _pipe_file(self, path: str, value: bytes, mode: str = "overwrite", **kw: Any) -> None:
        await self._wait("put")
        self.mem.pipe_file(path, value, mode=mode)

    async def _info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        await self._wait("head")
        return dict(self.mem.info(path))

    async def _ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
        await self._wait("list")
        try:
            return list(self.mem.ls(path, detail=detail))
        except FileNotFoundError:
            return []

    async def _rm_file(self, path: str, **kwargs: Any) -> None:
        await self._wait("delete")
        self.mem.rm_file(path)

    async def _rm(self, path: Any, recursive: bool = False, **kwargs: Any) -> None:
        for p in path if isinstance(path, list) else [path]:
            await self._rm_file(p)
