"""KVStore: the blocking face of AsyncKVStore (and Artifacts, of AsyncArtifacts).

Each method is *derived* from its async twin by :func:`_blocking` - same signature, same
docstring, same behaviour - and runs the coroutine on the process's portal loop. There is
no second implementation to keep in step.

The cached reads (``get``, ``mget``, ``ttl``, ``pttl``) are the one exception to the
hop: a hop to the loop thread and back costs about as much as a whole Redis round trip, so
they first ask the cache from the caller's thread (:meth:`kvstore.values.Values.load_now`) and
take the loop only when some key is not a plain hit. Both faces still share every step -
the keys a read needs (``Values.plan``), the load, and the result (``_value_of`` ...): the
async method is ``finish(await load(plan))``, the blocking one ``finish(load_now(plan) or
run(load(plan, entries load_now found)))``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine, Iterable, Iterator
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar, cast

from .api import AsyncKVStore, Result
from .artifacts import ArtifactFile, AsyncArtifacts
from .codec import Live
from .convert import flatten
from .portal import Portal, portal
from .records import AsyncRecords
from .sessions import AsyncSessions

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
    name = method.__name__

    def call(self: Face, *args: P.args, **kwargs: P.kwargs) -> R:
        # By name, not ``method`` itself: a core may be a subclass with its own (the
        # HTTP service's client, kvstore.remote).
        run: Callable[P, Coroutine[Any, Any, R]] = getattr(self._core, name)
        return self._portal.run(run(*args, **kwargs))

    return cast(Callable[Concatenate[Face, P], R], functools.wraps(method)(call))


F = TypeVar("F", bound=Callable[..., Any])


def _doc_of(twin: Callable[..., Any]) -> Callable[[F], F]:
    """Give a hand-derived blocking method its async twin's docstring."""

    def give(method: F) -> F:
        method.__doc__ = twin.__doc__
        return method

    return give


class Artifacts(_Face[AsyncArtifacts]):
    """Versioned artifacts, blocking: ``store.artifacts``. See :mod:`kvstore.artifacts`."""

    save = _blocking(AsyncArtifacts.save)
    load = _blocking(AsyncArtifacts.load)
    versions = _blocking(AsyncArtifacts.versions)
    info = _blocking(AsyncArtifacts.info)
    versions_info = _blocking(AsyncArtifacts.versions_info)
    list = _blocking(AsyncArtifacts.list)
    delete = _blocking(AsyncArtifacts.delete)
    url = _blocking(AsyncArtifacts.url)

    @_doc_of(AsyncArtifacts.open)
    def open(self, name: str, version: int | None = None) -> ArtifactFile | None:
        reader = self._portal.run(self._core.open(name, version))
        return None if reader is None else ArtifactFile(reader, self._portal.run)

    def __repr__(self) -> str:
        return repr(self._core).replace("AsyncArtifacts", "Artifacts", 1)


class Sessions(_Face[AsyncSessions]):
    """Agent sessions, blocking: ``store.sessions``. See :mod:`kvstore.sessions`."""

    artifact_name = staticmethod(AsyncSessions.artifact_name)
    create = _blocking(AsyncSessions.create)
    get = _blocking(AsyncSessions.get)
    scope_state = _blocking(AsyncSessions.scope_state)
    list = _blocking(AsyncSessions.list)
    append_event = _blocking(AsyncSessions.append_event)
    update_state = _blocking(AsyncSessions.update_state)
    delete = _blocking(AsyncSessions.delete)
    delete_user = _blocking(AsyncSessions.delete_user)
    delete_app = _blocking(AsyncSessions.delete_app)

    def __repr__(self) -> str:
        return repr(self._core).replace("AsyncSessions", "Sessions", 1)


class Records(_Face[AsyncRecords]):
    """A collection of records, blocking: ``store.records(name)``. See :mod:`kvstore.records`."""

    append = _blocking(AsyncRecords.append)
    extend = _blocking(AsyncRecords.extend)
    query = _blocking(AsyncRecords.query)
    partitions = _blocking(AsyncRecords.partitions)
    drop_before = _blocking(AsyncRecords.drop_before)
    purge = _blocking(AsyncRecords.purge)

    @property
    def name(self) -> str:
        return self._core.name

    @property
    def span(self) -> str:
        return self._core.span

    def __repr__(self) -> str:
        return repr(self._core).replace("AsyncRecords", "Records", 1)


