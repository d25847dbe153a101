"""KVStore: the blocking face of AsyncKVStore (and Artifacts, of AsyncArtifacts).

Each method is *derived* from its async twin by :func:`_blocking` - same signature, same
docstring, same behaviour - and runs the coroutine on the process's portal loop. There is
no second implementation to keep in step.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar, cast

from .api import AsyncKVStore
from .artifacts import ArtifactFile, AsyncArtifacts
from .portal import Portal, portal

P = ParamSpec("P")
R = TypeVar("R")
Core = TypeVar("Core")


class _Face(Generic[Core]):
    """A blocking face over an async core object."""

    def __init__(self, core: Core) -> None:
        self._core = core

    @property
    def _portal(self) -> Portal:
        # Looked up on every call, not kept: in a child process after fork() the parent's
        # loop thread does not exist, and the child gets its own (the store reconnects).
        return portal()


Face = TypeVar("Face", bound=_Face[Any])


def _blocking(
    method: Callable[Concatenate[Core, P], Coroutine[Any, Any, R]],
) -> Callable[Concatenate[Face, P], R]:
    def call(self: Face, *args: P.args, **kwargs: P.kwargs) -> R:
        return self._portal.run(method(self._core, *args, **kwargs))

    return cast(Callable[Concatenate[Face, P], R], functools.wraps(method)(call))


class Artifacts(_Face[AsyncArtifacts]):
    """Versioned artifacts, blocking: ``store.artifacts``. See :mod:`kvstore.artifacts`."""

    save = _blocking(AsyncArtifacts.save)
    load = _blocking(AsyncArtifacts.load)
    versions = _blocking(AsyncArtifacts.versions)
    list = _blocking(AsyncArtifacts.list)
    delete = _blocking(AsyncArtifacts.delete)

    def open(self, name: str, version: int | None = None) -> ArtifactFile | None:
        reader = self._portal.run(self._core.open(name, version))
        return None if reader is None else ArtifactFile(reader, self._portal.run)

    open.__doc__ = AsyncArtifacts.open.__doc__

    def __repr__(self) -> str:
        return f"<Artifacts of {self._core._s!r}>"


class KVStore(_Face[AsyncKVStore]):
    """The value API, blocking. Use ``kvstore.open``; ``with`` closes it.

    Thread-safe: any number of threads may share one KVStore.
    """

    def __init__(self, core: AsyncKVStore) -> None:
        super().__init__(core)
        self.artifacts = Artifacts(core.artifacts)
        """Versioned artifacts: ``save``, ``load``, ``open``, ``versions``, ``list``, ``delete``."""

    @property
    def url(self) -> str:
        return self._core.url

    @property
    def decode_responses(self) -> bool:
        return self._core.decode_responses

    @property
    def aio(self) -> AsyncKVStore:
        """The async core behind this face (for code that runs on kvstore's loop)."""
        return self._core

    def namespace(self, name: str) -> KVStore:
        return KVStore(self._core.namespace(name))

    namespace.__doc__ = AsyncKVStore.namespace.__doc__

    def stats(self) -> dict[str, Any]:
        return self._core.stats()

    stats.__doc__ = AsyncKVStore.stats.__doc__

    def scan_iter(self, prefix: str = "") -> Iterator[str]:
        for page in self._portal.iterate(self._core._all_pages(prefix)):
            yield from page

    scan_iter.__doc__ = AsyncKVStore.scan_iter.__doc__

    def __enter__(self) -> KVStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return repr(self._core).replace("AsyncKVStore", "KVStore", 1)

    close = _blocking(AsyncKVStore.close)
    get = _blocking(AsyncKVStore.get)
    mget = _blocking(AsyncKVStore.mget)
    set = _blocking(AsyncKVStore.set)
    mset = _blocking(AsyncKVStore.mset)
    delete = _blocking(AsyncKVStore.delete)
    exists = _blocking(AsyncKVStore.exists)
    expire = _blocking(AsyncKVStore.expire)
    pexpire = _blocking(AsyncKVStore.pexpire)
    persist = _blocking(AsyncKVStore.persist)
    ttl = _blocking(AsyncKVStore.ttl)
    pttl = _blocking(AsyncKVStore.pttl)
    keys = _blocking(AsyncKVStore.keys)
    purge_expired = _blocking(AsyncKVStore.purge_expired)
    health = _blocking(AsyncKVStore.health)
    append = _blocking(AsyncKVStore.append)
    range = _blocking(AsyncKVStore.range)
    length = _blocking(AsyncKVStore.length)
    trim = _blocking(AsyncKVStore.trim)
    compact = _blocking(AsyncKVStore.compact)
