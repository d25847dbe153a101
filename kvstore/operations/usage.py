"""``store.usage()``: the objects and bytes a store view holds, per kind and per namespace,
from listings alone.

Each object is told apart by its name (:meth:`kvstore.layout.Layout.kind_of`) and weighed
by the size its listing gives (:meth:`kvstore.blob.BlobStore.list_sizes`: S3 ``Size``, GCS
``size``, a file's ``stat``): no GET, no HEAD. Costs one LIST per 1000 objects listed (local
disk: a walk of the directory tree); nothing is cached, so the answer is what the object
store held while it was listed - a listing is not a snapshot, and writers running meanwhile
may or may not be counted.

Sizes are of the stored objects (envelopes: compressed, with their headers), which is what
the bucket is billed for - not the sizes of the values as written. Objects still stored
but no longer readable (deleted log records not yet purged, chunks a segment covers,
expired values) are counted until ``purge`` removes them.
"""

from __future__ import annotations

from typing import Any

from ..context import StoreContext
from ..errors import ConfigurationError
from ..keys import encode_prefix
from ..layout import KINDS, PREFIXABLE_AREAS


class _Tally:
    """Objects, bytes and items of one kind in one namespace."""

    __slots__ = ("bytes", "items", "last_item", "objects")

    def __init__(self) -> None:
        self.objects = self.bytes = self.items = 0
        self.last_item: str | None = None

    def add(self, size: int, item: str | None) -> None:
        self.objects += 1
        self.bytes += size
        # A listing is sorted and an item's objects share its prefix: they come together.
        if item is not None and item != self.last_item:
            self.items += 1
            self.last_item = item

    def as_dict(self) -> dict[str, int]:
        return {"objects": self.objects, "bytes": self.bytes, "items": self.items}


async def usage(ctx: StoreContext, prefix: str | None = None) -> dict[str, Any]:
    """What the store view of ``ctx`` holds (see the module docstring). ``prefix=None``:
    everything, nested namespaces included (one listing of the view). A ``prefix``: the
    values, logs, lists, artifacts, sessions' apps and record collections of this view
    whose key or name starts with it (a listing per kind), no nested namespace.

    Returns ``{"prefix", "objects", "bytes", "kinds": {kind: {"objects", "bytes",
    "items"}}, "namespaces": [{"namespace": [names...], "objects", "bytes", "kinds"}]}``:
    ``kinds`` totals every namespace; ``namespaces`` lists each that holds objects, this
    view first (``[]``), then nested ones in listing order. ``items`` counts what a user
    would: values, logs, lists, artifact names, sessions, collections of records."""
    layout = ctx.layout
    if prefix is None:
        listings = [layout.base]
    elif isinstance(prefix, str):
        encoded = encode_prefix(prefix)
        listings = [layout.base + area + encoded for area in PREFIXABLE_AREAS]
    else:
        raise ConfigurationError(f"prefix must be a str or None, not {type(prefix).__name__}")
    tallies: dict[tuple[str, ...], dict[str, _Tally]] = {}
    for listing in listings:
        async for page in ctx.blob.list_sizes(listing):
            for path, size in page:
                names, kind, item = layout.kind_of(path)
                space = tallies.get(names)
                if space is None:
                    space = tallies[names] = {}
                tally = space.get(kind)
                if tally is None:
                    tally = space[kind] = _Tally()
                tally.add(size, item)
    totals = {kind: _Tally() for kind in KINDS}
    namespaces = []
    for names in sorted(tallies, key=lambda n: (n != (), n)):
        space = tallies[names]
        for kind, tally in space.items():
            total = totals[kind]
            total.objects += tally.objects
            total.bytes += tally.bytes
            total.items += tally.items
        namespaces.append(
            {
                "namespace": list(names),
                "objects": sum(t.objects for t in space.values()),
                "bytes": sum(t.bytes for t in space.values()),
                "kinds": {k: space[k].as_dict() for k in KINDS if k in space},
            }
        )
    return {
        "prefix": prefix,
        "objects": sum(t.objects for t in totals.values()),
        "bytes": sum(t.bytes for t in totals.values()),
        "kinds": {kind: t.as_dict() for kind, t in totals.items() if t.objects},
        "namespaces": namespaces,
    }
