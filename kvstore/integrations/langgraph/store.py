"""LangGraph's long-term memory store on a kvstore: :class:`KVStoreStore` (a ``BaseStore``).

::

    from kvstore.integrations.langgraph import KVStoreSaver, KVStoreStore

    store = KVStoreStore(url="s3://bucket/app", namespace="memories", cache="local")
    graph = builder.compile(checkpointer=KVStoreSaver(url=...), store=store)
    # in a node: store.put(("memories", user_id), "m1", {"text": "likes tea"}) ...

Every operation of LangGraph's interface, blocking (``batch``, and the base's ``get``,
``put``, ``delete``, ``search``, ``list_namespaces``) and async (``abatch`` and the
``a``-twins: run on kvstore's loop, awaited from the caller's). No vector index: the
interface allows a store without one (LangGraph's ``InMemoryStore`` and ``PostgresStore``
without an ``index``), and this is such a store - ``search`` filters by namespace prefix
and ``filter``; a ``query`` is ignored (results in key order, ``score`` None), exactly as
those stores do without an index; a put's ``index`` argument is ignored; ``index=`` at
construction is refused.

Layout (kvstore keys, in the store's namespace if one is given; each namespace label and
the key %-escaped: ``%`` -> ``%25``, ``/`` -> ``%2F``)::

    langgraph-store/{label 1}/.../{label n}/{key}    one item: one kvstore value

so ``/`` ends every label: the prefix of ``("a",)`` (``langgraph-store/a/``) is a key
prefix of ``("a", "b")``'s items (a namespace prefix is a key prefix) and of nothing of
``("ab",)``; ``("a", "b")``'s prefix is not one of item ``b`` of ``("a",)``
(``langgraph-store/a/b``); the last field is the key, so a key parses one way. Beside the
saver's ``langgraph/`` area, never inside it. The value is JSON:
``{"value": {...}, "format": 1, "namespace": [...], "key": ..., "created_at": iso,
"updated_at": iso, "ttl": minutes | null}`` (self-describing: a misplaced object is
reported as corrupt, never returned as another item), in kvstore's checksummed envelope.

Semantics of a batch (where LangGraph leaves latitude, ``InMemoryStore``'s): results in
the order of the ops; the reads (gets, searches, listings) run first, concurrently, and
see the store as it was before the batch; then the writes, concurrently, one per key: of
several puts of one (namespace, key) the last wins. ``created_at`` is kept when an item
is replaced (the old record is read with the batch's reads); ``updated_at`` is the
write's time. ``search`` returns items in (namespace, key) order (Python's tuple order);
``list_namespaces`` lists namespaces holding at least one item (``InMemoryStore`` also
lists namespaces that a get or a delete touched and that hold nothing), sorted.
Filters: a value, a nested dict (matched field by field), a list (equal length, element
by element), or operators ``$eq $ne $gt $gte $lt $lte``; the comparisons are numeric
(``float()`` of both sides, as ``InMemoryStore`` does); a field that is missing or not a
number fails a comparison (``InMemoryStore`` raises there); an unknown operator or a
non-numeric operand raises ``ValueError`` before any request.

TTL (``supports_ttl = True``; ``ttl=`` in minutes per put, or ``TTLConfig``
``default_ttl``): kvstore's own value TTL (``set(px=...)``): an expired item is gone for
every read at once, whatever ``omit_expired`` says; its object stays until
:meth:`KVStoreStore.sweep_ttl` (``purge_expired``) removes it - until then
``list_namespaces`` (a listing, no reads) may name a namespace whose items all expired.
No background sweeper runs (``sweep_interval_minutes`` is not acted on): call
``sweep_ttl`` on a schedule. ``refresh_ttl`` (``TTLConfig.refresh_on_read``, default True):
a get or search that returns an item with a TTL resets it with ``pexpire`` - one
conditional PUT per item (+ a GET unless this process wrote its current version), and
the item's next read misses the cache: reading is then a write; turn it off
(``TTLConfig(refresh_on_read=False)``) where reads are hot.

Costs in object-store requests (S3; a cache - ``cache="local"`` or Redis - answers
repeated reads; a write leaves the cache to the next read):

* ``get``: 1 GET, none when cached.
* ``put``: 1 PUT; plus 1 GET of the item it replaces (for ``created_at``), none when
  cached. ``delete``: no read, one bulk DELETE (a batch's deletes together).
* ``search``: a LIST of the namespace prefix - all of it, a request per 1000 items -
  then GETs in key order until ``offset + limit`` items passed the filter, concurrently
  per round (unfiltered: exactly ``offset + limit`` GETs; filtered: rounds that double,
  up to 256). Filters are evaluated here, not by the object store: a search reads every
  item under the prefix up to the last match it returns (all of them when fewer match).
* ``list_namespaces``: a LIST of the whole store area (a request per 1000 items), or of
  the literal leading labels of a ``prefix`` condition (``("users", "*")`` lists
  ``langgraph-store/users/``); no GETs.

Bad input - a namespace that is not a tuple of str labels, a label empty, with ``.`` or
NUL, a put's namespace empty or rooted at ``"langgraph"`` (``InvalidNamespaceError``, as
LangGraph's base raises), a key that is not a str, a value that is not a dict with str
keys or not JSON-serializable (``TypeError``; ``ValueError`` for NaN, infinities and
cycles), a ttl that is not a positive number, a bad filter, a negative limit or offset,
a key too long for the store (``kvstore.InvalidKeyError``) - raises for the whole batch
before any request: nothing is written.
"""

