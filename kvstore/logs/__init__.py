"""Append logs (session histories): immutable chunks, many writers, no locks.

Layout below ``{base}log/{enc(key)}/`` (:mod:`kvstore.layout`; docs/architecture.md,
"The log protocol"):

========================== =================================================================
``c/{first:020d}``          chunk: records ``[first, first + n)``; created once, by conditional
                            create, at the log's tail; never rewritten
``s/{first:020d}-{end:020d}`` segment: records ``[first, end)`` merged from chunks by compaction
``m/{mark:020d}``           mark: records below ``mark`` are gone (``trim``, ``delete``)
========================== =================================================================

Records are msgpack-framed inside the usual envelope (zstd, checksum). Sequence numbers are
absolute and only grow; index 0 of ``range`` is the first record at or above the highest
mark. One module per job:

* :mod:`.model` - pure: the pieces that cover a listing (O(n log n)), records framing;
* :mod:`.reader` - plans (cached), pieces (immutable, cached), ``range``/``length``;
* :mod:`.writer` - ``append``: tail claims, group commit, retry safety;
* :mod:`.cleanup` - ``trim``/``delete``: marks, and deleting only what is old;
* :mod:`.compaction` - merging old chunks into segments, by hand or in the background;
* :mod:`.limits` - the protocol's numbers; :mod:`.state` - what a process keeps per log.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from .. import aio
from ..context import StoreContext
from . import limits
from .cleanup import LogCleanup
from .compaction import Compactor
from .model import Piece, Plan, Replan, cover
from .reader import LogReader
from .state import LogWriters
from .writer import LogWriter

__all__ = ["Logs", "Piece", "Plan", "Replan", "cover", "limits", "quiesce"]


async def quiesce(ctx: StoreContext, prefix: str) -> None:
    """Stop this process's background work on the logs below ``prefix`` (paths relative to
    the store root) and wait for it: call before removing those logs' objects wholesale,
    so no settle of this process writes a segment after them."""
    tasks = ctx.state(LogWriters).stop_settling(prefix)
    if tasks:
        await asyncio.wait(tasks)


class Logs:
    """The log commands of one store view (a namespace or the root)."""

    def __init__(self, ctx: StoreContext) -> None:
        self.ctx = ctx
        self.reader = LogReader(ctx)
        self.cleanup = LogCleanup(ctx, self.reader)
        self.compactor = Compactor(ctx, self.reader, self.cleanup)
        self.writer = LogWriter(ctx, self.reader, self.compactor)
        self.reader.on_scattered = self.compactor.settle_soon

    async def append(self, key: str, values: Sequence[Any], expect_next: int | None = None) -> int:
        """RPUSH: the log's length after the records."""
        return (await self.writer.append(key, values, expect_next))[1]

    async def extend(
        self, key: str, values: Sequence[Any], expect_next: int | None = None
    ) -> range:
        """The sequence numbers the records got."""
        first, _ = await self.writer.append(key, values, expect_next)
        return range(first, first + len(values))

    async def read_from(
        self, key: str, seq: int, count: int | None = None, fresh: bool = False
    ) -> tuple[int, list[bytes]]:
        return await self.reader.read_from(key, seq, count, fresh)

    async def bounds(self, key: str) -> tuple[int, int]:
        return await self.reader.bounds(key)

    async def settle(self, key: str) -> int:
        """Cover the log's young chunks with segments now; returns segments written."""
        directory = self.reader.dir(key)

        async def run() -> int:
            return await self.compactor.settle(key, directory)

        return await self.ctx.commit([self.reader.plan_key(directory)], run)

    async def range(self, key: str, start: int, end: int) -> list[bytes]:
        return await self.reader.range(key, start, end)

    async def length(self, key: str) -> int:
        return await self.reader.length(key)

    async def trim(self, key: str, start: int) -> int:
        return await self.cleanup.trim(key, start)

    async def delete(self, key: str) -> bool:
        return await self.cleanup.delete(key)

    async def drop_before(self, key: str, end: int) -> int:
        return await self.cleanup.drop_before(key, end)

    async def purge(self, prefix: object) -> int:
        return await self.cleanup.purge(prefix)

    async def delete_prefix(self, prefix: object) -> int:
        """Delete every log whose key starts with ``prefix`` (as :meth:`delete` does each);
        the number that held records."""
        keys: set[str] = set()
        layout = self.ctx.layout
        async for page in self.ctx.blob.list_pages(layout.log_prefix(prefix)):
            for path in page:
                split = layout.split_log_path(path)
                if split is not None:
                    try:
                        keys.add(layout.key_of(split[0]))
                    except ValueError:
                        continue
        removed = await aio.bounded([self.delete(k) for k in sorted(keys)], self.ctx.concurrency)
        return sum(removed)

    async def compact(self, key: str) -> int:
        return await self.compactor.compact(key)

    async def live_keys(self, prefix: object) -> list[str]:
        return await self.reader.live_keys(prefix)

    async def pop(self, key: str, count: int) -> list[bytes]:
        return await self.cleanup.pop(key, count)

    async def read(
        self, key: str, start: int, end: int, listed: Sequence[str] | None = None
    ) -> tuple[int, list[bytes]]:
        """``listed``: the log's object names from a listing just made (see
        :meth:`LogReader.plan`): a cold read then costs no LIST of its own."""
        return await self.reader.read(key, start, end, listed=listed)
