"""``store.rekey()`` / ``kvstore rekey``: every object of a store view (and its namespaces)
sealed under the key ring's primary key.

Each object is read as stored (one GET); one sealed under an older key is opened and sealed
again under the primary, then written back by compare-and-swap on the version read (one
conditional PUT) - so a write that landed meanwhile (sealed under the primary by its
writer) is never overwritten with older content. An object already under the primary costs
its GET only. Plaintext objects (a store that was not encrypted) are sealed only when
``seal_plaintext`` is given: on an encrypted store, plaintext is what someone other than
kvstore wrote. Idempotent and resumable: a run that stopped is finished by running it
again; every object stays readable throughout (old keys stay in the ring until it is done).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import aio
from ..blob.base import AmbiguousWriteError, BlobStore
from ..context import StoreContext
from ..errors import ConfigurationError
from ..layout import STORE_ID
from .blob import EncryptingBlobStore
from .sealing import key_id_of

Progress = Callable[[str, int, int], None]


def _encrypting(blob: BlobStore) -> EncryptingBlobStore:
    """The EncryptingBlobStore of a store (wrappers in front of it allowed)."""
    current: Any = blob
    while current is not None:
        if isinstance(current, EncryptingBlobStore):
            return current
        current = getattr(current, "inner", None)
    raise ConfigurationError(
        "the store is not encrypted: open it with encryption=kvstore.KeyRing(...) to rekey"
    )


async def rekey(
    ctx: StoreContext, seal_plaintext: bool = False, progress: Progress | None = None
) -> dict[str, int]:
    """Seal every object under the primary key (see the module docstring); returns
    ``{"objects", "rewritten", "current", "changed", "plaintext"}``: objects seen, sealed
    again, already under the primary, changed by a writer meanwhile (left as written),
    plaintext left alone (without ``seal_plaintext``)."""
    sealer = _encrypting(ctx.blob)
    inner, ring = sealer.inner, sealer.ring
    await inner.require("atomic_conditional_put")
    paths = [p async for page in inner.list_pages(ctx.layout.base) for p in page]
    if not ctx.layout.base and STORE_ID not in paths and await inner.get(STORE_ID) is not None:
        # The store's id (kept with a shared cache) is sealed like any object, but local
        # disk lists nothing of its private .kvstore/ directory: left under the old key,
        # it would make the store unusable once that key leaves the ring.
        paths.append(STORE_ID)
    counts = {"objects": len(paths), "rewritten": 0, "current": 0, "changed": 0, "plaintext": 0}
    done = 0
    report = progress or (lambda what, n, total: None)
    report("objects", 0, len(paths))

    async def one(path: str) -> None:
        nonlocal done
        found = await inner.get(path)
        outcome = "changed"  # gone since the listing: deleted by a writer
        if found is not None:
            key_id = key_id_of(found.data)
            if key_id == ring.primary:
                outcome = "current"
            elif key_id is None and not seal_plaintext:
                outcome = "plaintext"
            else:
                plain = found.data if key_id is None else sealer.open_object(path, found.data)
                again = sealer.seal_object(path, plain)
                try:
                    written = await inner.put_if_match(path, again, found.tag)
                except AmbiguousWriteError:  # ours landed, or a writer's: nothing was
                    written = None  # overwritten either way; a run again tells which
                outcome = "rewritten" if written is not None else "changed"
        counts[outcome] += 1
        done += 1
        report("objects", done, len(paths))

    batch = 64 * ctx.concurrency  # coroutines made a batch at a time, not one per object
    for at in range(0, len(paths), batch):
        await aio.bounded([one(p) for p in paths[at : at + batch]], ctx.concurrency)
    return counts