from __future__ import annotations

from collections.abc import Iterable
from types import TracebackType
from typing import Any, cast

from langgraph.store.base import BaseStore, Op, Result, TTLConfig

from ...api import AsyncKVStore
from ...portal import portal
from ...sync import KVStore
from .._opening import open_store
from . import store_engine, store_items


class KVStoreStore(BaseStore):
    """A LangGraph ``BaseStore`` over ``store`` (a blocking ``KVStore``), or over the store
    ``kvstore.open(url, **open_kwargs)`` opens (closed by :meth:`close`); in its
    ``namespace`` if one is given. ``ttl``: LangGraph's ``TTLConfig``."""

    supports_ttl = True

    def __init__(
        self,
        store: KVStore | None = None,
        *,
        url: str | None = None,
        namespace: str | None = None,
        ttl: TTLConfig | None = None,
        index: None = None,
        **open_kwargs: Any,
    ) -> None:
        if index is not None:
            raise NotImplementedError(
                "KVStoreStore has no vector index: search filters by namespace and fields"
            )
        self.ttl_config = _checked_ttl_config(ttl)
        self._root, self.store, self._owned = open_store(store, url, namespace, open_kwargs)

    @property
    def _aio(self) -> AsyncKVStore:
        return self.store.aio

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        plan = store_engine.prepare(ops, self._aio)
        return portal().run(store_engine.run(self._aio, plan))

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        plan = store_engine.prepare(ops, self._aio)
        return await portal().arun(store_engine.run(self._aio, plan))

    def sweep_ttl(self) -> int:
        """Remove the objects of expired items for good (reads already skip them); how
        many. A LIST per 1000 items and a conditional DELETE per expired one."""
        return portal().run(self._aio.purge_expired(store_items.AREA))

    async def asweep_ttl(self) -> int:
        return await portal().arun(self._aio.purge_expired(store_items.AREA))

    # -- lifetime -----------------------------------------------------------------------

    def close(self) -> None:
        """Close the store if this object opened it."""
        if self._owned:
            self._root.close()

    def __enter__(self) -> KVStoreStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> KVStoreStore:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._owned:
            await portal().arun(self._root.aio.close())

    def __repr__(self) -> str:
        return f"<KVStoreStore {self.store!r}>"


def _checked_ttl_config(ttl: Any) -> TTLConfig | None:
    if ttl is None:
        return None
    if not isinstance(ttl, dict):
        raise TypeError(f"ttl is a TTLConfig (a dict), not {type(ttl).__name__}")
    known = {"refresh_on_read", "omit_expired", "default_ttl", "sweep_interval_minutes"}
    unknown = set(ttl) - known
    if unknown:
        raise ValueError(f"unknown TTLConfig keys {sorted(unknown)}; known: {sorted(known)}")
    store_items.ttl_ms(ttl.get("default_ttl"))
    for flag in ("refresh_on_read", "omit_expired"):
        if not isinstance(ttl.get(flag, True), bool):
            raise TypeError(f"TTLConfig {flag} is True or False, not {ttl[flag]!r}")
    return cast(TTLConfig, dict(ttl))
