"""``store.maintain()`` / ``kvstore maintain``: apply every retention policy, then remove
for good what no read can see, and report what was freed.

One run, over a store view and every namespace inside it:

1. one sized listing of the view (:meth:`kvstore.blob.BlobStore.list_sizes`): what is
   stored before, and which namespaces there are;
2. each namespace's policy read (:mod:`.retention`), and each rule applied;
3. each namespace purged as ``store.purge`` does: the objects of deleted or trimmed log
   records and of dropped record partitions once the log safety rule allows (10 minutes
   by the object store's clock), and - unless ``purge_expired=False`` - expired values,
   which costs a ranged GET of every value (an expiry is inside the object, not in its
   listing);
4. a second sized listing: what was there before and is gone now is what was freed -
   objects and their bytes, whoever removed them (another maintainer running at once
   too), plus the bytes objects still there shrank by (a deleted artifact version's
   manifest becomes a small tombstone).

Idempotent and safe to run from several processes at once and while writers write (see
:mod:`.retention` for why no rule removes what it keeps). Nothing is recorded between
steps: a run that was killed is finished by running it again. Costs two LISTs per 1000
objects, plus what each rule's listings and deletes cost, plus a ranged GET per value
with ``purge_expired`` (BENCHMARKS.md, S21).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import aio
from ..context import StoreContext
from ..errors import InvalidKeyError
from ..logs import Logs, incarnations
from ..records import AsyncRecords, record_collections
from ..values import Values
from . import retention

Progress = Callable[[str, int, int], None]
"""``progress(what, done, total)``: ``what`` is "rules" (applied so far of all the
namespaces' rules) then "namespaces" (purged so far)."""


def _no_progress(what: str, done: int, total: int) -> None:
    """The default: no report."""


async def _sizes(ctx: StoreContext) -> dict[str, int]:
    return {p: n async for page in ctx.blob.list_sizes(ctx.layout.base) for p, n in page}


def _view(ctx: StoreContext, names: tuple[str, ...]) -> StoreContext | None:
    """The view of a namespace found in a listing; None for a name no namespace can have
    (a foreign object below ``ns/``)."""
    for name in names:
        try:
            ctx = ctx.namespace(name)
        except InvalidKeyError:
            return None
    return ctx


async def _purge(ctx: StoreContext, purge_expired: bool) -> dict[str, int]:
    """What ``store.purge()`` does for one view (not the namespaces inside it); expired
    values only if ``purge_expired``."""
    expired = await Values(ctx).purge_expired("") if purge_expired else 0
    removed = await Logs(ctx).purge("") + await incarnations.sweep(ctx)
    for name in await record_collections(ctx):
        span = await retention._span_of(ctx, name)
        if span is not None:
            removed += await AsyncRecords(ctx, name, span).purge()
    return {"expired": expired, "log_objects": removed}


async def maintain(
    ctx: StoreContext, progress: Progress | None = None, purge_expired: bool = True
) -> dict[str, Any]:
    """Apply the policies of the view and its namespaces, purge, and report (see the
    module docstring): ``{"rules": [{"namespace", "kind", "prefix", limits...,
    "removed"}], "purged": {"expired", "log_objects"}, "freed": {"objects", "bytes"},
    "before": {"objects", "bytes"}, "after": {"objects", "bytes"}}``."""
    report = progress or _no_progress
    before = await _sizes(ctx)
    spaces = sorted({ctx.layout.kind_of(path)[0] for path in before} | {()})
    views = {names: view for names in spaces if (view := _view(ctx, names)) is not None}
    found = await aio.bounded([retention.policy(v) for v in views.values()], ctx.concurrency)
    policies = dict(zip(views, found, strict=True))  # a GET per namespace, concurrently
    total = sum(len(rules) for rules in policies.values())
    applied: list[dict[str, Any]] = []
    report("rules", 0, total)
    for names, rules in policies.items():
        for rule in rules:
            removed = await retention.apply(views[names], rule)
            applied.append({"namespace": list(names), **rule.to_dict(), "removed": removed})
            report("rules", len(applied), total)
    purged = {"expired": 0, "log_objects": 0}
    report("namespaces", 0, len(views))
    for done, view in enumerate(views.values(), 1):
        for name, n in (await _purge(view, purge_expired)).items():
            purged[name] += n
        report("namespaces", done, len(views))
    after = await _sizes(ctx)
    gone = [path for path in before if path not in after]
    shrunk = sum(max(0, n - after[p]) for p, n in before.items() if p in after)
    return {
        "rules": applied,
        "purged": purged,
        "freed": {"objects": len(gone), "bytes": sum(before[p] for p in gone) + shrunk},
        "before": {"objects": len(before), "bytes": sum(before.values())},
        "after": {"objects": len(after), "bytes": sum(after.values())},
    }
