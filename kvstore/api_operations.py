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
from .logs import Logs, incarnations
from .operations import Progress, maintain, make_rule, retention
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
        (:meth:`purge_expired`), deleted Redis lists' objects, and the objects of deleted
        or trimmed log records, chunks
        covered by segments and lower marks - logs' only once older than 10 minutes by the
        object store's clock (the rule that keeps concurrent writers safe). A deleted log
        keeps one empty mark object. Returns ``{"expired": n, "log_objects": m}``. Safe to
        run at any time, from any number of processes."""
        expired = await self._values.purge_expired(prefix)
        removed = await self._logs.purge(prefix)
        if prefix in ("", b""):  # deleted lists' incarnations (kvstore.logs.incarnations)
            removed += await incarnations.sweep(self._ctx)
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

    async def set_retention(
        self,
        kind: str,
        prefix: str = "",
        *,
        max_age: float | None = None,
        max_count: int | None = None,
        max_versions: int | None = None,
    ) -> list[dict[str, Any]]:
        """Add a retention rule to this view's policy (replacing the rule of the same
        ``kind`` and ``prefix``); returns the policy. Kinds and limits: ``values``
        (``max_age`` seconds since written), ``logs`` (``max_age`` since the last append,
        ``max_count`` last records kept), ``artifacts`` (``max_versions`` newest kept,
        ``max_age`` - never the newest), ``records`` (``max_age``, ``max_count``: whole
        partitions dropped).
        Stored in the bucket (every process sees it), changed by compare-and-swap;
        applied by :meth:`maintain`. See :mod:`kvstore.operations.retention`."""
        rule = make_rule(kind, prefix, max_age, max_count, max_versions)
        return [r.to_dict() for r in await retention.set_rule(self._ctx, rule)]

    async def retention(self) -> list[dict[str, Any]]:
        """This view's retention policy: its rules, as :meth:`set_retention` stored them."""
        return [r.to_dict() for r in await retention.policy(self._ctx)]

    async def remove_retention(self, kind: str, prefix: str = "") -> bool:
        """Remove the rule of ``kind`` and ``prefix``; False if there was none."""
        make_rule(kind, prefix, max_age=1)  # the same checks of kind and prefix
        return await retention.remove_rule(self._ctx, kind, prefix)

    async def maintain(
        self, progress: Progress | None = None, purge_expired: bool = True
    ) -> dict[str, Any]:
        """Apply the retention policies of this view and of every namespace inside it,
        then purge (as :meth:`purge`, in each), and report the rules applied, what they
        removed, and the objects and bytes freed (two sized listings: before and after).
        Idempotent; safe from several processes at once and with writers running; a
        killed run is finished by running it again. ``progress(what, done, total)`` is
        told of each rule applied and each namespace purged. ``purge_expired=False``
        skips expired values (finding them costs a ranged GET of every value). See
        :mod:`kvstore.operations.maintain`."""
        if progress is not None and not callable(progress):
            raise ConfigurationError(f"progress must be callable, not {progress!r}")
        if not isinstance(purge_expired, bool):
            raise ConfigurationError(f"purge_expired must be True or False, not {purge_expired!r}")
        return await maintain(self._ctx, progress, purge_expired)

    async def rekey(
        self, seal_plaintext: bool = False, progress: Progress | None = None
    ) -> dict[str, int]:
        """Seal every object of this view and its namespaces under the key ring's primary
        key (a store opened with ``encryption=``; ConfigurationError otherwise): one GET
        per object, and a conditional PUT for each sealed under an older key - a write
        landing meanwhile is never overwritten. ``seal_plaintext``: seal plaintext objects
        too (a store being encrypted for the first time). Returns ``{"objects",
        "rewritten", "current", "changed", "plaintext"}``. Idempotent, resumable; see
        :mod:`kvstore.crypto.rekey`."""
        if not isinstance(seal_plaintext, bool):
            raise ConfigurationError(
                f"seal_plaintext must be True or False, not {seal_plaintext!r}"
            )
        if progress is not None and not callable(progress):
            raise ConfigurationError(f"progress must be callable, not {progress!r}")
        from .crypto.rekey import rekey

        return await rekey(self._ctx, seal_plaintext, progress)
