"""StoreOperations: the operations half of the store façade - counters, health, checks,
cleanup and usage - mixed into :class:`kvstore.api.AsyncKVStore` (its blocking twin derives
them as it does the rest: :mod:`kvstore.sync`). Each hands over to the module that keeps
its guarantees (:mod:`kvstore.fsck`, :mod:`kvstore.operations`, the models' purges)."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from .context import StoreContext
from .errors import ConfigurationError, KVStoreError
from .fsck import fsck as run_fsck
from .logs import Logs
from .operations import usage as run_usage
from .records import AsyncRecords, record_collections
from .values import Values


class StoreOperations:
    """The operations methods of a store view (see the module docstring)."""

    _ctx: StoreContext
    _values: Values
    _logs: Logs

    if TYPE_CHECKING:

        @property
        def url(self) -> str: ...

        def records(self, name: str, partition: str = "day") -> AsyncRecords: ...

    def stats(self) -> dict[str, Any]:
        """Counters: object-store requests by kind, retries, errors, bytes, cache hits..."""
        counts: dict[str, Any] = dict(self._ctx.stats.snapshot())
        counts["cache"] = {"kind": self._ctx.cache.name, **self._ctx.cache.info()}
        return counts

    async def health(self, timeout: float = 5.0) -> dict[str, Any]:
        """Is the object store reachable (one GET of an absent probe object) and the cache?

        Never raises for an unreachable backend: reports ``ok: False`` and the error, within
        ``timeout`` seconds.
        """
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            raise ConfigurationError(f"timeout must be a number of seconds > 0, not {timeout!r}")
        started = time.perf_counter()
        try:
            await asyncio.wait_for(self._ctx.blob.get(".kvstore/health-probe"), timeout)
            store: dict[str, Any] = {"ok": True}
        except KVStoreError as exc:
            store = {"ok": False, "error": str(exc)}
        except asyncio.TimeoutError:
            store = {"ok": False, "error": f"no answer within {timeout} s"}
        store["url"] = self.url
        store["latency_ms"] = round((time.perf_counter() - started) * 1000, 3)
        cache = await self._ctx.cache_safely(
            self._ctx.cache.health(), {"ok": False, "error": "cache health check failed"}
        )
        return {
            "ok": store["ok"] and cache["ok"],
            "store": store,
            "cache": {"kind": self._ctx.cache.name, **cache},
        }

    async def fsck(self, repair: bool = False) -> dict[str, Any]:
        """Check every object of this store view and of the namespaces inside it (read
        from the object store, verified) and report what is damaged: missing log records,
        corrupt or misplaced objects, mismatched counts or checksums, orphaned parts.
        ``repair=True`` marks a log's missing or damaged records as lost, so the rest of
        the log can be used; nothing else is changed. See :mod:`kvstore.fsck`.

        Returns ``{"ok", "objects", "damage": [{"kind", "path", "detail", "repaired"}]}``.
        Costs a GET per object and a LIST per 1000."""
        if not isinstance(repair, bool):
            raise ConfigurationError(f"repair must be True or False, not {repair!r}")
        return (await run_fsck(self._ctx, repair)).to_dict()

    async def purge(self, prefix: str = "") -> dict[str, int]:
        """Delete for good what no read can see any more: expired values
        (:meth:`purge_expired`) and the objects of deleted or trimmed log records, chunks
        covered by segments and lower marks - logs' only once older than 10 minutes by the
        object store's clock (the rule that keeps concurrent writers safe). A deleted log
        keeps one empty mark object. Returns ``{"expired": n, "log_objects": m}``. Safe to
        run at any time, from any number of processes."""
        expired = await self._values.purge_expired(prefix)
        removed = await self._logs.purge(prefix)
        if prefix in ("", b""):  # the logs of records' partitions (kvstore.records)
            for name in await record_collections(self._ctx):
                removed += await self.records(name).purge()
        return {"expired": expired, "log_objects": removed}

    async def purge_expired(self, prefix: str = "") -> int:
        """Delete expired values for good; returns how many were removed.

        Each delete is conditional on the version that was found expired, so a value
        written meanwhile survives.
        """
        return await self._values.purge_expired(prefix)

    async def usage(self, prefix: str | None = None) -> dict[str, Any]:
        """The objects and bytes this view holds, per kind (values, logs, lists, artifacts,
        sessions, records, internal, foreign) and per namespace, with the items of each
        kind (values, logs, artifact names, sessions...): from listings alone, no GET - one
        LIST per 1000 objects. ``prefix``: only the keys and names starting with it, in
        this view (no nested namespace). Sizes are as stored (compressed envelopes). See
        :mod:`kvstore.operations.usage` for the result's shape."""
        return await run_usage(self._ctx, prefix)
