"""Deleted incarnations: a list deleted with DEL leaves its incarnation's log (records and
marks) behind - no head names it any more, and no incarnation is ever used again. DEL
writes a *gone* marker beside that log (:meth:`kvstore.layout.Layout.gone_marker`);
:func:`sweep` removes every object of a marked incarnation once all of them are older than
the log safety rule's age (10 minutes by the object store's clock: a push that raced the
DEL has finished or given up by then), the marker last, so a sweep that stops halfway is
finished by the next.
"""

from __future__ import annotations

from .. import codec
from ..context import StoreContext
from ..layout import GONE_LEAF, Layout
from . import limits


async def mark_gone(ctx: StoreContext, incarnation: Layout) -> None:
    """Say that ``incarnation``'s objects may all go once old (one PUT; idempotent)."""
    path = Layout.gone_marker(incarnation)
    await ctx.blob.put(path, codec.encode(b"", meta={"t": ctx.clock()}, bind=path))


async def sweep(ctx: StoreContext) -> int:
    """Remove the objects of the view's deleted list incarnations whose objects are all
    older than ``limits.MIN_AGE_MS``; returns the objects removed. One dated listing of the
    list area; nothing on a store that cannot date its objects."""
    if not ctx.blob.dated_listing:
        return 0
    layout = ctx.layout
    listing = await ctx.blob.list_dated(layout.list_area)
    ages = listing.ages()
    by_incarnation: dict[tuple[str, str], list[str]] = {}
    for path in listing.paths:
        found = layout.list_logs(path)
        if found is not None:
            by_incarnation.setdefault(found, []).append(path)
    removed = 0
    for (key, incarnation), paths in by_incarnation.items():
        marker = Layout.gone_marker(layout.list_log(key, incarnation))
        if marker not in paths or any(ages[p] <= limits.MIN_AGE_MS for p in paths):
            continue
        rest = [p for p in paths if p != marker]
        await ctx.blob.delete_many(rest)
        await ctx.blob.delete(marker)
        removed += len(paths)
    return removed


def is_gone_marker(path: str) -> bool:
    return path.endswith("/" + GONE_LEAF)