class KVStore(_Face[AsyncKVStore]):
    """The value API, blocking. Use ``kvstore.open``; ``with`` closes it.

    Thread-safe: any number of threads may share one KVStore.
    """

    def __init__(self, core: AsyncKVStore) -> None:
        super().__init__(core)
        self.artifacts = Artifacts(core.artifacts)
        """Versioned artifacts: ``save``, ``load``, ``open``, ``info``, ``versions``,
        ``versions_info``, ``list``, ``delete``, ``url``."""
        self.sessions = Sessions(core.sessions)
        """Agent sessions: ``create``, ``get``, ``list``, ``append_event``, ``update_state``,
        ``delete`` (and ``delete_user``, ``delete_app``)."""

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

    @_doc_of(AsyncKVStore.namespace)
    def namespace(self, name: str) -> KVStore:
        return type(self)(self._core.namespace(name))

    @_doc_of(AsyncKVStore.records)
    def records(self, name: str, partition: str = "day") -> Records:
        return Records(self._core.records(name, partition))

    @_doc_of(AsyncKVStore.stats)
    def stats(self) -> dict[str, Any]:
        return self._core.stats()

    @_doc_of(AsyncKVStore.scan_iter)
    def scan_iter(self, prefix: str = "") -> Iterator[str]:
        for page in self.key_pages(prefix):
            yield from page

    @_doc_of(AsyncKVStore.key_pages)
    def key_pages(
        self,
        prefix: str = "",
        *,
        logs: bool = True,
        after: str | None = None,
        page_size: int | None = None,
    ) -> Iterator[list[str]]:
        pages = self._core.key_pages(prefix, logs=logs, after=after, page_size=page_size)
        return self._portal.iterate(pages)

    @_doc_of(AsyncKVStore.check_keys)
    def check_keys(self, keys: Iterable[str]) -> None:
        self._core.check_keys(keys)

    @property
    def concurrency(self) -> int:
        return self._core.concurrency

    def __enter__(self) -> KVStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return repr(self._core).replace("AsyncKVStore", "KVStore", 1)

    def _read(self, keys: Iterable[Any], finish: Callable[[list[Live | None]], R]) -> R:
        """A cached read: from the cache in this thread if every key hits, else on the loop."""
        model = self._core._values
        plan = model.plan(keys)
        values, known = model.load_now(plan)
        if values is None:
            values = self._portal.run(model.load(plan, known))
        return finish(values)

    @_doc_of(AsyncKVStore.get)
    def get(self, key: str) -> Result | None:
        return self._read([key], self._core._value_of)

    @_doc_of(AsyncKVStore.mget)
    def mget(self, keys: Iterable[str], *args: str) -> list[Result | None]:
        return self._read(flatten(keys, args), self._core._values_of)

    @_doc_of(AsyncKVStore.pttl)
    def pttl(self, key: str) -> int:
        return self._read([key], self._core._values.pttl_of)

    @_doc_of(AsyncKVStore.ttl)
    def ttl(self, key: str) -> int:
        return self._read([key], self._core._values.ttl_of)

    close = _blocking(AsyncKVStore.close)
    set = _blocking(AsyncKVStore.set)
    mset = _blocking(AsyncKVStore.mset)
    delete = _blocking(AsyncKVStore.delete)
    exists = _blocking(AsyncKVStore.exists)
    expire = _blocking(AsyncKVStore.expire)
    pexpire = _blocking(AsyncKVStore.pexpire)
    persist = _blocking(AsyncKVStore.persist)
    keys = _blocking(AsyncKVStore.keys)
    purge_expired = _blocking(AsyncKVStore.purge_expired)
    purge = _blocking(AsyncKVStore.purge)
    discard = _blocking(AsyncKVStore.discard)
    delete_prefix = _blocking(AsyncKVStore.delete_prefix)
    health = _blocking(AsyncKVStore.health)
    append = _blocking(AsyncKVStore.append)
    range = _blocking(AsyncKVStore.range)
    range_at = _blocking(AsyncKVStore.range_at)
    log_keys = _blocking(AsyncKVStore.log_keys)
    length = _blocking(AsyncKVStore.length)
    trim = _blocking(AsyncKVStore.trim)
    compact = _blocking(AsyncKVStore.compact)
    get_versioned = _blocking(AsyncKVStore.get_versioned)
    extend = _blocking(AsyncKVStore.extend)
    range_from = _blocking(AsyncKVStore.range_from)
    next_seq = _blocking(AsyncKVStore.next_seq)
    settle = _blocking(AsyncKVStore.settle)
    fsck = _blocking(AsyncKVStore.fsck)
    usage = _blocking(AsyncKVStore.usage)
    set_retention = _blocking(AsyncKVStore.set_retention)
    retention = _blocking(AsyncKVStore.retention)
    remove_retention = _blocking(AsyncKVStore.remove_retention)
    maintain = _blocking(AsyncKVStore.maintain)
    rekey = _blocking(AsyncKVStore.rekey)
    namespaces = _blocking(AsyncKVStore.namespaces)
    key_info = _blocking(AsyncKVStore.key_info)
