"""A blob store in front of another: the base for latency models and fault injection.

:class:`WrapperBlobStore` delegates every primitive (``_get``, ``_get_range``, ``_put``,
``_put_if_absent``, ``_put_if_match``, ``_delete``, ``_delete_many``, ``_delete_if_match``,
``_list``, ``_list_after``, ``_list_dated``, ``_sign_url``), the capability flags,
``delete_batch``, ``check_path``, ``identity``, ``expect_concurrency`` and ``close`` to an
inner store, and shares its ``url``, ``retry`` policy and ``stats``. A subclass overrides
just the primitive it wants to slow down, hold or break::

    class SlowCreates(WrapperBlobStore):
        async def _put_if_absent(self, path: str, data: bytes) -> str | None:
            await asyncio.sleep(0.05)
            return await self.inner._put_if_absent(path, data)

    store = kvstore.open(SlowCreates(open_blob_store("memory://x", stats=Stats())))

Counting and retries happen once: the wrapper's public methods (inherited from
:class:`BlobStore`) run its own ``_call`` around the *primitives* of the inner store, never
around the inner store's public methods. So a request is counted in the shared ``stats``
once, and an exception a subclass raises from a primitive is retried (if transient) and
translated exactly as a backend's own failure would be.

Listing is the one exception: a backend's ``_list``, ``_list_dated`` and ``_list_sized``
run ``_call`` themselves, once per page (see :meth:`BlobStore.list_pages`), so pages are counted and
retried by the inner store with the same policy and counters. A subclass that overrides
either acts on whole pages after they were fetched; an exception it raises there is not
retried.

A subclass that overrides ``_delete`` but not ``_delete_many`` sees every path of a
``delete_many`` (batches of one, through its ``_delete``); one that overrides ``_list`` but
not ``_list_after`` sees every listing from a position (its ``_list``, filtered); one that
overrides ``_get`` but not ``_get_range`` sees every ranged read (a whole ``_get``,
sliced). So an override of the single-object primitive is never bypassed by the bulk one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from .base import Blob, BlobStore, DatedPage, paged


class WrapperBlobStore(BlobStore):
    """Delegates everything to ``inner``; subclasses override single primitives."""

    def __init__(self, inner: BlobStore) -> None:
        if not isinstance(inner, BlobStore):
            raise TypeError(f"WrapperBlobStore wraps a BlobStore, not {inner!r}")
        self.inner = inner
        # Not BlobStore.__init__: the wrapper owns no state of its own. Sharing the inner
        # store's url, retry policy and counters keeps error messages, cache identities and
        # request counts exactly as they are without the wrapper.
        self.url = inner.url
        self.retry = inner.retry
        self.stats = inner.stats

    def __repr__(self) -> str:
        return f"<{type(self).__name__} around {self.inner!r}>"

    # -- what the store on top reads: all the inner store's -------------------------------
    # (Read-only: a subclass that declares a capability False does so with a class
    # attribute, e.g. ``atomic_create = False``, which takes precedence over these.)

    @property
    def atomic_create(self) -> bool:  # type: ignore[override]
        return self.inner.atomic_create

    @property
    def atomic_conditional_put(self) -> bool:  # type: ignore[override]
        return self.inner.atomic_conditional_put

    @property
    def atomic_conditional_delete(self) -> bool:  # type: ignore[override]
        return self.inner.atomic_conditional_delete

    @property
    def dated_listing(self) -> bool:  # type: ignore[override]
        return self.inner.dated_listing

    @property
    def encrypted(self) -> bool:  # type: ignore[override]
        return self.inner.encrypted

    @property
    def can_sign_urls(self) -> bool:  # type: ignore[override]
        return self.inner.can_sign_urls

    @property
    def unsigned_reason(self) -> str:  # type: ignore[override]
        return self.inner.unsigned_reason

    @property
    def max_url_expiry(self) -> int:  # type: ignore[override]
        return self.inner.max_url_expiry

    @property
    def check_preconditions(self) -> bool:  # type: ignore[override]
        # The probe runs through the primitives of the store that asks first (a wrapper's,
        # if it is in front); its verdict is kept for the server (``server``).
        return self.inner.check_preconditions

    @property
    def connections(self) -> int:  # type: ignore[override]
        return self.inner.connections

    @property
    def delete_batch(self) -> int:  # type: ignore[override]
        return 1 if self._overrides("_delete", "_delete_many") else self.inner.delete_batch

    @property
    def identity(self) -> str:
        return self.inner.identity

    @property
    def server(self) -> str:
        return self.inner.server

    def expect_concurrency(self, requests: int) -> None:
        self.inner.expect_concurrency(requests)

    def check_path(self, path: str) -> None:
        self.inner.check_path(path)

    async def close(self) -> None:
        await self.inner.close()

    # -- the primitives: called by this store's own _call, so counted once -----------------

    async def _get(self, path: str, head: int | None = None) -> Blob | None:
        return await self.inner._get(path, head)

    async def _get_range(self, path: str, start: int, size: int) -> Blob | None:
        if self._overrides("_get", "_get_range"):
            return await BlobStore._get_range(self, path, start, size)  # through this _get
        return await self.inner._get_range(path, start, size)

    async def _put(self, path: str, data: bytes) -> str:
        return await self.inner._put(path, data)

    async def _put_if_absent(self, path: str, data: bytes) -> str | None:
        return await self.inner._put_if_absent(path, data)

    async def _put_if_match(self, path: str, data: bytes, tag: str) -> str | None:
        return await self.inner._put_if_match(path, data, tag)

    async def _delete(self, path: str) -> None:
        await self.inner._delete(path)

    async def _delete_many(self, paths: Sequence[str]) -> None:
        if self._overrides("_delete", "_delete_many"):
            await BlobStore._delete_many(self, paths)  # through this class's _delete
        else:
            await self.inner._delete_many(paths)

    async def _delete_if_match(self, path: str, tag: str) -> bool:
        return await self.inner._delete_if_match(path, tag)

    def _list(self, prefix: str) -> AsyncIterator[list[str]]:
        return self.inner._list(prefix)

    def _list_after(
        self, prefix: str, start_after: str | None, page_size: int | None
    ) -> AsyncIterator[list[str]]:
        if self._overrides("_list", "_list_after"):
            return paged(self._list(prefix), start_after, page_size)
        return self.inner._list_after(prefix, start_after, page_size)

    def _overrides(self, single: str, bulk: str) -> bool:
        """True if a subclass overrides the ``single`` primitive but not its ``bulk`` one."""
        cls = type(self)
        return getattr(cls, single) is not getattr(WrapperBlobStore, single) and getattr(
            cls, bulk
        ) is getattr(WrapperBlobStore, bulk)

    def _list_dated(self, prefix: str) -> AsyncIterator[DatedPage]:
        return self.inner._list_dated(prefix)

    def _list_sized(self, prefix: str) -> AsyncIterator[list[tuple[str, int]]]:
        return self.inner._list_sized(prefix)

    async def _sign_url(self, path: str, seconds: int, content_type: str | None) -> str:
        return await self.inner._sign_url(path, seconds, content_type)
