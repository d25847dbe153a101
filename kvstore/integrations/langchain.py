"""LangChain's ``ByteStore`` (``BaseStore[str, bytes]``) on a kvstore.

::

    import kvstore
    from kvstore.integrations.langchain import KVStoreByteStore

    store = KVStoreByteStore(url="s3://bucket/app", namespace="embeddings-cache")
    # e.g. CacheBackedEmbeddings.from_bytes_store(embedder, store)

Each key is one kvstore value (one object), so what the store guarantees holds per key:

* ``mset``: each write is atomic and durable when it returns (the batch is not: a crash
  can leave some pairs written); a concurrent batch, PUTs in parallel.
* ``mget``: one cache lookup, then one concurrent batch of GETs for the misses; never a
  stale value after a write (the store's cache rule).
* ``mdelete``: one bulk delete per 1000 keys on S3 (a DELETE per key on GCS and local
  disk), no reads; deleting a missing key is not an error.
* ``yield_keys(prefix=...)``: a LIST per 1000 keys, in the store's order.

Keys are kvstore keys: any string of valid Unicode up to 1024 bytes in UTF-8 (binary-safe:
:mod:`kvstore.keys`); a bad key raises ``kvstore.InvalidKeyError``, a value that is not
``bytes`` a ``TypeError`` - nothing is written. The async methods run on kvstore's own
event loop and are awaited from the caller's.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Sequence
from typing import Any, cast

from langchain_core.stores import ByteStore

from ..api import AsyncKVStore
from ..portal import portal
from ..sync import KVStore
from ._opening import open_store


class KVStoreByteStore(ByteStore):
    """A LangChain ``ByteStore`` over ``store`` (a blocking ``KVStore``), or over the
    store ``kvstore.open(url, **open_kwargs)`` opens (closed by :meth:`close`); in its
    ``namespace`` if one is given."""

    def __init__(
        self,
        store: KVStore | None = None,
        *,
        url: str | None = None,
        namespace: str | None = None,
        **open_kwargs: Any,
    ) -> None:
        self._root, self.store, self._owned = open_store(
            store, url, namespace, open_kwargs, binary="a ByteStore"
        )

    @property
    def _aio(self) -> AsyncKVStore:
        return self.store.aio

    @staticmethod
    def _checked(key_value_pairs: Sequence[tuple[str, bytes]]) -> dict[str, bytes]:
        pairs: dict[str, bytes] = {}
        for key, value in key_value_pairs:
            if not isinstance(value, (bytes, bytearray, memoryview)):
                raise TypeError(f"a ByteStore value must be bytes, not {type(value).__name__}")
            pairs[key] = bytes(value)
        return pairs

    # -- sync -------------------------------------------------------------------------------
    def mget(self, keys: Sequence[str]) -> list[bytes | None]:
        return cast("list[bytes | None]", self.store.mget(list(keys)))

    def mset(self, key_value_pairs: Sequence[tuple[str, bytes]]) -> None:
        pairs = self._checked(key_value_pairs)
        if pairs:
            self.store.mset(pairs)

    def mdelete(self, keys: Sequence[str]) -> None:
        if keys:
            self.store.discard(*keys)

    def yield_keys(self, *, prefix: str | None = None) -> Iterator[str]:
        yield from self.store.scan_iter(prefix or "")

    # -- async (on kvstore's loop, awaited from the caller's) -------------------------------
    async def amget(self, keys: Sequence[str]) -> list[bytes | None]:
        return cast("list[bytes | None]", await portal().arun(self._aio.mget(list(keys))))

    async def amset(self, key_value_pairs: Sequence[tuple[str, bytes]]) -> None:
        pairs = self._checked(key_value_pairs)
        if pairs:
            await portal().arun(self._aio.mset(pairs))

    async def amdelete(self, keys: Sequence[str]) -> None:
        if keys:
            await portal().arun(self._aio.discard(*keys))

    async def ayield_keys(self, *, prefix: str | None = None) -> AsyncIterator[str]:
        pages = cast("AsyncGenerator[list[str], None]", self._aio.key_pages(prefix or ""))
        run = portal().arun
        sentinel: Any = object()

        async def step() -> Any:  # on kvstore's loop: a failed step closes the listing there
            try:
                return await anext(pages, sentinel)
            except BaseException:
                await pages.aclose()
                raise

        stepping = False
        try:
            while True:
                stepping = True
                page = await run(step())
                stepping = False
                if page is sentinel:
                    return
                for key in page:
                    yield key
        finally:
            if not stepping:  # the caller stopped between steps (break, aclose)
                await run(pages.aclose())

    def close(self) -> None:
        """Close the store if this adapter opened it."""
        if self._owned:
            self._root.close()


__all__ = ["KVStoreByteStore"]
