"""What a process remembers of the objects it swapped, and the words of a change.

:class:`KnownVersions` lets a read-modify-write by the process that made an object's
current version skip its read (an uncontended INCR is one conditional PUT); :data:`DELETE`
and :data:`Change` are what a change function returns (:meth:`kvstore.values.Values.update`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable

from .. import codec
from ..blob.base import Blob


class _Delete:
    """What :meth:`Values.update`'s change returns to remove the key."""


DELETE = _Delete()
Change = codec.Live | _Delete | None


class _Unknown:
    """No version of the object is remembered (see :class:`KnownVersions`)."""


UNKNOWN = _Unknown()
KNOWN_KEPT = 4096
KNOWN_MAX_BYTES = 1 << 20


class KnownVersions:
    """The last version of each recently swapped object this process read or wrote (its
    bytes and tag, or None: known absent), so a read-modify-write by the process that made
    the current version skips the read: an uncontended INCR is one conditional PUT. A
    stale entry costs nothing but a failed compare-and-swap, then a read; a decision to
    write nothing (SET NX on a held key) is only taken on a fresh read, and a swap that met
    a conflict is not remembered (the next one reads first). At most :data:`KNOWN_KEPT`
    objects of at most :data:`KNOWN_MAX_BYTES` each are kept."""

    def __init__(self) -> None:
        self._known: dict[str, Blob | None] = {}
        self._turns: dict[str, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def turn(self, path: str) -> AsyncIterator[None]:
        """This process's read-modify-writes of one object, one at a time: concurrent
        tasks would only make each other's compare-and-swap fail (200 INCRs gathered on one
        key would exhaust the retries). Other processes still race, and lose nothing."""
        lock, users = self._turns.get(path, (None, 0))
        if lock is None:
            lock = asyncio.Lock()
        self._turns[path] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._turns[path]
            if users == 1:
                del self._turns[path]
            else:
                self._turns[path] = (lock, users - 1)

    def get(self, path: str) -> Blob | _Unknown | None:
        return self._known.get(path, UNKNOWN)

    def remember(self, path: str, found: Blob | _Unknown | None) -> None:
        known = self._known
        if isinstance(found, _Unknown) or (found is not None and len(found.data) > KNOWN_MAX_BYTES):
            known.pop(path, None)
            return
        if len(known) >= KNOWN_KEPT and path not in known:
            del known[next(iter(known))]
        known[path] = found

    def forget(self, paths: Iterable[str]) -> None:
        for path in paths:
            self._known.pop(path, None)
