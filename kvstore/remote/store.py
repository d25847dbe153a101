"""AsyncRemoteStore: the library's API over the HTTP service (``kvstore+http://``).

An :class:`~kvstore.api.AsyncKVStore` whose every method is the same call made by the
service on its store: each is derived from the library's method (:func:`.calls.remote`),
sent as one ``POST /v1/call`` (:mod:`.wire`), and answered with the library's own result
or error. So a program moves between direct access and the service by its URL alone; the
guarantees are the library's, kept by the service's store (atomic, durable on return,
cached by the service's cache) - plus the network between, which adds:

* a request per call (a connection is kept and reused); ``mget`` is still one request;
* a write whose answer is lost (the connection broke) raises ``BackendError``: it may or
  may not have happened, as when an object store's answer is lost. Calls are never sent
  twice by this client;
* the service decides who may do what: its token's namespace and access (a read-only
  token's writes raise :class:`~kvstore.errors.ForbiddenError`).

What stays on this side: ``stats()`` counts this client's requests to the service (the
service's own counters are ``GET /v1/stats``); ``check_keys`` checks what a key can be
anywhere (the service may still refuse a key too long for its backend, on write);
``cache``: none here (the service's cache serves; no client cache could stay coherent
with other clients' writes).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import Any

from ..api import AsyncKVStore, Result, Versioned, check_key_pages
from ..errors import ConfigurationError, KVStoreError
from ..keys import encode_name, key_str
from ..operations import Progress
from .artifacts import RemoteArtifacts
from .calls import remote
from .records import RemoteRecords
from .sessions import RemoteSessions
from .transport import Service

DECODED = frozenset({"get", "mget", "get_versioned", "range", "range_at", "range_from"})
"""The calls whose results hold values (bytes, or str with ``decode_responses``)."""

HEALTH_MARGIN = 1.0
"""Seconds ``health`` waits for the service beyond the ``timeout`` the service is given."""

PAGE = 1000
"""Keys per page of :meth:`AsyncRemoteStore.key_pages` at most (a LIST's page, as the
library's)."""


class AsyncRemoteStore(AsyncKVStore):
    """The key-value API over the HTTP service. Use ``kvstore.open_async("kvstore+http://
    host:port/namespace", token=...)``; ``async with`` closes it."""

    _prefix = ""
    _leading: tuple[Any, ...] = ()

    def __init__(
        self,
        service: Service,
        *,
        decode_responses: bool = False,
        concurrency: int = 32,
        _namespace: tuple[str, ...] = (),
        _owner: bool = True,
    ) -> None:
        # Not AsyncKVStore.__init__: there is no store here, only the service in front of one.
        self._service = service
        self._owner = _owner
        self._concurrency = concurrency
        self.decode_responses = decode_responses
        self.namespace_path = _namespace
        self.artifacts = RemoteArtifacts(service, _namespace)
        self.sessions = RemoteSessions(service, _namespace)

    # -- construction, lifetime ------------------------------------------------------------

    @property
    def url(self) -> str:
        """The service's URL, as ``open`` takes it (``kvstore+http://host:port``)."""
        return "kvstore+" + self._service.base

    def namespace(self, name: str) -> AsyncRemoteStore:
        """A view of the service's store confined to ``name`` (inside this view's), as
        :meth:`AsyncKVStore.namespace`; sent with each call (no request here)."""
        return AsyncRemoteStore(
            self._service,
            decode_responses=self.decode_responses,
            concurrency=self._concurrency,
            _namespace=(*self.namespace_path, namespace_name(name)),
            _owner=False,
        )

    def records(self, name: str, partition: str = "day") -> RemoteRecords:
        """The collection ``name`` of the service's store (:mod:`kvstore.records`); its
        calls go to the service. No request here."""
        return RemoteRecords(
            self._service, self.namespace_path, key_str(name, "records"), partition
        )

    async def close(self) -> None:
        """Close this event loop's connections to the service (a namespace view leaves
        its parent's open)."""
        if self._owner:
            await self._service.close()

    def stats(self) -> dict[str, Any]:
        """This client's counters: requests to the service (``requests``, and by call:
        ``requests.get`` ...), ``bytes_written``/``bytes_read`` (bodies), ``errors``."""
        counts: dict[str, Any] = dict(self._service.stats.snapshot())
        counts["cache"] = {"kind": "service"}
        return counts

    async def health(self, timeout: float = 5.0) -> dict[str, Any]:
        """The service's view of its store and cache (``AsyncKVStore.health``), or -
        service unreachable, token refused - ``ok: False`` and why. Never raises."""
        # this request waits the service's own wait, and the trip
        wait = timeout + HEALTH_MARGIN if isinstance(timeout, (int, float)) else None
        try:
            found: dict[str, Any] = await self._service.call(
                "health", self.namespace_path, (timeout,), {}, timeout=wait
            )
            return found
        except KVStoreError as exc:
            problem = {"ok": False, "error": str(exc)}
            return {"ok": False, "store": problem, "cache": {"kind": "service", **problem}}

    def __repr__(self) -> str:
        ns = f" namespace={'/'.join(self.namespace_path)!r}" if self.namespace_path else ""
        return f"<{type(self).__name__} {self.url}{ns}>"

    def _shape(self, op: str, result: Any) -> Any:
        if op not in DECODED or not self.decode_responses:
            return result
        return _decoded(result, self._result)

    # -- the library's calls, made by the service ------------------------------------------

    get = remote(AsyncKVStore.get)
    mget = remote(AsyncKVStore.mget)
    set = remote(AsyncKVStore.set)
    get_versioned = remote(AsyncKVStore.get_versioned)
    mset = remote(AsyncKVStore.mset)
    delete = remote(AsyncKVStore.delete)
    discard = remote(AsyncKVStore.discard)
    delete_prefix = remote(AsyncKVStore.delete_prefix)
    exists = remote(AsyncKVStore.exists)
    pexpire = remote(AsyncKVStore.pexpire)
    expire = remote(AsyncKVStore.expire)
    persist = remote(AsyncKVStore.persist)
    key_info = remote(AsyncKVStore.key_info)
    pttl = remote(AsyncKVStore.pttl)
    ttl = remote(AsyncKVStore.ttl)
    append = remote(AsyncKVStore.append)
    extend = remote(AsyncKVStore.extend)
    range_from = remote(AsyncKVStore.range_from)
    next_seq = remote(AsyncKVStore.next_seq)
    settle = remote(AsyncKVStore.settle)
    range = remote(AsyncKVStore.range)
    range_at = remote(AsyncKVStore.range_at)
    log_keys = remote(AsyncKVStore.log_keys)
    length = remote(AsyncKVStore.length)
    trim = remote(AsyncKVStore.trim)
    compact = remote(AsyncKVStore.compact)
    keys = remote(AsyncKVStore.keys)
    namespaces = remote(AsyncKVStore.namespaces)
    fsck = remote(AsyncKVStore.fsck)
    usage = remote(AsyncKVStore.usage)
    set_retention = remote(AsyncKVStore.set_retention)
    retention = remote(AsyncKVStore.retention)
    remove_retention = remote(AsyncKVStore.remove_retention)

    async def maintain(
        self, progress: Progress | None = None, purge_expired: bool = True
    ) -> dict[str, Any]:
        return await self._reporting("maintain", {"purge_expired": purge_expired}, progress)

    maintain.__doc__ = AsyncKVStore.maintain.__doc__

    async def rekey(
        self, seal_plaintext: bool = False, progress: Progress | None = None
    ) -> dict[str, int]:
        return await self._reporting("rekey", {"seal_plaintext": seal_plaintext}, progress)

    rekey.__doc__ = AsyncKVStore.rekey.__doc__

    async def _reporting(
        self, op: str, kwargs: dict[str, Any], progress: Progress | None
    ) -> dict[str, Any]:
        """A long call whose ``progress`` cannot be called from the service: it gets the
        service's reports, in order, once the call is done (as the session cascades')."""
        if progress is not None and not callable(progress):
            raise ConfigurationError(f"progress must be callable, not {progress!r}")
        found, reports = await self._service.call(
            op, self.namespace_path, (), {**kwargs, "progress": progress is not None}
        )
        if progress is not None:
            for what, done, total in reports:
                progress(what, done, total)
        return dict(found)

    purge = remote(AsyncKVStore.purge)
    purge_expired = remote(AsyncKVStore.purge_expired)

    # -- listing, checks -------------------------------------------------------------------

    async def key_pages(
        self,
        prefix: str = "",
        *,
        logs: bool = True,
        after: str | None = None,
        page_size: int | None = None,
    ) -> AsyncIterator[list[str]]:
        """As :meth:`AsyncKVStore.key_pages`; a request per page (the service lists as
        many pages of its store as a page here needs), then one for the logs."""
        check_key_pages(logs, after, page_size)
        if prefix not in ("", b""):
            key_str(prefix, "prefix")
        cursor = after
        while True:
            page, cursor = await self._service.call(
                "key_page", self.namespace_path, (prefix, cursor, min(page_size or PAGE, PAGE)), {}
            )
            if page:
                yield page
            if cursor is None:
                break
        if logs:
            live = await self.log_keys(prefix)
            if live:
                yield live

    def check_keys(self, keys: Iterable[str]) -> None:
        """Raise :class:`~kvstore.errors.InvalidKeyError` for the first of ``keys`` no store
        can hold (not valid Unicode, too long) - no request. A key near the length limit
        may still be refused by the service's backend when it is written."""
        for key in keys:
            encode_name(key_str(key))

    @property
    def concurrency(self) -> int:
        """Requests one call of this client keeps in flight at most (``open(concurrency=)``)."""
        return self._concurrency


def namespace_name(name: object) -> str:
    """A namespace's name, checked as the library checks it."""
    return key_str(name, "namespace")


def _decoded(result: Any, decode: Any) -> Any:
    """Values in a result as the store returns them (str with ``decode_responses``)."""
    if isinstance(result, bytes):
        return decode(result)
    if isinstance(result, Versioned):
        return Versioned(decode(result.value), result.version)
    if isinstance(result, list):
        return [_decoded(item, decode) for item in result]
    if isinstance(result, tuple):
        return tuple(_decoded(item, decode) for item in result)
    return result


__all__ = ["AsyncRemoteStore", "Result"]
