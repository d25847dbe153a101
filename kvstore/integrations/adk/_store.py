"""What both ADK services share: the store they are built on, and running a call of the
store's async API on kvstore's own event loop from whatever loop ADK awaits it on."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, TypeVar

from ...api import AsyncKVStore
from ...portal import portal
from ...sync import KVStore
from .._opening import open_store

T = TypeVar("T")


class StoreBacked:
    """Holds ``store`` (a blocking ``kvstore.KVStore``), or the store
    ``kvstore.open(url, **open_kwargs)`` opens (closed by :meth:`close`); in its
    ``namespace`` if one is given."""

    def __init__(
        self,
        store: KVStore | None = None,
        *,
        url: str | None = None,
        namespace: str | None = None,
        **open_kwargs: Any,
    ) -> None:
        self._root, self.store, self._owned = open_store(store, url, namespace, open_kwargs)
        """``store``: the store (the namespace's view) this service reads and writes."""

    @property
    def _aio(self) -> AsyncKVStore:
        return self.store.aio

    @staticmethod
    async def _run(coro: Coroutine[Any, Any, T]) -> T:
        """Await a call of the async API on kvstore's loop (its clients live there), from
        the caller's loop - ADK's, or the one ``Runner.run`` starts in its thread."""
        return await portal().arun(coro)

    def close(self) -> None:
        """Close the store if this service opened it (from a url)."""
        if self._owned:
            self._root.close()
