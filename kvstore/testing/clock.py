"""A clock the test moves: kvstore reads time through ``clock()`` (ms since the epoch), and
the object store's clock (dated listings) can be made to follow it."""

from __future__ import annotations

import time
import weakref
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from ..blob.base import BlobStore, DatedPage
from ..blob.wrapper import WrapperBlobStore


class FakeClock:
    """Milliseconds since the epoch, moved only by the test. Starts at a whole second.

    Pass it as ``clock=`` to :class:`kvstore.AsyncKVStore`; expiry and log chunk ages are
    then decided by ``advance`` (or by setting ``now``), never by the wall clock.
    """

    def __init__(self, now: int | None = None) -> None:
        self.now = (time.time_ns() // 10**9) * 1000 if now is None else now

    def __call__(self) -> int:
        return self.now

    def advance(self, ms: int) -> None:
        """Move the clock forward by ``ms`` milliseconds."""
        self.now += ms


class ClockedBlobStore(WrapperBlobStore):
    """A blob store whose *server* clock is the test's: its dated listings (what decides
    when a log chunk is old enough to remove) tell the time of ``clock``, so a test that
    moves a :class:`FakeClock` moves the object store's time too.

    Every object written through a ClockedBlobStore sharing ``clock`` is dated by it when
    the write returns; an object first seen in a listing (written some other way) is dated
    then - younger, never older, than it is. The listing's "now" is ``clock()``. Requests
    are the inner store's, counted as without the wrapper (a dated listing is one LIST per
    page of the inner store)."""

    dated_listing = True

    def __init__(self, inner: BlobStore, clock: Callable[[], int]) -> None:
        super().__init__(inner)
        self.clock = clock
        self._dates = _dates_of(clock)

    def _key(self, path: str) -> tuple[str, str]:
        return (self.inner.identity, path)

    def _date(self, path: str, tag: object) -> None:
        if tag is not None:
            self._dates[self._key(path)] = self.clock()

    async def _put(self, path: str, data: bytes) -> str:
        tag = await self.inner._put(path, data)
        self._date(path, tag)
        return tag

    async def _put_if_absent(self, path: str, data: bytes) -> str | None:
        tag = await self.inner._put_if_absent(path, data)
        self._date(path, tag)
        return tag

    async def _put_if_match(self, path: str, data: bytes, tag: str) -> str | None:
        new = await self.inner._put_if_match(path, data, tag)
        self._date(path, new)
        return new

    async def _delete(self, path: str) -> None:
        await self.inner._delete(path)
        self._dates.pop(self._key(path), None)

    async def _delete_many(self, paths: Sequence[str]) -> None:
        await self.inner._delete_many(paths)
        for path in paths:
            self._dates.pop(self._key(path), None)

    async def _delete_if_match(self, path: str, tag: str) -> bool:
        deleted = await self.inner._delete_if_match(path, tag)
        if deleted:
            self._dates.pop(self._key(path), None)
        return deleted

    async def _list_dated(self, prefix: str) -> AsyncIterator[DatedPage]:
        async for page in self.inner._list(prefix):
            now = self.clock()
            yield [(path, self._dates.setdefault(self._key(path), now)) for path in page], now


_DATES: weakref.WeakKeyDictionary[Any, dict[tuple[str, str], int]] = weakref.WeakKeyDictionary()


def _dates_of(clock: Callable[[], int]) -> dict[tuple[str, str], int]:
    """When each object was written, by ``clock``: one table for every wrapper on it."""
    try:
        return _DATES.setdefault(clock, {})
    except TypeError:  # a clock that cannot be weakly referenced: this wrapper's own table
        return {}
