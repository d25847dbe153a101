"""Faults on demand, for a user's resilience tests: an object store that fails, slows down
or loses answers while the test says so.

::

    faults = FaultyBlobStore.open("s3://bucket/app")      # inside mock_s3(), say
    with kvstore.open(faults, cache="local") as store:
        faults.outage()                                    # every request fails
        ...                                                # what does the app do?
        faults.restore()
        faults.fail("put", times=2)                        # the next two PUTs fail
        faults.slow("get", seconds=0.5)                    # every GET takes 0.5 s more
        faults.drop_answers("put_if_absent", times=1)      # applied, but the answer lost

A :class:`~kvstore.blob.WrapperBlobStore`, so requests are counted once and a fault is
retried (when transient) and reported exactly as the backend's own would be: by kvstore's
``retry`` policy - which on S3 and GCS is a single attempt, their client libraries retrying
below this wrapper. Operations: ``get``, ``put``, ``put_if_absent``, ``put_if_match``,
``delete``, ``delete_many`` (each request of a bulk delete: one per batch of the inner
store's ``delete_batch`` paths), ``delete_if_match``, ``list`` (listings from a position
too), or ``"*"`` for all. The server's precondition probe
(:mod:`kvstore.blob.preconditions`) passes through untouched: faults are for the test's
own operations. A Redis outage is the server's: ``redis_server()`` gives ``pause()``,
``resume()``, ``kill()`` and ``restart()``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from ..blob import open_blob_store
from ..blob.base import Blob, BlobStore, DatedPage
from ..blob.preconditions import PROBE_DIR
from ..blob.wrapper import WrapperBlobStore
from ..errors import ConfigurationError
from ..stats import Stats

T = TypeVar("T")

OPERATIONS = frozenset(
    {
        "get",
        "put",
        "put_if_absent",
        "put_if_match",
        "delete",
        "delete_many",
        "delete_if_match",
        "list",
        "*",
    }
)


class InjectedFault(ConnectionError):
    """The default injected failure: a dropped connection (transient: retried by the
    store's policy, like a real one)."""


@dataclass
class _Rule:
    kind: str  # "fail", "slow" or "drop"
    times: int | None  # None: until cleared
    error: BaseException | None = None
    seconds: float = 0.0


class FaultyBlobStore(WrapperBlobStore):
    """A blob store in front of another that fails, slows down or drops answers on demand
    (see the module docstring). Thread-safe: the test may change faults while the store
    is used from the blocking face's loop thread."""

    def __init__(self, inner: BlobStore) -> None:
        super().__init__(inner)
        self._rules: dict[str, list[_Rule]] = {}
        self._lock = threading.Lock()
        self.injected = 0
        """Faults injected so far (failures, drops and delays)."""

    @classmethod
    def open(cls, url: str, storage_options: dict[str, Any] | None = None) -> FaultyBlobStore:
        """A FaultyBlobStore in front of the blob store of ``url``; pass it to
        ``kvstore.open()`` as its URL."""
        return cls(open_blob_store(url, storage_options, stats=Stats()))

    # -- what the test says -------------------------------------------------------------

    def fail(
        self, operation: str = "*", *, times: int | None = 1, error: Exception | None = None
    ) -> None:
        """The next ``times`` requests of ``operation`` (None: all, until cleared) raise
        ``error`` (default :class:`InjectedFault`, a transient connection error) without
        reaching the store."""
        if error is not None and not isinstance(error, Exception):
            raise ConfigurationError(
                f"error must be an Exception instance, not {error!r} (a BaseException such as "
                "SystemExit would stop the store's loop, not model a failing store)"
            )
        self._add(operation, _Rule("fail", times, error or InjectedFault("injected fault")))

    def slow(self, operation: str = "*", *, seconds: float, times: int | None = None) -> None:
        """Requests of ``operation`` take ``seconds`` longer (before they are sent)."""
        if not isinstance(seconds, (int, float)) or not 0 <= seconds < float("inf"):
            raise ConfigurationError(f"seconds must be a finite number >= 0, not {seconds!r}")
        self._add(operation, _Rule("slow", times, seconds=seconds))

    def drop_answers(self, operation: str = "*", *, times: int | None = 1) -> None:
        """The next ``times`` requests of ``operation`` are applied by the store, and then
        their answer is lost: the caller gets :class:`InjectedFault` (a write it made may
        have landed - what kvstore must recognise when it, or a client library, retries)."""
        self._add(operation, _Rule("drop", times))

    def outage(self) -> None:
        """Every request fails (:class:`InjectedFault`) until :meth:`restore`."""
        self.fail("*", times=None)

    def restore(self) -> None:
        """No more faults."""
        with self._lock:
            self._rules.clear()

    clear = restore

    def _add(self, operation: str, rule: _Rule) -> None:
        if operation not in OPERATIONS:
            raise ConfigurationError(
                f"unknown operation {operation!r}; one of {sorted(OPERATIONS)}"
            )
        times = rule.times
        if times is not None and (
            isinstance(times, bool) or not isinstance(times, int) or times < 1
        ):
            raise ConfigurationError(f"times must be an int >= 1 or None, not {rule.times!r}")
        with self._lock:
            self._rules.setdefault(operation, []).append(rule)

    def _take(self, operation: str) -> list[_Rule]:
        """The rules that apply to one request now (each counted down once)."""
        taken: list[_Rule] = []
        with self._lock:
            for key in (operation, "*"):
                rules = self._rules.get(key, [])
                for rule in list(rules):
                    taken.append(rule)
                    if rule.times is not None:
                        rule.times -= 1
                        if rule.times == 0:
                            rules.remove(rule)
        return taken

    async def _through(
        self, operation: str, request: Callable[[], Awaitable[T]], path: str = ""
    ) -> T:
        if path.startswith(PROBE_DIR):  # the server's precondition probe: not the test's
            return await request()
        rules = self._take(operation)
        for rule in rules:
            if rule.kind == "slow":
                self.injected += 1
                await asyncio.sleep(rule.seconds)
        for rule in rules:
            if rule.kind == "fail":
                self.injected += 1
                assert rule.error is not None
                raise rule.error
        result = await request()
        if any(rule.kind == "drop" for rule in rules):
            self.injected += 1
            raise InjectedFault(f"injected: the answer to {operation} was lost")
        return result

    # -- the primitives -----------------------------------------------------------------

    async def _get(self, path: str, head: int | None = None) -> Blob | None:
        return await self._through("get", lambda: self.inner._get(path, head), path)

    async def _get_range(self, path: str, start: int, size: int) -> Blob | None:
        return await self._through("get", lambda: self.inner._get_range(path, start, size), path)

    async def _put(self, path: str, data: bytes) -> str:
        return await self._through("put", lambda: self.inner._put(path, data), path)

    async def _put_if_absent(self, path: str, data: bytes) -> str | None:
        return await self._through(
            "put_if_absent", lambda: self.inner._put_if_absent(path, data), path
        )

    async def _put_if_match(self, path: str, data: bytes, tag: str) -> str | None:
        return await self._through(
            "put_if_match", lambda: self.inner._put_if_match(path, data, tag), path
        )

    async def _delete(self, path: str) -> None:
        await self._through("delete", lambda: self.inner._delete(path), path)

    async def _delete_many(self, paths: Sequence[str]) -> None:
        await self._through(
            "delete_many", lambda: self.inner._delete_many(paths), paths[0] if paths else ""
        )

    async def _delete_if_match(self, path: str, tag: str) -> bool:
        return await self._through(
            "delete_if_match", lambda: self.inner._delete_if_match(path, tag), path
        )

    async def _list(self, prefix: str) -> AsyncIterator[list[str]]:
        await self._list_faults(prefix)
        async for page in self.inner._list(prefix):
            yield page

    async def _list_after(
        self, prefix: str, start_after: str | None, page_size: int | None
    ) -> AsyncIterator[list[str]]:
        await self._list_faults(prefix)
        async for page in self.inner._list_after(prefix, start_after, page_size):
            yield page

    async def _list_dated(self, prefix: str) -> AsyncIterator[DatedPage]:
        await self._list_faults(prefix)
        async for page in self.inner._list_dated(prefix):
            yield page

    async def _list_sized(self, prefix: str) -> AsyncIterator[list[tuple[str, int]]]:
        await self._list_faults(prefix)
        async for page in self.inner._list_sized(prefix):
            yield page

    async def _list_faults(self, prefix: str) -> None:
        """A listing's faults, before its first page: through ``_call`` (the inner store
        runs it for the pages), so they are retried and reported as a backend's would be;
        counted as ``faults.list``, not as requests."""
        with self._lock:
            pending = bool(self._rules.get("list") or self._rules.get("*"))
        if pending:
            await self._call(
                "list", prefix, lambda: self._through("list", _nothing), counter="faults.list"
            )


async def _nothing() -> None:
    return None
